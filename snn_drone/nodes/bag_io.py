"""rosbag2 files with ``rosbags`` (no ROS install needed): write, read, salvage, and rollouts for training.

Bags are standard rosbag2 folders (metadata.yaml + MCAP by default, or sqlite3) with standard
message types, so ``ros2 bag info/play`` read them. Messages are stored as recorded (CDR bytes).

The writer closes an MCAP chunk at every :meth:`BagWriter.flush` (the recorder flushes every
second), so a recording that was killed keeps everything up to its last flush. Reading a bag whose
file is cut (or whose recording never finished: no metadata.yaml) raises :class:`TruncatedBagError`
naming the file, the byte of the cut and how many messages before it are intact; with
``salvage=True`` those messages are read.
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from snn_drone.core.learning.sequence_replay import Sequences

from . import arrays

MCAP_MAGIC = b"\x89MCAP0\r\n"


class TruncatedBagError(ValueError):
    """The bag's storage file ends inside a record, or its recording never finished."""


class BagMessage(NamedTuple):
    topic: str
    msgtype: str
    timestamp_ns: int
    rawdata: bytes
    latched: bool


def typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_KILTED)


def _qos(latched: bool, depth: int):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE,
               QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
               QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


class BagWriter:
    """A new rosbag2 folder; ``add_topic`` once per topic, then ``write`` serialized messages."""

    def __init__(self, path: str | Path, storage: str = "mcap"):
        from rosbags.rosbag2 import StoragePlugin, Writer
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"bag storage {storage!r}, expected one of {sorted(plugins)}")
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag folder {self.path} exists already; choose a new one")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._store = typestore()
        self._conns: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str, latched: bool = False, depth: int = 10) -> None:
        if topic in self._conns:
            return
        self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self._store,
                                                         offered_qos_profiles=[_qos(latched, depth)])
        self.counts[topic] = 0

    def write(self, topic: str, timestamp_ns: int, rawdata: bytes) -> None:
        self._writer.write(self._conns[topic], int(timestamp_ns), rawdata)
        self.counts[topic] += 1

    def flush(self) -> None:
        """Put everything written so far on disk (MCAP: close the pending chunk)."""
        storage = getattr(self._writer, "storage", None)
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and chunk.bio.tell() and hasattr(storage, "close_chunk"):
            storage.close_chunk()
        bio = getattr(storage, "bio", None)
        if bio is not None:
            bio.flush()

    def close(self) -> None:
        self._writer.close()


# ---- reading --------------------------------------------------------------------------------------
def _latched(qos_list) -> bool:
    from rosbags.interfaces import QosDurability
    return any(getattr(q, "durability", None) == QosDurability.TRANSIENT_LOCAL for q in qos_list or ())


def read_bag(path: str | Path, topics: set[str] | None = None, salvage: bool = False) -> Iterator[BagMessage]:
    """Messages of a rosbag2 folder in timestamp order (``topics``: only these)."""
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag {path} does not exist")
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError) as e:  # a cut file, or no metadata.yaml
        yield from _salvage(path, topics, salvage, str(e))
        return
    try:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        latched = {c.id: _latched(c.ext.offered_qos_profiles) for c in conns}
        for conn, t, raw in reader.messages(connections=conns):
            yield BagMessage(conn.topic, conn.msgtype, t, bytes(raw), latched[conn.id])
    finally:
        reader.close()


@dataclass
class _Scan:
    messages: list[BagMessage] = field(default_factory=list)
    cut_at: int | None = None  # byte offset of the first incomplete record (None: complete)
    size: int = 0


def _salvage(path: Path, topics, salvage: bool, why: str) -> Iterator[BagMessage]:
    files = sorted(path.glob("*.mcap")) if path.is_dir() else [path]
    if not files:
        raise TruncatedBagError(f"bag {path} cannot be read ({why}) and has no MCAP file to salvage from")
    scans = [(f, scan_mcap(f)) for f in files]
    cut = [(f, s) for f, s in scans if s.cut_at is not None]
    n_ok = sum(len(s.messages) for _, s in scans)
    if not salvage:
        where = "; ".join(f"{f.name} ends inside a record at byte {s.cut_at} of {s.size}" for f, s in cut) \
            or "its recording never finished (no metadata.yaml)"
        raise TruncatedBagError(f"bag {path} is truncated: {where}. {n_ok} complete messages before the cut are "
                                f"readable: pass --salvage (snn-drone play/train) or salvage=True to use them "
                                f"[{why}]")
    for _, s in scans:
        for m in sorted(s.messages, key=lambda m: m.timestamp_ns):
            if topics is None or m.topic in topics:
                yield m


def scan_mcap(file: str | Path) -> _Scan:
    """Every complete message of an MCAP file, stopping at the first record that is cut short."""
    data = Path(file).read_bytes()
    out = _Scan(size=len(data))
    if data[:8] != MCAP_MAGIC:
        out.cut_at = 0
        return out
    channels: dict[int, tuple[str, str, bool]] = {}
    schemas: dict[int, str] = {}

    def records(buf: bytes, pos: int, end: int, top: bool):
        while pos < end:
            if pos + 9 > end:
                return pos
            op, n = buf[pos], struct.unpack_from("<Q", buf, pos + 1)[0]
            body_at = pos + 9
            if body_at + n > end:
                return pos
            body = buf[body_at:body_at + n]
            if op == 0x03:
                sid = struct.unpack_from("<H", body)[0]
                schemas[sid] = _str(body, 2)[0]
            elif op == 0x04:
                cid, sid = struct.unpack_from("<HH", body)
                topic, at = _str(body, 4)
                _, at = _str(body, at)
                meta_len = struct.unpack_from("<I", body, at)[0]
                meta = body[at + 4:at + 4 + meta_len].decode(errors="replace")
                channels[cid] = (topic, schemas.get(sid, ""), "transient_local" in meta.lower()
                                 or "durability: 1" in meta)
            elif op == 0x05:
                cid, _, log_time = struct.unpack_from("<HIQ", body)
                if cid in channels:
                    topic, msgtype, latched = channels[cid]
                    out.messages.append(BagMessage(topic, msgtype, log_time, bytes(body[22:]), latched))
            elif op == 0x06 and top:
                _, _, usize, crc = struct.unpack_from("<QQQI", body)
                comp, at = _str(body, 28)
                clen = struct.unpack_from("<Q", body, at)[0]
                inner = body[at + 8:at + 8 + clen]
                if comp:
                    from rosbags.rosbag2.storage_mcap import decompress
                    inner = decompress(inner, comp, usize, crc)
                if records(inner, 0, len(inner), False) != len(inner):
                    return pos
            elif op == 0x02 and top:
                return end
            pos = body_at + n
        return pos

    stop = records(data, 8, len(data), True)
    if stop != len(data):
        out.cut_at = stop
    return out


def _str(buf: bytes, at: int) -> tuple[str, int]:
    n = struct.unpack_from("<I", buf, at)[0]
    return buf[at + 4:at + 4 + n].decode(), at + 4 + n


# ---- rollouts for training --------------------------------------------------------------------------
@dataclass
class BagRollouts:
    """Everything a trainer ingests from bags."""
    sequences: Sequences | None
    env_steps: int
    returns: list[float]
    lengths: list[float]
    messages: int


def is_rollout_topic(topic: str) -> bool:
    return topic.rstrip("/").split("/")[-1] == arrays.ROLLOUT_TOPIC


def is_episodes_topic(topic: str) -> bool:
    return topic.rstrip("/").split("/")[-1] == arrays.EPISODES.topic


def load_rollouts(paths, length: int, salvage: bool = False) -> BagRollouts:
    """All rollout sequences and episode statistics of one or more bags (topics named .../rollout and
    .../episodes). A malformed message fails naming the bag, topic and timestamp."""
    store = typestore()
    seqs, env_steps, returns, lengths, count = [], 0, [], [], 0
    for p in paths:
        for m in read_bag(p, salvage=salvage):
            if not (is_rollout_topic(m.topic) or is_episodes_topic(m.topic)):
                continue
            msg = store.deserialize_cdr(m.rawdata, m.msgtype)
            try:
                if is_rollout_topic(m.topic):
                    s, head = arrays.unpack_sequences(msg, length)
                    seqs.append(s)
                    env_steps += head["env_steps"]
                    count += 1
                else:
                    rows, _ = arrays.unpack(arrays.EPISODES, msg)
                    returns += rows[:, 0].tolist()
                    lengths += rows[:, 1].tolist()
            except ValueError as e:
                raise ValueError(f"bag {p}, topic {m.topic} at {m.timestamp_ns} ns: {e}") from None
    return BagRollouts(Sequences.cat(seqs) if seqs else None, env_steps, returns, lengths, count)
