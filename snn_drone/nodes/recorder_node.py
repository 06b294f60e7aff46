"""recorder_node (`snn-drone record`): the graph's topics into a rosbag2 folder (MCAP by default).

Every ``discover_every_s`` it subscribes to new topics of the graph (all of them but /rosout and
/parameter_events, or those listed in ``topics``), with the durability their publishers offer (so
latched weights and horizon are recorded too); listed topics of the package (arrays.TOPIC_TYPES)
are subscribed at once, before their publishers start, so that nothing is missed. Each message is
written as received (serialized, stamped with the receive time). The bag is flushed every ``flush_every_s``; SIGINT/SIGTERM or
``duration_s`` close it (metadata.yaml written).
"""
from __future__ import annotations

import importlib
import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from .arrays import topic_type
from .bag_io import BagWriter
from .node_runtime import declare, run_node

SKIP = ("/rosout", "/parameter_events")


def message_class(msgtype: str):
    """'std_msgs/msg/Float32MultiArray' -> the rclpy message class."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__("recorder_node", **kwargs)
        out = declare(self, "out", "", "new bag folder to write")
        storage = declare(self, "storage", "mcap", "rosbag2 storage: mcap or sqlite3")
        topics = declare(self, "topics", "", "comma-separated topics to record (empty: every topic)")
        self.duration_s = declare(self, "duration_s", 0.0, "stop after this many seconds (0: until shut down)")
        flush_s = declare(self, "flush_every_s", 1.0, "write what was received to disk this often (s)")
        discover_s = declare(self, "discover_every_s", 0.5, "look for new topics this often (s)")
        if not out:
            raise ValueError("recorder_node needs the bag folder parameter `out`")
        self.only = {t.strip() for t in topics.split(",") if t.strip()} or None
        self.bag = BagWriter(out, storage)
        self._subs = {}
        self._t0 = time.monotonic()
        for topic in sorted(self.only or ()):  # the package's own topics: subscribe before any publisher exists
            known = topic_type(topic)
            if known is not None:
                self._subscribe(topic, known[0], latched=known[1], best_effort=False)
        self.create_timer(discover_s, self._discover)
        self.create_timer(flush_s, self.bag.flush)
        self._discover()
        self.get_logger().info(f"recording {'every topic' if self.only is None else sorted(self.only)} to {out}")

    def _discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self._subs or topic in SKIP or (self.only is not None and topic not in self.only):
                continue
            infos = self.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            latched = any(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
            best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
            self._subscribe(topic, types[0], latched, best_effort)

    def _subscribe(self, topic: str, msgtype: str, latched: bool, best_effort: bool) -> None:
        try:
            cls = message_class(msgtype)
        except (ImportError, AttributeError, ValueError):
            self.get_logger().warning(f"not recording {topic}: unknown type {msgtype}")
            self._subs[topic] = None
            return
        qos = QoSProfile(depth=1000,
                         reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        self.bag.add_topic(topic, msgtype, latched=latched, depth=1 if latched else 10)
        self._subs[topic] = self.create_subscription(
            cls, topic, lambda raw, t=topic: self.bag.write(t, time.time_ns(), raw), qos, raw=True)
        self.get_logger().info(f"recording {topic} ({msgtype}{', latched' if latched else ''})")

    def run(self) -> None:
        from rclpy.executors import SingleThreadedExecutor
        ex = SingleThreadedExecutor(context=self.context)
        ex.add_node(self)
        while self.context.ok() and (self.duration_s <= 0 or time.monotonic() - self._t0 < self.duration_s):
            ex.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.bag.close()
        counts = ", ".join(f"{t}: {n}" for t, n in sorted(self.bag.counts.items()))
        print(f"recorder_node: wrote {self.bag.path} ({counts})", flush=True)


def main(argv=None) -> int:
    return run_node(RecorderNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
