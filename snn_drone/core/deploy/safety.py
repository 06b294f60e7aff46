"""The flight safety supervisor: geofence box, maximum tilt, stale state, low battery, lost link.

A pure class (no ROS, no radio): the bridge or the jump-start node feeds it the latest state, its
time, the battery voltage and the time of the last link activity, and acts on the verdict. Each
violation maps to a configured action:

- ``stop``: cut the motors now (emergency stop; the snn_motor app's watchdog does the same
  onboard within 50 ms when the link is gone),
- ``land``: stop streaming motor commands and land with the stock controller (high-level
  commander),
- ``warn``: log and publish only.

The most severe action of the active violations wins (stop > land > warn). A trip latches: the
verdict keeps the most severe action seen until :meth:`SafetySupervisor.reset` (an operator
decision), and each kind of violation is reported once as ``new`` when it first occurs, so a node
logs and publishes it once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..common import layout
from ..common.config import config_dir, load

SEVERITY = {"none": 0, "warn": 1, "land": 2, "stop": 3}
ACTIONS = ("warn", "land", "stop")


@dataclass
class SafetyConfig:
    """Limits of the safety supervisor and the action each violation triggers."""

    geofence_min_m: tuple[float, float, float] = (-1.5, -1.5, -0.1)
    """Lower corner of the allowed box, world frame [m]."""
    geofence_max_m: tuple[float, float, float] = (1.5, 1.5, 2.0)
    """Upper corner of the allowed box, world frame [m]."""
    geofence_action: str = "land"
    """Action when the position leaves the box: warn, land or stop."""
    max_tilt_deg: float = 60.0
    """Largest angle between body z and world z [deg]."""
    tilt_action: str = "stop"
    """Action when the tilt exceeds max_tilt_deg."""
    max_state_age_s: float = 0.1
    """Oldest acceptable state (10 missed 100 Hz samples) [s]."""
    stale_action: str = "land"
    """Action when the state is older than max_state_age_s (or never arrived)."""
    low_battery_v: float = 3.3
    """Battery voltage under load below which the flight ends [V] (a 1S LiPo near empty)."""
    low_battery_hold_s: float = 1.0
    """How long the voltage must stay below low_battery_v to trip (motor-load sags are brief) [s]."""
    battery_action: str = "land"
    """Action on low battery."""
    link_timeout_s: float = 0.25
    """Longest time without link activity (acknowledged packets) [s]."""
    link_action: str = "stop"
    """Action on a lost link (the ground stops streaming; onboard, the app's watchdog stops the motors)."""
    nonfinite_action: str = "stop"
    """Action when the state holds NaN/inf."""
    hand_back_max_rate_deg_s: float = 45.0
    """stop_policy hands the motors back to the stock controller at the first state whose body
    rates are all below this [deg/s] and whose tilt is below hand_back_max_tilt_deg: the stock PID
    taking over an SNN mid-swing (100-180 deg/s) diverged in SITL."""
    hand_back_max_tilt_deg: float = 10.0
    """Largest tilt of a calm state for the hand-back [deg]."""
    hand_back_wait_s: float = 1.0
    """Hand back at the latest this long after stop_policy, calm or not (0: at once) [s]."""

    def __post_init__(self):
        self.geofence_min_m = tuple(float(v) for v in self.geofence_min_m)
        self.geofence_max_m = tuple(float(v) for v in self.geofence_max_m)
        if len(self.geofence_min_m) != 3 or len(self.geofence_max_m) != 3:
            raise ValueError("geofence_min_m and geofence_max_m need 3 values (x, y, z) in metres")
        for axis, lo, hi in zip("xyz", self.geofence_min_m, self.geofence_max_m):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(f"geofence {axis}: min {lo} m must be below max {hi} m (both finite)")
        for name in ("geofence_action", "tilt_action", "stale_action", "battery_action", "link_action",
                     "nonfinite_action"):
            if getattr(self, name) not in ACTIONS:
                raise ValueError(f"{name} = {getattr(self, name)!r}, expected one of {list(ACTIONS)}")
        if not 0 < self.max_tilt_deg <= 180:
            raise ValueError(f"max_tilt_deg = {self.max_tilt_deg}, expected in (0, 180]")
        for name in ("max_state_age_s", "link_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)}, expected > 0 s")
        if not (self.hand_back_max_rate_deg_s > 0 and 0 < self.hand_back_max_tilt_deg <= 180
                and self.hand_back_wait_s >= 0):
            raise ValueError(f"hand_back_max_rate_deg_s = {self.hand_back_max_rate_deg_s} and hand_back_max_tilt_deg = "
                             f"{self.hand_back_max_tilt_deg} must be > 0, hand_back_wait_s = "
                             f"{self.hand_back_wait_s} >= 0")
        if not self.low_battery_hold_s >= 0 or not self.low_battery_v >= 0:
            raise ValueError(f"low_battery_v = {self.low_battery_v} V and low_battery_hold_s = "
                             f"{self.low_battery_hold_s} s must be >= 0")


def safety_config_path() -> Path:
    return config_dir() / "safety.yaml"


def load_safety_config(path=None, overrides: dict | None = None) -> SafetyConfig:
    """config/safety.yaml (or ``path``), then ``overrides``."""
    return load(SafetyConfig, path if path is not None else safety_config_path(), overrides)


@dataclass(frozen=True)
class Violation:
    kind: str
    """geofence, tilt, stale_state, low_battery, lost_link or nonfinite_state."""
    action: str
    """warn, land or stop."""
    value: float
    """The offending value (m, deg, s or V; see message)."""
    limit: float
    """The limit it broke, same unit."""
    message: str
    time_s: float


@dataclass(frozen=True)
class SafetyVerdict:
    action: str
    """What to do now: none, warn, land or stop (latched: never milder than an earlier trip)."""
    violations: tuple[Violation, ...] = ()
    """Violations active in this check."""
    new: tuple[Violation, ...] = ()
    """Kinds seen for the first time since the last reset (log and publish these)."""


def tilt_deg(quaternion_wxyz) -> float:
    """Angle between body z and world z for a body-to-world quaternion (any norm)."""
    w, x, y, z = (float(v) for v in quaternion_wxyz)
    n2 = w * w + x * x + y * y + z * z
    r22 = 1.0 - 2.0 * (x * x + y * y) / n2  # world-z component of body z
    return math.degrees(math.acos(max(-1.0, min(1.0, r22))))


def calm_for_hand_back(state, cfg: SafetyConfig) -> bool:
    """Whether ``state`` [17] is calm enough to hand the motors to the stock controller: every body
    rate below ``hand_back_max_rate_deg_s`` and the tilt below ``hand_back_max_tilt_deg``."""
    s = np.asarray(state, dtype=float)
    rates = np.degrees(np.abs(s[layout.ANGVEL]))
    return bool(np.all(rates < cfg.hand_back_max_rate_deg_s)) and tilt_deg(s[layout.QUAT]) < cfg.hand_back_max_tilt_deg


class SafetySupervisor:
    """Checks one drone against :class:`SafetyConfig`; see the module docstring."""

    def __init__(self, cfg: SafetyConfig | None = None):
        self.cfg = cfg or SafetyConfig()
        self.reset()

    def reset(self) -> None:
        """Forget trips (an operator re-arms after landing)."""
        self.latched = "none"
        self.history: list[Violation] = []
        self._seen: set[str] = set()
        self._low_since: float | None = None

    def check(self, now_s: float, state=None, state_time_s: float | None = None,
              battery_v: float | None = None, last_link_s: float | None = None) -> SafetyVerdict:
        """Verdict at time ``now_s`` [s].

        state: the drone's state [17] (layout.STATE_FIELDS) or None if none arrived yet (stale);
        state_time_s: when it was measured; battery_v: None skips the battery check;
        last_link_s: time of the last link activity, None skips the link check (sim backend).
        """
        c = self.cfg
        found: list[Violation] = []

        def add(kind, action, value, limit, message):
            found.append(Violation(kind, action, float(value), float(limit), message, float(now_s)))

        age = math.inf if state is None or state_time_s is None else now_s - state_time_s
        if age > c.max_state_age_s:
            add("stale_state", c.stale_action, age, c.max_state_age_s,
                f"state is {age:.3f} s old, limit {c.max_state_age_s} s" if math.isfinite(age)
                else "no state received")
        if state is not None:
            s = np.asarray(state, dtype=np.float64)
            if s.shape != (layout.STATE_DIM,):
                raise ValueError(f"state has shape {list(s.shape)}, expected [{layout.STATE_DIM}] "
                                 f"({layout.describe(layout.STATE_FIELDS)})")
            if not np.isfinite(s).all():
                bad = int(np.argmax(~np.isfinite(s)))
                add("nonfinite_state", c.nonfinite_action, s[bad], 0.0, f"state[{bad}] is {s[bad]}")
            else:
                pos = s[layout.POS]
                for i, axis in enumerate("xyz"):
                    lo, hi = c.geofence_min_m[i], c.geofence_max_m[i]
                    if not lo <= pos[i] <= hi:
                        limit = lo if pos[i] < lo else hi
                        add("geofence", c.geofence_action, pos[i], limit,
                            f"position {axis} = {pos[i]:.3f} m outside the geofence [{lo}, {hi}] m")
                        break
                tilt = tilt_deg(s[layout.QUAT])
                if tilt > c.max_tilt_deg:
                    add("tilt", c.tilt_action, tilt, c.max_tilt_deg,
                        f"tilt {tilt:.1f} deg above the limit {c.max_tilt_deg} deg")
        if battery_v is not None:
            if battery_v < c.low_battery_v:
                self._low_since = now_s if self._low_since is None else self._low_since
                if now_s - self._low_since >= c.low_battery_hold_s:
                    add("low_battery", c.battery_action, battery_v, c.low_battery_v,
                        f"battery {battery_v:.2f} V below {c.low_battery_v} V for "
                        f"{now_s - self._low_since:.2f} s")
            else:
                self._low_since = None
        if last_link_s is not None and now_s - last_link_s > c.link_timeout_s:
            gap = now_s - last_link_s
            add("lost_link", c.link_action, gap, c.link_timeout_s,
                f"no link activity for {gap:.3f} s, limit {c.link_timeout_s} s")

        new = tuple(v for v in found if v.kind not in self._seen)
        self._seen.update(v.kind for v in new)
        self.history.extend(new)
        for v in found:
            if SEVERITY[v.action] > SEVERITY[self.latched]:
                self.latched = v.action
        return SafetyVerdict(self.latched, tuple(found), new)
