"""Gymnasium environments of the hover task (numpy API), registered on import.

* ``SnnDrone/CrazyflieHover-v0``: :class:`HoverEnv`, one drone, ``backend="batched"`` (torch
  dynamics) or ``"pybullet"``; passes ``gymnasium.utils.env_checker.check_env`` with both.
* The same id vectorises through its vector entry point, :class:`HoverVectorEnv`: B drones in one
  :class:`~snn_drone.core.env.batched_env.BatchedHoverEnv`, finished drones reset individually.

Use::

    import gymnasium as gym
    import snn_drone.core.env.gym_envs  # registers the id (or: gym.make("snn_drone.core.env.gym_envs:SnnDrone/CrazyflieHover-v0"))
    env = gym.make("SnnDrone/CrazyflieHover-v0", backend="pybullet")
    vec = gym.make_vec("SnnDrone/CrazyflieHover-v0", num_envs=1024)   # HoverVectorEnv

Both take ``task_cfg`` (TaskConfig), ``preset``, ``privileged`` (observe the 18 + 4 L privileged
observation instead of the 18), ``progress`` (curriculum; default 1.0 = end-of-curriculum
coefficients, our results convention) and ``device``. Training code that wants torch tensors uses
BatchedHoverEnv directly.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .batched_env import Backend, BatchedHoverEnv
from ..sim.dynamics import ACTION_FIELDS
from ..common.layout import ACTION_DIM, OBS_DIM
from ..sim.params import QuadrotorParams
from .task import TaskConfig, load_task_config
from ..common.validation import check_array

ENV_ID = "SnnDrone/CrazyflieHover-v0"


def _spaces(cfg: TaskConfig, privileged: bool) -> tuple[spaces.Box, spaces.Box]:
    dim = cfg.privileged_obs_dim if privileged else OBS_DIM
    obs = spaces.Box(-np.inf, np.inf, (dim,), np.float32)
    act = spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
    return obs, act


class HoverEnv(gym.Env):
    """One Crazyflie hovering at the task's target (gymnasium API, float32 numpy).

    ``reset(seed=..., options={"state": s})`` may start from a given state [17]. ``step`` returns
    ``info`` with ``state`` [17] (the state reached), ``episode_return``, ``episode_length`` and
    ``nonfinite``. After ``terminated`` or ``truncated`` call ``reset``. There are no gymnasium
    render modes: ``gui=True`` (pybullet backend) opens the pybullet GUI, which draws itself.
    """

    metadata = {"render_modes": [], "render_fps": 100}

    def __init__(self, backend: Backend = "batched", task_cfg: TaskConfig | None = None,
                 preset: str | QuadrotorParams = "cf21_paper", privileged: bool = False,
                 progress: float = 1.0, device="cpu", gui: bool = False, render_mode: None = None):
        if render_mode is not None:
            raise ValueError(f"render_mode = {render_mode!r}: no render modes; use gui=True with "
                             f"backend='pybullet'")
        if gui and backend != "pybullet":
            raise ValueError(f"gui=True needs backend='pybullet', got backend={backend!r}")
        self.render_mode = None
        self.privileged = bool(privileged)
        cfg = task_cfg if task_cfg is not None else load_task_config()
        self._env = BatchedHoverEnv(1, cfg, preset, device=device, seed=0, progress=progress,
                                    autoreset=False, backend=backend, gui=gui)
        self.observation_space, self.action_space = _spaces(cfg, self.privileged)

    def _observe(self) -> np.ndarray:
        o = self._env.privileged_obs() if self.privileged else self._env.obs()
        return o[0].detach().cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        state = None if not options or options.get("state") is None \
            else np.asarray(options["state"], dtype=np.float64).reshape(1, -1)
        # the torch generator follows gymnasium's np_random, so seeded resets are reproducible
        self._env.reset(seed=int(self.np_random.integers(2 ** 62)), state=state)
        return self._observe(), {}

    def step(self, action):
        action = action if hasattr(action, "shape") else np.asarray(action, dtype=np.float32)
        check_array("action", action, (ACTION_DIM,), ACTION_FIELDS)
        _, rew, term, trunc, info = self._env.step(np.asarray(action, dtype=np.float32).reshape(1, ACTION_DIM))
        obs = self._observe()
        out = {"state": info["next_state"][0].cpu().numpy(),
               "episode_return": float(info["episode_return"][0]),
               "episode_length": int(info["episode_length"][0]),
               "nonfinite": bool(info["nonfinite"][0])}
        return obs, float(rew[0]), bool(term[0]), bool(trunc[0]), out

    def set_progress(self, progress: float) -> None:
        """Curriculum progress in [0, 1] (reward coefficients, task.curriculum)."""
        self._env.set_progress(progress)

    def close(self):
        self._env.close()


class HoverVectorEnv(VectorEnv):
    """B Crazyflies in one batched env (gymnasium VectorEnv, numpy), same-step autoreset.

    ``step`` returns the observations to act on next (a finished drone's is already that of its
    new episode), rewards (float32), terminations, truncations and an info dict of arrays, each
    with a boolean mask ``_key`` of the drones it concerns: ``final_obs`` [B, D] (the observation
    the finished drones reached; rows valid where ``_final_obs``), ``episode_return`` and
    ``episode_length`` of the finished episodes. Works with ``backend="pybullet"`` too (slow).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 64, backend: Backend = "batched",
                 task_cfg: TaskConfig | None = None, preset: str | QuadrotorParams = "cf21_paper",
                 privileged: bool = False, progress: float = 1.0, device="cpu", seed: int | None = None):
        cfg = task_cfg if task_cfg is not None else load_task_config()
        self.env = BatchedHoverEnv(num_envs, cfg, preset, device=device, seed=seed, progress=progress,
                                   autoreset=True, backend=backend)
        self.num_envs = int(num_envs)
        self.privileged = bool(privileged)
        self.single_observation_space, self.single_action_space = _spaces(cfg, self.privileged)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def _observe(self) -> np.ndarray:
        o = self.env.privileged_obs() if self.privileged else self.env.obs()
        return o.detach().cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.env.reset(seed=seed)
        return self._observe(), {}

    def step(self, actions):
        _, rew, term, trunc, info = self.env.step(np.asarray(actions, dtype=np.float32))
        done = info["done"].cpu().numpy()
        final = info["next_privileged_obs"] if self.privileged else info["next_obs"]
        out = {"final_obs": final.cpu().numpy().astype(np.float32), "_final_obs": done,
               "episode_return": info["episode_return"].cpu().numpy(), "_episode_return": done,
               "episode_length": info["episode_length"].cpu().numpy(), "_episode_length": done}
        return (self._observe(), rew.cpu().numpy(), term.cpu().numpy(), trunc.cpu().numpy(), out)

    def set_progress(self, progress: float) -> None:
        """Curriculum progress in [0, 1] (reward coefficients, task.curriculum)."""
        self.env.set_progress(progress)

    def close_extras(self, **kwargs):
        self.env.close()


def register_envs() -> None:
    """Register ``SnnDrone/CrazyflieHover-v0`` (single env and vector entry point); idempotent."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=f"{__name__}:HoverEnv",
                     vector_entry_point=f"{__name__}:HoverVectorEnv")


register_envs()
