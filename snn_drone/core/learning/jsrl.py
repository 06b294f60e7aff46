"""Jump-start RL: who flies each step (the guide, then the SNN) and how the hand-over moves.

The guide pi_ctrl flies the first ``guide_steps`` steps of every episode while the SNN runs on the
same states to warm its hidden state; from then on the SNN flies, with Gaussian exploration noise
during training. ``guide_steps`` shrinks in stages until the guide covers only the warm-up
(PAPER.md, Algorithm 1; the public code: max(50, 500 - i) for i = 50, 75, ..., 975, 50 epochs each).
At deployment the guide flies the warm-up only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass
class HorizonConfig:
    """Hand-over schedule from the guide to the SNN."""

    episode_steps: int = 500
    """Steps per episode."""
    warmup: int = 50
    """The guide always flies at least this many steps (the SNN's warm-up)."""
    snn_steps_start: int = 50
    """Steps the SNN flies at the end of each episode in the first stage (N_0)."""
    snn_steps_increment: int = 25
    """N grows by this many steps per stage."""
    epochs_per_stage: int = 50
    """Epochs before the SNN's share grows (the public code: 50)."""
    exploration_noise: float = 0.1
    """Std of the Gaussian noise added to the SNN's actions during training rollouts (clipped to [-1, 1])."""
    advance: Literal["schedule", "on_eval"] = "schedule"
    """schedule: one stage every ``epochs_per_stage`` epochs (the paper). on_eval: as in the original
    JSRL, a stage ends only if the latest evaluation scored at least ``hold_fraction`` of the best one
    so far; otherwise the guide keeps its share for another ``epochs_per_stage`` epochs."""
    hold_fraction: float = 0.9
    """on_eval: the share of the best evaluation return the latest one must reach to hand over more."""

    def __post_init__(self):
        if self.advance not in ("schedule", "on_eval"):
            raise ValueError(f"horizon.advance = {self.advance!r}; expected 'schedule' or 'on_eval'")

    def guide_steps(self, epoch: int) -> int:
        """Steps the guide flies in epoch ``epoch`` of the fixed schedule (stage = epoch // epochs_per_stage)."""
        return self.guide_steps_at_stage(epoch // max(1, self.epochs_per_stage))

    def guide_steps_at_stage(self, stage: int) -> int:
        """max(warm-up, episode - N) with N = N_0 + stage * increment."""
        snn = self.snn_steps_start + stage * self.snn_steps_increment
        return max(self.warmup, self.episode_steps - snn)

    def should_advance(self, last_return: float | None, best_return: float) -> bool:
        """on_eval: hand over more when the latest evaluation holds ``hold_fraction`` of the best
        (returns may be negative early on: the test is last >= best - (1 - hold) |best|)."""
        if self.advance == "schedule" or last_return is None:
            return True
        return last_return >= best_return - (1.0 - self.hold_fraction) * abs(best_return)

    @property
    def final_epoch(self) -> int:
        """First epoch at which the guide covers only the warm-up."""
        need = self.episode_steps - self.warmup - self.snn_steps_start
        stages = max(0, -(-need // max(1, self.snn_steps_increment)))
        return stages * self.epochs_per_stage


def jump_start_action(episode_step: torch.Tensor, guide_steps: int | torch.Tensor,
                      guide_action: torch.Tensor, actor_action: torch.Tensor,
                      noise_std: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The executed action of each drone: the guide's while ``episode_step < guide_steps``, else the
    actor's plus N(0, noise_std) noise, clipped to [-1, 1]. ``episode_step`` is [B] (0 at reset)."""
    if noise_std > 0:
        noise = torch.randn(actor_action.shape, generator=generator, device="cpu").to(actor_action)
        actor_action = (actor_action + noise_std * noise).clamp(-1.0, 1.0)
    guided = (episode_step < guide_steps)[..., None]
    return torch.where(guided, guide_action, actor_action)
