"""`snn-drone launch GRAPH [name:=value ...]`: run a node graph without launch_ros."""
from __future__ import annotations


def register(sub) -> None:
    from snn_drone.graphs import GRAPHS
    lines = []
    for g in GRAPHS.values():
        lines.append(f"{g.name}: {g.description}")
        lines += [f"  {a.name}:={a.default or repr('')}  {a.description}" for a in g.arguments]
    p = sub.add_parser("launch", help="run a ROS 2 node graph (default train_sim) as processes, like ros2 launch",
                       description="Start the nodes of a graph declared in snn_drone/graphs.py (the same graph the "
                                   "launch/*.launch.py files start under `ros2 launch`), prefix their output, forward "
                                   "Ctrl-C/SIGTERM, and exit non-zero if a node dies. DDS stays on this machine's "
                                   "loopback unless ROS_AUTOMATIC_DISCOVERY_RANGE says otherwise.",
                       epilog="graphs and arguments:\n" + "\n".join(lines),
                       formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("graph", nargs="?", default="train_sim", help="graph name (default: %(default)s)")
    p.add_argument("assignments", nargs="*", metavar="NAME:=VALUE", help="graph arguments, e.g. workers:=2")
    p.add_argument("--print", action="store_true", help="print the node commands and parameters, start nothing")
    p.set_defaults(func=run)


def run(args) -> int:
    import tempfile
    from pathlib import Path

    from snn_drone.graphs import GRAPHS
    from snn_drone.launcher import launch, node_command, parse_assignments, write_params
    if ":=" in args.graph:  # `snn-drone launch workers:=2`: the default graph
        args.assignments, args.graph = [args.graph, *args.assignments], "train_sim"
    assignments = parse_assignments(args.assignments)
    if args.print:
        if args.graph not in GRAPHS:
            raise ValueError(f"no graph {args.graph!r}; graphs: {', '.join(GRAPHS)}")
        with tempfile.TemporaryDirectory() as tmp:
            for spec in GRAPHS[args.graph].nodes(assignments):
                print(" ".join(node_command(spec, write_params(spec, Path(tmp)))))
                print(f"    parameters: {spec.parameters}")
        return 0
    return launch(args.graph, assignments)
