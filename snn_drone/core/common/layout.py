"""The field order of every array the package exchanges: state, observation, action.

One module, one truth. Dynamics, task, envs, networks, ROS messages and bags all index through
these names, never through bare numbers.
"""
from __future__ import annotations

from typing import NamedTuple


class Field(NamedTuple):
    name: str
    size: int
    unit: str
    frame: str


def _slices(fields: tuple[Field, ...]) -> dict[str, slice]:
    out, start = {}, 0
    for f in fields:
        out[f.name] = slice(start, start + f.size)
        start += f.size
    return out


def describe(fields: tuple[Field, ...]) -> str:
    """Human-readable layout for error messages, e.g. 'position3 quaternion4 ...'."""
    return " ".join(f"{f.name}{f.size}" for f in fields)


# ---- State of one drone: 17 values --------------------------------------------------------------
STATE_FIELDS: tuple[Field, ...] = (
    Field("position", 3, "m", "world"),
    Field("quaternion", 4, "1 (w, x, y, z), body to world", "world"),
    Field("velocity", 3, "m/s", "world"),
    Field("angular_velocity", 3, "rad/s", "body"),
    Field("rotor_speed", 4, "rpm, or normalised [0, 1] for presets with a normalised thrust curve", "rotor"),
)
STATE_DIM = sum(f.size for f in STATE_FIELDS)  # 17
_S = _slices(STATE_FIELDS)
POS, QUAT, VEL, ANGVEL, ROTOR = _S["position"], _S["quaternion"], _S["velocity"], _S["angular_velocity"], _S["rotor_speed"]

# ---- Observation of the spiking actor: 18 values ------------------------------------------------
OBS_FIELDS: tuple[Field, ...] = (
    Field("position_error", 3, "m (position - target)", "world"),
    Field("rotation_matrix", 9, "1, row-major, body to world", "world"),
    Field("velocity", 3, "m/s", "world"),
    Field("angular_velocity", 3, "rad/s", "body"),
)
OBS_DIM = sum(f.size for f in OBS_FIELDS)  # 18
_O = _slices(OBS_FIELDS)
OBS_POS_ERR, OBS_ROT, OBS_VEL, OBS_ANGVEL = _O["position_error"], _O["rotation_matrix"], _O["velocity"], _O["angular_velocity"]

# ---- Action: 4 motor commands in [-1, 1]; rpm_des = (a + 1) / 2 * max_rpm ------------------------
ACTION_DIM = 4
ACTION_HISTORY = 32  # the privileged observation carries the last 32 actions

# ---- Privileged observation (critic and guide): the 18 + the last 32 actions (oldest first) ------
PRIV_OBS_DIM = OBS_DIM + ACTION_HISTORY * ACTION_DIM  # 146
PRIV_OBS_ACTIONS = slice(OBS_DIM, PRIV_OBS_DIM)
