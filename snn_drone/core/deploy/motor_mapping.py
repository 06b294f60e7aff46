"""From the policy's action to what the Crazyflie firmware takes: a normalised thrust per motor.

The policy was trained on a model where action a in [-1, 1] sets the rotor-speed setpoint
``rpm_des = min + (a + 1) / 2 (max - min)`` and each rotor then gives ``T(rpm)`` newtons (the
preset's thrust curve). On the drone, the snn_motor app passes a ratio r in [0, 1] per motor as
the firmware's ``controlModeForce`` normalised force; with battery compensation on (the firmware
default) the firmware turns r into PWM so that the motor gives about ``r * max_thrust_per_motor_n``.

- ``mode: thrust`` (default): r = T(rpm_des) / max_thrust_per_motor_n, so each motor is asked for
  the thrust the trained model expected at the commanded speed. The motor's own lag stays the real
  one (the model's time constant is not replayed).
- ``mode: rpm_linear``: r = (a + 1) / 2, the paper authors' fork (PWM taken as linear in rpm);
  meant for firmware built with ``CONFIG_ENABLE_THRUST_BAT_COMPENSATED`` off, where r is the PWM
  duty cycle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..sim.dynamics import rotor_speed_setpoint, rotor_thrust_n
from ..sim.params import QuadrotorParams
from ..common.validation import check_array


@dataclass
class MotorMappingConfig:
    """How actions become the firmware's normalised motor thrusts."""

    mode: Literal["thrust", "rpm_linear"] = "thrust"
    """'thrust': r = T(rpm_des) / max_thrust_per_motor_n (battery-compensated firmware);
    'rpm_linear': r = (a + 1) / 2 (the authors' fork, PWM linear in rpm)."""
    max_thrust_per_motor_n: float = 0.12
    """Thrust of one motor at normalised force 1 with battery compensation on (CF2.1 brushed,
    HARDWARE.md; check the value in your firmware's motor model)."""
    max_ratio: float = 1.0
    """Upper clamp of every ratio (also enforced onboard by snnmotor.maxRatio)."""

    def __post_init__(self):
        if self.mode not in ("thrust", "rpm_linear"):
            raise ValueError(f"motor mapping mode {self.mode!r}, expected 'thrust' or 'rpm_linear'")
        if not self.max_thrust_per_motor_n > 0:
            raise ValueError(f"max_thrust_per_motor_n = {self.max_thrust_per_motor_n!r}, expected > 0 N")
        if not 0 < self.max_ratio <= 1:
            raise ValueError(f"max_ratio = {self.max_ratio!r}, expected in (0, 1]")


def action_to_ratio(action, params: QuadrotorParams, cfg: MotorMappingConfig | None = None) -> np.ndarray:
    """Actions [..., 4] in [-1, 1] (clipped) -> normalised motor thrusts [..., 4] in [0, max_ratio]."""
    cfg = cfg or MotorMappingConfig()
    a = np.asarray(action, dtype=np.float64)
    check_array("action", a, (*a.shape[:-1], 4) if a.ndim else (4,))
    if cfg.mode == "rpm_linear":
        ratio = (a.clip(-1.0, 1.0) + 1.0) / 2.0
    else:
        rpm = rotor_speed_setpoint(a, params.rotor_speed_min, params.rotor_speed_max)
        ratio = rotor_thrust_n(rpm, params.thrust_coefficients) / cfg.max_thrust_per_motor_n
    return ratio.clip(0.0, cfg.max_ratio)


def ratio_to_action(ratio, params: QuadrotorParams, cfg: MotorMappingConfig | None = None) -> np.ndarray:
    """The inverse of :func:`action_to_ratio`: normalised motor thrusts [..., 4] -> actions [..., 4]
    in [-1, 1] (what a physics peer does with the firmware's motor commands).

    ``thrust``: the rotor speed whose thrust is r * max_thrust_per_motor_n (the root of the preset's
    thrust curve), as an action; ``rpm_linear``: a = 2 r - 1. Ratios are clipped to [0, max_ratio]
    first, and thrusts outside the curve's range to the rotor-speed limits, so
    ``action_to_ratio(ratio_to_action(r)) == r`` wherever a rotor speed in range gives that thrust,
    and ``ratio_to_action(action_to_ratio(a)) == a`` wherever ``action_to_ratio`` does not clip.
    """
    cfg = cfg or MotorMappingConfig()
    r = np.asarray(ratio, dtype=np.float64)
    check_array("motor ratio", r, (*r.shape[:-1], 4) if r.ndim else (4,))
    r = r.clip(0.0, cfg.max_ratio)
    if cfg.mode == "rpm_linear":
        return 2.0 * r - 1.0
    c0, c1, c2 = (float(c) for c in params.thrust_coefficients)
    t = r * cfg.max_thrust_per_motor_n - c0
    if c2 == 0.0:
        speed = t / c1
    else:  # the larger root of c2 w^2 + c1 w - (T - c0) = 0 (the rising branch of the curve)
        speed = (-c1 + np.sqrt(np.maximum(c1 * c1 + 4.0 * c2 * t, 0.0))) / (2.0 * c2)
    lo, hi = params.rotor_speed_min, params.rotor_speed_max
    speed = speed.clip(lo, hi)
    return (2.0 * (speed - lo) / (hi - lo) - 1.0).clip(-1.0, 1.0)
