"""Robots from a crazyswarm2-format ``crazyflies.yaml`` (the file crazyswarm2's launch reads):

    robots:
      cf1:
        enabled: true
        uri: radio://0/80/2M/E7E7E7E7E7
        initial_position: [0.0, 0.0, 0.0]   # m, world
        type: cf21
    robot_types:
      cf21:
        battery: {voltage_warning: 3.8, voltage_critical: 3.7}
        motion_capture: {...}               # read by crazyswarm2, kept here as-is
    all:
      firmware_params: {commander: {enHighLevel: 1}}   # and firmware_logging (crazyswarm2's; ignored here)

Only the keys this package uses are interpreted (uri, initial_position, type, enabled, the type's
battery thresholds, and ``firmware_params`` as crazyswarm2 merges them: ``all``, then the robot's
type, then the robot, the later winning per parameter); every other key is kept in
``RobotConfig.extra`` so the same file keeps working with crazyswarm2. Errors name the robot, the
key and what was expected.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from ..common.config import find_file, load_yaml

_URI = re.compile(r"^(radio://\d+/\d{1,3}/(250K|1M|2M)(/[0-9A-Fa-f]{10})?|usb://\d+|udp://[^\s]+|sim://[^\s]*)$")


@dataclass(frozen=True)
class RobotConfig:
    """One Crazyflie of the file."""

    name: str
    """Robot name (the key under ``robots``; also the ROS namespace, e.g. /cf1/pose)."""
    uri: str
    """cflib link URI, e.g. radio://0/80/2M/E7E7E7E7E7 (radio dongle/channel/datarate/address)."""
    initial_position_m: tuple[float, float, float]
    """Where the drone stands at start, world frame [m] (also the sim backend's spawn point)."""
    type: str
    """Robot type name (a key of ``robot_types``)."""
    enabled: bool = True
    """crazyswarm2's enabled flag; disabled robots are skipped unless asked for."""
    battery_warning_v: float | None = None
    """The type's battery.voltage_warning [V], if given."""
    battery_critical_v: float | None = None
    """The type's battery.voltage_critical [V], if given."""
    extra: dict = field(default_factory=dict, compare=False)
    """Other keys of the robot's entry, untouched."""
    firmware_params: dict = field(default_factory=dict, compare=False)
    """Firmware parameters to write after connecting, ``{"group.name": number}`` (crazyswarm2's
    ``firmware_params`` of ``all``, the type and the robot, merged in that order)."""


def _vec3(value, where: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ValueError(f"{where} = {value!r}, expected 3 finite numbers [x, y, z] in metres")
    return (float(value[0]), float(value[1]), float(value[2]))


def _firmware_params(value, where: str) -> dict:
    """crazyswarm2's nested ``{group: {name: value}}`` -> ``{"group.name": int | float}``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} = {value!r}, expected a mapping of parameter group -> {{name: value}}")
    out = {}
    for group, names in value.items():
        if not isinstance(names, dict) or not names:
            raise ValueError(f"{where}.{group} = {names!r}, expected a mapping of parameter name -> value")
        for name, v in names.items():
            if isinstance(v, bool):
                v = int(v)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{where}.{group}.{name} = {v!r}, expected a finite number")
            out[f"{group}.{name}"] = v
    return out


def parse_crazyflies(data: dict, source: str = "crazyflies.yaml", include_disabled: bool = False) -> list[RobotConfig]:
    """Robots of an already-loaded crazyflies.yaml mapping, in file order."""
    if not isinstance(data, dict) or not isinstance(data.get("robots"), dict) or not data["robots"]:
        raise ValueError(f"{source}: expected a mapping with a non-empty 'robots' mapping (crazyswarm2 format)")
    types = data.get("robot_types") or {}
    if not isinstance(types, dict):
        raise ValueError(f"{source}: robot_types must be a mapping of type name -> settings")
    common = data.get("all") or {}
    if not isinstance(common, dict):
        raise ValueError(f"{source}: all must be a mapping (firmware_params, firmware_logging)")
    common_params = _firmware_params(common.get("firmware_params"), f"{source}: all.firmware_params")
    robots = []
    for name, entry in data["robots"].items():
        where = f"{source}: robots.{name}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a mapping with uri, initial_position and type")
        for key in ("uri", "initial_position", "type"):
            if key not in entry:
                raise KeyError(f"{where} lacks '{key}'")
        uri = entry["uri"]
        if not isinstance(uri, str) or not _URI.match(uri):
            raise ValueError(f"{where}.uri = {uri!r}, expected a cflib URI like radio://0/80/2M/E7E7E7E7E7")
        rtype = entry["type"]
        if rtype not in types:
            raise ValueError(f"{where}.type = {rtype!r} is not defined under robot_types "
                             f"(defined: {sorted(types)})")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"{where}.enabled = {enabled!r}, expected true or false")
        battery = (types[rtype] or {}).get("battery") or {}
        volts = {}
        for key in ("voltage_warning", "voltage_critical"):
            v = battery.get(key)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v < 10):
                raise ValueError(f"{source}: robot_types.{rtype}.battery.{key} = {v!r}, expected volts in (0, 10)")
            volts[key] = None if v is None else float(v)
        extra = {k: v for k, v in entry.items() if k not in ("uri", "initial_position", "type", "enabled")}
        params = {**common_params,
                  **_firmware_params((types[rtype] or {}).get("firmware_params"),
                                     f"{source}: robot_types.{rtype}.firmware_params"),
                  **_firmware_params(entry.get("firmware_params"), f"{where}.firmware_params")}
        robot = RobotConfig(str(name), uri, _vec3(entry["initial_position"], f"{where}.initial_position"),
                            str(rtype), enabled, volts["voltage_warning"], volts["voltage_critical"], extra, params)
        if enabled or include_disabled:
            robots.append(robot)
    uris = [r.uri for r in robots]
    dupes = sorted({u for u in uris if uris.count(u) > 1 and not u.startswith("sim://")})
    if dupes:
        raise ValueError(f"{source}: several robots share the uri {dupes[0]}")
    return robots


def load_crazyflies(path: str | os.PathLike, include_disabled: bool = False) -> list[RobotConfig]:
    """Robots of the crazyswarm2-format YAML file at ``path`` (enabled ones unless asked)."""
    path = find_file(path, "robots file")
    return parse_crazyflies(load_yaml(path), path.name, include_disabled)
