"""The spiking actor as dependency-free C99 for a microcontroller (the paper ran it on a Teensy deck;
a Crazyflie's STM32F405 Cortex-M4F fits it too): a weights header, an API header and one step
function, float32 throughout, no malloc, no libm except ``tanhf`` (override with ``SNN_TANHF``).

Files written by :func:`export_c` into a folder:

- ``snn_actor.h``: sizes, ``snn_state_t`` (membranes, last spikes, a scratch current buffer: the
  caller owns it, ~3 KB at 18-256-128-4), ``snn_reset(state)`` and
  ``snn_step(const float obs[18], snn_state_t *state, float action[4])``.
- ``snn_actor_weights.h``: every parameter as ``static const float`` (flash on a Cortex-M), each
  float32 written with the shortest decimal that parses back to the same float, so the C values are
  bit-identical to the checkpoint's. Affine weights are stored input-major (``W^T``, [in][out]) so
  that a spike-fed layer adds one contiguous column per input spike.
- ``snn_actor.c``: the step, in the exact operation order of ``lif.lif_step``:
  ``I = b + sum_j W[:, j] x[j]`` (j ascending, each product and each sum rounded to float32),
  ``U = beta * U`` then ``U = U + I`` then ``U = U - U_thr`` if the neuron spiked last step
  (soft reset, beta clamped to [0, 1] at export), spike ``U > U_thr``; readout
  ``tanh(b + sum_j W[:, j] s[j])``. Spike-fed layers skip silent inputs: adding ``W * 0`` is exact,
  so the sparse sum equals the dense one bit for bit.

Summation order, the one subtle point. A float32 sum depends on its order at the last bit, and a
spike flips when a membrane sits within that last bit of its threshold. torch's ``nn.Linear`` sums
in whatever order the BLAS kernel picks, which differs with the CPU and even with the batch size
(measured here: actor.step at B=1 and at B=16 give membranes that differ by up to 1.2e-4 on
large membranes for the same rows). So "the same spikes as torch" is only well defined against a
fixed order: :func:`sequential_step` is the actor's step (same parameters, same ``lif_step``) with
the Linear layers summed in the C order, and the C code is bit-identical to it (membranes and
spikes exactly; actions within tanhf's ulp). Against ``actor.step`` itself (BLAS order), spikes
agree except where a membrane lies within float32 rounding of its threshold (none in 1.8 M
neuron-steps of 16 drones x 300 steps here); test/test_export_c.py checks both, the second with a
rigorous per-neuron rounding bound rather than a loosened tolerance.

Fused multiply-add changes rounding too: snn_actor.c turns contraction off for GCC and clang
(``#pragma``); do not build it with ``-ffast-math``.

Onboard flight needs two more pieces, written beside the network by the same export:

- ``snn_observation.h`` / ``snn_observation.c`` (with every export): ``snn_observation`` computes
  the 18 observations of :func:`snn_drone.core.env.task.observation` from a state estimate
  (position, quaternion w x y z body to world, velocity in world, body rates in rad/s, target), in
  the same operation order, so the values are bit-identical to torch's (tested on simulated
  flights). Offsets ``SNN_OBS_<FIELD>`` come from ``layout.OBS_FIELDS``.
- The privileged guide (an :class:`MLPPolicy`, 146 -> 64 -> 64 -> 4): ``snn_guide.h``,
  ``snn_guide_weights.h``, ``snn_guide.c`` with ``snn_guide_reset(state, fill)`` (the action
  history at an episode start, ``task.initial_action_history``: every entry = ``fill``),
  ``snn_guide_push(state, action)`` (the applied action enters the history, clipped to [-1, 1]
  as the env clips it) and ``snn_guide_step(obs, state, action)``: ReLU MLP on
  ``task.privileged_observation`` (the 18 observations, then the last L actions oldest first),
  tanh readout, summed in the C order of :func:`sequential_mlp` (bit-identical to it). An MLP on
  the plain observation (ANN actor baseline) exports the same way with no history.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..common import layout
from ..snn.lif import LIFState, lif_step
from ..snn.spiking_actor import ActorState, SpikingActor
from .c_codegen import _ACTIVE_KERNEL, _PRELUDE, _array, _checked, _write, sequential_affine
from .export_c_guide import guide_files, guide_footprint_bytes, is_mlp_policy, observation_files
from .export_c_onboard import OnboardDefaults, onboard_files

HEADER = "snn_actor.h"
WEIGHTS = "snn_actor_weights.h"
SOURCE = "snn_actor.c"


# ---- the torch reference in the C summation order ----------------------------------------------
@torch.no_grad()
def sequential_step(actor: SpikingActor, obs: Tensor, state: ActorState
                    ) -> tuple[Tensor, ActorState, list[Tensor]]:
    """``actor.step`` with the Linear layers summed in the exported C code's order.

    Returns (action [B, A], next state, spikes per LIF layer [B, N_l]). Same parameters and the
    same ``lif_step`` as the actor; only the order of the float sums inside each Linear is fixed.
    """
    x, new, spikes = obs, [], []
    for fc, lif, s in zip(actor.fc, actor.lif, state.layers):
        x, s = lif_step(sequential_affine(fc.weight, fc.bias, x), s, lif.beta, lif.threshold, actor.slope)
        new.append(s)
        spikes.append(x)
    action = torch.tanh(sequential_affine(actor.readout.weight, actor.readout.bias, x))
    return action, ActorState(tuple(new)), spikes


@torch.no_grad()
def sequential_sequence(actor: SpikingActor, obs: Tensor, reset: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`sequential_step` over a whole flight, layer by layer: observations [T, B, D], reset
    flags [T, B] (True: the row's membranes are zeroed before step t) -> membranes [T, B, N],
    spikes [T, B, N] (all LIF layers, layer 0 first) and actions [T, B, A]. The same float32
    operations as stepping sequential_step T times (elementwise ops round alike at any batch
    shape), with each Linear evaluated once for all T steps, which is far cheaper."""
    x, mems, spks = obs, [], []
    keep = (~reset).to(obs.dtype)[..., None]
    for fc, lif in zip(actor.fc, actor.lif):
        current = sequential_affine(fc.weight, fc.bias, x)
        mem = torch.zeros_like(current[0])
        m_t, s_t = [], []
        for t in range(obs.shape[0]):
            mem = torch.where(keep[t] > 0, mem, torch.zeros_like(mem))
            s, state = lif_step(current[t], LIFState(mem), lif.beta, lif.threshold, actor.slope)
            mem = state.membrane
            m_t.append(mem)
            s_t.append(s)
        mems.append(torch.stack(m_t))
        x = torch.stack(s_t)
        spks.append(x)
    action = torch.tanh(sequential_affine(actor.readout.weight, actor.readout.bias, x))
    return torch.cat(mems, -1), torch.cat(spks, -1), action


# ---- C source generation -------------------------------------------------------------------------
def _params(actor: SpikingActor) -> list[tuple[str, np.ndarray, str]]:
    """(C name, float32 array, description) for every parameter, checked finite."""
    out = []
    sizes = (actor.cfg.obs_dim, *actor.cfg.hidden)
    for l, (fc, lif) in enumerate(zip(actor.fc, actor.lif)):
        n_in, n_out = sizes[l], sizes[l + 1]
        src = "observation" if l == 0 else f"spikes of LIF layer {l - 1}"
        out += [(f"snn_fc{l}_weight", fc.weight.detach().T, f"fc.{l}.weight^T [{n_in}][{n_out}] ({src} -> currents)"),
                (f"snn_fc{l}_bias", fc.bias.detach(), f"fc.{l}.bias [{n_out}]"),
                (f"snn_lif{l}_beta", lif.beta.detach().clamp(0, 1), f"lif.{l}.beta [{n_out}], clamped to [0, 1]"),
                (f"snn_lif{l}_threshold", lif.threshold.detach(), f"lif.{l}.threshold [{n_out}]")]
    ro = actor.readout
    out += [("snn_readout_weight", ro.weight.detach().T,
             f"readout.weight^T [{ro.in_features}][{ro.out_features}] (spikes of LIF layer {len(actor.lif) - 1} -> actions)"),
            ("snn_readout_bias", ro.bias.detach(), f"readout.bias [{ro.out_features}]")]
    return _checked(out)


def _obs_comment() -> str:
    rows, start = [], 0
    for f in layout.OBS_FIELDS:
        rows.append(f" *   obs[{start}..{start + f.size - 1}] {f.name} ({f.unit}, {f.frame} frame)")
        start += f.size
    return "\n".join(rows)


def _header(actor: SpikingActor, source: str) -> str:
    cfg = actor.cfg
    hidden = cfg.hidden
    offsets = np.cumsum((0, *hidden))
    layer_macros = "\n".join(f"#define SNN_LAYER{l}_SIZE {n}\n#define SNN_LAYER{l}_OFFSET {offsets[l]}"
                             for l, n in enumerate(hidden))
    obs_doc = _obs_comment() if cfg.obs_dim == layout.OBS_DIM else f" *   {cfg.obs_dim} values"
    return f"""/* Spiking actor {cfg.obs_dim}-{'-'.join(map(str, hidden))}-{cfg.action_dim} exported by `snn-drone export --format c`
 * from {source}. Generated file: do not edit.
 *
 * C99, float32, no malloc, no libm except tanhf. Not thread-safe per state: one snn_state_t per
 * running policy, owned by the caller.
 *
 * Observation (SNN_OBS_DIM floats, the layout of snn_drone/core/common/layout.py):
{obs_doc}
 * Action: SNN_ACTION_DIM motor commands in [-1, 1] (tanh); rotor speed setpoint
 *   rpm_des = (a + 1) / 2 * max_rpm, motor order as the training model (l2f / Crazyflie M1..M4).
 * Call snn_reset() at the start of each flight (all membranes zero), then snn_step() once per
 * control step (100 Hz in training).
 */
#ifndef SNN_ACTOR_H
#define SNN_ACTOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define SNN_OBS_DIM {cfg.obs_dim}
#define SNN_ACTION_DIM {cfg.action_dim}
#define SNN_NUM_LAYERS {len(hidden)}
#define SNN_NEURONS {sum(hidden)}
#define SNN_MAX_WIDTH {max(max(hidden), cfg.action_dim)}
#define SNN_LAYER_SIZES {{{', '.join(map(str, hidden))}}} /* initialiser of an array [SNN_NUM_LAYERS] */
{layer_macros}

typedef struct {{
  float membrane[SNN_NEURONS];  /* U of every LIF neuron, layer 0 first (SNN_LAYERl_OFFSET) */
  uint8_t spikes[SNN_NEURONS];  /* spikes of the last step, 1 or 0 (also the next reset term) */
  float current[SNN_MAX_WIDTH]; /* scratch: input currents of the layer being updated */
  uint16_t active[SNN_MAX_WIDTH]; /* scratch: indices of the spiking inputs of that layer */
}} snn_state_t;

/* Zero every membrane (start of an episode). */
void snn_reset(snn_state_t *state);

/* One control step: obs -> action, advancing the hidden state in place. */
void snn_step(const float obs[SNN_OBS_DIM], snn_state_t *state, float action[SNN_ACTION_DIM]);

#ifdef __cplusplus
}}
#endif

#endif /* SNN_ACTOR_H */
"""


def _weights(actor: SpikingActor) -> str:
    body = "\n\n".join(_array(name, a, desc) for name, a, desc in _params(actor))
    n = sum(a.size for _, a, _ in _params(actor))
    return f"""/* Parameters of the exported spiking actor: {n} float32 values ({4 * n} bytes).
 * Generated by `snn-drone export --format c`; included by snn_actor.c only. Do not edit. */
#ifndef SNN_ACTOR_WEIGHTS_H
#define SNN_ACTOR_WEIGHTS_H

{body}

#endif /* SNN_ACTOR_WEIGHTS_H */
"""


_SOURCE_COMMON = r"""/* Step function of the exported spiking actor. Generated by `snn-drone export --format c`.
 * Operation order = snn_drone.core.deploy.export_c.sequential_step (bit-exact): each product and each
 * sum rounded to float on its own, so fused multiply-add must stay off (pragmas below; never
 * build with -ffast-math). */
#include "snn_actor.h"
#include "snn_actor_weights.h"
@PRELUDE@
/* out = b + sum_j W^T[j][:] * x[j], j ascending (W^T stored input-major). */
static void snn_affine_dense(const float *wt, const float *b, const float *x, int n_in, int n_out, float *out)
{
  int i;
  for (i = 0; i < n_out; ++i) out[i] = b[i];
  snn_accumulate_dense(wt, x, n_in, n_out, out);
}

/* The same sum for 0/1 inputs: silent inputs add exactly 0 and are skipped (active: scratch). */
static void snn_affine_spikes(const float *wt, const float *b, const uint8_t *s, int n_in, int n_out, float *out,
                              uint16_t *active)
{
  int i, j, n = 0;
  for (i = 0; i < n_out; ++i) out[i] = b[i];
  for (j = 0; j < n_in; ++j) {
    if (s[j]) active[n++] = (uint16_t)j;
  }
  snn_accumulate_active(wt, active, n, n_out, out);
}

/* LIF with soft reset: U = beta U + I - r U_thr, r = last spike; spike = U > U_thr. */
static void snn_lif(const float *beta, const float *thr, const float *current, int n, float *mem, uint8_t *spk)
{
  int i;
  for (i = 0; i < n; ++i) {
    float u = beta[i] * mem[i];
    u = u + current[i];
    if (spk[i]) u = u - thr[i];
    mem[i] = u;
    spk[i] = (uint8_t)(u > thr[i]);
  }
}

/* Zero membranes; the reset term of the first step is H(0 - U_thr), as in the torch actor. */
static void snn_reset_layer(const float *thr, int n, float *mem, uint8_t *spk)
{
  int i;
  for (i = 0; i < n; ++i) {
    mem[i] = 0.0f;
    spk[i] = (uint8_t)(0.0f > thr[i]);
  }
}
"""


def _source(actor: SpikingActor) -> str:
    hidden = actor.cfg.hidden
    reset = [f"  snn_reset_layer(snn_lif{l}_threshold, SNN_LAYER{l}_SIZE, "
             f"state->membrane + SNN_LAYER{l}_OFFSET, state->spikes + SNN_LAYER{l}_OFFSET);"
             for l in range(len(hidden))]
    step = []
    for l in range(len(hidden)):
        if l == 0:
            step.append(f"  snn_affine_dense(snn_fc0_weight, snn_fc0_bias, obs, SNN_OBS_DIM, SNN_LAYER0_SIZE, state->current);")
        else:
            step.append(f"  snn_affine_spikes(snn_fc{l}_weight, snn_fc{l}_bias, state->spikes + SNN_LAYER{l - 1}_OFFSET, "
                        f"SNN_LAYER{l - 1}_SIZE, SNN_LAYER{l}_SIZE, state->current, state->active);")
        step.append(f"  snn_lif(snn_lif{l}_beta, snn_lif{l}_threshold, state->current, SNN_LAYER{l}_SIZE, "
                    f"state->membrane + SNN_LAYER{l}_OFFSET, state->spikes + SNN_LAYER{l}_OFFSET);")
    last = len(hidden) - 1
    step.append(f"  snn_affine_spikes(snn_readout_weight, snn_readout_bias, state->spikes + SNN_LAYER{last}_OFFSET, "
                f"SNN_LAYER{last}_SIZE, SNN_ACTION_DIM, state->current, state->active);")
    nl = "\n"
    return f"""{_SOURCE_COMMON.replace("@PRELUDE@", _PRELUDE + _ACTIVE_KERNEL)}
void snn_reset(snn_state_t *state)
{{
{nl.join(reset)}
}}

void snn_step(const float obs[SNN_OBS_DIM], snn_state_t *state, float action[SNN_ACTION_DIM])
{{
  int i;
{nl.join(step)}
  for (i = 0; i < SNN_ACTION_DIM; ++i) action[i] = SNN_TANHF(state->current[i]);
}}
"""


def export_c(policy, out_dir: str | os.PathLike, source: str | None = None,
             onboard: OnboardDefaults | None = None) -> list[Path]:
    """Write the C files for ``policy`` into ``out_dir`` and the onboard observation beside them
    (with ``onboard`` also snn_onboard_config.h, the onboard mode's defaults: export_c_onboard.py).

    A spiking actor gives snn_actor.h, snn_actor_weights.h, snn_actor.c; an MLP policy (the guide)
    snn_guide.h, snn_guide_weights.h, snn_guide.c; both add snn_observation.h / .c. ``source``
    names the checkpoint in the generated comments. Returns the written paths. Raises TypeError
    for another kind of policy and ValueError for non-finite parameters.
    """
    if isinstance(policy, SpikingActor):
        files = {HEADER: _header(policy, source or "a SpikingActor"), WEIGHTS: _weights(policy),
                 SOURCE: _source(policy)}
    elif is_mlp_policy(policy):
        files = guide_files(policy, source or "an MLP policy")
    else:
        raise TypeError(f"C export needs a spiking actor (snn_drone.SpikingActor) or an MLP policy (the guide), "
                        f"got {type(policy).__name__}")
    files.update(observation_files())
    if onboard is not None:
        files.update(onboard_files(onboard))
    return _write(Path(out_dir), files)


def footprint_bytes(policy) -> dict[str, int]:
    """Flash for the parameters and RAM for one state struct (float32 membranes and currents, uint8
    spikes, uint16 active-input indices)."""
    if is_mlp_policy(policy):
        return guide_footprint_bytes(policy)
    n_params = sum(p.numel() for name, p in policy.named_parameters())
    neurons = sum(policy.cfg.hidden)
    width = max(max(policy.cfg.hidden), policy.cfg.action_dim)
    return {"weights_flash": 4 * n_params, "state_ram": 4 * neurons + neurons + 6 * width}


__all__ = ["export_c", "sequential_affine", "sequential_step", "sequential_sequence", "footprint_bytes"]
