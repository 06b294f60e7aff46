/* snn_onboard: the onboard mode's control step (see snn_onboard.h). Tested against the Python
 * deploy path on simulated flights, on the host and on a Cortex-M4 (test/test_onboard_mode.py). */
#include "snn_onboard.h"

#include <math.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define SO_PI 3.14159265358979323846

static const float defaultTarget[3] = SNN_ONBOARD_TARGET;
static const float defaultFill[SO_NUM_MOTORS] = SNN_ONBOARD_FILL;
static const float defaultFenceMin[3] = SNN_ONBOARD_GEOFENCE_MIN;
static const float defaultFenceMax[3] = SNN_ONBOARD_GEOFENCE_MAX;
static const int layerSize[SNN_NUM_LAYERS] = SNN_LAYER_SIZES;

void so_config_default(so_config_t *cfg)
{
  int i;
  memset(cfg, 0, sizeof(*cfg));
  cfg->warmup_steps = SNN_ONBOARD_WARMUP_STEPS;
  for (i = 0; i < 3; ++i) {
    cfg->target[i] = defaultTarget[i];
    cfg->geofence_min[i] = defaultFenceMin[i];
    cfg->geofence_max[i] = defaultFenceMax[i];
  }
  for (i = 0; i < SO_NUM_MOTORS; ++i) cfg->fill[i] = defaultFill[i];
  cfg->mapping_mode = SNN_ONBOARD_MAPPING_MODE;
  cfg->max_ratio_mapping = SNN_ONBOARD_MAX_RATIO;
  cfg->min_ratio = 0.0f;
  cfg->max_ratio = 1.0f;
  cfg->max_tilt_deg = SNN_ONBOARD_MAX_TILT_DEG;
  cfg->geofence_action = SNN_ONBOARD_GEOFENCE_ACTION;
  cfg->tilt_action = SNN_ONBOARD_TILT_ACTION;
  cfg->nonfinite_action = SNN_ONBOARD_NONFINITE_ACTION;
  cfg->link_action = SNN_ONBOARD_LINK_ACTION;
  cfg->link_timeout_ms = SNN_ONBOARD_LINK_TIMEOUT_MS;
}

static float clampf(float v, float lo, float hi)
{
  return v < lo ? lo : (v > hi ? hi : v);
}

static int soFinite(float v)
{
  return v == v && v - v == 0.0f; /* false for NaN and +-inf, without isfinite's double promotion */
}

static uint8_t saneAction(uint8_t a)
{
  return a > SO_ACTION_STOP ? (uint8_t)SO_ACTION_STOP : a;
}

void so_config_sanitize(so_config_t *cfg)
{
  int i;
  for (i = 0; i < 3; ++i) {
    if (!soFinite(cfg->target[i])) cfg->target[i] = defaultTarget[i];
    if (!soFinite(cfg->geofence_min[i]) || !soFinite(cfg->geofence_max[i]) || !(cfg->geofence_min[i] < cfg->geofence_max[i])) {
      cfg->geofence_min[i] = defaultFenceMin[i];
      cfg->geofence_max[i] = defaultFenceMax[i];
    }
  }
  for (i = 0; i < SO_NUM_MOTORS; ++i) {
    cfg->fill[i] = soFinite(cfg->fill[i]) ? clampf(cfg->fill[i], -1.0f, 1.0f) : defaultFill[i];
  }
  if (cfg->mapping_mode > 1) cfg->mapping_mode = SNN_ONBOARD_MAPPING_MODE;
  if (!soFinite(cfg->max_ratio_mapping) || !(cfg->max_ratio_mapping > 0.0f)) cfg->max_ratio_mapping = SNN_ONBOARD_MAX_RATIO;
  cfg->max_ratio_mapping = clampf(cfg->max_ratio_mapping, 0.0f, 1.0f);
  cfg->min_ratio = soFinite(cfg->min_ratio) ? clampf(cfg->min_ratio, 0.0f, 1.0f) : 0.0f;
  cfg->max_ratio = soFinite(cfg->max_ratio) ? clampf(cfg->max_ratio, 0.0f, 1.0f) : 1.0f;
  if (cfg->max_ratio < cfg->min_ratio) cfg->max_ratio = cfg->min_ratio;
  if (!soFinite(cfg->max_tilt_deg) || !(cfg->max_tilt_deg > 0.0f)) cfg->max_tilt_deg = SNN_ONBOARD_MAX_TILT_DEG;
  cfg->max_tilt_deg = clampf(cfg->max_tilt_deg, 0.0f, 180.0f);
  cfg->geofence_action = saneAction(cfg->geofence_action);
  cfg->tilt_action = saneAction(cfg->tilt_action);
  cfg->nonfinite_action = saneAction(cfg->nonfinite_action);
  cfg->link_action = saneAction(cfg->link_action);
  if (cfg->link_timeout_ms > 10000u) cfg->link_timeout_ms = 10000u;
}

void so_init(so_t *so)
{
  memset(so, 0, sizeof(*so));
  so->phase = SO_PHASE_OFF;
  so->out = SO_OUT_STOCK;
}

void so_start(so_t *so, const so_config_t *cfg)
{
  snn_reset(&so->actor);
  snn_guide_reset(&so->guide, cfg->fill);
  so->phase = SO_PHASE_GUIDE;
  so->trip = SO_TRIP_NONE;
  so->trip_action = SO_ACTION_WARN;
  so->trip_pending = 0;
  so->out = SO_OUT_STOCK; /* the stock controller flies until the first step */
  so->step = 0;
  memset(so->action, 0, sizeof(so->action));
  memset(so->ratio, 0, sizeof(so->ratio));
  memset(so->spikes, 0, sizeof(so->spikes));
}

void so_stop(so_t *so)
{
  so->phase = SO_PHASE_OFF;
  so->out = SO_OUT_STOCK;
  memset(so->ratio, 0, sizeof(so->ratio));
}

int so_heartbeat_valid(const uint8_t *buf, size_t len)
{
  return len == SNN_ONBOARD_HEARTBEAT_SIZE && buf[0] == SNN_ONBOARD_HEARTBEAT_MAGIC && buf[1] == SNN_ONBOARD_HEARTBEAT_VERSION;
}

void so_heartbeat(so_t *so, uint64_t now_us)
{
  so->last_heartbeat_us = now_us;
  so->heard = 1;
  so->heartbeats++;
}

void so_state_from_estimate(const float position[3], const float quaternion_xyzw[4], const float velocity[3],
                            const float gyro_dps[3], float state[13])
{
  /* crazyflie_state.state_from_log: math.radians(gyro) and q / |q| in double, then float32 */
  const double w = quaternion_xyzw[3], x = quaternion_xyzw[0], y = quaternion_xyzw[1], z = quaternion_xyzw[2];
  const double n = sqrt(w * w + x * x + y * y + z * z);
  int i;
  for (i = 0; i < 3; ++i) {
    state[i] = position[i];
    state[7 + i] = velocity[i];
    state[10 + i] = (float)((double)gyro_dps[i] * (SO_PI / 180.0));
  }
  state[3] = (float)(w / n);
  state[4] = (float)(x / n);
  state[5] = (float)(y / n);
  state[6] = (float)(z / n);
}

void so_action_to_ratio(const so_config_t *cfg, const float action[SO_NUM_MOTORS], float ratio[SO_NUM_MOTORS])
{
  const double half = 0.5 * (SNN_ONBOARD_ROTOR_SPEED_MAX - SNN_ONBOARD_ROTOR_SPEED_MIN);
  int i;
  for (i = 0; i < SO_NUM_MOTORS; ++i) {
    const double a = (double)clampf(action[i], -1.0f, 1.0f);
    double r;
    if (cfg->mapping_mode == 1) {
      r = (a + 1.0) / 2.0;
    } else {
      const double w = a * half + (SNN_ONBOARD_ROTOR_SPEED_MIN + half); /* dynamics.rotor_speed_setpoint */
      double t = w * SNN_ONBOARD_THRUST_C2;                            /* dynamics.rotor_thrust_n */
      t = t + SNN_ONBOARD_THRUST_C1;
      t = t * w;
      t = t + SNN_ONBOARD_THRUST_C0;
      r = t / SNN_ONBOARD_MAX_THRUST_N;
    }
    r = r < 0.0 ? 0.0 : (r > (double)cfg->max_ratio_mapping ? (double)cfg->max_ratio_mapping : r);
    ratio[i] = clampf((float)r, cfg->min_ratio, cfg->max_ratio); /* the app's clamp, as motor_link's */
  }
}

/* A violation with its action: the most severe one of a step wins (safety.py), the first in the
 * order checked on a tie. */
static void consider(so_trip_t kind, uint8_t action, so_trip_t *worst, uint8_t *worstAction, uint32_t *warnings)
{
  if (action == SO_ACTION_WARN) {
    (*warnings)++;
    return;
  }
  if (*worst == SO_TRIP_NONE || action > *worstAction) {
    *worst = kind;
    *worstAction = action;
  }
}

static so_output_t tripOutput(uint8_t action)
{
  return action == SO_ACTION_STOP ? SO_OUT_OFF : SO_OUT_STOCK;
}

static so_output_t trip(so_t *so, so_trip_t kind, uint8_t action, float ratio[SO_NUM_MOTORS])
{
  so->phase = SO_PHASE_TRIPPED;
  so->trip = kind;
  so->trip_action = action;
  so->trip_pending = 1;
  so->trips++;
  so->out = tripOutput(action);
  memset(so->ratio, 0, sizeof(so->ratio));
  if (ratio) memset(ratio, 0, sizeof(float) * SO_NUM_MOTORS);
  return so->out;
}

static int linkLost(const so_t *so, const so_config_t *cfg, uint64_t now_us)
{
  if (cfg->link_timeout_ms == 0) return 0;
  /* a heartbeat stamped after now_us (another task's clock read) is fresh, not 2^64 us old */
  return !so->heard || (now_us > so->last_heartbeat_us &&
                        now_us - so->last_heartbeat_us > (uint64_t)cfg->link_timeout_ms * 1000u);
}

static so_output_t current(so_t *so, float ratio[SO_NUM_MOTORS])
{
  if (ratio) {
    memcpy(ratio, so->ratio, sizeof(so->ratio));
  }
  return so->out;
}

so_output_t so_hold(so_t *so, const so_config_t *cfg, uint64_t now_us, float ratio[SO_NUM_MOTORS])
{
  if (so->phase == SO_PHASE_GUIDE || so->phase == SO_PHASE_SNN) {
    if (linkLost(so, cfg, now_us) && cfg->link_action != SO_ACTION_WARN) {
      return trip(so, SO_TRIP_LINK, cfg->link_action, ratio);
    }
  }
  return current(so, ratio);
}

/* tilt as safety.tilt_deg: the angle between body z and world z, in double */
static double tiltDeg(const float q[4])
{
  const double w = q[0], x = q[1], y = q[2], z = q[3];
  const double n2 = w * w + x * x + y * y + z * z;
  double r22 = 1.0 - 2.0 * (x * x + y * y) / n2;
  r22 = r22 < -1.0 ? -1.0 : (r22 > 1.0 ? 1.0 : r22);
  return acos(r22) * (180.0 / SO_PI);
}

so_output_t so_step(so_t *so, const so_config_t *cfg, const float position[3], const float quaternion_xyzw[4],
                    const float velocity[3], const float gyro_dps[3], uint64_t now_us, float ratio[SO_NUM_MOTORS])
{
  float state[13], guideAction[SO_NUM_MOTORS], actorAction[SO_NUM_MOTORS];
  so_trip_t worst = SO_TRIP_NONE;
  uint8_t worstAction = SO_ACTION_WARN;
  int i, l, start, finite = 1;

  if (so->phase != SO_PHASE_GUIDE && so->phase != SO_PHASE_SNN) {
    return current(so, ratio);
  }
  so_state_from_estimate(position, quaternion_xyzw, velocity, gyro_dps, state);
  for (i = 0; i < 13; ++i) finite = finite && soFinite(state[i]);
  if (!finite) {
    consider(SO_TRIP_NONFINITE, cfg->nonfinite_action, &worst, &worstAction, &so->warnings);
  } else {
    for (i = 0; i < 3; ++i) {
      if (!((double)cfg->geofence_min[i] <= (double)state[i] && (double)state[i] <= (double)cfg->geofence_max[i])) {
        consider(SO_TRIP_GEOFENCE, cfg->geofence_action, &worst, &worstAction, &so->warnings);
        break;
      }
    }
    if (tiltDeg(state + 3) > (double)cfg->max_tilt_deg) {
      consider(SO_TRIP_TILT, cfg->tilt_action, &worst, &worstAction, &so->warnings);
    }
  }
  if (linkLost(so, cfg, now_us)) {
    consider(SO_TRIP_LINK, cfg->link_action, &worst, &worstAction, &so->warnings);
  }
  if (worst != SO_TRIP_NONE) {
    return trip(so, worst, worstAction, ratio);
  }

  snn_observation(state, state + 3, state + 7, state + 10, cfg->target, so->obs);
  if (so->step < cfg->warmup_steps) {
    snn_guide_step(so->obs, &so->guide, guideAction);
  }
  snn_step(so->obs, &so->actor, actorAction); /* every step: the warm-up warms its membranes */
  for (i = 0; i < SO_NUM_MOTORS; ++i) {
    so->action[i] = clampf(so->step < cfg->warmup_steps ? guideAction[i] : actorAction[i], -1.0f, 1.0f);
  }
  if (so->step < cfg->warmup_steps) {
    snn_guide_push(&so->guide, so->action); /* the applied action, as the env's history holds it */
  }
  for (l = 0, start = 0; l < SNN_NUM_LAYERS; start += layerSize[l], ++l) {
    uint16_t n = 0;
    for (i = 0; i < layerSize[l]; ++i) n = (uint16_t)(n + so->actor.spikes[start + i]);
    so->spikes[l] = n;
  }
  so_action_to_ratio(cfg, so->action, so->ratio);
  so->phase = so->step < cfg->warmup_steps ? SO_PHASE_GUIDE : SO_PHASE_SNN;
  so->step++;
  so->out = SO_OUT_MOTORS;
  return current(so, ratio);
}

int so_take_trip(so_t *so)
{
  const int t = so->trip_pending;
  so->trip_pending = 0;
  return t;
}
