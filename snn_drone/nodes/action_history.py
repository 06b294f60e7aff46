"""The action history a node keeps from the state topic alone (guide, privileged-input actors).

The sim's state message carries each drone's ``episode_step`` and ``last_action`` (the newest entry
of its action history). From these the history of the env is rebuilt exactly: at episode step 0
it is the task's initial fill (``task.initial_action_history``), afterwards the last action enters
at the newest end. Repeated steps (a resent state) are applied once.
"""
from __future__ import annotations

import torch

from snn_drone.core.env import task
from snn_drone.core.sim.params import QuadrotorParams
from snn_drone.core.env.task import TaskConfig


class LiveActionHistory:
    """The last L actions [B, L, 4] of each drone, oldest first, as the env holds them."""

    def __init__(self, num_drones: int, params: QuadrotorParams, task_cfg: TaskConfig, device="cpu"):
        self.params, self.cfg = params, task_cfg
        self.history = torch.zeros(num_drones, task_cfg.action_history_length, 4, device=device)
        self.missed_steps = 0
        """Steps of some drone's episode that were never seen (its history is wrong until its reset)."""
        self._step = None

    def update(self, step: int, state: torch.Tensor, episode_step: torch.Tensor,
               last_action: torch.Tensor) -> torch.Tensor:
        """Bring the history to control step ``step`` (the sim's stamp); returns it [B, L, 4]."""
        if step == self._step:
            return self.history
        if self._step is not None and step != self._step + 1:
            self.missed_steps += 1
        self._step = step
        new = episode_step == 0
        self.history = torch.cat([self.history[:, 1:], last_action[:, None]], dim=1)
        if bool(new.any()):
            self.history[new] = task.initial_action_history(state[new], self.params, self.cfg)
        return self.history
