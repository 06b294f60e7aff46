"""The hover task of the paper (PAPER.md "Environment"): observation, privileged observation,
reward (Eq. 8) with its curriculum (Table 5), termination and the initial-state distribution.

Pure batched torch functions on the state layout of layout.py; they run on any device and never
step the physics. Every constant lives in :class:`TaskConfig`, whose defaults config/task.yaml
repeats (a test checks that they agree).

Sources of the choices (the public code is SpikingCrazyflie ``l2f_gym.py``; l2f is the paper-era
Learning-to-Fly simulator, ``multirotor`` in rl-tools / arplaboratory ``learning-to-fly``):

* Initial states follow l2f ``init_90_deg`` and l2f's ``sample_initial_state``: with probability
  ``init_guidance_probability`` (0.1) a drone starts exactly at the target and level, otherwise
  its position error is uniform per axis in [-0.2, 0.2] m and its orientation is uniform over
  all rotations whose angle is at most 90 deg (l2f draws a uniform random quaternion, Shoemake's
  method, and rejects it until 2 acos(w) <= max angle; we keep the sign with w >= 0, the same
  rotation). Linear velocity (world) is uniform per axis in [-1, 1] m/s and body rates uniform
  per axis in [-1, 1] rad/s, also for guided starts (as in the paper-era l2f). Each rotor speed is
  uniform between the speeds that actions -1 and +1 command ("relative rpm" -1..+1).
* Termination follows l2f's ``fast_learning`` termination, which the public code repeats: any
  position-error axis beyond 0.6 m, any linear-velocity axis beyond 1000 m/s, any body-rate axis
  beyond 1000 rad/s, or any non-finite state value. (l2f's ``classic`` termination uses 10 m/s
  and 10 rad/s; set the config values to get it.)
* Reward, Eq. 8: r = C_rs - C_rp |p - p_des|^2 - C_rv |v - v_des|^2 - C_rq cost(q) - C_ra |a - b|^2
  with p_des the target, v_des = 0, the level attitude as q_des, b = 2 C_rab - 1 (C_rab = 0.667
  is the hover throttle in [0, 1]; b = 0.334 is the action in [-1, 1] that commands it; the
  cf21_paper preset's own ``hover_action`` is 0.33405). The paper says "q = orientation
  angles"; the default cost is the squared rotation angle theta^2 of the attitude, i.e.
  |q - q_des|^2 with q the rotation vector (axis * angle) and q_des = 0. Alternatives
  (``orientation_cost``): l2f's Squared reward uses 1 - w^2 (= sin^2(theta / 2)); the public code
  uses 2 acos(1 - z^2) (z the quaternion's z). The public code's action baseline
  2 * 0.334 - 1 = -0.332 is not used: Table 5 states C_rab = 0.667.
* The reward of a step is scored on the state the action led to (the public code's choice) and
  on the action itself, clipped to [-1, 1] as the dynamics clip it. (A physics step that yields a
  non-finite state is a crash; the envs then report the drone's last finite state, see
  batched_env.py, so rewards stay finite.)
* Curriculum, Table 5 "penalties grow linearly in six steps": ``curriculum_levels`` = 6 levels,
  level = min(floor(progress * 6), 5), coefficient = start + (end - start) * level / 5. Level 0
  (progress < 1/6) is Table 5's start, level 5 (progress >= 5/6) its end.
* Our results convention (PAPER.md "Results"): a reported return is the sum over a 500-step
  episode scored with the end-of-curriculum coefficients, :func:`eval_coefficients`.
* The privileged observation appends the last ``action_history_length`` (32) actions, oldest
  first; at an episode start the history holds, for each rotor, the action that commands its
  initial speed (l2f fills its action history so); ``action_history_fill`` offers alternatives.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import torch

from ..common import config
from ..common.layout import ACTION_DIM, ANGVEL, OBS_DIM, POS, QUAT, ROTOR, STATE_DIM, VEL
from ..sim.params import QuadrotorParams
from .randomisation import DomainRandomisation, load_randomisation

OrientationCost = Literal["rotation_angle_squared", "one_minus_w_squared", "public_code"]
ActionHistoryFill = Literal["rotor_speed", "hover", "zero"]


@dataclass(frozen=True)
class RewardCoefficients:
    """The coefficients of Eq. 8 (one row of Table 5)."""

    position: float
    """C_rp, per m^2 of squared position error."""
    velocity: float
    """C_rv, per (m/s)^2 of squared linear velocity (world)."""
    action: float
    """C_ra, per squared distance of the 4 actions from the hover action."""
    orientation: float
    """C_rq, per unit of the orientation cost (rad^2 for the default cost)."""
    survival: float
    """C_rs, the constant reward per step."""
    action_baseline_throttle: float
    """C_rab, the hover throttle in [0, 1]; the action term uses b = 2 * C_rab - 1 in [-1, 1]."""

    @property
    def action_baseline(self) -> float:
        """C_rab in the [-1, 1] action space: 2 * C_rab - 1."""
        return 2.0 * self.action_baseline_throttle - 1.0


@dataclass(frozen=True)
class TaskConfig:
    """Every constant of the hover task. Defaults: PAPER.md, l2f ``init_90_deg``, Table 5."""

    episode_steps: int = 500
    """Steps per episode (5 s at 100 Hz); an episode reaching it is truncated, not terminated."""
    target_position_m: tuple[float, float, float] = (0.0, 0.0, 1.0)
    """Hover target, world frame. 1 m up keeps the pybullet ground (z = 0) out of the way."""
    init_guidance_probability: float = 0.1
    """Probability that a start is 'guided': exactly at the target and level (l2f)."""
    init_position_max_m: float = 0.2
    """Initial position error, uniform per axis in [-max, max] (world)."""
    init_orientation_max_deg: float = 90.0
    """Initial attitude: uniform over rotations whose angle is at most this."""
    init_linear_velocity_max_mps: float = 1.0
    """Initial linear velocity, uniform per axis in [-max, max] (world)."""
    init_angular_velocity_max_radps: float = 1.0
    """Initial body rates, uniform per axis in [-max, max] (body)."""
    init_rotor_action_min: float = -1.0
    """Initial rotor speeds: uniform between the speeds commanded by this action..."""
    init_rotor_action_max: float = 1.0
    """...and this one (l2f 'relative rpm', in [-1, 1])."""
    termination_position_error_m: float = 0.6
    """Terminate when |position - target| exceeds this on any axis."""
    termination_linear_velocity_mps: float = 1000.0
    """Terminate when |velocity| exceeds this on any axis (l2f fast_learning)."""
    termination_angular_velocity_radps: float = 1000.0
    """Terminate when |body rate| exceeds this on any axis (l2f fast_learning)."""
    reward_start: RewardCoefficients = field(default_factory=lambda: RewardCoefficients(
        position=1.0, velocity=0.01, action=0.14, orientation=0.25, survival=1.0,
        action_baseline_throttle=0.667))
    """Table 5, start of the curriculum (progress 0)."""
    reward_end: RewardCoefficients = field(default_factory=lambda: RewardCoefficients(
        position=3.5, velocity=0.10, action=0.50, orientation=0.25, survival=1.0,
        action_baseline_throttle=0.667))
    """Table 5, end of the curriculum (progress 1); also the coefficients results are scored with."""
    curriculum_levels: int = 6
    """Number of coefficient levels from start to end ("six steps")."""
    orientation_cost: OrientationCost = "rotation_angle_squared"
    """Orientation term: theta^2 (paper, default), 1 - w^2 (l2f), 2 acos(1 - z^2) (public code)."""
    action_history_length: int = 32
    """Actions in the privileged observation (18 + 4 * length values)."""
    action_history_fill: ActionHistoryFill = "rotor_speed"
    """History at an episode start: the actions commanding the initial rotor speeds (l2f), the
    preset's hover action, or zeros."""
    randomisation: DomainRandomisation = field(default_factory=DomainRandomisation)
    """Per-episode domain randomisation (all off: the paper's task); config/randomisation.yaml
    holds the sim-to-real ranges that ``--randomise`` / ``randomisation:`` apply."""

    def __post_init__(self):
        def bad(key, value, expected):
            raise ValueError(f"task config '{key}' = {value!r}, expected {expected}")
        if self.episode_steps < 1:
            bad("episode_steps", self.episode_steps, "at least 1")
        if len(self.target_position_m) != 3:
            bad("target_position_m", self.target_position_m, "3 values (x, y, z) in m")
        if not 0.0 <= self.init_guidance_probability <= 1.0:
            bad("init_guidance_probability", self.init_guidance_probability, "a value in [0, 1]")
        for k in ("init_position_max_m", "init_orientation_max_deg", "init_linear_velocity_max_mps",
                  "init_angular_velocity_max_radps"):
            if not getattr(self, k) >= 0.0:
                bad(k, getattr(self, k), "a value >= 0")
        if self.init_orientation_max_deg > 180.0:
            bad("init_orientation_max_deg", self.init_orientation_max_deg, "at most 180")
        if not -1.0 <= self.init_rotor_action_min <= self.init_rotor_action_max <= 1.0:
            bad("init_rotor_action_min/max", (self.init_rotor_action_min, self.init_rotor_action_max),
                "-1 <= min <= max <= 1")
        for k in ("termination_position_error_m", "termination_linear_velocity_mps",
                  "termination_angular_velocity_radps"):
            if not getattr(self, k) > 0.0:
                bad(k, getattr(self, k), "a value > 0")
        if self.curriculum_levels < 2:
            bad("curriculum_levels", self.curriculum_levels, "at least 2 (start and end)")
        if self.action_history_length < 1:
            bad("action_history_length", self.action_history_length, "at least 1")

    @property
    def privileged_obs_dim(self) -> int:
        """18 + 4 * action_history_length (146 by default, layout.PRIV_OBS_DIM)."""
        return OBS_DIM + ACTION_DIM * self.action_history_length


def task_config_path() -> Path:
    return config.config_dir() / "task.yaml"


def load_task_config(path=None, overrides: dict | None = None) -> TaskConfig:
    """TaskConfig from config/task.yaml (or ``path``), then ``overrides``; strict keys and types."""
    return config.load(TaskConfig, task_config_path() if path is None else path, overrides)


def with_randomisation(cfg: TaskConfig, path=None) -> TaskConfig:
    """``cfg`` with its randomisation block replaced by the file's (default config/randomisation.yaml)."""
    return dataclasses.replace(cfg, randomisation=load_randomisation(path))


# ---- observation ---------------------------------------------------------------------------------
def rotation_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """Row-major rotation matrices [..., 9] (body to world) of unit quaternions [..., 4] (w, x, y, z)."""
    w, x, y, z = quaternion.unbind(-1)
    return torch.stack((
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)), dim=-1)


def observation(state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The spiking actor's observation [B, 18] (layout.OBS_FIELDS) of states [B, 17]: position
    error position - target (world m), rotation matrix row-major, velocity (world), body rates.
    ``target`` is [3] or [B, 3]."""
    return torch.cat((state[:, POS] - target, rotation_matrix(state[:, QUAT]),
                      state[:, VEL], state[:, ANGVEL]), dim=1)


def privileged_observation(obs: torch.Tensor, action_history: torch.Tensor) -> torch.Tensor:
    """The critic's and guide's observation [B, 18 + 4 L]: ``obs`` [B, 18] followed by the last L
    actions ``action_history`` [B, L, 4], oldest first (the most recent action is last)."""
    return torch.cat((obs, action_history.reshape(action_history.shape[0], -1)), dim=1)


# ---- reward --------------------------------------------------------------------------------------
def rotation_angle(quaternion: torch.Tensor) -> torch.Tensor:
    """Rotation angle in [0, pi] rad of unit quaternions [..., 4] (w, x, y, z), sign-independent."""
    return 2.0 * torch.atan2(torch.linalg.vector_norm(quaternion[..., 1:], dim=-1),
                             quaternion[..., 0].abs())


def orientation_cost(quaternion: torch.Tensor, kind: OrientationCost = "rotation_angle_squared"):
    """Orientation term of Eq. 8 per drone [B] (zero when level with zero yaw); see the module doc."""
    if kind == "rotation_angle_squared":
        return rotation_angle(quaternion).square()
    if kind == "one_minus_w_squared":
        return 1.0 - quaternion[..., 0].square()
    if kind == "public_code":
        return 2.0 * torch.acos((1.0 - quaternion[..., 3].square()).clamp(-1.0, 1.0))
    raise ValueError(f"orientation cost '{kind}' is unknown; expected one of "
                     f"['rotation_angle_squared', 'one_minus_w_squared', 'public_code']")


def reward(state: torch.Tensor, action: torch.Tensor, target: torch.Tensor,
           coeffs: RewardCoefficients,
           orientation: OrientationCost = "rotation_angle_squared") -> torch.Tensor:
    """Eq. 8 per drone [B] for states [B, 17] (the state the action led to), actions [B, 4] in
    [-1, 1] and the target [3] or [B, 3] (world m). A non-finite state gives NaN here."""
    c = coeffs
    return (c.survival
            - c.position * (state[:, POS] - target).square().sum(1)
            - c.velocity * state[:, VEL].square().sum(1)
            - c.orientation * orientation_cost(state[:, QUAT], orientation)
            - c.action * (action - c.action_baseline).square().sum(1))


def curriculum_level(progress: float, levels: int = 6) -> int:
    """Level in 0 .. levels - 1 of training progress in [0, 1]: min(floor(progress * levels), levels - 1)."""
    p = float(progress)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"curriculum progress = {progress!r}, expected a value in [0, 1]")
    return min(int(math.floor(p * levels)), levels - 1)


def curriculum(progress: float, cfg: TaskConfig | None = None) -> RewardCoefficients:
    """Table 5 coefficients at training ``progress`` in [0, 1]: start + (end - start) * level / (levels - 1)
    with :func:`curriculum_level` (computed as start (1 - f) + end f, so that level 0 is exactly
    Table 5's start and the last level exactly its end)."""
    cfg = cfg or TaskConfig()
    f = curriculum_level(progress, cfg.curriculum_levels) / (cfg.curriculum_levels - 1)
    s, e = cfg.reward_start, cfg.reward_end
    return RewardCoefficients(**{k.name: getattr(s, k.name) * (1.0 - f) + getattr(e, k.name) * f
                                 for k in fields(RewardCoefficients)})


def eval_coefficients(cfg: TaskConfig | None = None) -> RewardCoefficients:
    """The coefficients every reported return is scored with: the end of the curriculum."""
    return curriculum(1.0, cfg)


# ---- termination ---------------------------------------------------------------------------------
def terminated(state: torch.Tensor, target: torch.Tensor, cfg: TaskConfig | None = None) -> torch.Tensor:
    """Crash flags [B] (bool): position error beyond the limit on any axis, linear velocity or body
    rate beyond its limit on any axis, or any non-finite value in the state row."""
    cfg = cfg or TaskConfig()
    out = ~torch.isfinite(state).all(1)
    out |= ((state[:, POS] - target).abs() > cfg.termination_position_error_m).any(1)
    out |= (state[:, VEL].abs() > cfg.termination_linear_velocity_mps).any(1)
    out |= (state[:, ANGVEL].abs() > cfg.termination_angular_velocity_radps).any(1)
    return out


# ---- initial states ------------------------------------------------------------------------------
def rotor_speed_to_action(rotor_speed: torch.Tensor, params: QuadrotorParams) -> torch.Tensor:
    """The action in [-1, 1] whose setpoint is ``rotor_speed`` (inverse of the dynamics' map
    speed = min + (a + 1) / 2 * (max - min))."""
    lo, hi = params.rotor_speed_min, params.rotor_speed_max
    return (rotor_speed - lo) / (hi - lo) * 2.0 - 1.0


def random_orientation(n: int, max_angle_rad: float, generator: torch.Generator,
                       dtype=torch.float32) -> torch.Tensor:
    """[n, 4] unit quaternions (w >= 0), uniform over the rotations of angle <= ``max_angle_rad``:
    uniform quaternions (Shoemake) kept where 2 acos(w) <= max angle, drawn in batches (l2f)."""
    dev = generator.device
    out = torch.empty(n, 4, device=dev, dtype=dtype)
    if n == 0:
        return out
    if max_angle_rad <= 0.0:
        out.zero_()[:, 0] = 1.0
        return out
    a = min(max_angle_rad, math.pi)
    accept = (a - math.sin(a)) / math.pi  # probability that a uniform rotation has angle <= a
    cos_half = math.cos(a / 2.0)
    filled = 0
    while filled < n:
        m = int((n - filled) / accept * 1.2) + 16
        u = torch.rand(m, 3, generator=generator, device=dev, dtype=torch.float64)
        r1, r2 = torch.sqrt(1.0 - u[:, 0]), torch.sqrt(u[:, 0])
        t1, t2 = 2.0 * math.pi * u[:, 1], 2.0 * math.pi * u[:, 2]
        q = torch.stack((r1 * torch.sin(t1), r1 * torch.cos(t1), r2 * torch.sin(t2), r2 * torch.cos(t2)), 1)
        q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)
        q = q[q[:, 0] >= cos_half][: n - filled]
        out[filled:filled + q.shape[0]] = q.to(dtype)
        filled += q.shape[0]
    return out


def sample_initial_state(batch: int, generator: torch.Generator, params: QuadrotorParams,
                         cfg: TaskConfig | None = None, dtype=torch.float32) -> torch.Tensor:
    """[batch, 17] initial states (l2f ``init_90_deg``, see the module doc) on ``generator``'s device,
    positions around ``cfg.target_position_m``."""
    cfg = cfg or TaskConfig()
    dev = generator.device

    def uniform(shape, half_width):
        return (torch.rand(shape, generator=generator, device=dev, dtype=dtype) * 2.0 - 1.0) * half_width

    s = torch.empty(batch, STATE_DIM, device=dev, dtype=dtype)
    guided = torch.rand(batch, generator=generator, device=dev) < cfg.init_guidance_probability
    target = torch.tensor(cfg.target_position_m, device=dev, dtype=dtype)
    s[:, POS] = target + uniform((batch, 3), cfg.init_position_max_m) * (~guided).unsqueeze(1)
    s[:, QUAT] = random_orientation(batch, math.radians(cfg.init_orientation_max_deg), generator, dtype)
    s[guided, QUAT] = torch.tensor([1.0, 0.0, 0.0, 0.0], device=dev, dtype=dtype)
    s[:, VEL] = uniform((batch, 3), cfg.init_linear_velocity_max_mps)
    s[:, ANGVEL] = uniform((batch, 3), cfg.init_angular_velocity_max_radps)
    lo, hi = params.rotor_speed_min, params.rotor_speed_max
    a_lo, a_hi = cfg.init_rotor_action_min, cfg.init_rotor_action_max
    rel = torch.rand(batch, 4, generator=generator, device=dev, dtype=dtype)
    s[:, ROTOR] = lo + ((a_lo + 1.0) / 2.0 + rel * (a_hi - a_lo) / 2.0) * (hi - lo)
    return s


def hover_initial_state(batch: int, generator: torch.Generator, params: QuadrotorParams,
                        cfg: TaskConfig | None = None, position_sd_m: float = 0.05,
                        dtype=torch.float32) -> torch.Tensor:
    """[batch, 17] hover starts, the state after a stock take-off: level and at rest, rotors at the
    hover speed, positions the target + Gaussian(0, ``position_sd_m``) per axis."""
    cfg = cfg or TaskConfig()
    dev = generator.device
    s = torch.zeros(batch, STATE_DIM, device=dev, dtype=dtype)
    target = torch.tensor(cfg.target_position_m, device=dev, dtype=dtype)
    s[:, POS] = target + position_sd_m * torch.randn(batch, 3, generator=generator, device=dev, dtype=dtype)
    s[:, QUAT.start] = 1.0
    s[:, ROTOR] = params.hover_rotor_speed
    return s


def initial_action_history(state: torch.Tensor, params: QuadrotorParams,
                           cfg: TaskConfig | None = None) -> torch.Tensor:
    """The action history [B, L, 4] at an episode start from states [B, 17] (``action_history_fill``)."""
    cfg = cfg or TaskConfig()
    b, L = state.shape[0], cfg.action_history_length
    if cfg.action_history_fill == "rotor_speed":
        fill = rotor_speed_to_action(state[:, ROTOR], params)
    elif cfg.action_history_fill == "hover":
        fill = torch.full((b, ACTION_DIM), params.hover_action, device=state.device, dtype=state.dtype)
    else:
        fill = torch.zeros(b, ACTION_DIM, device=state.device, dtype=state.dtype)
    return fill.unsqueeze(1).expand(b, L, ACTION_DIM).clone()


__all__ = [
    "TaskConfig", "RewardCoefficients", "load_task_config", "hover_initial_state", "task_config_path", "with_randomisation",
    "rotation_matrix",
    "observation", "privileged_observation", "rotation_angle", "orientation_cost", "reward",
    "curriculum_level", "curriculum", "eval_coefficients", "terminated", "rotor_speed_to_action",
    "random_orientation", "sample_initial_state", "initial_action_history",
]
