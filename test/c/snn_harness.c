/* Test driver for the exported spiking actor (test/test_export_c.py).
 * Usage: snn_harness IN OUT
 *   IN:  int32 T, int32 B, float32 obs[T][B][SNN_OBS_DIM], uint8 reset[T][B]
 *   OUT: for t in T, b in B: float32 membrane[SNN_NEURONS], uint8 spikes[SNN_NEURONS],
 *        float32 action[SNN_ACTION_DIM]
 * Each of the B rows has its own snn_state_t; reset[t][b] != 0 calls snn_reset before step t. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include "snn_actor.h"

int main(int argc, char **argv)
{
  FILE *in, *out;
  int32_t dims[2];
  long t, b, T, B;
  float *obs;
  uint8_t *reset;
  snn_state_t *states;
  float action[SNN_ACTION_DIM];
  if (argc != 3) { fprintf(stderr, "usage: %s IN OUT\n", argv[0]); return 2; }
  in = fopen(argv[1], "rb");
  if (!in || fread(dims, sizeof(int32_t), 2, in) != 2) { fprintf(stderr, "cannot read %s\n", argv[1]); return 2; }
  T = dims[0]; B = dims[1];
  obs = malloc(sizeof(float) * T * B * SNN_OBS_DIM);
  reset = malloc((size_t)(T * B));
  states = malloc(sizeof(snn_state_t) * B);
  if (!obs || !reset || !states) { fprintf(stderr, "out of memory\n"); return 2; }
  if (fread(obs, sizeof(float), (size_t)(T * B * SNN_OBS_DIM), in) != (size_t)(T * B * SNN_OBS_DIM) ||
      fread(reset, 1, (size_t)(T * B), in) != (size_t)(T * B)) { fprintf(stderr, "short input\n"); return 2; }
  fclose(in);
  out = fopen(argv[2], "wb");
  if (!out) { fprintf(stderr, "cannot write %s\n", argv[2]); return 2; }
  for (b = 0; b < B; ++b) snn_reset(&states[b]);
  for (t = 0; t < T; ++t) {
    for (b = 0; b < B; ++b) {
      snn_state_t *s = &states[b];
      if (reset[t * B + b]) snn_reset(s);
      snn_step(obs + (t * B + b) * SNN_OBS_DIM, s, action);
      fwrite(s->membrane, sizeof(float), SNN_NEURONS, out);
      fwrite(s->spikes, 1, SNN_NEURONS, out);
      fwrite(action, sizeof(float), SNN_ACTION_DIM, out);
    }
  }
  fclose(out);
  free(obs); free(reset); free(states);
  return 0;
}
