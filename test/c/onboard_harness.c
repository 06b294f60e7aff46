/* Test and bench driver of the onboard step (test/test_onboard_m4.py, bench/onboard_m4.py):
 * observation (snn_observation) + guide (snn_guide) + spiking actor (snn_actor), as exported by
 * `snn-drone export --format c`, on a recorded flight. Built for the host with gcc, and for a
 * Cortex-M4F (-DONBOARD_M4) to run on QEMU mps2-an386 with semihosting file I/O, where SysTick
 * (processor clock, read under -icount shift=0) times each part of the step.
 *
 * Usage (host): onboard_harness IN OUT; on the M4 the files are onboard_in.bin / onboard_out.bin
 * in QEMU's working folder.
 *   IN:  int32 T, int32 B, then T*B records (t major) of float32 state[13] (position, quaternion
 *        w x y z, velocity, body rates), target[3], fill[4] (guide history at a reset), applied[4]
 *        (the action flown this step, pushed into the guide's history), uint8 reset, 3 pad bytes.
 *   OUT: uint32 calibration ticks, uint32 calibration instructions; then per record float32
 *        obs[18], membrane[SNN_NEURONS], uint8 spikes[SNN_NEURONS], float32 actor_action[4],
 *        guide_action[4], uint32 ticks[3] (observation, guide, actor; 0 on the host).
 * Each of the B drones has its own states; reset != 0 resets them before the step. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "snn_actor.h"
#include "snn_guide.h"
#include "snn_observation.h"

#define MAX_DRONES 16

#ifdef ONBOARD_M4
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
static void timer_start(void) { SYST_RVR = 0x00FFFFFFu; SYST_CVR = 0u; SYST_CSR = 5u; /* on, processor clock */ }
static uint32_t now(void) { return SYST_CVR; }
static uint32_t elapsed(uint32_t start, uint32_t end) { return (start - end) & 0x00FFFFFFu; } /* counts down */
/* 2 n + 2 instructions: a known instruction count to calibrate ticks against */
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
  float state[13], target[3], fill[4], applied[4];
  uint8_t reset, pad[3];
} record_t;

static snn_state_t actors[MAX_DRONES];
static snn_guide_state_t guides[MAX_DRONES];

static int run(FILE *in, FILE *out)
{
  int32_t dims[2];
  long t, b, T, B;
  uint32_t cal[2];
  record_t r;
  float obs[SNN_OBSERVATION_DIM], act[SNN_ACTION_DIM], guide_act[SNN_GUIDE_ACTION_DIM];
  uint32_t ticks[3], t0, t1, t2, t3;
  if (fread(dims, sizeof(int32_t), 2, in) != 2) { fprintf(stderr, "short input header\n"); return 2; }
  T = dims[0]; B = dims[1];
  if (B < 1 || B > MAX_DRONES || T < 1) { fprintf(stderr, "bad dims %ld %ld\n", T, B); return 2; }
  timer_start();
  cal[1] = 2u * 100000u + 2u;
  cal[0] = known_loop(100000u);
  fwrite(cal, sizeof(uint32_t), 2, out);
  for (t = 0; t < T; ++t) {
    for (b = 0; b < B; ++b) {
      if (fread(&r, sizeof(r), 1, in) != 1) { fprintf(stderr, "short input at %ld %ld\n", t, b); return 2; }
      if (r.reset || t == 0) {
        snn_reset(&actors[b]);
        snn_guide_reset(&guides[b], r.fill);
      }
      t0 = now();
      snn_observation(r.state, r.state + 3, r.state + 7, r.state + 10, r.target, obs);
      t1 = now();
      snn_guide_step(obs, &guides[b], guide_act);
      snn_guide_push(&guides[b], r.applied);
      t2 = now();
      snn_step(obs, &actors[b], act);
      t3 = now();
      ticks[0] = elapsed(t0, t1);
      ticks[1] = elapsed(t1, t2);
      ticks[2] = elapsed(t2, t3);
      fwrite(obs, sizeof(float), SNN_OBSERVATION_DIM, out);
      fwrite(actors[b].membrane, sizeof(float), SNN_NEURONS, out);
      fwrite(actors[b].spikes, 1, SNN_NEURONS, out);
      fwrite(act, sizeof(float), SNN_ACTION_DIM, out);
      fwrite(guide_act, sizeof(float), SNN_GUIDE_ACTION_DIM, out);
      fwrite(ticks, sizeof(uint32_t), 3, out);
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
