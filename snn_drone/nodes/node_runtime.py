"""What every node shares: typed, described parameters, the training config, QoS profiles and the
process entry (loopback DDS defaults, rclpy init, clean shutdown on SIGINT/SIGTERM)."""
from __future__ import annotations

import sys
import traceback

import yaml
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from snn_drone.core.training import TrainConfig, load_train_config

LIVE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
"""Per-step batched topics (state, commands, clock, episodes): reliable, the last 10."""
ROLLOUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
"""Finished sequences: reliable with a deep queue (the trainer drains it between epochs)."""
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Weights, horizon, progress: the newest value reaches late joiners (actor nodes on other machines)."""

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def declare(node, name: str, default, description: str):
    """Declare a typed parameter with a description and return its value."""
    if isinstance(default, (list, tuple)):
        ptype = ParameterType.PARAMETER_DOUBLE_ARRAY
        default = [float(x) for x in default]
    else:
        ptype = _TYPES[type(default)]
    desc = ParameterDescriptor(name=name, type=ptype, description=description)
    value = node.declare_parameter(name, default, desc).value
    return list(value) if ptype == ParameterType.PARAMETER_DOUBLE_ARRAY else value


def declare_train_config(node) -> TrainConfig:
    """The ``config`` and ``overrides`` parameters every node reads: the same TrainConfig as `snn-drone train`."""
    path = declare(node, "config", "", "training YAML (TrainConfig keys); empty: config/train.yaml")
    over = declare(node, "overrides", "", "YAML mapping of dotted TrainConfig keys over the config, "
                                          "e.g. '{epochs: 5, learner.alpha: 2.5}'")
    return train_config(path, over)


def train_config(path: str, overrides: str) -> TrainConfig:
    over = yaml.safe_load(overrides) if overrides.strip() else {}
    if not isinstance(over, dict):
        raise ValueError(f"overrides must be a YAML mapping of config keys, got {overrides!r}")
    return load_train_config(path or None, over)


def run_node(factory, argv: list[str] | None = None) -> int:
    """Entry point of a node process: loopback DDS defaults, rclpy init, ``factory()`` builds the
    node, ``node.run()`` (or a plain spin) until shutdown; SIGINT/SIGTERM end it cleanly (exit 0).
    A configuration error is one logged line and exit code 2."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from .dds import apply_localhost_defaults
    apply_localhost_defaults()
    rclpy.init(args=sys.argv if argv is None else argv)
    node = None
    code = 0
    try:
        node = factory()
        if hasattr(node, "run"):
            node.run()
        else:
            ex = SingleThreadedExecutor()
            ex.add_node(node)
            while rclpy.ok():
                ex.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        if rclpy.ok():
            raise
        # rclpy's take can fail while SIGINT/SIGTERM shuts the context down: a clean stop
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
        name = getattr(node, "get_name", lambda: factory.__name__)()
        print(f"{name}: error: {e}", file=sys.stderr)
        if "--debug" in sys.argv:
            traceback.print_exc()
        code = 2
    finally:
        if node is not None and hasattr(node, "close"):
            node.close()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code
