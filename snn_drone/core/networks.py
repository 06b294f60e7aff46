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

from . import layout
from .validation import check_array


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


@dataclass
class CriticConfig:
    """Twin Q networks on the privileged observation and the action (asymmetric actor-critic)."""

    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of each Q network."""


class TwinCritic(nn.Module):
    """Q1, Q2 : (privileged observation [.., 146], action [.., 4]) -> [..]."""

    def __init__(self, cfg: CriticConfig | None = None):
        super().__init__()
        self.cfg = cfg or CriticConfig()
        d = layout.PRIV_OBS_DIM + layout.ACTION_DIM
        self.q1 = mlp(d, self.cfg.hidden, 1)
        self.q2 = mlp(d, self.cfg.hidden, 1)

    def forward(self, priv_obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([priv_obs, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def q1_only(self, priv_obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q1(torch.cat([priv_obs, action], dim=-1)).squeeze(-1)
