"""Per-episode domain randomisation for sim-to-real (issue 14): its configuration, the per-drone
physical parameters of new episodes and the actor's observation noise.

Off by default (every range 0: the paper's task). TaskConfig holds one DomainRandomisation;
config/randomisation.yaml holds the sim-to-real ranges (task.with_randomisation applies them).
batched_env.py uses the parameters per episode and the noise per step; the learner adds the same
noise to the actor's input only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..common import config
from ..sim.params import QuadrotorParams


@dataclass(frozen=True)
class DomainRandomisation:
    """Per-episode domain randomisation for sim-to-real (issue 14). Every value 0: off (the
    paper's task). Physical factors are drawn once per episode and drone, uniform in
    [1 - r, 1 + r] times the preset's value; the control delay is an integer number of steps,
    uniform in [min, max]; observation noise is Gaussian, drawn anew at every step.

    The noise reaches only what the actor reads (the 18-value observation); the reward, the
    termination, the privileged observation (critic and guide, privileged by design) and the
    stored states see the true state. The delay delays the action applied to the physics by k
    steps; the action history and the reward's action term hold the commanded actions."""

    mass_rel: float = 0.0
    """Mass: uniform in [1 - r, 1 + r] x the preset's (one factor per drone)."""
    thrust_rel: float = 0.0
    """Thrust curve: all three thrust coefficients scaled by one factor per drone in [1 - r, 1 + r]."""
    motor_time_constant_rel: float = 0.0
    """Both motor time constants (rising, falling) scaled by one factor per drone in [1 - r, 1 + r]."""
    inertia_rel: float = 0.0
    """Inertia: each diagonal entry scaled by its own factor in [1 - r, 1 + r]."""
    control_delay_steps_min: int = 0
    """Control delay in steps (10 ms each): the action applied to the physics at step t is the one
    commanded at step t - k, k uniform in [min, max] per episode; before the episode's first
    command the rotors get the actions that command their initial speeds (the history's fill)."""
    control_delay_steps_max: int = 0
    """Upper end of the control delay (inclusive)."""
    obs_noise_position_m: float = 0.0
    """Std of the Gaussian noise on each position-error entry of the actor's observation."""
    obs_noise_rotation: float = 0.0
    """Std of the noise on each of the 9 rotation-matrix entries."""
    obs_noise_velocity_mps: float = 0.0
    """Std of the noise on each linear-velocity entry."""
    obs_noise_angular_velocity_radps: float = 0.0
    """Std of the noise on each body-rate entry."""

    def __post_init__(self):
        for k in ("mass_rel", "thrust_rel", "motor_time_constant_rel", "inertia_rel"):
            if not 0.0 <= getattr(self, k) < 1.0:
                raise ValueError(f"task config 'randomisation.{k}' = {getattr(self, k)!r}, expected a "
                                 f"relative range in [0, 1)")
        if not 0 <= self.control_delay_steps_min <= self.control_delay_steps_max:
            raise ValueError(f"task config 'randomisation.control_delay_steps_min/max' = "
                             f"{(self.control_delay_steps_min, self.control_delay_steps_max)!r}, expected 0 <= min <= max")
        for k in ("obs_noise_position_m", "obs_noise_rotation", "obs_noise_velocity_mps",
                  "obs_noise_angular_velocity_radps"):
            if not getattr(self, k) >= 0.0:
                raise ValueError(f"task config 'randomisation.{k}' = {getattr(self, k)!r}, expected a std >= 0")

    @property
    def physics(self) -> bool:
        """Any physical parameter randomised."""
        return any(getattr(self, k) > 0 for k in ("mass_rel", "thrust_rel", "motor_time_constant_rel",
                                                  "inertia_rel"))

    @property
    def delay(self) -> bool:
        return self.control_delay_steps_max > 0

    @property
    def obs_noise(self) -> bool:
        return any(s > 0 for s in self.obs_noise_std())

    @property
    def enabled(self) -> bool:
        return self.physics or self.delay or self.obs_noise

    def obs_noise_std(self) -> tuple[float, ...]:
        """Std per observation entry (layout.OBS_FIELDS: 3 position, 9 rotation, 3 velocity, 3 rates)."""
        return ((self.obs_noise_position_m,) * 3 + (self.obs_noise_rotation,) * 9
                + (self.obs_noise_velocity_mps,) * 3 + (self.obs_noise_angular_velocity_radps,) * 3)


def randomisation_path() -> Path:
    return config.config_dir() / "randomisation.yaml"


def load_randomisation(path=None) -> DomainRandomisation:
    """DomainRandomisation from a YAML file of its keys (default: config/randomisation.yaml)."""
    return config.load(DomainRandomisation, randomisation_path() if path is None else path)


def sample_drone_parameters(n: int, generator: torch.Generator, params: QuadrotorParams,
                            dr: DomainRandomisation) -> dict[str, torch.Tensor]:
    """Per-drone physical parameters of ``n`` new episodes (float64, on the generator's device):
    ``mass_kg`` [n], ``inertia_kgm2`` [n, 3], ``thrust_scale`` [n] (factor on the thrust curve),
    ``motor_time_constant_rising_s`` / ``_falling_s`` [n] and ``control_delay_steps`` [n] (long).
    The draws happen in this fixed order whatever is enabled, so one seed gives the same drones."""
    dev = generator.device

    def factor(shape, rel):
        u = torch.rand(shape, generator=generator, device=dev, dtype=torch.float64)
        return 1.0 + (2.0 * u - 1.0) * rel

    mass = factor(n, dr.mass_rel) * params.mass_kg
    thrust = factor(n, dr.thrust_rel)
    tau = factor(n, dr.motor_time_constant_rel)
    inertia = factor((n, 3), dr.inertia_rel) * torch.tensor(params.inertia_kgm2, dtype=torch.float64, device=dev)
    delay = torch.randint(dr.control_delay_steps_min, dr.control_delay_steps_max + 1, (n,),
                          generator=generator, device=dev)
    return {"mass_kg": mass, "inertia_kgm2": inertia, "thrust_scale": thrust,
            "motor_time_constant_rising_s": tau * params.motor_time_constant_rising_s,
            "motor_time_constant_falling_s": tau * params.motor_time_constant_falling_s,
            "control_delay_steps": delay}


def observation_noise(shape, generator: torch.Generator, dr: DomainRandomisation,
                      dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise [..., 18] for the actor's observation, per entry std ``dr.obs_noise_std()``."""
    std = torch.tensor(dr.obs_noise_std(), device=generator.device, dtype=dtype)
    return torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=dtype) * std


__all__ = ["DomainRandomisation", "randomisation_path", "load_randomisation", "sample_drone_parameters",
           "observation_noise"]
