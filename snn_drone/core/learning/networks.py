"""The ANN networks: the privileged guide policy, the ANN actor baselines and the twin critics.

The spiking actor lives in ``spiking_actor.py``. Every actor here offers the same sequence
interface as the SNN (``init_state``, ``step``, ``forward_sequence`` over [T, B, D]) so the learner,
the rollouts and the nodes treat them alike; an MLP simply carries no state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..common import layout
from ..common.validation import check_array


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, activation=nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), activation()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def init_output_layer(layer: nn.Linear, initial_action: float, weight_scale: float = 0.01) -> None:
    """Make a tanh readout start near ``initial_action``: weights scaled down, bias atanh(action)."""
    if not -1.0 < initial_action < 1.0:
        raise ValueError(f"initial_action must be inside (-1, 1), got {initial_action}")
    with torch.no_grad():
        layer.weight.mul_(weight_scale)
        layer.bias.fill_(math.atanh(initial_action))


@dataclass
class MLPPolicyConfig:
    """A tanh-squashed MLP policy: the privileged guide (input 'privileged', 146 values) or the ANN
    actor baselines (input 'observation', 18 values: no action history)."""

    inputs: Literal["privileged", "observation"] = "privileged"
    """Which observation the policy reads: the 18-value observation or the 146-value privileged one."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths (the paper's guide: 146 -> 64 -> 64 -> 4)."""

    @property
    def in_dim(self) -> int:
        return layout.PRIV_OBS_DIM if self.inputs == "privileged" else layout.OBS_DIM


class MLPPolicy(nn.Module):
    """Stateless tanh MLP policy with the actors' sequence interface."""

    def __init__(self, cfg: MLPPolicyConfig | None = None):
        super().__init__()
        self.cfg = cfg or MLPPolicyConfig()
        self.net = mlp(self.cfg.in_dim, self.cfg.hidden, layout.ACTION_DIM)

    @property
    def inputs(self) -> str:
        return self.cfg.inputs

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))

    def init_state(self, batch: int, device=None):
        return None

    def reset_state(self, state, mask):
        return None

    def step(self, obs: torch.Tensor, state=None, validate: bool = True):
        if validate:
            check_array("obs", obs, (None, self.cfg.in_dim))
        return self.forward(obs), None

    def forward_sequence(self, obs: torch.Tensor, state=None):
        return self.forward(obs), None


CRITIC_MATMUL_DTYPES = ("float32", "bfloat16")


@dataclass
class CriticConfig:
    """Twin Q networks on the privileged observation and the action (asymmetric actor-critic)."""

    hidden: tuple[int, ...] = (256, 128)
    """Hidden layer widths of each Q network (PAPER.md Table 6: the paper's code builds both critics
    with the actor's hidden sizes, 146 + 4 -> 256 -> 128 -> 1)."""
    fused: bool = False
    """Compute Q1 and Q2 in one pass of batched matmuls over weights stacked from ``q1``/``q2`` on each call."""
    matmul_dtype: Literal["float32", "bfloat16"] = "float32"
    """dtype of the hidden layers' matmuls; the last Linear (hidden -> 1) and the Q values stay float32."""

    def __post_init__(self):
        hidden = self.hidden
        if (not isinstance(hidden, (tuple, list)) or not hidden
                or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden)):
            raise ValueError(f"CriticConfig.hidden = {hidden!r}, expected a non-empty tuple of positive ints")
        self.hidden = tuple(hidden)
        if not isinstance(self.fused, bool):
            raise ValueError(f"CriticConfig.fused = {self.fused!r}, expected True or False")
        if self.matmul_dtype not in CRITIC_MATMUL_DTYPES:
            raise ValueError(f"CriticConfig.matmul_dtype = {self.matmul_dtype!r}, expected one of {CRITIC_MATMUL_DTYPES}")


def _linears(net: nn.Sequential) -> list[nn.Linear]:
    return [m for m in net if isinstance(m, nn.Linear)]


class TwinCritic(nn.Module):
    """Q1, Q2 : (privileged observation [.., 146], action [.., 4]) -> [..].

    The parameters are always the two ``nn.Sequential`` MLPs ``q1`` and ``q2`` (Linear, ReLU, ...,
    Linear). ``cfg.fused`` only changes how ``forward`` computes them: one ``baddbmm`` per layer on
    the two nets' weights stacked on the fly (autograd routes the gradients back to ``q1``/``q2``).
    ``cfg.matmul_dtype = "bfloat16"`` casts the hidden layers' inputs and weights to bfloat16 (the
    gradients reach the float32 parameters through the casts) and runs the last Linear in float32,
    so Q (~100 in magnitude) keeps float32 resolution. bfloat16 only pays on CPUs with native bf16
    matmuls (avx512_bf16 / AMX); without them it is several times slower than float32.
    """

    def __init__(self, cfg: CriticConfig | None = None):
        super().__init__()
        self.cfg = cfg or CriticConfig()
        d = layout.PRIV_OBS_DIM + layout.ACTION_DIM
        self.q1 = mlp(d, self.cfg.hidden, 1)
        self.q2 = mlp(d, self.cfg.hidden, 1)

    def forward(self, priv_obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([priv_obs, action], dim=-1)
        if self.cfg.fused:
            return self._fused(x)
        return self._single(self.q1, x), self._single(self.q2, x)

    def q1_only(self, priv_obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self._single(self.q1, torch.cat([priv_obs, action], dim=-1))

    def _single(self, net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.matmul_dtype == "float32":
            return net(x).squeeze(-1)
        layers = _linears(net)
        h = x.to(torch.bfloat16)
        for layer in layers[:-1]:
            h = torch.relu(nn.functional.linear(h, layer.weight.to(torch.bfloat16), layer.bias.to(torch.bfloat16)))
        return nn.functional.linear(h.float(), layers[-1].weight, layers[-1].bias).squeeze(-1)

    def _fused(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = x.shape[:-1]
        half = self.cfg.matmul_dtype == "bfloat16"
        h = x.reshape(1, -1, x.shape[-1])
        h = (h.to(torch.bfloat16) if half else h).expand(2, -1, -1)          # [2, N, D], no copy
        pairs = list(zip(_linears(self.q1), _linears(self.q2)))
        for i, (a, b) in enumerate(pairs):
            last = i == len(pairs) - 1
            w = torch.stack([a.weight, b.weight]).transpose(1, 2)              # [2, in, out]
            bias = torch.stack([a.bias, b.bias]).unsqueeze(1)                  # [2, 1, out]
            if half and not last:
                w, bias = w.to(torch.bfloat16), bias.to(torch.bfloat16)
            elif half:
                h = h.float()
            h = torch.baddbmm(bias, h, w)
            if not last:
                h = torch.relu(h)
        q = h.reshape(2, *lead)
        return q[0], q[1]
