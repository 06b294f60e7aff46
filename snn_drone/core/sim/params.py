"""Crazyflie model parameters (the Learning-to-Fly model) and their presets in config/presets/.

Every value carries its unit in its name. Presets are YAML files named after the preset
(`cf21_paper`, the paper-era constants and the default; `cf21_l2f2`, the newer l2f model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..common import config

DEFAULT_PRESET = "cf21_paper"


@dataclass(frozen=True)
class QuadrotorParams:
    """Physical constants of one quadrotor. Rotor order and signs follow l2f."""

    name: str
    """Preset name."""
    mass_kg: float
    """Total mass."""
    inertia_kgm2: tuple[float, float, float]
    """Diagonal of the inertia tensor in the body frame (Jxx, Jyy, Jzz)."""
    rotor_positions_m: tuple[tuple[float, float, float], ...]
    """Rotor hub positions in the body frame (x forward, y left, z up), one row per rotor."""
    rotor_torque_directions: tuple[float, float, float, float]
    """Sign of each rotor's reaction torque about body z per unit thrust (+1 = counter-clockwise)."""
    thrust_coefficients: tuple[float, float, float]
    """Per-rotor thrust T[N] = c0 + c1 w + c2 w^2, w the rotor speed in ``rotor_speed_unit``."""
    torque_constant_m: float
    """Yaw reaction torque per newton of thrust: tau_z = direction * torque_constant * T [N m]."""
    motor_time_constant_rising_s: float
    """First-order motor lag when the setpoint is above the current speed."""
    motor_time_constant_falling_s: float
    """First-order motor lag when the setpoint is below the current speed."""
    rotor_speed_min: float
    """Rotor speed commanded by action -1, in ``rotor_speed_unit``."""
    rotor_speed_max: float
    """Rotor speed commanded by action +1, in ``rotor_speed_unit``."""
    rotor_speed_unit: Literal["rpm", "normalised"]
    """Unit of rotor speeds in the state and the thrust curve."""
    gravity_mps2: float = 9.81
    """Gravitational acceleration (world -z)."""
    dt_s: float = 0.01
    """Control and integration step (100 Hz)."""

    def __post_init__(self):
        if len(self.rotor_positions_m) != 4 or any(len(p) != 3 for p in self.rotor_positions_m):
            raise ValueError(f"preset {self.name}: rotor_positions_m must be 4 rows of 3 values")
        for k in ("mass_kg", "torque_constant_m", "motor_time_constant_rising_s",
                  "motor_time_constant_falling_s", "dt_s"):
            if not getattr(self, k) > 0:
                raise ValueError(f"preset {self.name}: {k} must be > 0, got {getattr(self, k)}")
        if not self.rotor_speed_max > self.rotor_speed_min:
            raise ValueError(f"preset {self.name}: rotor_speed_max must exceed rotor_speed_min")

    # ---- derived values (never stored, so they cannot disagree with the constants) ------------
    def thrust_n(self, rotor_speed: float) -> float:
        c0, c1, c2 = self.thrust_coefficients
        return c0 + c1 * rotor_speed + c2 * rotor_speed ** 2

    @property
    def hover_rotor_speed(self) -> float:
        """Rotor speed at which the four rotors together carry the weight (from the thrust curve)."""
        c0, c1, c2 = self.thrust_coefficients
        t = self.mass_kg * self.gravity_mps2 / 4.0
        if c2 == 0:
            return (t - c0) / c1
        return (-c1 + math.sqrt(c1 * c1 - 4 * c2 * (c0 - t))) / (2 * c2)

    @property
    def hover_throttle(self) -> float:
        """Hover rotor speed relative to the commanded range, in [0, 1] (0.667 for cf21_paper)."""
        return (self.hover_rotor_speed - self.rotor_speed_min) / (self.rotor_speed_max - self.rotor_speed_min)

    @property
    def hover_action(self) -> float:
        """The action in [-1, 1] that commands the hover rotor speed: 2 * hover_throttle - 1."""
        return 2.0 * self.hover_throttle - 1.0


def preset_path(name: str) -> Path:
    return config.config_dir() / "presets" / f"{name}.yaml"


def available_presets() -> list[str]:
    return sorted(p.stem for p in (config.config_dir() / "presets").glob("*.yaml"))


def load_preset(name_or_path: str = DEFAULT_PRESET) -> QuadrotorParams:
    """Load a preset by name (config/presets/NAME.yaml) or from a YAML file path."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = preset_path(name_or_path)
        if not p.is_file():
            raise FileNotFoundError(f"unknown preset '{name_or_path}'; available: {available_presets()}")
    data = config.load_yaml(p)
    data.setdefault("name", p.stem)
    return config.from_dict(QuadrotorParams, data, source=str(p))
