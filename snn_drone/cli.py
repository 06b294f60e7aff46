"""`snn-drone`: the package's command line. Each subcommand lives in snn_drone/commands/<name>.py
and exposes ``register(subparsers)``, which adds its parser and sets ``func`` to its runner."""
from __future__ import annotations

import argparse
import importlib
import sys

# Module names under snn_drone.commands, in the order `--help` lists them.
COMMANDS = [
    "metrics",
    "simulate",
    "train",
    "eval",
    "summarize",
    "analyze_gradients",
    "launch",
    "record",
    "play",
    "export",
    "sitl_peer",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snn-drone",
        description="Train spiking-neural-network Crazyflie controllers with TD3BC + jump-start RL "
                    "and adaptive surrogate slopes; simulate, evaluate, launch ROS 2 graphs.",
        epilog="Run `snn-drone COMMAND --help` for the options of each command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"snn_drone.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
        # User-facing errors (bad config, bad input arrays): one clear line, not a traceback.
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"snn-drone {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
