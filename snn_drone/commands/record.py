"""`snn-drone record`: the graph's rollout and live topics into a rosbag2 folder."""
from __future__ import annotations

import time


def register(sub) -> None:
    p = sub.add_parser("record", help="record the graph's topics into a rosbag2 bag (MCAP; `ros2 bag info` reads it)",
                       description="Subscribe to every topic of the running graph (or --topics) and write the "
                                   "messages to a new rosbag2 folder: the rollout topic (training data), live state "
                                   "and commands, latched weights and horizon. Ctrl-C closes the bag.")
    p.add_argument("-o", "--out", metavar="DIR", help="new bag folder (default: bags/rollout_<date>_<time>)")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="only these topics (default: all)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="storage plugin (default: %(default)s)")
    p.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.set_defaults(func=run)


def run(args) -> int:
    from rclpy.parameter import Parameter

    from snn_drone.nodes.node_runtime import run_node
    from snn_drone.nodes.recorder_node import RecorderNode
    out = args.out or time.strftime("bags/rollout_%Y%m%d_%H%M%S")
    params = [Parameter("out", value=out), Parameter("storage", value=args.storage),
              Parameter("topics", value=",".join(args.topics or [])), Parameter("duration_s", value=float(args.duration))]
    return run_node(lambda: RecorderNode(parameter_overrides=params), argv=[])
