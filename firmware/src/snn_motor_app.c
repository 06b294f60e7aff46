/* snn_motor_app.c: Crazyflie out-of-tree app + out-of-tree controller that flies motor commands
 * streamed from the ground on the app channel (snn_drone's crazyflie_bridge), with a watchdog.
 *
 * - appMain (app task) receives packets (appchannelReceiveDataPacket), feeds motor_link, and while
 *   motors are streamed refreshes the commander with a position-hold setpoint at the current state
 *   estimate (at the high-level commander's priority, so that its planner keeps running): the
 *   supervisor locks a drone whose setpoints stop.
 * - controllerOutOfTree (stabilizer task, CONFIG_CONTROLLER_OOT) writes the commanded normalised
 *   thrusts with controlModeForce while the link is ACTIVE, all zeros when a trip falls back to OFF,
 *   and otherwise runs the stock PID controller (take-off and landing with the high-level commander
 *   before and after streaming, and the STOCK fallback, which also starts a landing).
 * - Onboard mode (parameter snnonb.enable = 1): the controller runs the deployed protocol itself
 *   every 10th call (100 Hz) from the state estimate, the guide for the warm-up then the spiking
 *   actor, with the geofence, tilt and link checks on the drone (snn_onboard.c; the networks and the
 *   defaults are compiled in from `snn-drone export --format c`); the ground only sends heartbeats
 *   on the app channel. It has precedence over streamed motor packets.
 * The decisions (decoding, sequence, clamping, watchdog; the onboard step) are in motor_link.c and
 * snn_onboard.c, tested on the host and on a Cortex-M4 emulator.
 *
 * Parameters (group snnmotor): timeoutMs, fallback (0 off, 1 stock controller + land), latch,
 * minRatio, maxRatio, landTime [s]. Logs (group snnmotor): state, seq, accepted, errCrc, errSeq,
 * errLen, errVer, trips, m1..m4 (applied ratios), clipped (SITL only, see below).
 * Parameters (group snnonb): enable, warmup, targetX/Y/Z, minRatio, maxRatio, maxTilt [deg],
 * fenceMinX..fenceMaxZ [m], actFence, actTilt, actLink (0 warn, 1 land, 2 stop), linkMs (0: no link
 * watchdog). Logs (group snnonb): phase (0 off, 1 guide, 2 snn, 3 tripped), trip (1 link, 2 geofence,
 * 3 tilt, 4 non-finite), step, spk0, spk1 (spikes per LIF layer this step), a1..a4 (the flown
 * action), stepUs (the last control step's time), trips, beats.
 *
 * The app selects its controller (parameter stabilizer.controller = ControllerTypeOot) at start:
 * stock firmware built with CONFIG_CONTROLLER_OOT uses it by default already, CrazySim's SITL
 * firmware (CONFIG_PLATFORM_SITL) defaults to PID.
 * In the SITL build (CONFIG_PLATFORM_SITL, CrazySim's fork of the firmware) two things differ,
 * and the app works around them here rather than in that firmware:
 * - its powerDistributionForce is an empty stub, so controlModeForce would leave the motors where
 *   they were: the app asks for the same four motor outputs in controlModeLegacy instead (thrust,
 *   roll, pitch, yaw solved from the four ratios; the SITL build applies no battery compensation, so
 *   each motor's PWM is ratio * 65535). The legacy mixer's roll and pitch halves are int16, so a
 *   left-right or front-back difference of more than half full scale is clipped (counted in the log
 *   snnmotor.clipped);
 * - its PID reset functions take no state (they reset to zero).
 * Both builds: a reset leaves the rate PIDs' last measurement at zero (the SITL build also the
 * attitude PIDs'), so the first D term after a hand-back would read the whole body rate (or angle)
 * as one period's change, a full-scale kick (roll rate kd 2.5 at 40 deg/s and 500 Hz: 5e4, past
 * int16). The app runs one update with the setpoint equal to the measurement right after the
 * resets (primeDerivatives): the PIDs then hold the present measurement, their integrators get a zero
 * error, and the output is discarded.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#ifndef CONFIG_PLATFORM_SITL
#include "autoconf.h"  /* CONFIG_CONTROLLER_OOT, under which controller.h declares ControllerTypeOot */
#endif          /* (the SITL build defines its CONFIG_ values on the command line) */
#include "app.h"
#include "app_channel.h"
#include "commander.h"
#include "controller.h"
#include "attitude_controller.h"
#include "controller_pid.h"
#include "crtp_commander_high_level.h"
#include "FreeRTOS.h"
#include "log.h"
#include "param.h"
#include "position_controller.h"
#include "stabilizer_types.h"
#include "task.h"
#include "usec_time.h"

#define DEBUG_MODULE "SNNMOTOR"
#include "debug.h"

#include "motor_link.h"
#include "snn_onboard.h"

#define RX_TIMEOUT_MS 5

static ml_link_t motorLink;
static ml_config_t params = {50, ML_FALLBACK_OFF, 1, 0.0f, 1.0f}; /* written by the ground */
static ml_config_t active;                                       /* sanitised copy in use */
static float landTime = 2.0f;
static uint8_t logState;
static uint16_t logSeq;
static float logRatio[ML_NUM_MOTORS];
static ml_output_t lastOut = ML_OUT_STOCK;

static logVarId_t idX, idY, idZ;

/* onboard mode: so_t and its config are the stabilizer task's alone; the app task hands over the
 * heartbeat time and takes the trip flag, each in a short critical section */
static so_t onboard;
static so_config_t onbParams;   /* written by the ground (parameters) */
static so_config_t onbActive;   /* sanitised copy in use */
static uint8_t onbEnable;       /* parameter */
static uint8_t onbRunning;      /* the controller started the protocol */
static uint32_t onbTick;        /* controller calls since the start (1 kHz) */
static uint64_t onbHeartbeatUs; /* app task -> controller */
static uint64_t onbHeartbeatSeen;
static uint8_t onbTripLand;     /* controller -> app task: start a landing */
static uint8_t onbFlying;       /* the protocol flies (guide or snn), for the app task */
static uint8_t logOnbPhase, logOnbTrip;
static uint16_t logOnbStep, logOnbStepUs;
static float logOnbAction[SO_NUM_MOTORS];

#ifdef CONFIG_PLATFORM_SITL
static uint32_t clipped;

static int16_t clipInt16(float v)
{
  if (v > 32767.0f) {
    ++clipped;
    return 32767;
  }
  if (v < -32767.0f) {
    ++clipped;
    return -32767;
  }
  return (int16_t)v;
}

/* The legacy mixer's motor outputs m1..m4 (thrust -+ roll/2 +- pitch/2 +- yaw) equal to ratio * 65535. */
static void legacyFromRatios(control_t *control, const float ratio[ML_NUM_MOTORS])
{
  float m[ML_NUM_MOTORS];
  int i;
  for (i = 0; i < ML_NUM_MOTORS; ++i) {
    m[i] = ratio[i] * 65535.0f;
  }
  control->controlMode = controlModeLegacy;
  control->thrust = 0.25f * (m[0] + m[1] + m[2] + m[3]);
  control->roll = clipInt16(0.5f * (-m[0] - m[1] + m[2] + m[3]));  /* 2 * roll part */
  control->pitch = clipInt16(0.5f * (m[0] - m[1] - m[2] + m[3]));  /* 2 * pitch part */
  control->yaw = clipInt16(0.25f * (m[0] - m[1] + m[2] - m[3]));
}
#endif

static void keepAlive(void)
{
  setpoint_t sp;
  memset(&sp, 0, sizeof(sp));
  sp.mode.x = modeAbs;
  sp.mode.y = modeAbs;
  sp.mode.z = modeAbs;
  sp.mode.yaw = modeVelocity;
  sp.position.x = logGetFloat(idX);
  sp.position.y = logGetFloat(idY);
  sp.position.z = logGetFloat(idZ);
  /* the high-level commander's priority, not CRTP's: a setpoint above it stops the high-level planner,
   * which then asks for the motors off once the app hands back (seen in the SITL firmware: the drone
   * fell after stop_policy, and the fallback's landing could not start from a stopped planner) */
  commanderSetSetpoint(&sp, COMMANDER_PRIORITY_HIGHLEVEL);
}

/* The app task's part of the onboard mode: keep-alive setpoints while the protocol flies (as while
 * motors are streamed), hand the commander back when it ends, and land after a trip that asks for it. */
static void onboardKeepAlive(void)
{
  static uint8_t wasFlying;
  static uint64_t lastKeepAliveUs;
  uint8_t flying, land;
  const uint64_t t = usecTimestamp();
  taskENTER_CRITICAL();
  flying = onbFlying;
  land = onbTripLand;
  onbTripLand = 0;
  taskEXIT_CRITICAL();
  if (flying && t - lastKeepAliveUs >= 10000u) {
    keepAlive();
    lastKeepAliveUs = t;
  }
  if (wasFlying && !flying) {
    commanderRelaxPriority();
  }
  if (land) {
    DEBUG_PRINT("snn_motor: onboard trip %d, landing\n", logOnbTrip);
    crtpCommanderHighLevelLand(0.0f, landTime);
  }
  wasFlying = flying;
}

void appMain(void)
{
  uint8_t buf[APPCHANNEL_MTU];
  ml_state_t before, after;
  ml_status_t status;
  size_t n;
  int tripped;
  paramVarId_t idController = paramGetVarId("stabilizer", "controller");

  if (PARAM_VARID_IS_VALID(idController) && paramGetInt(idController) != ControllerTypeOot) {
    paramSetInt(idController, ControllerTypeOot);
    DEBUG_PRINT("snn_motor: selected the out-of-tree controller (%d)\n", (int)ControllerTypeOot);
  }
  idX = logGetVarId("stateEstimate", "x");
  idY = logGetVarId("stateEstimate", "y");
  idZ = logGetVarId("stateEstimate", "z");
  ml_link_init(&motorLink);
  ml_config_default(&active);
  DEBUG_PRINT("snn_motor: waiting for motor packets on the app channel (onboard mode: snnonb.enable)\n");

  while (1) {
    n = appchannelReceiveDataPacket(buf, sizeof(buf), RX_TIMEOUT_MS);
    if (so_heartbeat_valid(buf, n)) {
      const uint64_t t = usecTimestamp();
      taskENTER_CRITICAL();
      onbHeartbeatUs = t;
      taskEXIT_CRITICAL();
      n = 0; /* not a motor packet */
    }
    onboardKeepAlive();

    taskENTER_CRITICAL();
    active = params;
    ml_config_sanitize(&active);
    before = motorLink.state;
    status = n ? ml_receive(&motorLink, &active, buf, n, usecTimestamp()) : ML_OK;
    ml_update(&motorLink, &active, usecTimestamp(), 0);
    after = motorLink.state;
    tripped = ml_take_trip(&motorLink);
    logState = (uint8_t)after;
    logSeq = motorLink.last_sequence;
    taskEXIT_CRITICAL();

    if (n && status == ML_OK && after == ML_STATE_ACTIVE) {
      keepAlive();
    }
    if (before == ML_STATE_ACTIVE && after != ML_STATE_ACTIVE) {
      commanderRelaxPriority(); /* let the high-level commander's setpoints through again */
    }
    if (tripped) {
      DEBUG_PRINT("snn_motor: no motor packet for %d ms, fallback %d\n", active.timeout_ms, active.fallback);
      if (active.fallback == ML_FALLBACK_STOCK) {
        crtpCommanderHighLevelLand(0.0f, landTime);
      }
    }
  }
}

void controllerOutOfTreeInit(void)
{
  controllerPidInit();
  so_init(&onboard);
  so_config_default(&onbParams);
  onbActive = onbParams;
}

/* The onboard mode's controller call (1 kHz): start / stop on the parameter, so_step every 10th
 * call (the networks' 100 Hz) from the estimate, so_hold between. */
static ml_output_t onboardControl(const sensorData_t *sensors, const state_t *state, float ratio[ML_NUM_MOTORS])
{
  const float position[3] = {state->position.x, state->position.y, state->position.z};
  const float quaternion[4] = {state->attitudeQuaternion.x, state->attitudeQuaternion.y,
                               state->attitudeQuaternion.z, state->attitudeQuaternion.w};
  const float velocity[3] = {state->velocity.x, state->velocity.y, state->velocity.z};
  const float gyro[3] = {sensors->gyro.x, sensors->gyro.y, sensors->gyro.z};
  uint64_t heartbeat, t0, now;
  so_output_t out;
  int i;

  taskENTER_CRITICAL();
  heartbeat = onbHeartbeatUs;
  taskEXIT_CRITICAL();
  if (heartbeat != onbHeartbeatSeen) {
    so_heartbeat(&onboard, heartbeat);
    onbHeartbeatSeen = heartbeat;
  }
  if (!onbRunning) {
    onbActive = onbParams;
    so_config_sanitize(&onbActive);
    so_start(&onboard, &onbActive);
    onbRunning = 1;
    onbTick = 0;
  }
  now = usecTimestamp();
  if (onbTick % (RATE_MAIN_LOOP / SNN_ONBOARD_CONTROL_HZ) == 0) {
    onbActive = onbParams; /* live parameter changes, sanitised, at each control step */
    so_config_sanitize(&onbActive);
    t0 = now;
    out = so_step(&onboard, &onbActive, position, quaternion, velocity, gyro, now, ratio);
    now = usecTimestamp();
    logOnbStepUs = (uint16_t)(now - t0 > 65535u ? 65535u : now - t0);
  } else {
    out = so_hold(&onboard, &onbActive, now, ratio);
  }
  onbTick++;
  if (so_take_trip(&onboard) && onboard.trip_action == SO_ACTION_LAND) {
    taskENTER_CRITICAL();
    onbTripLand = 1;
    taskEXIT_CRITICAL();
  }
  onbFlying = (uint8_t)(onboard.phase == SO_PHASE_GUIDE || onboard.phase == SO_PHASE_SNN);
  logOnbPhase = (uint8_t)onboard.phase;
  logOnbTrip = (uint8_t)onboard.trip;
  logOnbStep = (uint16_t)(onboard.step > 65535u ? 65535u : onboard.step);
  for (i = 0; i < SO_NUM_MOTORS; ++i) {
    logOnbAction[i] = onboard.action[i];
  }
  return out == SO_OUT_MOTORS ? ML_OUT_MOTORS : (out == SO_OUT_OFF ? ML_OUT_OFF : ML_OUT_STOCK);
}

/* The measurements exactly as controllerPid passes them (its gyro y is negated). */
static void primeDerivatives(const sensorData_t *sensors, const state_t *state)
{
  float rate[3];
  attitudeControllerCorrectAttitudePID(state->attitude.roll, state->attitude.pitch, state->attitude.yaw,
                                       state->attitude.roll, state->attitude.pitch, state->attitude.yaw,
                                       &rate[0], &rate[1], &rate[2]);
  attitudeControllerCorrectRatePID(sensors->gyro.x, -sensors->gyro.y, sensors->gyro.z,
                                   sensors->gyro.x, -sensors->gyro.y, sensors->gyro.z);
}

bool controllerOutOfTreeTest(void)
{
  return controllerPidTest();
}

void controllerOutOfTree(control_t *control, const setpoint_t *setpoint, const sensorData_t *sensors,
                         const state_t *state, const stabilizerStep_t stabilizerStep)
{
  float ratio[ML_NUM_MOTORS];
  ml_output_t out;
  int i;

  taskENTER_CRITICAL();
  out = ml_update(&motorLink, &active, usecTimestamp(), ratio);
  taskEXIT_CRITICAL();
  if (onbEnable) {
    out = onboardControl(sensors, state, ratio); /* precedence over streamed motor packets */
  } else if (onbRunning) {
    so_stop(&onboard);
    onbRunning = 0;
    onbFlying = 0;
    logOnbPhase = (uint8_t)onboard.phase;
  }

  if (out == ML_OUT_STOCK) {
    if (lastOut != ML_OUT_STOCK) {
      /* the integrators went stale while the ground flew the motors: restart them at the state now
       * (the firmware's public resets; controllerPidReset does not exist at 2026.08) */
#ifdef CONFIG_PLATFORM_SITL
      positionControllerResetAllPID();
      positionControllerResetAllfilters();
      attitudeControllerResetAllPID();
#else
      positionControllerResetAllPID(state->position.x, state->position.y, state->position.z);
      positionControllerResetAllfilters();
      attitudeControllerResetAllPID(state->attitude.roll, state->attitude.pitch, state->attitude.yaw);
#endif
      primeDerivatives(sensors, state);
    }
    controllerPid(control, setpoint, sensors, state, stabilizerStep);
  } else {
#ifdef CONFIG_PLATFORM_SITL
    legacyFromRatios(control, ratio);
#else
    control->controlMode = controlModeForce;
    for (i = 0; i < ML_NUM_MOTORS; ++i) {
      control->normalizedForces[i] = ratio[i];
    }
#endif
  }
  for (i = 0; i < ML_NUM_MOTORS; ++i) {
    logRatio[i] = out == ML_OUT_STOCK ? -1.0f : ratio[i];
  }
  lastOut = out;
}

PARAM_GROUP_START(snnmotor)
PARAM_ADD(PARAM_UINT16, timeoutMs, &params.timeout_ms)
PARAM_ADD(PARAM_UINT8, fallback, &params.fallback)
PARAM_ADD(PARAM_UINT8, latch, &params.latch)
PARAM_ADD(PARAM_FLOAT, minRatio, &params.min_ratio)
PARAM_ADD(PARAM_FLOAT, maxRatio, &params.max_ratio)
PARAM_ADD(PARAM_FLOAT, landTime, &landTime)
PARAM_GROUP_STOP(snnmotor)

PARAM_GROUP_START(snnonb)
PARAM_ADD(PARAM_UINT8, enable, &onbEnable)
PARAM_ADD(PARAM_UINT16, warmup, &onbParams.warmup_steps)
PARAM_ADD(PARAM_FLOAT, targetX, &onbParams.target[0])
PARAM_ADD(PARAM_FLOAT, targetY, &onbParams.target[1])
PARAM_ADD(PARAM_FLOAT, targetZ, &onbParams.target[2])
PARAM_ADD(PARAM_FLOAT, minRatio, &onbParams.min_ratio)
PARAM_ADD(PARAM_FLOAT, maxRatio, &onbParams.max_ratio)
PARAM_ADD(PARAM_FLOAT, maxTilt, &onbParams.max_tilt_deg)
PARAM_ADD(PARAM_FLOAT, fenceMinX, &onbParams.geofence_min[0])
PARAM_ADD(PARAM_FLOAT, fenceMinY, &onbParams.geofence_min[1])
PARAM_ADD(PARAM_FLOAT, fenceMinZ, &onbParams.geofence_min[2])
PARAM_ADD(PARAM_FLOAT, fenceMaxX, &onbParams.geofence_max[0])
PARAM_ADD(PARAM_FLOAT, fenceMaxY, &onbParams.geofence_max[1])
PARAM_ADD(PARAM_FLOAT, fenceMaxZ, &onbParams.geofence_max[2])
PARAM_ADD(PARAM_UINT8, actFence, &onbParams.geofence_action)
PARAM_ADD(PARAM_UINT8, actTilt, &onbParams.tilt_action)
PARAM_ADD(PARAM_UINT8, actLink, &onbParams.link_action)
PARAM_ADD(PARAM_UINT16, linkMs, &onbParams.link_timeout_ms)
PARAM_GROUP_STOP(snnonb)

LOG_GROUP_START(snnonb)
LOG_ADD(LOG_UINT8, phase, &logOnbPhase)
LOG_ADD(LOG_UINT8, trip, &logOnbTrip)
LOG_ADD(LOG_UINT16, step, &logOnbStep)
LOG_ADD(LOG_UINT16, spk0, &onboard.spikes[0])
LOG_ADD(LOG_UINT16, spk1, &onboard.spikes[1])
LOG_ADD(LOG_FLOAT, a1, &logOnbAction[0])
LOG_ADD(LOG_FLOAT, a2, &logOnbAction[1])
LOG_ADD(LOG_FLOAT, a3, &logOnbAction[2])
LOG_ADD(LOG_FLOAT, a4, &logOnbAction[3])
LOG_ADD(LOG_UINT16, stepUs, &logOnbStepUs)
LOG_ADD(LOG_UINT32, trips, &onboard.trips)
LOG_ADD(LOG_UINT32, beats, &onboard.heartbeats)
LOG_GROUP_STOP(snnonb)

LOG_GROUP_START(snnmotor)
LOG_ADD(LOG_UINT8, state, &logState)
LOG_ADD(LOG_UINT16, seq, &logSeq)
LOG_ADD(LOG_UINT32, accepted, &motorLink.accepted)
LOG_ADD(LOG_UINT32, errCrc, &motorLink.err_crc)
LOG_ADD(LOG_UINT32, errSeq, &motorLink.err_sequence)
LOG_ADD(LOG_UINT32, errLen, &motorLink.err_length)
LOG_ADD(LOG_UINT32, errVer, &motorLink.err_version)
LOG_ADD(LOG_UINT32, trips, &motorLink.trips)
LOG_ADD(LOG_FLOAT, m1, &logRatio[0])
LOG_ADD(LOG_FLOAT, m2, &logRatio[1])
LOG_ADD(LOG_FLOAT, m3, &logRatio[2])
LOG_ADD(LOG_FLOAT, m4, &logRatio[3])
#ifdef CONFIG_PLATFORM_SITL
LOG_ADD(LOG_UINT32, clipped, &clipped)
#endif
LOG_GROUP_STOP(snnmotor)
