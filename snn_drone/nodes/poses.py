"""What rviz and Foxglove show without a plugin: the simulated drones' poses in the ``world`` frame.

A sim node with poses on publishes, every ``every`` control steps: ``poses`` (geometry_msgs/PoseArray,
every drone of the batch), ``<name>/pose`` (geometry_msgs/PoseStamped) for the first ``per_drone``
drones, and, where tf2_msgs is installed (any ROS 2 install; it is not among the pip wheels), the
transforms world -> <name> on ``/tf``. Stamps are simulated time; positions in m, orientation from
the state's quaternion (w, x, y, z in the state layout).
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import Pose, PoseArray, PoseStamped

from snn_drone.core.common import layout

from .node_runtime import LIVE_QOS

WORLD_FRAME = "world"


def _pose(row: np.ndarray) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in row[layout.POS])
    p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z = (float(v) for v in row[layout.QUAT])
    return p


class PosePublisher:
    """Poses of a batch of drones named ``names[i]`` (the first ``len(names)`` get a PoseStamped and a TF frame)."""

    def __init__(self, node, names: list[str], every: int = 1):
        self.node, self.names, self.every = node, list(names), max(1, int(every))
        self.pub_array = node.create_publisher(PoseArray, "poses", LIVE_QOS)
        self.pub_each = [node.create_publisher(PoseStamped, f"{n}/pose", LIVE_QOS) for n in self.names]
        try:
            from geometry_msgs.msg import TransformStamped
            from tf2_msgs.msg import TFMessage
            self._tf = (TFMessage, TransformStamped, node.create_publisher(TFMessage, "/tf", LIVE_QOS))
        except ImportError:
            self._tf = None
        node.get_logger().info(
            f"poses in frame '{WORLD_FRAME}' every {self.every} step(s): {node.resolve_topic_name('poses')} (all drones), "
            + ", ".join(node.resolve_topic_name(f"{n}/pose") for n in self.names)
            + (", /tf" if self._tf else " (no /tf: tf2_msgs is not installed)"))

    def publish(self, state: np.ndarray, step: int, time_s: float) -> None:
        """``state`` [B, 17] (layout.STATE_FIELDS) at control ``step``, simulated time ``time_s``."""
        if step % self.every:
            return
        sec = int(time_s)
        stamp_ns = int(round((time_s - sec) * 1e9))
        if stamp_ns >= 1_000_000_000:
            sec, stamp_ns = sec + 1, stamp_ns - 1_000_000_000
        arr = PoseArray()
        arr.header.frame_id = WORLD_FRAME
        arr.header.stamp.sec, arr.header.stamp.nanosec = sec, stamp_ns
        arr.poses = [_pose(r) for r in state]
        self.pub_array.publish(arr)
        transforms = []
        for name, pub, pose in zip(self.names, self.pub_each, arr.poses):
            msg = PoseStamped()
            msg.header = arr.header
            msg.pose = pose
            pub.publish(msg)
            if self._tf:
                t = self._tf[1]()
                t.header = arr.header
                t.child_frame_id = name
                t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
                    pose.position.x, pose.position.y, pose.position.z)
                t.transform.rotation = pose.orientation
                transforms.append(t)
        if transforms:
            self._tf[2].publish(self._tf[0](transforms=transforms))
