/* motor_link.c: packet decoding, clamping and the watchdog of the snn_motor app (see motor_link.h).
 * Pure C99: tested on the host with gcc by test/test_firmware_logic.py. */
#include "motor_link.h"

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static void put_u16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)(v >> 8);
}

uint16_t ml_crc16(const uint8_t *data, size_t len)
{
  uint16_t crc = 0xFFFFu;
  size_t i;
  int bit;
  for (i = 0; i < len; ++i) {
    crc ^= (uint16_t)(data[i] << 8);
    for (bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
  }
  return crc;
}

ml_status_t ml_decode(const uint8_t *buf, size_t len, ml_packet_t *out)
{
  int i;
  if (len != ML_PACKET_SIZE) return ML_ERR_LENGTH;
  if (buf[0] != ML_PACKET_VERSION) return ML_ERR_VERSION;
  if (ml_crc16(buf, ML_PACKET_SIZE - 2) != get_u16(buf + ML_PACKET_SIZE - 2)) return ML_ERR_CRC;
  if (buf[1] & (uint8_t)~ML_FLAGS_KNOWN) return ML_ERR_FLAGS;
  out->version = buf[0];
  out->flags = buf[1];
  out->sequence = get_u16(buf + 2);
  for (i = 0; i < ML_NUM_MOTORS; ++i) out->motor[i] = get_u16(buf + 4 + 2 * i);
  return ML_OK;
}

size_t ml_encode(const ml_packet_t *pkt, uint8_t *buf, size_t cap)
{
  int i;
  if (cap < ML_PACKET_SIZE) return 0;
  buf[0] = pkt->version;
  buf[1] = pkt->flags;
  put_u16(buf + 2, pkt->sequence);
  for (i = 0; i < ML_NUM_MOTORS; ++i) put_u16(buf + 4 + 2 * i, pkt->motor[i]);
  put_u16(buf + ML_PACKET_SIZE - 2, ml_crc16(buf, ML_PACKET_SIZE - 2));
  return ML_PACKET_SIZE;
}

void ml_config_default(ml_config_t *cfg)
{
  cfg->timeout_ms = 50;
  cfg->fallback = ML_FALLBACK_OFF;
  cfg->latch = 1;
  cfg->min_ratio = 0.0f;
  cfg->max_ratio = 1.0f;
}

static float clamp01(float x)
{
  if (!(x >= 0.0f)) return 0.0f; /* also NaN */
  return x > 1.0f ? 1.0f : x;
}

void ml_config_sanitize(ml_config_t *cfg)
{
  if (cfg->timeout_ms < 1) cfg->timeout_ms = 1;
  if (cfg->timeout_ms > 1000) cfg->timeout_ms = 1000;
  if (cfg->fallback != ML_FALLBACK_STOCK) cfg->fallback = ML_FALLBACK_OFF;
  cfg->latch = cfg->latch ? 1 : 0;
  cfg->min_ratio = clamp01(cfg->min_ratio);
  cfg->max_ratio = clamp01(cfg->max_ratio);
  if (cfg->max_ratio < cfg->min_ratio) cfg->max_ratio = cfg->min_ratio;
}

void ml_link_init(ml_link_t *link)
{
  int i;
  link->state = ML_STATE_IDLE;
  link->synced = 0;
  link->last_sequence = 0;
  link->last_rx_us = 0;
  for (i = 0; i < ML_NUM_MOTORS; ++i) link->motor[i] = 0;
  link->trip_pending = 0;
  link->accepted = link->err_length = link->err_version = link->err_crc = 0;
  link->err_flags = link->err_sequence = link->trips = 0;
}

static ml_status_t count(ml_link_t *link, ml_status_t s)
{
  switch (s) {
    case ML_ERR_LENGTH: link->err_length++; break;
    case ML_ERR_VERSION: link->err_version++; break;
    case ML_ERR_CRC: link->err_crc++; break;
    case ML_ERR_FLAGS: link->err_flags++; break;
    case ML_ERR_SEQUENCE: link->err_sequence++; break;
    default: link->accepted++; break;
  }
  return s;
}

ml_status_t ml_receive(ml_link_t *link, const ml_config_t *cfg, const uint8_t *buf, size_t len, uint64_t now_us)
{
  ml_packet_t pkt;
  int i;
  int resume;
  ml_status_t s = ml_decode(buf, len, &pkt);
  if (s != ML_OK) return count(link, s);
  /* a late packet may trip the watchdog before it is looked at */
  ml_update(link, cfg, now_us, 0);
  resume = (pkt.flags & ML_FLAG_RESUME) != 0;
  if (link->synced && !resume && (int16_t)(uint16_t)(pkt.sequence - link->last_sequence) <= 0) {
    return count(link, ML_ERR_SEQUENCE);
  }
  link->synced = 1;
  link->last_sequence = pkt.sequence;
  link->last_rx_us = now_us;
  if (!(pkt.flags & ML_FLAG_ENABLE)) {
    link->state = ML_STATE_STOPPED;
    for (i = 0; i < ML_NUM_MOTORS; ++i) link->motor[i] = 0;
  } else if (link->state != ML_STATE_TRIPPED || resume || !cfg->latch) {
    link->state = ML_STATE_ACTIVE;
    for (i = 0; i < ML_NUM_MOTORS; ++i) link->motor[i] = pkt.motor[i];
  }
  return count(link, ML_OK);
}

ml_output_t ml_update(ml_link_t *link, const ml_config_t *cfg, uint64_t now_us, float ratio[ML_NUM_MOTORS])
{
  int i;
  ml_output_t out;
  if (link->state == ML_STATE_ACTIVE && now_us > link->last_rx_us &&
      now_us - link->last_rx_us > (uint64_t)cfg->timeout_ms * 1000u) {
    link->state = ML_STATE_TRIPPED;
    link->trip_pending = 1;
    link->trips++;
    link->synced = 0; /* a restarted ground stream may begin at any sequence number */
  }
  switch (link->state) {
    case ML_STATE_ACTIVE: out = ML_OUT_MOTORS; break;
    case ML_STATE_TRIPPED: out = cfg->fallback == ML_FALLBACK_STOCK ? ML_OUT_STOCK : ML_OUT_OFF; break;
    default: out = ML_OUT_STOCK; break;
  }
  if (ratio) {
    for (i = 0; i < ML_NUM_MOTORS; ++i) {
      float r = 0.0f;
      if (out == ML_OUT_MOTORS) {
        r = (float)link->motor[i] / (float)ML_MOTOR_FULL_SCALE;
        if (r < cfg->min_ratio) r = cfg->min_ratio;
        if (r > cfg->max_ratio) r = cfg->max_ratio;
      }
      ratio[i] = r;
    }
  }
  return out;
}

int ml_take_trip(ml_link_t *link)
{
  int t = link->trip_pending;
  link->trip_pending = 0;
  return t;
}
