"""NeuroBench-style efficiency metrics of a spiking actor, and the paper's energy estimate (Table 2).

Definitions follow the `neurobench` package (2.3.0, neurobench/metrics/...):
- ActivationSparsity: zero outputs / all outputs of the spiking-neuron layers, over all layers,
  timesteps and samples; ActivationSparsityByLayer the same per layer. The tanh of the readout is
  not a spiking layer and is not counted (as in the paper's model, where tanh is functional).
- SynapticOperations, per Linear layer (bias never counted): inputs and weights are binarised
  (nonzero -> 1) and multiplied, so one input element that is nonzero costs one operation per
  nonzero weight in its column (its fan-out). Operations with real-valued inputs are MACs, with
  spike inputs ACs; Dense counts every input and every weight as nonzero (sum of in x out).
  NeuroBench tells the two apart by looking at the values (all in {0, +1, -1} = spikes); here the
  first Linear (fed observations) is the MAC layer and every later Linear (fed spikes) an AC layer,
  which is the same except for an observation that happens to hold only 0/+-1 values.
- Footprint: bytes of parameters and buffers; ParameterCount: number of parameter elements.

Counting unit: NeuroBench divides by the samples of a batch (one sample = one whole sequence, and in
its closed-loop benchmark one whole episode). The paper's Table 2 numbers are per network update
(dense SynOps 37.9e3 = 18*256 + 256*128 + 128*4), so every count here is per inference step: the
total over T steps and B sequences divided by T*B.

Energy per inference (paper Table 2), generalised to L hidden LIF layers N_1..N_L (N_0 = N_in):

    E = sum_l [ N_l (P_u + N_{l-1} P_w) + P_s (1 - AS) N_l ] + N_out N_L P_w

(P_u per neuron update, P_w per weight read, P_s per spike.) With the paper's constants, AS = 0.79
and 18-256-128-4 it is 97,416.7 pJ = 9.74e-5 mJ.

Note on Table 2: its AS 0.79 and 12.2e3 effective ACs do not fit one per-step count of this
network: AS 0.79 over 384 LIF neurons is 80.6 spikes per step, and even if all came from the
256-neuron layer (fan-out 128) they would trigger at most 10.3e3 ACs.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..common import layout
from .spiking_actor import SpikingActor
from ..common.validation import check_array

PJ_PER_MJ = 1e9

# Table 2 of the paper (SNN row), for side-by-side printing.
PAPER_TABLE2 = {"activation_sparsity": 0.79, "dense_synops": 37.9e3, "effective_macs": 4.6e3,
                "effective_acs": 12.2e3, "energy_per_inference_mj": 9.7e-5}


@dataclass
class EnergyModelConfig:
    """Energy per operation of the paper's estimate (Table 2), in picojoules."""

    spike_pj: float = 23.6
    """P_s: energy of one spike (paid per neuron per step with probability 1 - AS)."""
    weight_pj: float = 1.7
    """P_w: energy of reading/accumulating one synaptic weight."""
    update_pj: float = 81.0
    """P_u: energy of one neuron membrane update."""


def layer_sizes(actor: SpikingActor) -> tuple[int, ...]:
    """(N_in, N_1, ..., N_L, N_out) of the actor."""
    cfg = actor.cfg
    return (cfg.obs_dim, *cfg.hidden, cfg.action_dim)


def dense_synops(sizes: Sequence[int]) -> int:
    """Synaptic operations of a dense forward pass: sum of in x out over consecutive layers."""
    return sum(int(a) * int(b) for a, b in zip(sizes[:-1], sizes[1:]))


def energy_per_inference_pj(sizes: Sequence[int], activation_sparsity: float | Sequence[float],
                            energy: EnergyModelConfig | None = None) -> float:
    """The paper's energy estimate of one inference, in pJ, for layer sizes (N_in, N_1..N_L, N_out).

    ``activation_sparsity`` is one AS for all hidden layers (the paper) or one per hidden layer.
    """
    e = energy or EnergyModelConfig()
    sizes = [int(n) for n in sizes]
    if len(sizes) < 3:
        raise ValueError(f"layer sizes {sizes}: expected (N_in, N_1, ..., N_L, N_out) with L >= 1")
    hidden = sizes[1:-1]
    sparsity = ([float(activation_sparsity)] * len(hidden)
                if np.ndim(activation_sparsity) == 0 else [float(a) for a in activation_sparsity])
    if len(sparsity) != len(hidden):
        raise ValueError(f"{len(sparsity)} activation sparsities for {len(hidden)} hidden layers {hidden}")
    for a in sparsity:
        if not 0.0 <= a <= 1.0:
            raise ValueError(f"activation sparsity {a} outside [0, 1]")
    total = 0.0
    for n_prev, n, a in zip(sizes[:-2], hidden, sparsity):
        total += n * (e.update_pj + n_prev * e.weight_pj) + e.spike_pj * (1.0 - a) * n
    return total + sizes[-1] * sizes[-2] * e.weight_pj


def effective_operations(weight: Tensor, inputs: Tensor) -> int:
    """NeuroBench's effective synaptic operations of one Linear over all samples in ``inputs``
    [..., in]: binarised inputs times binarised weights [out, in], summed (bias not counted)."""
    active_inputs = (inputs != 0).reshape(-1, inputs.shape[-1]).sum(0, dtype=torch.int64)
    fan_out = (weight != 0).sum(0, dtype=torch.int64)
    return int((active_inputs * fan_out).sum())


@dataclass
class ActorMetrics:
    """NeuroBench-style metrics of one actor on one set of observation sequences.
    Operation counts and energy are per inference step (one control step of one drone)."""

    steps: int
    """T: time steps per sequence."""
    batch: int
    """B: sequences (drones) run side by side."""
    layer_sizes: tuple[int, ...]
    """(N_in, N_1, ..., N_L, N_out)."""
    activation_sparsity: float
    """Zero spikes / all spike slots, over every LIF layer, step and sequence."""
    activation_sparsity_by_layer: tuple[float, ...]
    """The same per LIF layer, input side first."""
    spikes_per_inference_by_layer: tuple[float, ...]
    """Mean number of spikes per step per LIF layer."""
    dense_synops: float
    """Synaptic operations of a dense forward pass (sum in x out)."""
    effective_macs: float
    """Multiply-accumulates with real-valued inputs (the observation layer): nonzero inputs x fan-out."""
    effective_acs: float
    """Accumulates triggered by spikes: per spike-fed Linear, input spikes x fan-out."""
    ops_by_layer: tuple[float, ...]
    """Effective operations per Linear (first one MACs, the rest ACs), input side first."""
    parameter_count: int
    """Number of parameter elements (NeuroBench ParameterCount)."""
    parameter_bytes: int
    """Bytes of the parameters."""
    footprint_bytes: int
    """Bytes of parameters and buffers (NeuroBench Footprint)."""
    energy_per_inference_mj: float
    """Paper's energy estimate (Table 2 formula) with the measured activation sparsity, in mJ."""
    energy: EnergyModelConfig = dataclasses.field(default_factory=EnergyModelConfig)
    """Constants the energy was computed with."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """The metrics as an aligned text table, with the paper's Table 2 value beside ours."""
        def fmt(v):
            if isinstance(v, (tuple, list)):
                return "[" + ", ".join(fmt(x) for x in v) + "]"
            if isinstance(v, int):
                return f"{v:,}"
            if v != 0 and abs(v) < 1e-2:
                return f"{v:.4g}"
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.4f}"
        rows = [
            ("network", "-".join(str(n) for n in self.layer_sizes), ""),
            ("sequences x steps", f"{self.batch} x {self.steps}", ""),
            ("activation sparsity", fmt(self.activation_sparsity), fmt(PAPER_TABLE2["activation_sparsity"])),
            ("  per LIF layer", fmt(self.activation_sparsity_by_layer), ""),
            ("spikes / step per LIF layer", fmt(self.spikes_per_inference_by_layer), ""),
            ("dense SynOps / step", fmt(self.dense_synops), fmt(PAPER_TABLE2["dense_synops"])),
            ("effective MACs / step", fmt(self.effective_macs), fmt(PAPER_TABLE2["effective_macs"])),
            ("effective ACs / step", fmt(self.effective_acs), fmt(PAPER_TABLE2["effective_acs"])),
            ("  ops per Linear", fmt(self.ops_by_layer), ""),
            ("parameters", fmt(self.parameter_count), ""),
            ("parameter bytes", fmt(self.parameter_bytes), ""),
            ("footprint bytes (+buffers)", fmt(self.footprint_bytes), ""),
            ("energy / inference [mJ]", fmt(self.energy_per_inference_mj),
             fmt(PAPER_TABLE2["energy_per_inference_mj"])),
        ]
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        head = f"{'metric':<{w0}}  {'value':>{w1}}  paper Table 2"
        lines = [head, "-" * len(head)] + [f"{a:<{w0}}  {b:>{w1}}  {c}".rstrip() for a, b, c in rows]
        e = self.energy
        lines.append(f"(energy: P_s {e.spike_pj} pJ, P_w {e.weight_pj} pJ, P_u {e.update_pj} pJ; "
                     f"counts per inference step, averaged over {self.batch * self.steps} steps)")
        return "\n".join(lines)


@torch.no_grad()
def measure_actor(actor: SpikingActor, obs, state=None,
                  energy: EnergyModelConfig | None = None) -> ActorMetrics:
    """Run ``actor`` over ``obs`` [T, B, obs_dim] (from ``state``, default zeros) and count.

    Works on whatever device the actor lives on; ``obs`` is moved there.
    """
    energy = energy or EnergyModelConfig()
    device = actor.slope.device
    obs = torch.as_tensor(obs, dtype=actor.slope.dtype, device=device)
    check_array("observation sequence", obs, (None, None, actor.cfg.obs_dim),
                layout.OBS_FIELDS if actor.cfg.obs_dim == layout.OBS_DIM else None)
    steps, batch = int(obs.shape[0]), int(obs.shape[1])
    if steps * batch == 0:
        raise ValueError(f"observation sequence has shape {list(obs.shape)}: need at least one step "
                         f"and one sequence")
    _, _, spikes = actor.forward_sequence(obs, state, return_spikes=True)
    n = steps * batch

    zeros = [int(s.numel() - torch.count_nonzero(s)) for s in spikes]
    slots = [int(s.numel()) for s in spikes]
    sparsity = sum(zeros) / sum(slots)
    by_layer = tuple(z / m for z, m in zip(zeros, slots))
    spikes_per_step = tuple((m - z) / n for z, m in zip(zeros, slots))

    linears = [*actor.fc, actor.readout]
    inputs = [obs, *spikes]          # Linear l is fed the observations (l = 0) or LIF layer l-1
    ops = [effective_operations(lin.weight, x) / n for lin, x in zip(linears, inputs)]

    sizes = layer_sizes(actor)
    params = list(actor.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    buffer_bytes = sum(b.numel() * b.element_size() for b in actor.buffers())
    return ActorMetrics(
        steps=steps, batch=batch, layer_sizes=sizes,
        activation_sparsity=sparsity, activation_sparsity_by_layer=by_layer,
        spikes_per_inference_by_layer=spikes_per_step,
        dense_synops=float(dense_synops(sizes)), effective_macs=ops[0], effective_acs=sum(ops[1:]),
        ops_by_layer=tuple(ops),
        parameter_count=sum(p.numel() for p in params), parameter_bytes=param_bytes,
        footprint_bytes=param_bytes + buffer_bytes,
        energy_per_inference_mj=energy_per_inference_pj(sizes, sparsity, energy) / PJ_PER_MJ,
        energy=energy)


# ---- observation sequences ---------------------------------------------------------------------
def default_observations(steps: int, batch: int, seed: int = 0, obs_dim: int = layout.OBS_DIM) -> Tensor:
    """Synthetic observation sequences [steps, batch, 18]: every entry is the observation of an
    independent draw from the task's initial-state distribution (``task.sample_initial_state``,
    l2f init_90_deg: position within 0.2 m of the target, attitude up to 90 deg, velocity up to
    1 m/s, body rates up to 1 rad/s per axis), with guided starts (exactly at the target and level)
    turned off so no observation is degenerate. Drawn from ``seed`` on the CPU.

    These are states a controller meets at episode starts, but independent from step to step;
    closed-loop flights give smoother sequences (pass recorded ones with ``--obs``).
    """
    from ..sim import params as quad_params
    from ..env import task   # the task owns the state distribution and observation

    if obs_dim != layout.OBS_DIM:
        raise ValueError(f"default observations have the task's {layout.OBS_DIM} fields "
                         f"({layout.describe(layout.OBS_FIELDS)}); this actor takes {obs_dim}: "
                         f"pass observations with --obs")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps={steps} and batch={batch} must both be >= 1")
    cfg = dataclasses.replace(task.load_task_config(), init_guidance_probability=0.0)
    gen = torch.Generator().manual_seed(int(seed))
    state = task.sample_initial_state(steps * batch, gen, quad_params.load_preset(), cfg)
    obs = task.observation(state, torch.tensor(cfg.target_position_m, dtype=state.dtype))
    return obs.reshape(steps, batch, layout.OBS_DIM)


def load_observations(path, obs_dim: int = layout.OBS_DIM) -> Tensor:
    """Observation sequences from key ``obs`` [T, B, obs_dim] of an .npz file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"observation file {path} does not exist")
    with np.load(path) as data:
        if "obs" not in data:
            raise KeyError(f"{path} has no array 'obs' (it holds {sorted(data.files)}); expected "
                           f"obs [T, B, {obs_dim}]")
        obs = np.asarray(data["obs"], dtype=np.float32)
    check_array(f"{path.name}:obs", obs, (None, None, obs_dim),
                layout.OBS_FIELDS if obs_dim == layout.OBS_DIM else None)
    return torch.as_tensor(obs)
