"""Delay compensation: the state a command will meet, predicted with the model's own dynamics.

A policy that acts on a state sampled k control steps before its command reaches the motors flies
with a k-step control delay; the paper's SNNs fall at 1-2 steps (docs/RESULTS.md). The commands
the motors apply in those k steps are already known: they are the k sent last. Advancing the
measured state through them (RK4, the preset's dynamics) gives the state at the moment the new
command takes effect; the policy acts on that instead, and sees (up to the model's error) the
undelayed task it was trained on. This is a Smith predictor with the simulator as the model.

- :func:`advance`: batched, torch; ``rollout.evaluate(predict_steps=k)`` / ``snn-drone eval
  --predict K`` score it in simulation against a control delay of the env's.
- :class:`PendingCommands`: one drone, numpy; the crazyflie_bridge keeps the commands it streamed
  and publishes the predicted state (``predict_steps``).
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch

from ..common.layout import ACTION_DIM, ROTOR, STATE_DIM
from ..common.validation import check_array
from .dynamics import QuadrotorDynamics
from .params import QuadrotorParams


def advance(dynamics: QuadrotorDynamics, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """States [B, 17] advanced through ``actions`` [B, k, 4] (oldest first), one control step each."""
    s = state.to(device=dynamics.device, dtype=dynamics.dtype)
    a = actions.to(device=dynamics.device, dtype=dynamics.dtype).clamp(-1.0, 1.0)
    for i in range(a.shape[1]):
        s = dynamics.step(s, a[:, i].contiguous(), validate=False)
    return s


class PendingCommands:
    """The last ``steps`` commands streamed to one drone, and the state they lead it to.

    The rotor speeds a Crazyflie cannot measure are the model's: :meth:`sent` records the speed
    each command started from, so a prediction starts from the rotor speeds of the sampled moment
    (``steps`` commands before the newest), not from the end of the stream."""

    def __init__(self, params: QuadrotorParams, steps: int):
        if steps < 0:
            raise ValueError(f"predict_steps = {steps}, expected >= 0 control steps")
        self.steps = int(steps)
        self.dynamics = QuadrotorDynamics(params, dtype=torch.float64)
        self._sent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=max(self.steps, 1))

    def reset(self) -> None:
        """A new stream: nothing sent yet (the first states are predicted through fewer commands)."""
        self._sent.clear()

    def sent(self, action, rotor_speed_before) -> None:
        """The bridge streamed ``action`` [4] while the rotors turned at ``rotor_speed_before`` [4]."""
        a, w = np.asarray(action, dtype=np.float64), np.asarray(rotor_speed_before, dtype=np.float64)
        check_array("action", a, (ACTION_DIM,))
        check_array("rotor_speed_before", w, (4,))
        if self.steps:
            self._sent.append((a.copy(), w.copy()))

    @property
    def pending(self) -> int:
        """How many commands the next prediction advances through (``steps`` once the stream has run)."""
        return len(self._sent) if self.steps else 0

    def predict(self, state) -> np.ndarray:
        """The measured ``state`` [17] advanced through the pending commands (a copy if none)."""
        s = np.asarray(state, dtype=np.float64).copy()
        check_array("state", s, (STATE_DIM,))
        if not self.pending:
            return s
        s[ROTOR] = self._sent[0][1]
        actions = torch.from_numpy(np.stack([a for a, _ in self._sent]))[None]
        return advance(self.dynamics, torch.from_numpy(s)[None], actions)[0].numpy()
