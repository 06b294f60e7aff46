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
 * The decisions (decoding, sequence, clamping, watchdog) are in motor_link.c, tested on the host.
 *
 * Parameters (group snnmotor): timeoutMs, fallback (0 off, 1 stock controller + land), latch,
 * minRatio, maxRatio, landTime [s]. Logs (group snnmotor): state, seq, accepted, errCrc, errSeq,
 * errLen, errVer, trips, m1..m4 (applied ratios), clipped (SITL only, see below).
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
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

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
  DEBUG_PRINT("snn_motor: waiting for motor packets on the app channel\n");

  while (1) {
    n = appchannelReceiveDataPacket(buf, sizeof(buf), RX_TIMEOUT_MS);

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
