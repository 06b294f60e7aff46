"""The batched hover environment in torch: B drones, per-drone autoreset. The training workhorse.

:class:`BatchedHoverEnv` runs the task of task.py on the batched dynamics (``backend="batched"``,
any device, no Python loop over drones) or on the pybullet world (``backend="pybullet"``, CPU,
mainly for the single-drone gymnasium env). Everything it returns is a tensor on ``device``.

``step(action)`` returns ``(obs, reward, terminated, truncated, info)``:

* ``obs`` [B, 18]: the observation to act on next. For a drone whose episode ended in this step
  (``info["done"]``) it is already the first observation of its new episode (autoreset); the other
  drones fly on untouched.
* ``reward`` [B]: Eq. 8 on the state the action led to, with the current curriculum coefficients.
* ``terminated`` [B] bool: crash (task.terminated). ``truncated`` [B] bool: the episode reached
  ``episode_steps`` without crashing.
* ``info`` (all [B] or [B, ...] tensors, rows meaningful for every drone):
  ``next_obs`` [B, 18], ``next_privileged_obs`` [B, 18 + 4 L] and ``next_state`` [B, 17]: the
  state this step reached, before any reset: the s' of each transition (for drones that did not
  finish, equal to the returned obs / the new ``privileged_obs()`` / ``state``);
  ``done`` = terminated | truncated; ``episode_return`` [B] and ``episode_length`` [B] (long):
  the running sums including this step, i.e. for done drones those of the finished episode;
  ``nonfinite`` [B] bool: the physics produced NaN/inf for this drone.

NaN handling: a drone whose physics step yields a non-finite value ends its episode as a crash
(terminated, ``info["nonfinite"]``); its reported next state is its last finite state (the state
before the step, non-finite entries zeroed), so every reward and observation the env emits is
finite and a learner that recomputes rewards from ``next_state`` gets the same numbers. The
drone is then reset like any other; the rest of the batch never sees the NaN (all operations
are per drone).

Bad actions (wrong shape, NaN/inf) raise ValueError naming ``action``. Actions outside [-1, 1]
are clipped (as the dynamics and l2f clip them); the clipped action is what the history holds and
the reward scores.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from . import task
from ..sim.dynamics import ACTION_FIELDS, QuadrotorDynamics
from ..common.layout import ACTION_DIM, STATE_DIM, STATE_FIELDS
from ..sim.params import QuadrotorParams, load_preset
from ..common.validation import check_array

Backend = Literal["batched", "pybullet"]


class BatchedHoverEnv:
    """B Crazyflies hovering at the task's target; see the module docstring for the step API.

    Args:
        num_drones: B.
        task_cfg: the task constants (default: config/task.yaml).
        preset: a preset name (config/presets) or QuadrotorParams.
        device, dtype: where and in which precision the tensors live (pybullet: CPU numbers).
        seed: seeds the env's own torch.Generator (initial states); None: random.
        progress: curriculum progress in [0, 1] for the reward coefficients. The default 1.0 scores
            with the end-of-curriculum coefficients (our results convention); a trainer calls
            :meth:`set_progress`.
        autoreset: reset finished drones inside ``step`` (default). Without it a finished drone
            flies on until the caller calls :meth:`reset`.
        backend: "batched" (torch dynamics) or "pybullet" (pybullet world, CPU).
        gui: pybullet GUI (pybullet backend only).
    """

    def __init__(self, num_drones: int, task_cfg: task.TaskConfig | None = None,
                 preset: str | QuadrotorParams = "cf21_paper", device="cpu", seed: int | None = None,
                 dtype=torch.float32, progress: float = 1.0, autoreset: bool = True,
                 backend: Backend = "batched", gui: bool = False):
        if int(num_drones) < 1:
            raise ValueError(f"num_drones = {num_drones!r}, expected at least 1")
        if backend not in ("batched", "pybullet"):
            raise ValueError(f"backend = {backend!r}, expected 'batched' or 'pybullet'")
        self.num_drones = int(num_drones)
        self.cfg = task_cfg if task_cfg is not None else task.load_task_config()
        self.params = preset if isinstance(preset, QuadrotorParams) else load_preset(preset)
        self.device = torch.device(device)
        self.dtype = dtype
        self.autoreset = bool(autoreset)
        self.backend = backend
        self.generator = torch.Generator(device=self.device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.target = torch.tensor(self.cfg.target_position_m, device=self.device, dtype=dtype)
        self._dynamics = QuadrotorDynamics(self.params, device=self.device, dtype=dtype)
        self._world = None
        if backend == "pybullet":
            from ..sim.pybullet_world import PybulletWorld  # pybullet only when asked for
            self._world = PybulletWorld(self.params, self.num_drones, gui=gui, ground=True)
        b, L = self.num_drones, self.cfg.action_history_length
        kw = dict(device=self.device, dtype=dtype)
        self.state = torch.zeros(b, STATE_DIM, **kw)
        """Live states [B, 17] of the drones (layout.py); tests may edit it in place."""
        # action history: a ring buffer written twice (at k and k + L) so that the last L actions,
        # oldest first, are always the contiguous window [_head, _head + L) without copying
        self._history2 = torch.zeros(b, 2 * L, ACTION_DIM, **kw)
        self._head = 0
        self.steps = torch.zeros(b, dtype=torch.long, device=self.device)
        """Steps taken in each drone's current episode."""
        self.episode_return = torch.zeros(b, **kw)
        """Sum of rewards of each drone's current episode."""
        self.set_progress(progress)
        self.reset()

    # ---- curriculum ---------------------------------------------------------------------------
    def set_progress(self, progress: float) -> None:
        """Training progress in [0, 1]; sets the reward coefficients (task.curriculum)."""
        self.coeffs = task.curriculum(progress, self.cfg)
        self.progress = float(progress)

    # ---- observations -------------------------------------------------------------------------
    def _history_view(self) -> torch.Tensor:
        return self._history2[:, self._head:self._head + self.cfg.action_history_length]

    @property
    def action_history(self) -> torch.Tensor:
        """The last L actions [B, L, 4], oldest first (a copy)."""
        return self._history_view().clone()

    def _fill_history(self, rows, state: torch.Tensor) -> None:
        self._history2[rows] = task.initial_action_history(state, self.params, self.cfg).repeat(1, 2, 1)

    def obs(self) -> torch.Tensor:
        """Current observations [B, 18]."""
        return task.observation(self.state, self.target)

    def privileged_obs(self) -> torch.Tensor:
        """Current privileged observations [B, 18 + 4 L] (observation + action history)."""
        return task.privileged_observation(self.obs(), self._history_view())

    # ---- episodes -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None, state=None) -> torch.Tensor:
        """Start a new episode for every drone, from ``state`` [B, 17] if given, else sampled from
        the task's initial-state distribution (after reseeding with ``seed`` if given). Returns
        the observations [B, 18]."""
        if seed is not None:
            self.generator.manual_seed(int(seed))
        if state is None:
            new = task.sample_initial_state(self.num_drones, self.generator, self.params, self.cfg, self.dtype)
        else:
            check_array("state", state, (self.num_drones, STATE_DIM), STATE_FIELDS)
            new = torch.as_tensor(state).to(device=self.device, dtype=self.dtype)
        self.state = new.clone()
        self._head = 0
        self._fill_history(slice(None), self.state)
        self.steps.zero_()
        self.episode_return.zero_()
        if self._world is not None:
            self._world.reset(self.state.double().cpu().numpy())
        return self.obs()

    def _reset_rows(self, rows: torch.Tensor) -> None:
        """Autoreset: new initial states for the drones ``rows`` (1-D long tensor) only."""
        new = task.sample_initial_state(rows.numel(), self.generator, self.params, self.cfg, self.dtype)
        self.state[rows] = new
        self._fill_history(rows, new)
        self.steps[rows] = 0
        self.episode_return[rows] = 0.0
        if self._world is not None:  # the world resets all drones; the others get their own state
            self._world.reset(self.state.double().cpu().numpy())

    def _check_action(self, action) -> torch.Tensor:
        if not isinstance(action, torch.Tensor):
            action = torch.as_tensor(np.asarray(action))
        if tuple(action.shape) != (self.num_drones, ACTION_DIM) or not bool(torch.isfinite(action).all()):
            check_array("action", action, (self.num_drones, ACTION_DIM), ACTION_FIELDS)
        return action.to(device=self.device, dtype=self.dtype).clamp(-1.0, 1.0)

    def _physics(self, action: torch.Tensor) -> torch.Tensor:
        if self._world is None:
            return self._dynamics.step(self.state, action, validate=False)
        nxt = self._world.step(action.double().cpu().numpy())
        return torch.from_numpy(nxt).to(device=self.device, dtype=self.dtype)

    def step(self, action):
        """Advance every drone one control step under ``action`` [B, 4] in [-1, 1]; returns
        ``(obs, reward, terminated, truncated, info)`` as the module docstring describes."""
        a = self._check_action(action)
        nxt = self._physics(a)
        nonfinite = ~torch.isfinite(nxt).all(1)
        if bool(nonfinite.any()):
            last = torch.nan_to_num(self.state, nan=0.0, posinf=0.0, neginf=0.0)
            nxt = torch.where(nonfinite.unsqueeze(1), last, nxt)
        rew = task.reward(nxt, a, self.target, self.coeffs, self.cfg.orientation_cost)
        term = task.terminated(nxt, self.target, self.cfg) | nonfinite
        # the action enters the history: overwrite the oldest entry (in both copies)
        L = self.cfg.action_history_length
        self._history2[:, self._head] = a
        self._history2[:, self._head + L] = a
        self._head = (self._head + 1) % L
        self.state = nxt
        self.steps += 1
        self.episode_return += rew
        trunc = (self.steps >= self.cfg.episode_steps) & ~term
        done = term | trunc
        next_obs = self.obs()
        info = {
            "next_obs": next_obs,
            "next_privileged_obs": task.privileged_observation(next_obs, self._history_view()),
            "next_state": nxt.clone(),
            "done": done,
            "nonfinite": nonfinite,
            "episode_return": self.episode_return.clone(),
            "episode_length": self.steps.clone(),
        }
        obs = next_obs
        if self.autoreset and bool(done.any()):
            rows = done.nonzero().squeeze(1)
            self._reset_rows(rows)
            obs = next_obs.clone()
            obs[rows] = task.observation(self.state[rows], self.target)
        return obs, rew, term, trunc, info

    def close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None
