"""The spiking actor (paper "The spiking actor"): 18 -> Linear -> LIF(256) -> Linear -> LIF(128)
-> Linear(128 -> 4) -> tanh, stateful across control steps.

- Population coding: the first Linear turns observation values into input currents, the readout
  Linear decodes the last layer's spikes into 4 motor commands in [-1, 1].
- The hidden state is explicit and owned by the caller (``ActorState``, one ``LIFState`` per LIF
  layer); ``init_state`` gives zeros, ``reset_state`` zeroes chosen batch rows only.
- The surrogate slope k is a registered buffer ``actor.slope`` (data, not a closure): ``set_slope``
  changes it in place, it takes effect at the next forward/backward, survives ``state_dict``
  save/load and never forces a rebuild.
- ``step`` is the control path (one time step); ``forward_sequence`` the training path over
  [T, B, 18]: one matmul per Linear for all T, one fused autograd node per LIF layer.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ..common import layout
from ..common.config import find_file, from_dict, to_dict
from .lif import LIF, LIFState
from ..common.validation import check_array


@dataclass
class SpikingActorConfig:
    """Architecture and initialisation of the spiking actor."""

    obs_dim: int = layout.OBS_DIM
    """Observation width (18: position error 3, rotation matrix 9, velocity 3, angular velocity 3)."""
    hidden: tuple[int, ...] = (256, 128)
    """Neurons per LIF layer, input side first (paper Table 6: [256, 128]); any number of layers."""
    action_dim: int = layout.ACTION_DIM
    """Motor commands out of the tanh readout, each in [-1, 1]."""
    beta_init: tuple[float, float] = (0.0, 1.0)
    """Initial per-neuron decay beta drawn uniformly from [low, high) (the paper's code: torch.rand,
    i.e. [0, 1)); equal bounds give one constant. Kept in [0, 1] by clamping in the forward pass."""
    threshold_init: tuple[float, float] = (0.0, 1.0)
    """Initial per-neuron firing threshold U_thr drawn uniformly from [low, high) (paper's code: [0, 1))."""
    slope: float = 2.0
    """Initial surrogate slope k of dS/dx = 1/(1 + k|x|)^2 (paper Eq. 5; adaptive runs start at 2)."""
    seed: int | None = None
    """Seed for the weight, decay and threshold initialisation (None: torch's global generator)."""

    def __post_init__(self):
        if self.obs_dim < 1 or self.action_dim < 1:
            raise ValueError(f"obs_dim and action_dim must be >= 1, got {self.obs_dim} and {self.action_dim}")
        if not self.hidden or any(int(n) < 1 for n in self.hidden):
            raise ValueError(f"hidden must list at least one LIF layer size >= 1, got {self.hidden!r}")
        self.hidden = tuple(int(n) for n in self.hidden)
        for name in ("beta_init", "threshold_init"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name} must be finite (low, high) with low <= high, got {(lo, hi)}")
        _check_slope(self.slope)


class ActorState(NamedTuple):
    """Hidden state of the whole actor: one LIF membrane per hidden layer, input side first."""
    layers: tuple[LIFState, ...]


def _check_slope(k) -> float:
    k = float(k)
    if not (math.isfinite(k) and k > 0):
        raise ValueError(f"surrogate slope k must be a finite number > 0 (paper range [1, 100]), got {k}")
    return k


class SpikingActor(nn.Module):
    """Stateful spiking policy: observations [.., obs_dim] -> motor commands [.., action_dim] in [-1, 1]."""

    def __init__(self, cfg: SpikingActorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or SpikingActorConfig()
        gen = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
        sizes = (cfg.obs_dim, *cfg.hidden)
        self.fc = nn.ModuleList()   # fc[l]: input currents of LIF layer l
        self.lif = nn.ModuleList()
        for l, n in enumerate(cfg.hidden):
            self.fc.append(_linear(sizes[l], n, gen))
            self.lif.append(LIF(n, _uniform(n, cfg.beta_init, gen), _uniform(n, cfg.threshold_init, gen)))
        self.readout = _linear(cfg.hidden[-1], cfg.action_dim, gen)
        self.register_buffer("slope", torch.tensor(float(cfg.slope)))

    # ---- slope ------------------------------------------------------------------------------
    def set_slope(self, k: float) -> None:
        """Set the surrogate slope k in place (used by every forward from now on)."""
        with torch.no_grad():
            self.slope.fill_(_check_slope(k))

    # ---- state ------------------------------------------------------------------------------
    def init_state(self, batch: int, device=None) -> ActorState:
        """All-zero membranes for ``batch`` rows (the start of an episode)."""
        dev = device if device is not None else self.slope.device
        return ActorState(tuple(layer.init_state(batch, dev) for layer in self.lif))

    @staticmethod
    def reset_state(state: ActorState, mask) -> ActorState:
        """Zero the rows where ``mask`` [B] is True (episodes that ended); other rows keep flying."""
        out = []
        for l, s in enumerate(state.layers):
            m = torch.as_tensor(mask, device=s.membrane.device)
            if m.dtype != torch.bool or m.shape != s.membrane.shape[:1]:
                raise ValueError(f"reset mask must be bool of shape [{s.membrane.shape[0]}] (one per batch "
                                 f"row), got {m.dtype} {list(m.shape)}")
            out.append(LIFState(s.membrane.masked_fill(m[:, None], 0.0)))
        return ActorState(tuple(out))

    @staticmethod
    def detach_state(state: ActorState) -> ActorState:
        """The same state cut from the autograd graph (truncated BPTT, warm-up hand-over)."""
        return ActorState(tuple(LIFState(s.membrane.detach()) for s in state.layers))

    # ---- control: one time step -------------------------------------------------------------
    def step(self, obs, state: ActorState, validate: bool = True) -> tuple[Tensor, ActorState]:
        """One control step: ``obs`` [B, obs_dim] -> (action [B, action_dim], next state)."""
        obs = self._as_input(obs)
        if validate:
            self._check_obs(obs, (None, self.cfg.obs_dim))
            self._check_state(state, obs.shape[0])
        x, new = obs, []
        for fc, lif, s in zip(self.fc, self.lif, state.layers):
            x, s = lif.step(fc(x), s, self.slope)
            new.append(s)
        return torch.tanh(self.readout(x)), ActorState(tuple(new))

    # ---- training: a whole sequence ---------------------------------------------------------
    def forward_sequence(self, obs, state: ActorState | None = None, return_spikes: bool = False,
                         validate: bool = True, fused: bool = True):
        """``obs`` [T, B, obs_dim] -> (actions [T, B, action_dim], state after T steps)
        or, with ``return_spikes``, (actions, state, spikes) where spikes[l] is [T, B, N_l].

        ``state`` None starts from zeros. ``fused=False`` runs the step-by-step autograd reference.
        ``validate=False`` skips the shape/finite checks (the training hot loop).
        """
        obs = self._as_input(obs)
        if validate:
            self._check_obs(obs, (None, None, self.cfg.obs_dim))
        if state is None:
            state = self.init_state(obs.shape[1], obs.device)
        elif validate:
            self._check_state(state, obs.shape[1])
        x, new, spikes = obs, [], []
        for fc, lif, s in zip(self.fc, self.lif, state.layers):
            x, s = lif(fc(x), s, self.slope, fused=fused)  # fc over all T at once: one matmul
            new.append(s)
            spikes.append(x)
        actions = torch.tanh(self.readout(x))
        if return_spikes:
            return actions, ActorState(tuple(new)), spikes
        return actions, ActorState(tuple(new))

    def forward(self, obs, state: ActorState | None = None):
        """Alias of ``forward_sequence`` (obs [T, B, obs_dim])."""
        return self.forward_sequence(obs, state)

    # ---- checks -----------------------------------------------------------------------------
    def _as_input(self, obs) -> Tensor:
        if isinstance(obs, np.ndarray):
            return torch.as_tensor(obs, dtype=self.slope.dtype, device=self.slope.device)
        if not isinstance(obs, Tensor):
            raise TypeError(f"observations must be a torch tensor or numpy array, got {type(obs).__name__}")
        return obs

    def _check_obs(self, obs: Tensor, shape: tuple) -> None:
        fields = layout.OBS_FIELDS if self.cfg.obs_dim == layout.OBS_DIM else None
        check_array("observation", obs, shape, fields)

    def _check_state(self, state: ActorState, batch: int) -> None:
        if not isinstance(state, ActorState) or len(state.layers) != len(self.lif):
            raise ValueError(f"actor state must be an ActorState with {len(self.lif)} LIF layers "
                             f"(from init_state), got {type(state).__name__}")
        for l, (s, lif) in enumerate(zip(state.layers, self.lif)):
            if tuple(s.membrane.shape) != (batch, lif.size):
                raise ValueError(f"actor state layer {l} membrane has shape {list(s.membrane.shape)}, "
                                 f"expected [{batch}, {lif.size}] (batch, neurons)")

    # ---- checkpoints ------------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As nn.Module's, but a checkpoint with other layer sizes fails naming the layer and both sizes."""
        for problem in _size_mismatches(state_dict, self):
            raise ValueError(f"checkpoint does not fit this actor: {problem}")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def _size_mismatches(state_dict, actor: SpikingActor) -> list[str]:
    """Human-readable differences in layer sizes between a state_dict and ``actor``."""
    cfg = actor.cfg
    hidden = []
    while f"lif.{len(hidden)}.beta" in state_dict:
        hidden.append(int(state_dict[f"lif.{len(hidden)}.beta"].shape[0]))
    both = f"(checkpoint hidden={hidden}, config hidden={list(cfg.hidden)})"
    out = []
    if len(hidden) != len(cfg.hidden):
        out.append(f"the checkpoint has {len(hidden)} LIF layers, the config {len(cfg.hidden)} {both}")
    for l, (a, b) in enumerate(zip(hidden, cfg.hidden)):
        if a != b:
            out.append(f"LIF layer {l} has {a} neurons in the checkpoint but {b} in the config {both}")
    w0 = state_dict.get("fc.0.weight")
    if w0 is not None and w0.shape[-1] != cfg.obs_dim:
        out.append(f"input layer reads {w0.shape[-1]} observation values in the checkpoint but "
                   f"{cfg.obs_dim} in the config (obs_dim)")
    ro = state_dict.get("readout.weight")
    if ro is not None and ro.shape[0] != cfg.action_dim:
        out.append(f"readout gives {ro.shape[0]} actions in the checkpoint but {cfg.action_dim} in the "
                   f"config (action_dim)")
    own = actor.state_dict()
    for key, value in state_dict.items():
        if not out and key in own and tuple(own[key].shape) != tuple(value.shape):
            out.append(f"{key} has shape {list(value.shape)} in the checkpoint but "
                       f"{list(own[key].shape)} in the actor")
    return out


def _linear(n_in: int, n_out: int, gen: torch.Generator | None) -> nn.Linear:
    """nn.Linear with PyTorch's default init, drawn from ``gen`` when given (reproducible)."""
    lin = nn.Linear(n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=gen)
        lin.bias.uniform_(-bound, bound, generator=gen)
    return lin


def _uniform(n: int, bounds: tuple[float, float], gen: torch.Generator | None) -> Tensor:
    lo, hi = bounds
    return torch.rand(n, generator=gen) * (hi - lo) + lo


# ---- checkpoint files: config + weights ----------------------------------------------------------
def save_actor(path: str | os.PathLike, actor: SpikingActor) -> Path:
    """Write config and weights (slope included) to ``path`` atomically (tmp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    payload = {"kind": "snn_drone.SpikingActor", "config": to_dict(actor.cfg),
               "state_dict": {k: v.detach().cpu() for k, v in actor.state_dict().items()}}
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_actor(path: str | os.PathLike, cfg: SpikingActorConfig | None = None,
               map_location="cpu") -> SpikingActor:
    """Load an actor saved by ``save_actor``. With ``cfg``, the weights must fit that config (a
    layer-size mismatch names the layer and both sizes); without, the stored config is used."""
    path = find_file(path, "actor checkpoint")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or "config" not in payload:
        raise ValueError(f"{path} is not a spiking-actor checkpoint (expected keys 'config' and "
                         f"'state_dict', got {sorted(payload) if isinstance(payload, dict) else type(payload).__name__})")
    stored = from_dict(SpikingActorConfig, payload["config"], where=path.name)
    actor = SpikingActor(cfg if cfg is not None else stored)
    try:
        actor.load_state_dict(payload["state_dict"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return actor

