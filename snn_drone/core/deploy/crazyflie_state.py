"""Crazyflie log values (cflib log blocks) -> the package's 17-value drone state (layout.py).

Two log-block sets, named by the firmware's log variables (HARDWARE.md):

- ``float`` (3 blocks, 14 floats): ``stateEstimate.x/y/z`` [m, world], ``stateEstimate.vx/vy/vz``
  [m/s, world], ``stateEstimate.qx/qy/qz/qw`` [body -> world], ``gyro.x/y/z`` [deg/s, body],
  ``pm.vbat`` [V].
- ``compressed`` (1 block, 24 bytes): ``stateEstimateZ.x/y/z`` [int16 mm], ``.vx/.vy/.vz``
  [int16 mm/s], ``.quat`` [uint32, smallest-three compressed, firmware quatcompress.h],
  ``.rateRoll/.ratePitch/.rateYaw`` [int16 mrad/s; ratePitch is -gyro.y, the legacy pitch sign],
  ``pm.vbatMV`` [uint16 mV].

Frames: the Crazyflie body frame is x forward, y left, z up, and its world frame is the estimator's
(motion capture / Lighthouse) z-up frame, which is the frame of our state (position, velocity and
quaternion in world, angular velocity in body). So the conversion is units only (mm -> m,
deg/s or mrad/s -> rad/s, wxyz order) plus the sign of ``ratePitch``.

Rotor speeds are not measured on a brushed Crazyflie 2.1. The state's ``rotor_speed`` field holds
the training model's estimate instead: :class:`RotorSpeedEstimate` runs the preset's first-order
motor lag on the commanded actions (the same ``rotor_speed_rk4`` as the simulator); before the
first command it is the hover speed when airborne or 0 on the ground. Observation, reward and the
SNN do not read rotor speeds; they only make a recorded real flight look like a simulated rollout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

from ..common import layout
from ..sim.dynamics import rotor_speed_rk4, rotor_speed_setpoint
from ..sim.params import QuadrotorParams
from ..common.validation import check_array

Variant = Literal["float", "compressed"]

# (block name, variables, cflib fetch types); each block <= 26 bytes of payload
FLOAT_LOG_BLOCKS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("snn_posvel", ("stateEstimate.x", "stateEstimate.y", "stateEstimate.z",
                    "stateEstimate.vx", "stateEstimate.vy", "stateEstimate.vz"), "float"),
    ("snn_quat", ("stateEstimate.qw", "stateEstimate.qx", "stateEstimate.qy", "stateEstimate.qz",
                  "pm.vbat"), "float"),
    ("snn_gyro", ("gyro.x", "gyro.y", "gyro.z"), "float"),
)
COMPRESSED_LOG_BLOCK: tuple[str, tuple[tuple[str, str], ...]] = (
    "snn_statez", (("stateEstimateZ.x", "int16_t"), ("stateEstimateZ.y", "int16_t"), ("stateEstimateZ.z", "int16_t"),
                   ("stateEstimateZ.vx", "int16_t"), ("stateEstimateZ.vy", "int16_t"), ("stateEstimateZ.vz", "int16_t"),
                   ("stateEstimateZ.quat", "uint32_t"), ("stateEstimateZ.rateRoll", "int16_t"),
                   ("stateEstimateZ.ratePitch", "int16_t"), ("stateEstimateZ.rateYaw", "int16_t"),
                   ("pm.vbatMV", "uint16_t")))
_SIZES = {"float": 4, "int16_t": 2, "uint16_t": 2, "uint32_t": 4}
LOG_PAYLOAD_MAX_BYTES = 26
OPTIONAL_LOG_VARIABLES = ("pm.vbat", "pm.vbatMV")
"""Left out of the blocks where the firmware has no such variable (CrazySim's SITL build has no power
management): the state then has no battery voltage and the battery check is skipped."""


def log_blocks(variant: Variant = "float", has=None) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(block name, [(variable, cflib fetch type), ...]), ...] to add as cflib LogConfigs.

    ``has(name) -> bool`` (the firmware's log table, when known): optional variables it lacks are
    left out; a lacking required variable raises KeyError naming all that are missing."""
    if variant == "float":
        blocks = [(name, [(v, t) for v in names]) for name, names, t in FLOAT_LOG_BLOCKS]
    elif variant == "compressed":
        blocks = [(COMPRESSED_LOG_BLOCK[0], list(COMPRESSED_LOG_BLOCK[1]))]
    else:
        raise ValueError(f"log variant {variant!r}, expected 'float' or 'compressed'")
    if has is None:
        return blocks
    missing = [v for _, variables in blocks for v, _ in variables if not has(v) and v not in OPTIONAL_LOG_VARIABLES]
    if missing:
        raise KeyError(f"the firmware's log table lacks {missing} (log variant {variant!r})")
    return [(name, [(v, t) for v, t in variables if has(v)]) for name, variables in blocks]


def block_bytes(variables: list[tuple[str, str]]) -> int:
    return sum(_SIZES[t] for _, t in variables)


# ---- compressed quaternion (firmware quatcompress.h) --------------------------------------------
_MASK9 = (1 << 9) - 1


def decompress_quaternion(comp: int) -> tuple[float, float, float, float]:
    """uint32 smallest-three quaternion -> (x, y, z, w).

    Bits 31-30: index of the largest-magnitude component (in x, y, z, w order), which is sent as
    positive and rebuilt from the unit norm. The other three follow in index order, the first in
    the highest bits, 10 bits each: a sign bit then a 9-bit magnitude, |q_i| = mag / 511 / sqrt(2).
    """
    comp = int(comp)
    if not 0 <= comp < 1 << 32:
        raise ValueError(f"compressed quaternion {comp} is not a uint32")
    largest = comp >> 30
    q = [0.0, 0.0, 0.0, 0.0]
    others = [i for i in range(4) if i != largest]
    squares = 0.0
    for k, i in enumerate(others):
        field = (comp >> (10 * (2 - k))) & 0x3FF
        value = (field & _MASK9) / _MASK9 * math.sqrt(0.5)
        q[i] = -value if field >> 9 else value
        squares += value * value
    q[largest] = math.sqrt(max(0.0, 1.0 - squares))
    return q[0], q[1], q[2], q[3]


def compress_quaternion(x: float, y: float, z: float, w: float) -> int:
    """(x, y, z, w) -> uint32, as the firmware packs ``stateEstimateZ.quat`` (tests, simulation)."""
    q = np.array([x, y, z, w], dtype=np.float64)
    n = float(np.linalg.norm(q))
    if not (math.isfinite(n) and n > 0):
        raise ValueError(f"quaternion {list(q)} cannot be normalised")
    q /= n
    largest = int(np.argmax(np.abs(q)))
    negate = q[largest] < 0
    comp = largest
    for i in range(4):
        if i != largest:
            negbit = int((q[i] < 0) ^ negate)
            mag = int(_MASK9 * (abs(q[i]) / math.sqrt(0.5)) + 0.5)
            comp = (comp << 10) | (negbit << 9) | mag
    return comp


# ---- the conversion -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlausibleRanges:
    """Limits that catch unit or frame mistakes (a value outside raises, naming the field)."""
    position_m: float = 50.0
    """|position| per axis (a lab is tens of metres, not millimetres read as metres)."""
    velocity_mps: float = 20.0
    """|velocity| per axis."""
    angular_velocity_radps: float = 35.0
    """|body rate| per axis: the IMU's 2000 deg/s range is 34.9 rad/s (deg/s read as rad/s fails)."""
    quaternion_norm_tolerance: float = 0.05
    """| |q| - 1 | allowed before normalising (an estimator quaternion is unit up to rounding)."""


def state_from_log(values: Mapping[str, float], rotor_speed, variant: Variant = "float",
                   ranges: PlausibleRanges = PlausibleRanges()) -> tuple[np.ndarray, float | None]:
    """One drone's log values -> (state [17] float64 in layout.STATE_FIELDS order, battery [V], None
    where the values have no battery voltage: see OPTIONAL_LOG_VARIABLES).

    ``rotor_speed`` [4] fills the rotor-speed field (see :class:`RotorSpeedEstimate`). Missing
    variables raise KeyError naming them; non-finite or implausible values raise ValueError naming
    the field, the value and the limit.
    """
    if variant == "float":
        need = [v for _, names, _ in FLOAT_LOG_BLOCKS for v in names]
    elif variant == "compressed":
        need = [v for v, _ in COMPRESSED_LOG_BLOCK[1]]
    else:
        raise ValueError(f"log variant {variant!r}, expected 'float' or 'compressed'")
    missing = [v for v in need if v not in values and v not in OPTIONAL_LOG_VARIABLES]
    if missing:
        raise KeyError(f"log values lack {missing} (variant {variant!r} needs {need})")
    g = lambda k: float(values[k])  # noqa: E731
    if variant == "float":
        pos = [g("stateEstimate.x"), g("stateEstimate.y"), g("stateEstimate.z")]
        vel = [g("stateEstimate.vx"), g("stateEstimate.vy"), g("stateEstimate.vz")]
        quat = [g("stateEstimate.qw"), g("stateEstimate.qx"), g("stateEstimate.qy"), g("stateEstimate.qz")]
        rate = [math.radians(g("gyro.x")), math.radians(g("gyro.y")), math.radians(g("gyro.z"))]
        vbat = g("pm.vbat") if "pm.vbat" in values else None
    else:
        pos = [g(f"stateEstimateZ.{a}") / 1000.0 for a in "xyz"]
        vel = [g(f"stateEstimateZ.v{a}") / 1000.0 for a in "xyz"]
        qx, qy, qz, qw = decompress_quaternion(int(values["stateEstimateZ.quat"]))
        quat = [qw, qx, qy, qz]
        rate = [g("stateEstimateZ.rateRoll") / 1000.0, -g("stateEstimateZ.ratePitch") / 1000.0,
                g("stateEstimateZ.rateYaw") / 1000.0]
        vbat = g("pm.vbatMV") / 1000.0 if "pm.vbatMV" in values else None
    state = np.zeros(layout.STATE_DIM)
    state[layout.POS] = pos
    state[layout.QUAT] = quat
    state[layout.VEL] = vel
    state[layout.ANGVEL] = rate
    rotor = np.asarray(rotor_speed, dtype=np.float64)
    if rotor.shape != (4,):
        raise ValueError(f"rotor_speed has shape {list(rotor.shape)}, expected [4] (M1..M4, {layout.STATE_FIELDS[-1].unit})")
    state[layout.ROTOR] = rotor
    check_array("crazyflie state", state, (layout.STATE_DIM,), layout.STATE_FIELDS)
    _check_plausible(state, ranges)
    state[layout.QUAT] /= np.linalg.norm(state[layout.QUAT])
    return state, vbat


def _check_plausible(state: np.ndarray, r: PlausibleRanges) -> None:
    for field, sl, limit, unit in (("position", layout.POS, r.position_m, "m"),
                                   ("velocity", layout.VEL, r.velocity_mps, "m/s"),
                                   ("angular_velocity", layout.ANGVEL, r.angular_velocity_radps, "rad/s")):
        worst = int(np.argmax(np.abs(state[sl])))
        if abs(state[sl][worst]) > limit:
            raise ValueError(f"crazyflie state {field}[{worst}] = {state[sl][worst]:.6g} {unit} exceeds the "
                             f"plausible {limit} {unit}: check the log variable's unit and frame")
    norm = float(np.linalg.norm(state[layout.QUAT]))
    if abs(norm - 1.0) > r.quaternion_norm_tolerance:
        raise ValueError(f"crazyflie quaternion has norm {norm:.6g}, expected 1 +- {r.quaternion_norm_tolerance} "
                         f"(order w, x, y, z from stateEstimate.qw/qx/qy/qz)")


class RotorSpeedEstimate:
    """The model's rotor speeds driven by the commanded actions (no RPM sensing on a CF2.1)."""

    def __init__(self, params: QuadrotorParams, airborne: bool = False):
        self.params = params
        self.reset(airborne)

    def reset(self, airborne: bool = False) -> None:
        """Hover speed on all rotors when airborne (after a stock take-off), else 0."""
        self.speed = np.full(4, self.params.hover_rotor_speed if airborne else 0.0)

    def update(self, action, dt_s: float | None = None) -> np.ndarray:
        """Advance one control step under ``action`` [4] in [-1, 1]; returns the speeds [4]."""
        a = np.asarray(action, dtype=np.float64)
        check_array("action", a, (4,))
        p = self.params
        setpoint = rotor_speed_setpoint(a, p.rotor_speed_min, p.rotor_speed_max)
        dt = p.dt_s if dt_s is None else float(dt_s)
        self.speed, _ = rotor_speed_rk4(self.speed, setpoint, dt, 1.0 / p.motor_time_constant_rising_s,
                                        1.0 / p.motor_time_constant_falling_s)
        self.speed = np.clip(self.speed, p.rotor_speed_min, p.rotor_speed_max)
        return self.speed.copy()


# ---- assembling log blocks that arrive separately ------------------------------------------------
TIMESTAMP_MODULO_MS = 1 << 24  # cflib log timestamps are 24-bit milliseconds


def timestamp_diff_ms(newer: int, older: int) -> int:
    """newer - older for wrapping 24-bit ms timestamps (in (-2^23, 2^23])."""
    d = (int(newer) - int(older)) % TIMESTAMP_MODULO_MS
    return d - TIMESTAMP_MODULO_MS if d > TIMESTAMP_MODULO_MS // 2 else d


class LogAssembler:
    """Merges the log blocks of one drone into complete samples.

    ``add(block, timestamp_ms, data)`` stores a block's values; it returns the merged values when
    every block of the variant holds data whose timestamps lie within ``max_skew_ms`` of the
    newest (then the set starts over), else None. The compressed variant has one block, so each
    packet is a sample.
    """

    def __init__(self, variant: Variant = "float", max_skew_ms: int = 15):
        self.blocks = [name for name, _ in log_blocks(variant)]
        self.max_skew_ms = int(max_skew_ms)
        self._latest: dict[str, tuple[int, Mapping[str, float]]] = {}

    def add(self, block: str, timestamp_ms: int, data: Mapping[str, float]) -> tuple[int, dict] | None:
        if block not in self.blocks:
            raise ValueError(f"unknown log block {block!r}, expected one of {self.blocks}")
        self._latest[block] = (int(timestamp_ms), data)
        if len(self._latest) < len(self.blocks):
            return None
        offsets = [timestamp_diff_ms(t, timestamp_ms) for t, _ in self._latest.values()]
        if max(offsets) - min(offsets) > self.max_skew_ms:
            return None
        newest = (int(timestamp_ms) + max(offsets)) % TIMESTAMP_MODULO_MS
        merged: dict = {}
        for _, values in self._latest.values():
            merged.update(values)
        self._latest.clear()
        return newest, merged
