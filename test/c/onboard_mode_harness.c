/* Test and bench driver of the onboard mode's control step (firmware/src/snn_onboard.c with the
 * networks from `snn-drone export --format c`), on a recorded flight in the firmware's units:
 * test/test_onboard_mode.py, bench/onboard_m4.py. Built for the host with gcc, and for a Cortex-M4F
 * (-DONBOARD_M4) to run on QEMU mps2-an386 with semihosting file I/O, where SysTick (processor
 * clock, read under -icount shift=0) times each so_step.
 *
 * Usage (host): onboard_mode_harness IN OUT; on the M4 onboard_in.bin / onboard_out.bin.
 *   IN:  int32 T, int32 B, int32 use_defaults, float32 cfg[SO_CFG_VALUES] (order of put_config),
 *        then T*B records (t major) of float32 position[3], quaternion x y z w [4], velocity[3],
 *        gyro [deg/s][3], uint32 time [us], uint8 flags (SO_CMD_*), uint8 packet length, 2 pad
 *        bytes, uint8 packet[16] (an app-channel packet: a heartbeat if so_heartbeat_valid).
 *   OUT: float32 cfg[SO_CFG_VALUES] (the config in use, the defaults with use_defaults), uint32
 *        calibration ticks and instructions; then per record uint8 output, phase, trip, trip taken,
 *        uint32 step, float32 obs[18], action[4], ratio[4], uint8 spikes[SNN_NEURONS],
 *        uint16 spike counts[SNN_NUM_LAYERS], uint32 ticks of the call (0 on the host). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "snn_onboard.h"

#define MAX_DRONES 8
#define SO_CFG_VALUES 24
#define SO_CMD_HEARTBEAT 1u /* the record's packet arrives before the call */
#define SO_CMD_START 2u     /* so_start before the call */
#define SO_CMD_STOP 4u      /* so_stop before the call */
#define SO_CMD_STEP 8u      /* the call is so_step (else so_hold) */

#ifdef ONBOARD_M4
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static void timer_start(void) { SYST_RVR = 0x00FFFFFFu; SYST_CVR = 0u; SYST_CSR = 5u; }
static uint32_t now(void) { return SYST_CVR; }
static uint32_t elapsed(uint32_t start, uint32_t end) { return (start - end) & 0x00FFFFFFu; }
static uint32_t known_loop(uint32_t n)
{
  uint32_t t0, t1;
  t0 = now();
  __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
  t1 = now();
  return elapsed(t0, t1);
}
#else
static void timer_start(void) {}
static uint32_t now(void) { return 0u; }
static uint32_t elapsed(uint32_t start, uint32_t end) { (void)start; (void)end; return 0u; }
static uint32_t known_loop(uint32_t n) { (void)n; return 0u; }
#endif

typedef struct {
  float position[3], quaternion[4], velocity[3], gyro[3];
  uint32_t time_us;
  uint8_t flags, packet_len, pad[2];
  uint8_t packet[16]; /* the app-channel packet of SO_CMD_HEARTBEAT */
} record_t;

static so_t drones[MAX_DRONES];

static void get_config(const float *v, so_config_t *c)
{
  int i;
  c->warmup_steps = (uint16_t)v[0];
  for (i = 0; i < 3; ++i) {
    c->target[i] = v[1 + i];
    c->geofence_min[i] = v[13 + i];
    c->geofence_max[i] = v[16 + i];
  }
  for (i = 0; i < 4; ++i) c->fill[i] = v[4 + i];
  c->mapping_mode = (uint8_t)v[8];
  c->max_ratio_mapping = v[9];
  c->min_ratio = v[10];
  c->max_ratio = v[11];
  c->max_tilt_deg = v[12];
  c->geofence_action = (uint8_t)v[19];
  c->tilt_action = (uint8_t)v[20];
  c->nonfinite_action = (uint8_t)v[21];
  c->link_action = (uint8_t)v[22];
  c->link_timeout_ms = (uint16_t)v[23];
}

static void put_config(const so_config_t *c, float *v)
{
  int i;
  v[0] = (float)c->warmup_steps;
  for (i = 0; i < 3; ++i) {
    v[1 + i] = c->target[i];
    v[13 + i] = c->geofence_min[i];
    v[16 + i] = c->geofence_max[i];
  }
  for (i = 0; i < 4; ++i) v[4 + i] = c->fill[i];
  v[8] = (float)c->mapping_mode;
  v[9] = c->max_ratio_mapping;
  v[10] = c->min_ratio;
  v[11] = c->max_ratio;
  v[12] = c->max_tilt_deg;
  v[19] = (float)c->geofence_action;
  v[20] = (float)c->tilt_action;
  v[21] = (float)c->nonfinite_action;
  v[22] = (float)c->link_action;
  v[23] = (float)c->link_timeout_ms;
}

static int run(FILE *in, FILE *out)
{
  int32_t head[3];
  float values[SO_CFG_VALUES];
  so_config_t cfg;
  long t, b, T, B;
  uint32_t cal[2], ticks, t0;
  record_t r;
  float ratio[SO_NUM_MOTORS];
  uint8_t code[4];
  if (fread(head, sizeof(int32_t), 3, in) != 3 || fread(values, sizeof(float), SO_CFG_VALUES, in) != SO_CFG_VALUES) {
    fprintf(stderr, "short input header\n");
    return 2;
  }
  T = head[0]; B = head[1];
  if (B < 1 || B > MAX_DRONES || T < 1) { fprintf(stderr, "bad dims %ld %ld\n", T, B); return 2; }
  if (head[2]) {
    so_config_default(&cfg);
  } else {
    get_config(values, &cfg);
    so_config_sanitize(&cfg);
  }
  put_config(&cfg, values);
  fwrite(values, sizeof(float), SO_CFG_VALUES, out);
  timer_start();
  cal[1] = 2u * 100000u + 2u;
  cal[0] = known_loop(100000u);
  fwrite(cal, sizeof(uint32_t), 2, out);
  for (b = 0; b < B; ++b) so_init(&drones[b]);
  for (t = 0; t < T; ++t) {
    for (b = 0; b < B; ++b) {
      so_t *so = &drones[b];
      if (fread(&r, sizeof(r), 1, in) != 1) { fprintf(stderr, "short input at %ld %ld\n", t, b); return 2; }
      if ((r.flags & SO_CMD_HEARTBEAT) && so_heartbeat_valid(r.packet, r.packet_len)) so_heartbeat(so, r.time_us);
      if (r.flags & SO_CMD_STOP) so_stop(so);
      if (r.flags & SO_CMD_START) so_start(so, &cfg);
      t0 = now();
      if (r.flags & SO_CMD_STEP) {
        code[0] = (uint8_t)so_step(so, &cfg, r.position, r.quaternion, r.velocity, r.gyro, r.time_us, ratio);
      } else {
        code[0] = (uint8_t)so_hold(so, &cfg, r.time_us, ratio);
      }
      ticks = elapsed(t0, now());
      code[1] = (uint8_t)so->phase;
      code[2] = (uint8_t)so->trip;
      code[3] = (uint8_t)so_take_trip(so);
      fwrite(code, 1, 4, out);
      fwrite(&so->step, sizeof(uint32_t), 1, out);
      fwrite(so->obs, sizeof(float), SNN_OBSERVATION_DIM, out);
      fwrite(so->action, sizeof(float), SO_NUM_MOTORS, out);
      fwrite(ratio, sizeof(float), SO_NUM_MOTORS, out);
      fwrite(so->actor.spikes, 1, SNN_NEURONS, out);
      fwrite(so->spikes, sizeof(uint16_t), SNN_NUM_LAYERS, out);
      fwrite(&ticks, sizeof(uint32_t), 1, out);
    }
  }
  return 0;
}

static int run_files(const char *in_path, const char *out_path)
{
  FILE *in = fopen(in_path, "rb"), *out;
  int rc;
  if (!in) { fprintf(stderr, "cannot read %s\n", in_path); return 2; }
  out = fopen(out_path, "wb");
  if (!out) { fprintf(stderr, "cannot write %s\n", out_path); fclose(in); return 2; }
  rc = run(in, out);
  fclose(in);
  if (fclose(out) != 0) rc = 2;
  return rc;
}

#ifdef ONBOARD_M4
int main(void) { return run_files("onboard_in.bin", "onboard_out.bin"); }
#else
int main(int argc, char **argv)
{
  if (argc != 3) { fprintf(stderr, "usage: %s IN OUT\n", argv[0]); return 2; }
  return run_files(argv[1], argv[2]);
}
#endif
