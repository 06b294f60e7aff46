"""Jump-start RL: who flies each step (the guide, then the SNN) and how the hand-over moves.

The guide pi_ctrl flies the first ``guide_steps`` steps of every episode while the SNN runs on the
same states to warm its hidden state; from then on the SNN flies, with Gaussian exploration noise
during training. ``guide_steps`` shrinks in stages until the guide covers only the warm-up
(PAPER.md, Algorithm 1; the public code: max(50, 500 - i) for i = 50, 75, ..., 975, 50 epochs each).
At deployment the guide flies the warm-up only.
"""
from __future__ import annotations

from dataclasses import dataclass

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

    def guide_steps(self, epoch: int) -> int:
        """Steps the guide flies in epoch ``epoch``: max(warm-up, episode - N), N = N_0 + stage * increment."""
        stage = epoch // max(1, self.epochs_per_stage)
        snn = self.snn_steps_start + stage * self.snn_steps_increment
        return max(self.warmup, self.episode_steps - snn)

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
