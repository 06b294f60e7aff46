"""player_node (`snn-drone play`): a rosbag2 folder back into the graph.

Publishes every message of the bag (or of ``topics``) as recorded (serialized bytes, the recorded
type), latched topics as latched, at the recorded pace times ``rate`` (0: as fast as possible).
It first waits up to ``wait_for_subscribers_s`` until every topic has a subscriber, so that no
message is published into the void. Remap topics with the usual ``--ros-args -r from:=to``.
"""
from __future__ import annotations

import time

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from .bag_io import read_bag
from .node_runtime import await_acks, declare, run_node
from .recorder_node import message_class


class PlayerNode(Node):
    def __init__(self, **kwargs):
        super().__init__("player_node", **kwargs)
        self.bag = declare(self, "bag", "", "bag folder to play")
        topics = declare(self, "topics", "", "comma-separated topics to play (empty: all)")
        self.rate = declare(self, "rate", 1.0, "playback speed relative to the recording (0: as fast as possible)")
        self.wait_s = declare(self, "wait_for_subscribers_s", 5.0, "wait this long for a subscriber on every topic")
        self.salvage = declare(self, "salvage", False, "play the intact part of a truncated bag")
        if not self.bag:
            raise ValueError("player_node needs the bag folder parameter `bag`")
        self.only = {t.strip() for t in topics.split(",") if t.strip()} or None
        self.messages = list(read_bag(self.bag, self.only, salvage=self.salvage))
        self.pubs = {}
        for m in self.messages:
            if m.topic not in self.pubs:
                qos = QoSProfile(depth=1000 if not m.latched else 1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL if m.latched else DurabilityPolicy.VOLATILE)
                self.pubs[m.topic] = self.create_publisher(message_class(m.msgtype), m.topic, qos)
        self.published = 0

    def run(self) -> None:
        from rclpy.executors import SingleThreadedExecutor
        ex = SingleThreadedExecutor(context=self.context)
        ex.add_node(self)
        deadline = time.monotonic() + self.wait_s
        while self.context.ok() and time.monotonic() < deadline and \
                any(p.get_subscription_count() == 0 for p in self.pubs.values()):
            ex.spin_once(timeout_sec=0.05)
        missing = sorted(t for t, p in self.pubs.items() if p.get_subscription_count() == 0)
        if missing:
            self.get_logger().warning(f"no subscriber on {', '.join(missing)} after {self.wait_s} s; playing anyway")
        self.get_logger().info(f"playing {len(self.messages)} messages of {self.bag} on {len(self.pubs)} topics")
        if not self.messages:
            return
        t_bag0, t_wall0 = self.messages[0].timestamp_ns, time.monotonic()
        for m in self.messages:
            if not self.context.ok():
                return
            if self.rate > 0:
                due = t_wall0 + (m.timestamp_ns - t_bag0) / 1e9 / self.rate
                while self.context.ok() and (left := due - time.monotonic()) > 0:
                    ex.spin_once(timeout_sec=left)
            self.pubs[m.topic].publish(m.rawdata)
            self.published += 1
        for pub in self.pubs.values():  # reliable: every message acknowledged before the publishers vanish
            await_acks(self, pub, "the played messages", timeout_s=5.0)
        self.get_logger().info(f"played {self.published} messages")


def main(argv=None) -> int:
    return run_node(PlayerNode, argv)


if __name__ == "__main__":
    raise SystemExit(main())
