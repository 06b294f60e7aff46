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

Domain randomisation (``task_cfg.randomisation``, randomisation.DomainRandomisation; off by default, and
then nothing below happens and no random number is drawn for it): at every episode start each
drone draws its mass, thrust-curve factor, motor time constants, inertia and control delay
(:attr:`drone_params`) from a second generator seeded from ``seed`` (so the initial states are
the same with and without randomisation). With a delay of k steps the physics applies the action
commanded k steps before (``info["applied_action"]``); the history, the reward and the returned
actions are the commanded ones. Observation noise is drawn every step and added to ``obs`` (what
the actor reads) only: :meth:`privileged_obs` and ``info["next_privileged_obs"]`` (critic, guide),
the reward, the termination and ``info["next_state"]`` are true.

Bad actions (wrong shape, NaN/inf) raise ValueError naming ``action``. Actions outside [-1, 1]
are clipped (as the dynamics and l2f clip them); the clipped action is what the history holds and
the reward scores.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from . import randomisation, task
from ..sim.dynamics import ACTION_FIELDS, QuadrotorDynamics
from ..common.layout import ACTION_DIM, OBS_DIM, STATE_DIM, STATE_FIELDS
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
        backend: "batched" (torch dynamics) or "pybullet" (pybullet world, CPU; no randomised
            physics, which needs per-drone constants).
        gui: pybullet GUI (pybullet backend only).
    """

    DR_SEED_OFFSET = 0x5EED_0D0E
    """The randomisation generator's seed is the env's seed plus this (a stream of its own)."""

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
        self.dr = self.cfg.randomisation
        if backend == "pybullet" and self.dr.physics:
            raise ValueError("randomised physics (randomisation.mass_rel, thrust_rel, motor_time_constant_rel, "
                             "inertia_rel) needs backend 'batched'")
        self.generator = torch.Generator(device=self.device)
        self.dr_generator = torch.Generator(device=self.device) if self.dr.enabled else None
        """Draws the randomised parameters and the observation noise (None when randomisation is off)."""
        self._seed(seed)
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
        self.drone_params: dict[str, torch.Tensor] | None = None
        """This episode's randomised constants per drone (randomisation.sample_drone_parameters), or None."""
        self._dr_draws = self.dr.physics or self.dr.delay
        self._delay_max = self.dr.control_delay_steps_max
        # commanded actions of the last delay_max + 1 steps, newest first (delay only)
        self._pending = torch.zeros(b, self._delay_max + 1, ACTION_DIM, **kw) if self.dr.delay else None
        self._obs_noise = torch.zeros(b, OBS_DIM, **kw) if self.dr.obs_noise else None
        self._arange = torch.arange(b, device=self.device)
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
        """Current observations [B, 18], as the actor reads them (with this step's observation
        noise when the task randomises it)."""
        o = task.observation(self.state, self.target)
        return o if self._obs_noise is None else o + self._obs_noise

    def privileged_obs(self) -> torch.Tensor:
        """Current privileged observations [B, 18 + 4 L] (true observation + action history)."""
        return task.privileged_observation(task.observation(self.state, self.target), self._history_view())

    # ---- domain randomisation -----------------------------------------------------------------
    def _seed(self, seed: int | None) -> None:
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        if self.dr_generator is not None:
            if seed is None:
                self.dr_generator.seed()
            else:
                self.dr_generator.manual_seed(int(seed) + self.DR_SEED_OFFSET)

    def _randomise(self, rows) -> None:
        """New randomised constants for the drones ``rows`` (a slice or a long tensor)."""
        n = self.num_drones if isinstance(rows, slice) else rows.numel()
        new = randomisation.sample_drone_parameters(n, self.dr_generator, self.params, self.dr)
        if self.drone_params is None or isinstance(rows, slice):
            self.drone_params = new
        else:
            for k, v in new.items():
                self.drone_params[k][rows] = v
        if self.dr.physics:
            d = self.drone_params
            self._dynamics.set_drone_parameters(d["mass_kg"], d["inertia_kgm2"], d["thrust_scale"],
                                                d["motor_time_constant_rising_s"],
                                                d["motor_time_constant_falling_s"])

    def _draw_obs_noise(self) -> None:
        if self._obs_noise is not None:
            self._obs_noise = randomisation.observation_noise(self._obs_noise.shape, self.dr_generator, self.dr, self.dtype)

    def _delayed(self, action: torch.Tensor) -> torch.Tensor:
        """The action the physics applies: the one commanded ``control_delay_steps`` steps ago."""
        if self._pending is None:
            return action
        self._pending = torch.cat((action.unsqueeze(1), self._pending[:, :-1]), dim=1)
        return self._pending[self._arange, self.drone_params["control_delay_steps"]]

    # ---- episodes -----------------------------------------------------------------------------
    def reset(self, seed: int | None = None, state=None) -> torch.Tensor:
        """Start a new episode for every drone, from ``state`` [B, 17] if given, else sampled from
        the task's initial-state distribution (after reseeding with ``seed`` if given). Returns
        the observations [B, 18]."""
        if seed is not None:
            self._seed(seed)
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
        if self._dr_draws:
            self._randomise(slice(None))
        if self._pending is not None:
            self._pending[:] = self._history2[:, :1]  # the fill: the actions commanding the rotor speeds
        self._draw_obs_noise()
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
        if self._dr_draws:
            self._randomise(rows)
        if self._pending is not None:
            self._pending[rows] = self._history2[rows, :1]
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
        applied = self._delayed(a)
        nxt = self._physics(applied)
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
        self._draw_obs_noise()
        true_next_obs = task.observation(nxt, self.target)
        next_obs = true_next_obs if self._obs_noise is None else true_next_obs + self._obs_noise
        info = {
            "next_obs": next_obs,
            "next_privileged_obs": task.privileged_observation(true_next_obs, self._history_view()),
            "next_state": nxt.clone(),
            "done": done,
            "nonfinite": nonfinite,
            "episode_return": self.episode_return.clone(),
            "episode_length": self.steps.clone(),
            "applied_action": applied,
        }
        obs = next_obs
        if self.autoreset and bool(done.any()):
            rows = done.nonzero().squeeze(1)
            self._reset_rows(rows)
            obs = next_obs.clone()
            obs[rows] = task.observation(self.state[rows], self.target)
            if self._obs_noise is not None:
                obs[rows] += self._obs_noise[rows]
        return obs, rew, term, trunc, info

    def close(self) -> None:
        if self._world is not None:
            self._world.close()
            self._world = None
