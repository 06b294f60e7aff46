/* snn_onboard: the onboard mode of the snn_motor app, firmware-independent (C99, no malloc, no
 * firmware includes): the deployed protocol flown from the drone's own state estimate.
 *
 * Each 100 Hz control step (so_step), from the estimate in the firmware's units (state_t position
 * [m, world], attitudeQuaternion x y z w [body -> world], velocity [m/s, world]; sensorData_t gyro
 * [deg/s, body]):
 *   1. the estimate becomes the package's state exactly as the ground station converts cflib's log
 *      values (core/deploy/crazyflie_state.py state_from_log: quaternion to w x y z and normalised,
 *      gyro deg/s -> rad/s, both in double), then the 18 observations (snn_observation.c);
 *   2. safety on the drone (core/deploy/safety.py): non-finite state, geofence box, tilt, and the
 *      link watchdog (no heartbeat from the ground for link_timeout_ms; 0 turns it off), each with
 *      its action (warn: counted only; land: the stock controller flies and the app starts a
 *      landing; stop: motors off); a trip latches until the next so_start;
 *   3. the privileged guide (snn_guide.c, its own action history, filled with cfg.fill at a start)
 *      flies the first warmup_steps steps while the spiking actor (snn_actor.c) runs on the same
 *      observations to warm its membranes; then the actor flies (jsrl.jump_start_action, no noise);
 *      the flown action enters the guide's history;
 *   4. the action becomes the motors' normalised thrusts (core/deploy/motor_mapping.py
 *      action_to_ratio, in double), clamped to [min_ratio, max_ratio].
 * Between control steps (the stabilizer calls the controller at 1 kHz) so_hold keeps the ratios and
 * runs the link watchdog. Defaults of so_config_t come from snn_onboard_config.h, generated with the
 * networks by `snn-drone export --format c`.
 */
#ifndef SNN_ONBOARD_H
#define SNN_ONBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "snn_actor.h"
#include "snn_guide.h"
#include "snn_observation.h"
#include "snn_onboard_config.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SO_NUM_MOTORS 4

typedef enum { SO_PHASE_OFF = 0, SO_PHASE_GUIDE = 1, SO_PHASE_SNN = 2, SO_PHASE_TRIPPED = 3 } so_phase_t;

typedef enum {
  SO_TRIP_NONE = 0, SO_TRIP_LINK = 1, SO_TRIP_GEOFENCE = 2, SO_TRIP_TILT = 3, SO_TRIP_NONFINITE = 4
} so_trip_t;

typedef enum { SO_ACTION_WARN = 0, SO_ACTION_LAND = 1, SO_ACTION_STOP = 2 } so_action_t;

/* What the controller does this tick (the same meaning as motor_link's ml_output_t). */
typedef enum { SO_OUT_STOCK = 0, SO_OUT_MOTORS = 1, SO_OUT_OFF = 2 } so_output_t;

typedef struct {
  uint16_t warmup_steps;                     /* guide steps after each start */
  float target[3];                           /* hover target [m, world] */
  float fill[SO_NUM_MOTORS];                 /* guide action history at a start, in [-1, 1] */
  uint8_t mapping_mode;                      /* 0 thrust, 1 rpm_linear (motor_mapping.py) */
  float max_ratio_mapping;                   /* MotorMappingConfig.max_ratio, (0, 1] */
  float min_ratio, max_ratio;                /* clamp of every motor ratio, 0 <= min <= max <= 1 */
  float geofence_min[3], geofence_max[3];    /* [m, world] */
  float max_tilt_deg;                        /* (0, 180] */
  uint8_t geofence_action, tilt_action, nonfinite_action, link_action; /* so_action_t */
  uint16_t link_timeout_ms;                  /* 0: no link watchdog (a start from cfclient) */
} so_config_t;

typedef struct {
  snn_state_t actor;
  snn_guide_state_t guide;
  so_phase_t phase;
  so_trip_t trip;          /* why the last trip happened */
  uint8_t trip_action;     /* its so_action_t (land or stop) */
  so_output_t out;         /* the output of the last step or hold */
  uint32_t step;           /* control steps since the start (the episode step) */
  uint64_t last_heartbeat_us;
  uint8_t heard;           /* a heartbeat arrived since so_init */
  uint8_t trip_pending;    /* set on a trip, cleared by so_take_trip */
  float obs[SNN_OBSERVATION_DIM];
  float action[SO_NUM_MOTORS];   /* the flown action of the last step, in [-1, 1] */
  float ratio[SO_NUM_MOTORS];    /* the motor ratios while SO_OUT_MOTORS, else 0 */
  uint16_t spikes[SNN_NUM_LAYERS]; /* spikes of each LIF layer in the last step */
  uint32_t trips, warnings, heartbeats;
} so_t;

void so_config_default(so_config_t *cfg);

/* Bring any config (set live through parameters) into its valid ranges. */
void so_config_sanitize(so_config_t *cfg);

void so_init(so_t *so);

/* Start the protocol now (episode step 0): membranes zero, guide history = cfg->fill, trips cleared. */
void so_start(so_t *so, const so_config_t *cfg);

/* Back to OFF (the stock controller flies). */
void so_stop(so_t *so);

/* 1 if buf is a valid heartbeat from the ground (SNN_ONBOARD_HEARTBEAT_SIZE bytes: magic, version,
 * uint16 sequence little-endian: motor_packet.heartbeat_packet). */
int so_heartbeat_valid(const uint8_t *buf, size_t len);

/* A heartbeat arrived from the ground at now_us. */
void so_heartbeat(so_t *so, uint64_t now_us);

/* The package's state [13] (position, quaternion w x y z, velocity, body rates [rad/s]) from the
 * firmware's estimate, as core/deploy/crazyflie_state.state_from_log converts the logged values. */
void so_state_from_estimate(const float position[3], const float quaternion_xyzw[4], const float velocity[3],
                            const float gyro_dps[3], float state[13]);

/* action [-1, 1] -> normalised motor thrusts (motor_mapping.action_to_ratio), then the clamp. */
void so_action_to_ratio(const so_config_t *cfg, const float action[SO_NUM_MOTORS], float ratio[SO_NUM_MOTORS]);

/* One 100 Hz control step (see the top of this file); ratio[] is filled for SO_OUT_MOTORS, else 0. */
so_output_t so_step(so_t *so, const so_config_t *cfg, const float position[3], const float quaternion_xyzw[4],
                    const float velocity[3], const float gyro_dps[3], uint64_t now_us, float ratio[SO_NUM_MOTORS]);

/* A 1 kHz tick between control steps: the link watchdog, then the last step's output again. */
so_output_t so_hold(so_t *so, const so_config_t *cfg, uint64_t now_us, float ratio[SO_NUM_MOTORS]);

/* 1 once after each trip (the app starts a landing for SO_ACTION_LAND then), else 0. */
int so_take_trip(so_t *so);

#ifdef __cplusplus
}
#endif

#endif /* SNN_ONBOARD_H */
