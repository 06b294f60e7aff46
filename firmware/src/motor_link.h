/* motor_link: the pure logic of the snn_motor app (no firmware includes, C99, no malloc).
 *
 * - Packet decoding for motor commands streamed on the Crazyflie app channel (layout below; the
 *   same layout is defined in Python in snn_drone/core/deploy/motor_packet.py).
 * - A link state machine: sequence check, clamping, and a watchdog that trips when no valid packet
 *   arrived for timeout_ms while motors are commanded.
 *
 * Packet, version 1, 14 bytes, little-endian:
 *   offset size field
 *   0      1    version            = 1
 *   1      1    flags              bit0 ENABLE: 1 apply motor[], 0 stop streaming (hand back)
 *                                  bit1 RESUME: (re)start a stream: accept any sequence and clear
 *                                               a latched watchdog trip; other bits must be 0
 *   2      2    sequence           uint16, +1 per packet, wraps
 *   4      8    motor[4]           uint16 normalised thrust of M1..M4: value / 65535 in [0, 1]
 *                                  (the firmware's controlModeForce normalizedForces)
 *   12     2    crc16              CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of bytes 0..11
 *
 * States and outputs (ml_update):
 *   IDLE     no stream yet                      -> ML_OUT_STOCK (stock controller flies)
 *   ACTIVE   fresh packets with ENABLE          -> ML_OUT_MOTORS (clamped ratios)
 *   STOPPED  ground sent ENABLE = 0             -> ML_OUT_STOCK
 *   TRIPPED  ACTIVE and no valid packet for more than timeout_ms
 *            fallback ML_FALLBACK_OFF           -> ML_OUT_OFF (all motors 0)
 *            fallback ML_FALLBACK_STOCK         -> ML_OUT_STOCK (the app also starts a landing)
 *   A trip latches (config latch = 1) until a packet with RESUME | ENABLE arrives.
 */
#ifndef MOTOR_LINK_H
#define MOTOR_LINK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ML_PACKET_VERSION 1u
#define ML_PACKET_SIZE 14u
#define ML_NUM_MOTORS 4
#define ML_FLAG_ENABLE 0x01u
#define ML_FLAG_RESUME 0x02u
#define ML_FLAGS_KNOWN (ML_FLAG_ENABLE | ML_FLAG_RESUME)
#define ML_MOTOR_FULL_SCALE 65535u

/* Result of decoding / receiving a packet. */
typedef enum {
  ML_OK = 0,
  ML_ERR_LENGTH = 1,   /* not exactly ML_PACKET_SIZE bytes */
  ML_ERR_VERSION = 2,  /* version byte is not ML_PACKET_VERSION */
  ML_ERR_CRC = 3,      /* checksum mismatch */
  ML_ERR_FLAGS = 4,    /* unknown flag bits set */
  ML_ERR_SEQUENCE = 5  /* not newer than the last accepted packet (duplicate / reordered) */
} ml_status_t;

typedef enum { ML_STATE_IDLE = 0, ML_STATE_ACTIVE = 1, ML_STATE_STOPPED = 2, ML_STATE_TRIPPED = 3 } ml_state_t;

typedef enum { ML_OUT_STOCK = 0, ML_OUT_MOTORS = 1, ML_OUT_OFF = 2 } ml_output_t;

typedef enum { ML_FALLBACK_OFF = 0, ML_FALLBACK_STOCK = 1 } ml_fallback_t;

typedef struct {
  uint8_t version;
  uint8_t flags;
  uint16_t sequence;
  uint16_t motor[ML_NUM_MOTORS];
} ml_packet_t;

typedef struct {
  uint16_t timeout_ms; /* watchdog: longest gap between valid packets while ACTIVE (1..1000) */
  uint8_t fallback;    /* ml_fallback_t on a trip */
  uint8_t latch;       /* 1: a trip holds until a RESUME packet; 0: any valid newer packet resumes */
  float min_ratio;     /* clamp of every motor command, 0 <= min_ratio <= max_ratio <= 1 */
  float max_ratio;
} ml_config_t;

typedef struct {
  ml_state_t state;
  uint8_t synced;           /* a sequence number has been accepted since init / the last trip */
  uint16_t last_sequence;
  uint64_t last_rx_us;      /* time of the last accepted packet */
  uint16_t motor[ML_NUM_MOTORS];
  uint8_t trip_pending;     /* set on a trip, cleared by ml_take_trip */
  /* counters for the log group */
  uint32_t accepted, err_length, err_version, err_crc, err_flags, err_sequence, trips;
} ml_link_t;

uint16_t ml_crc16(const uint8_t *data, size_t len);

/* Bytes -> packet (checks length, version, crc, flags in this order). */
ml_status_t ml_decode(const uint8_t *buf, size_t len, ml_packet_t *out);

/* Packet -> bytes (computes the crc); returns ML_PACKET_SIZE, or 0 if cap is too small. */
size_t ml_encode(const ml_packet_t *pkt, uint8_t *buf, size_t cap);

void ml_config_default(ml_config_t *cfg);

/* Bring any config (e.g. set live through parameters) into its valid ranges. */
void ml_config_sanitize(ml_config_t *cfg);

void ml_link_init(ml_link_t *link);

/* A packet arrived at now_us: decode, check its sequence, update the state. */
ml_status_t ml_receive(ml_link_t *link, const ml_config_t *cfg, const uint8_t *buf, size_t len, uint64_t now_us);

/* Advance the watchdog to now_us and give the output; ratio[] is filled for ML_OUT_MOTORS
 * (clamped) and set to 0 otherwise. */
ml_output_t ml_update(ml_link_t *link, const ml_config_t *cfg, uint64_t now_us, float ratio[ML_NUM_MOTORS]);

/* 1 once after each trip (the app starts its fallback action then), else 0. */
int ml_take_trip(ml_link_t *link);

#ifdef __cplusplus
}
#endif

#endif /* MOTOR_LINK_H */
