"""`snn-drone play`: a recorded bag back into the graph."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("play", help="publish a recorded rosbag2 bag into the graph",
                       description="Publish every message of a bag recorded by `snn-drone record` (or `ros2 bag "
                                   "record`) as recorded, at the recorded pace times --rate. E.g. play rollouts into "
                                   "a trainer_node, or live state into actor/guide nodes.")
    p.add_argument("bag", metavar="DIR", help="bag folder")
    p.add_argument("--topics", nargs="+", metavar="TOPIC", help="only these topics (default: all)")
    p.add_argument("--rate", type=float, default=1.0, help="speed factor (0: as fast as possible; default %(default)s)")
    p.add_argument("--wait", type=float, default=5.0, metavar="S",
                   help="wait up to S seconds for a subscriber on every topic (default %(default)s)")
    p.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="rename topics, e.g. /rollout:=/w1/rollout")
    p.add_argument("--salvage", action="store_true", help="play the intact messages of a truncated bag")
    p.set_defaults(func=run)


def run(args) -> int:
    from rclpy.parameter import Parameter

    from snn_drone.nodes.node_runtime import run_node
    from snn_drone.nodes.player_node import PlayerNode
    for r in args.remap:
        if ":=" not in r:
            raise ValueError(f"--remap expects FROM:=TO, got {r!r}")
    params = [Parameter("bag", value=args.bag), Parameter("topics", value=",".join(args.topics or [])),
              Parameter("rate", value=float(args.rate)), Parameter("wait_for_subscribers_s", value=float(args.wait)),
              Parameter("salvage", value=bool(args.salvage))]
    argv = ["snn-drone-play", "--ros-args"] + [x for r in args.remap for x in ("-r", r)]
    return run_node(lambda: PlayerNode(parameter_overrides=params), argv=argv)
