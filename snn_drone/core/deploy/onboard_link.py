"""The ground's side of the firmware app's onboard mode (firmware/src/snn_onboard.h): the parameter
that starts it, the log block that streams what the drone flew, and the names of its codes.

The drone runs the deployed protocol itself (guide for the warm-up, then the SNN, from its own state
estimate); the ground only sets ``snnonb.enable`` (cflib, cfclient or crazyswarm2's parameter
server can all do it), sends heartbeats on the app channel (motor_packet.heartbeat_packet) for the
drone's link watchdog, and records the ``snnonb`` log group beside the state.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..common import layout

ENABLE_PARAM = "snnonb.enable"
"""uint8: 1 starts the protocol at episode step 0 (membranes zero, guide history filled), 0 hands back
to the stock controller. A trip latches until the next 0 -> 1."""
LINK_TIMEOUT_PARAM = "snnonb.linkMs"
"""uint16 [ms]: no heartbeat for this long trips the drone's link watchdog (0: off)."""

PHASES = ("off", "guide", "snn", "tripped")
TRIPS = ("none", "lost_link", "geofence", "tilt", "nonfinite_state")
"""snnonb.trip codes, named as safety.py names the violations."""

LOG_BLOCK: tuple[str, tuple[tuple[str, str], ...]] = (
    "snn_onboard", (("snnonb.phase", "uint8_t"), ("snnonb.trip", "uint8_t"), ("snnonb.step", "uint16_t"),
                    ("snnonb.spk0", "uint16_t"), ("snnonb.spk1", "uint16_t"), ("snnonb.a1", "float"),
                    ("snnonb.a2", "float"), ("snnonb.a3", "float"), ("snnonb.a4", "float"),
                    ("snnonb.stepUs", "uint16_t")))
"""One cflib log block of 26 bytes (the payload limit) at 100 Hz."""

TELEMETRY_FIELDS = ("phase", "trip", "step", "spikes_layer0", "spikes_layer1", "a1", "a2", "a3", "a4", "step_us")
"""The columns of the bridge's ``onboard/status`` rows (Float32MultiArray, one row per log sample)."""


def telemetry(values: Mapping[str, float]) -> np.ndarray:
    """A ``snn_onboard`` log sample -> [10] float32 in TELEMETRY_FIELDS order; KeyError names what
    is missing."""
    names = [v for v, _ in LOG_BLOCK[1]]
    missing = [v for v in names if v not in values]
    if missing:
        raise KeyError(f"onboard log sample lacks {missing}")
    return np.array([float(values[v]) for v in names], np.float32)


def flown_action(row: np.ndarray) -> np.ndarray:
    """The action the drone flew this step, [4] in [-1, 1]."""
    return np.asarray(row[5:5 + layout.ACTION_DIM], np.float64)


def trip_name(row: np.ndarray) -> str:
    trip = int(row[1])
    return TRIPS[trip] if 0 <= trip < len(TRIPS) else f"unknown trip {trip}"


def describe(row: np.ndarray) -> str:
    phase = int(row[0])
    p = PHASES[phase] if 0 <= phase < len(PHASES) else f"phase {phase}"
    return f"{p} (step {int(row[2])}, trip {trip_name(row)})"
