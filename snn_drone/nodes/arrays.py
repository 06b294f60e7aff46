"""The wire format: every topic of the graph, its standard message type, and array <-> message.

One module for every conversion, used by the nodes, the bag recorder/player, the offline trainer
and the tests. Only standard message types travel (std_msgs, rosgraph_msgs). Unpacking works on
rclpy messages and on the messages rosbags deserialises alike (duck typing), so reading a bag
needs no ROS install.

Batched arrays (one message per control step for all B drones) are ``std_msgs/Float32MultiArray``:

- ``layout.dim[0]``: label = the row name (``drone``, ``episode``, ``sequence``), size = rows;
- ``layout.dim[1]``: label = the per-row field layout, e.g. ``position3 quaternion4 ...``, size =
  values per row. A message whose field label or sizes differ is rejected naming both layouts;
- ``layout.data_offset`` = the number of header values in front of the rows (the "padding" of
  MultiArrayLayout, which generic readers skip). Header values per topic are listed in ``SPECS``;
  ``step`` is the sim's control-step counter modulo 2**24 (exact in float32): it pairs each
  command with the state it answers (-1: answers none, e.g. the watchdog's safe command). A NaN
  header value means "not given" and unpacks as None.

Topics (names relative to the worker's namespace; fields per row; header values):

- ``state``: the sim's batched drone state, ``STATE_FIELDS`` (17) + ``episode_step`` 1 +
  ``last_action`` 4 = 22 per drone; header ``step``.
- ``actor/cmd``: the SNN's ``motor_command`` 4 per drone; header ``step``, ``weights_version``
  (the version of the weights that produced it).
- ``guide/cmd``: the privileged guide's ``motor_command`` 4; header ``step``.
- ``motor_cmd``: what the drones fly, ``motor_command`` 4; header ``step``, ``guide_steps`` (H),
  ``safe`` (1: the watchdog's safe command, step -1).
- ``episodes``: episodes that ended at this step, ``return`` 1, ``length`` 1, ``crashed`` 1;
  header ``step``.
- ``rollout``: finished sequences, one flat row per sequence (``sequence_parts``: the fields of
  ``Sequences``, e.g. ``state[101,17] action[100,4] ... start_step[]`` in ``dim[1]``'s label);
  header ``env_steps`` (drone steps flown since the worker's previous rollout message), ``worker``.
- ``actor/weights`` (``std_msgs/UInt8MultiArray``, latched): 8 header bytes with the version
  (little-endian uint64), then a ``save_policy`` file.
- ``jumpstart/horizon`` (``std_msgs/Int32``, latched): steps the guide flies;
  ``train/progress`` (``std_msgs/Float32``, latched): curriculum progress in [0, 1];
  ``train/metrics`` (``std_msgs/String``): one JSON metrics row; ``jumpstart/status``
  (``std_msgs/String``): watchdog reports; ``clock`` (``rosgraph_msgs/Clock``): sim time.
- fly_real: ``safety/status`` (``std_msgs/String``): one JSON object per safety trip (robot, kind,
  action, value, limit, message, verdict), from safety_node or crazyflie_bridge;
  ``flight/status`` (``std_msgs/String``, latched): JSON phase of the flight (ground, takeoff,
  policy, landing, stopped) with the event that led to it; ``disturbance``
  (``geometry_msgs/Twist``): velocity / body-rate kicks for the simulated drone (fault injection).
"""
from __future__ import annotations

import array
import json
import math
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from snn_drone.core.common import layout
from snn_drone.core.common.layout import Field, describe
from snn_drone.core.learning.sequence_replay import Sequences
from snn_drone.core.common.validation import check_array

STEP_MODULUS = 2 ** 24
"""Step stamps wrap here: every integer below it is exact in float32."""

COMMAND_FIELDS = (Field("motor_command", layout.ACTION_DIM, "[-1, 1]; rpm_des = (a + 1) / 2 * max_rpm", "rotor"),)
LIVE_STATE_FIELDS = layout.STATE_FIELDS + (
    Field("episode_step", 1, "control steps since the drone's reset (0: first state of a new episode)", "-"),
    Field("last_action", layout.ACTION_DIM, "newest entry of the action history: the command applied "
          "in the step that led here (at episode_step 0 the history's fill value)", "rotor"),
)
EPISODE_FIELDS = (
    Field("return", 1, "sum of Eq. 8 rewards at the sim's curriculum progress", "-"),
    Field("length", 1, "steps", "-"),
    Field("crashed", 1, "1: ended by termination, 0: truncated", "-"),
)

ONBOARD_FIELDS = (
    Field("phase", 1, "the drone's onboard mode: 0 off, 1 guide (warm-up), 2 snn, 3 tripped", "-"),
    Field("trip", 1, "0 none, 1 lost_link, 2 geofence, 3 tilt, 4 nonfinite_state", "-"),
    Field("episode_step", 1, "control steps since snnonb.enable was set", "-"),
    Field("spikes", 2, "spikes of LIF layer 0 and 1 in the step", "-"),
    Field("flown_action", layout.ACTION_DIM, "[-1, 1], the guide's in the warm-up, then the SNN's", "rotor"),
    Field("step_us", 1, "the drone's time for the control step [us]", "-"),
)
"""Columns of onboard/status (core/deploy/onboard_link.TELEMETRY_FIELDS, the snnonb log block)."""


class ArraySpec(NamedTuple):
    """One batched topic: default name, row label, per-row fields and header value names."""
    topic: str
    row: str
    fields: tuple[Field, ...]
    header: tuple[str, ...]

    @property
    def width(self) -> int:
        return sum(f.size for f in self.fields)

    @property
    def label(self) -> str:
        return describe(self.fields)


STATE = ArraySpec("state", "drone", LIVE_STATE_FIELDS, ("step",))
ACTOR_CMD = ArraySpec("actor/cmd", "drone", COMMAND_FIELDS, ("step", "weights_version"))
GUIDE_CMD = ArraySpec("guide/cmd", "drone", COMMAND_FIELDS, ("step",))
MOTOR_CMD = ArraySpec("motor_cmd", "drone", COMMAND_FIELDS, ("step", "guide_steps", "safe"))
EPISODES = ArraySpec("episodes", "episode", EPISODE_FIELDS, ("step",))
ONBOARD = ArraySpec("onboard/status", "drone", ONBOARD_FIELDS, ("step",))
SPECS = {s.topic: s for s in (STATE, ACTOR_CMD, GUIDE_CMD, MOTOR_CMD, EPISODES, ONBOARD)}

# live-state column slices
STATE_COLS = slice(0, layout.STATE_DIM)
EPISODE_STEP_COL = layout.STATE_DIM
LAST_ACTION_COLS = slice(layout.STATE_DIM + 1, layout.STATE_DIM + 1 + layout.ACTION_DIM)

ROLLOUT_TOPIC = "rollout"
WEIGHTS_TOPIC = "actor/weights"
HORIZON_TOPIC = "jumpstart/horizon"
PROGRESS_TOPIC = "train/progress"
METRICS_TOPIC = "train/metrics"
STATUS_TOPIC = "jumpstart/status"
SAFETY_STATUS_TOPIC = "safety/status"
FLIGHT_STATUS_TOPIC = "flight/status"
DISTURBANCE_TOPIC = "disturbance"
CLOCK_TOPIC = "clock"
ROLLOUT_HEADER = ("env_steps", "worker")

FLOAT_ARRAY_TYPE = "std_msgs/msg/Float32MultiArray"
"""Type of every batched topic and of the rollout topic."""

TOPIC_TYPES: dict[str, tuple[str, bool]] = {
    **{t: (FLOAT_ARRAY_TYPE, False) for t in (*SPECS, ROLLOUT_TOPIC)},
    WEIGHTS_TOPIC: ("std_msgs/msg/UInt8MultiArray", True),
    HORIZON_TOPIC: ("std_msgs/msg/Int32", True),
    PROGRESS_TOPIC: ("std_msgs/msg/Float32", True),
    METRICS_TOPIC: ("std_msgs/msg/String", False),
    STATUS_TOPIC: ("std_msgs/msg/String", False),
    SAFETY_STATUS_TOPIC: ("std_msgs/msg/String", False),
    FLIGHT_STATUS_TOPIC: ("std_msgs/msg/String", True),
    DISTURBANCE_TOPIC: ("geometry_msgs/msg/Twist", False),
    CLOCK_TOPIC: ("rosgraph_msgs/msg/Clock", False),
}
"""Every topic of the package (relative name) -> (message type, latched)."""


def topic_type(topic: str) -> tuple[str, bool] | None:
    """(type, latched) of a package topic under any namespace, e.g. /w1/actor/cmd; None if unknown."""
    name = topic.strip("/")
    for rel, tl in TOPIC_TYPES.items():
        if name == rel or name.endswith("/" + rel):
            return tl
    return None


class Unpacked(NamedTuple):
    rows: np.ndarray        # [N, width] float32
    header: dict[str, float | None]


def _float_msg(row_label: str, rows: int, field_label: str, width: int, header: list[float], flat: np.ndarray):
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension
    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=row_label, size=rows, stride=rows * width),
                      MultiArrayDimension(label=field_label, size=width, stride=width)]
    msg.layout.data_offset = len(header)
    data = np.empty(len(header) + flat.size, dtype=np.float32)
    data[:len(header)] = header
    data[len(header):] = flat.reshape(-1)
    msg.data = array.array("f", data.tobytes())
    return msg


def _header_values(spec_name: str, names: tuple[str, ...], header) -> list[float]:
    header = header or {}
    unknown = set(header) - set(names)
    if unknown:
        raise ValueError(f"{spec_name} header has no value {sorted(unknown)}; expected {list(names)}")
    out = []
    for n in names:
        v = header.get(n, float("nan"))
        if n == "step" and v is not None and math.isfinite(v) and v >= 0:
            v = int(v) % STEP_MODULUS
        out.append(float("nan") if v is None else float(v))
    return out


def pack(spec: ArraySpec, rows, header: dict | None = None):
    """[N, spec.width] values (numpy or torch) -> Float32MultiArray with the spec's layout."""
    a = rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
    a = a.astype(np.float32, copy=False)
    if a.ndim != 2 or a.shape[1] != spec.width:
        raise ValueError(f"{spec.topic} array has shape {list(a.shape)}, expected [{spec.row}s, {spec.width}] "
                         f"({spec.label})")
    return _float_msg(spec.row, a.shape[0], spec.label, spec.width,
                      _header_values(spec.topic, spec.header, header), a)


def _data(msg) -> np.ndarray:
    d = msg.data
    if isinstance(d, np.ndarray):
        return d.astype(np.float32, copy=False).reshape(-1)
    return np.frombuffer(d, dtype=np.float32) if isinstance(d, array.array) and d.typecode == "f" \
        else np.asarray(d, dtype=np.float32)


def unpack(spec: ArraySpec, msg, rows: int | None = None) -> Unpacked:
    """Float32MultiArray -> (rows [N, width], header). Raises ValueError naming the topic and the
    bad field: wrong layout, wrong number of values, wrong number of rows (``rows`` given), NaN/inf.
    A message without a layout (e.g. from ``ros2 topic pub``) is read as rows of ``width`` values
    and has no header values (None)."""
    data = _data(msg)
    dims = list(msg.layout.dim)
    offset = int(msg.layout.data_offset)
    w = spec.width
    if dims:
        if len(dims) != 2:
            raise ValueError(f"{spec.topic} message has {len(dims)} layout dimensions "
                             f"{[d.label for d in dims]}, expected 2 ([{spec.row}, fields])")
        n, width, label = int(dims[0].size), int(dims[1].size), dims[1].label
        if width != w or label != spec.label:
            raise ValueError(f"{spec.topic} array has {width} values per {spec.row} ({label!r}), expected "
                             f"{w} ({spec.label})")
        if data.size != offset + n * w:
            raise ValueError(f"{spec.topic} message holds {data.size} values, expected {offset} header + "
                             f"{n} {spec.row}s x {w} = {offset + n * w}")
        if offset != len(spec.header):
            raise ValueError(f"{spec.topic} message has {offset} header values, expected {len(spec.header)} "
                             f"{list(spec.header)}")
        head = {k: (float(v) if math.isfinite(v) else None) for k, v in zip(spec.header, data[:offset])}
    else:
        if offset or data.size % w:
            raise ValueError(f"{spec.topic} message without layout holds {data.size} values (offset {offset}), "
                             f"expected a multiple of {w} ({spec.label})")
        n, head = data.size // w, {k: None for k in spec.header}
    if rows is not None and n != rows:
        raise ValueError(f"{spec.topic} array has {n} {spec.row}s, expected {rows}")
    out = data[offset:].reshape(n, w)
    check_array(spec.topic, out, (n, w), spec.fields)
    return Unpacked(out, head)


# ---- rollout: finished sequences ---------------------------------------------------------------
def sequence_parts(length: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Per-sequence parts of the rollout topic, in order (Sequences' fields and shapes)."""
    T = length
    return (("state", (T + 1, layout.STATE_DIM)), ("action", (T, layout.ACTION_DIM)),
            ("guide_action", (T, layout.ACTION_DIM)), ("history0", (layout.ACTION_HISTORY, layout.ACTION_DIM)),
            ("target", (3,)), ("terminated", (T,)), ("valid", (T,)), ("start_step", ()))


def _parts_label(parts) -> str:
    return " ".join(f"{name}[{','.join(str(s) for s in shape)}]" for name, shape in parts)


_PART = re.compile(r"(\w+)\[([\d,]*)\]")


def pack_sequences(seqs: Sequences, env_steps: int = 0, worker: int = 0):
    """Sequences (N of length T) -> Float32MultiArray [N, values per sequence] + header (env_steps,
    worker). Booleans travel as 0/1 and start_step as a float (exact below 2**24)."""
    T = seqs.action.shape[1]
    n = seqs.n
    flat = torch.cat([x.detach().reshape(n, -1).to("cpu", torch.float32) for x in seqs], dim=1)
    parts = sequence_parts(T)
    return _float_msg("sequence", n, _parts_label(parts), flat.shape[1], [float(env_steps), float(worker)],
                      flat.numpy())


def unpack_sequences(msg, length: int | None = None, device="cpu") -> tuple[Sequences, dict[str, int]]:
    """Rollout message -> (Sequences, header {env_steps, worker}). ``length``: the expected T
    (sequences.length)."""
    dims = list(msg.layout.dim)
    if len(dims) != 2:
        raise ValueError(f"rollout message has {len(dims)} layout dimensions, expected 2 ([sequence, parts])")
    found = [(m.group(1), tuple(int(s) for s in m.group(2).split(",") if s)) for m in _PART.finditer(dims[1].label)]
    names = [p[0] for p in found]
    T = found[names.index("action")][1][0] if "action" in names else -1
    expected = sequence_parts(T)
    if found != list(expected):
        raise ValueError(f"rollout layout {dims[1].label!r} is not {_parts_label(expected)!r}")
    if length is not None and T != length:
        raise ValueError(f"rollout sequences have length {T} (action[{T},4]), expected {length} (sequences.length)")
    n, width = int(dims[0].size), int(dims[1].size)
    per = sum(int(np.prod(s)) for _, s in expected)
    data = _data(msg)
    offset = int(msg.layout.data_offset)
    if width != per or data.size != offset + n * per or offset != len(ROLLOUT_HEADER):
        raise ValueError(f"rollout message holds {data.size} values (offset {offset}, width {width}), expected "
                         f"{len(ROLLOUT_HEADER)} header + {n} sequences x {per}")
    flat = torch.from_numpy(data[offset:].reshape(n, per).copy())
    out, start = [], 0
    for name, shape in expected:
        size = int(np.prod(shape))
        x = flat[:, start:start + size].reshape(n, *shape)
        if name in ("terminated", "valid"):
            x = x != 0
        elif name == "start_step":
            x = x.long()
        out.append(x.to(device))
        start += size
    seqs = Sequences(*out)
    seqs.validate(T)
    head = {}
    for k, v in zip(ROLLOUT_HEADER, data[:offset]):
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"rollout header {k} is {v}, expected a count >= 0")
        head[k] = int(v)
    return seqs, head


# ---- weights: a policy file as bytes ------------------------------------------------------------
def pack_weights(policy: torch.nn.Module, version: int):
    """A policy (spiking actor or MLP) -> UInt8MultiArray: 8 bytes version (uint64 LE) + save_policy bytes."""
    from std_msgs.msg import MultiArrayDimension, UInt8MultiArray
    from snn_drone.core.learning.checkpoint import save_policy
    with tempfile.TemporaryDirectory() as d:
        path = save_policy(Path(d) / "policy.pt", policy)
        body = path.read_bytes()
    msg = UInt8MultiArray()
    head = int(version).to_bytes(8, "little")
    msg.layout.dim = [MultiArrayDimension(label="snn_drone policy checkpoint (save_policy)", size=len(body),
                                          stride=len(body))]
    msg.layout.data_offset = len(head)
    msg.data = array.array("B", head + body)
    return msg


def unpack_weights(msg, map_location="cpu") -> tuple[int, torch.nn.Module]:
    """UInt8MultiArray from :func:`pack_weights` -> (version, policy)."""
    from snn_drone.core.learning.checkpoint import load_policy
    raw = bytes(msg.data)
    offset = int(msg.layout.data_offset)
    if offset != 8 or len(raw) <= 8:
        raise ValueError(f"weights message has data_offset {offset} and {len(raw)} bytes, expected 8 version "
                         f"bytes followed by a policy file")
    version = int.from_bytes(raw[:8], "little")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "policy.pt"
        path.write_bytes(raw[8:])
        policy = load_policy(path, map_location=map_location)
    return version, policy


# ---- metrics: one JSON row ----------------------------------------------------------------------
def metrics_json(row: dict) -> str:
    """A metrics row as JSON (NaN/inf as null, like metrics.jsonl readers expect)."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
    return json.dumps(clean)
