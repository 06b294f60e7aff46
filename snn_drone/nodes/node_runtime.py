"""What every node shares: typed, described parameters, the training config, QoS profiles and the
process entry (loopback DDS defaults, rclpy init, clean shutdown on SIGINT/SIGTERM)."""
from __future__ import annotations

import faulthandler
import gc
import os
import signal
import sys
import time
import traceback

import yaml
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from snn_drone.core.learning.train_config import TrainConfig, load_train_config

LIVE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)
"""Per-step batched topics (state, commands, clock, episodes): reliable, the last 100 (one second at
100 Hz), so a recorder or a node stalled by a busy CPU catches up instead of losing steps."""
ROLLOUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
"""Finished sequences: reliable with a deep queue (the trainer drains it between epochs)."""
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""Weights, horizon, progress: the newest value reaches late joiners (actor nodes on other machines)."""

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def receive(node, spec, msg, rows: int | None = None):
    """Unpack an array message (``arrays.unpack``) or drop it: a malformed one is logged as an error
    naming the topic and the field, and None is returned, so one bad message never stops a node."""
    from snn_drone.nodes import arrays
    try:
        return arrays.unpack(spec, msg, rows=rows)
    except ValueError as e:
        node.get_logger().error(f"dropped {spec.topic}: {e}")
        return None


def report_trips(node, pub, verdict, robot: str, drone: int | None = None) -> None:
    """Log each new safety trip of ``verdict`` (warning or error by its action) and publish it as JSON
    on ``pub`` (a String publisher of safety/status): robot, [drone,] kind, action, value, limit,
    message and the verdict's overall action."""
    import json

    from std_msgs.msg import String
    where = "" if drone is None else f" (drone {drone})"
    for v in verdict.new:
        text = f"safety trip {v.kind}{where}: {v.message} -> {v.action}"
        if v.action == "warn":  # one call site per severity: rclpy refuses to change it between calls
            node.get_logger().warning(text)
        else:
            node.get_logger().error(text)
        fields = {"robot": robot} | ({} if drone is None else {"drone": drone})
        pub.publish(String(data=json.dumps(fields | {
            "kind": v.kind, "action": v.action, "value": v.value, "limit": v.limit, "message": v.message,
            "verdict": verdict.action})))


def await_acks(node, pub, what: str, timeout_s: float = 10.0) -> bool:
    """Block until every subscriber of ``pub`` acknowledged all it was sent (reliable QoS); warn
    naming ``what`` if that takes longer than ``timeout_s``. Returns whether all were acknowledged."""
    from rclpy.duration import Duration
    if pub.wait_for_all_acked(Duration(seconds=timeout_s)):
        return True
    node.get_logger().warning(f"{what} not acknowledged by every subscriber of {pub.topic_name} "
                              f"within {timeout_s:.0f} s")
    return False


class StateGate:
    """A node's ``state`` subscription, made now or (``wait``) at the first :meth:`open`: train_sim's
    actor and jump-start mux listen only once the trainer's latched weights / horizon came, and the
    sim, which waits for every node of its graph to listen (``wait_for_readers``), starts then.
    While shut it warns every ``warn_every_s`` naming ``what`` it waits for."""

    def __init__(self, node, callback, wait: bool, what: str, warn_every_s: float = 10.0):
        self.node, self.callback, self.sub, self._timer = node, callback, None, None
        if not wait:
            self.open()
            return
        t0 = time.monotonic()
        self._timer = node.create_timer(warn_every_s, lambda: node.get_logger().warning(
            f"still waiting after {time.monotonic() - t0:.0f} s for {what}: is the trainer up, in this "
            f"ROS_DOMAIN_ID? (this node listens to state, and its sim starts, once it comes)"))

    def open(self, why: str = "") -> None:
        if self.sub is not None:
            return
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        if why:
            self.node.get_logger().info(why)
        from std_msgs.msg import Float32MultiArray
        from snn_drone.nodes import arrays
        self.sub = self.node.create_subscription(Float32MultiArray, arrays.STATE.topic, self.callback, LIVE_QOS)


def wait_for_readers(node, ex, pub, count: int = 0, nodes: str = "", warn_every_s: float = 10.0) -> None:
    """Spin ``ex`` until ``pub`` has matched ``count`` subscriptions and, where ``nodes`` names some
    (comma-separated node names in ``node``'s namespace, or fully qualified: ``/trainer_node``), each
    of them subscribes to the topic and the writer has matched every subscription the graph lists. A count alone can be met by a
    listener outside the graph (a test's probe, rviz, ``ros2 topic echo``) before a node the flight
    needs, a recorder say, has matched. Warns every ``warn_every_s`` naming what is missing."""
    names = [n.strip() for n in nodes.split(",") if n.strip()]
    ns = node.get_namespace()
    t0 = last = time.monotonic()
    while node.context.ok():
        matched = pub.get_subscription_count()
        missing = []
        if names:
            infos = node.get_subscriptions_info_by_topic(pub.topic_name)
            present = {i.node_name for i in infos if i.node_namespace == ns}
            present |= {f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos}  # fully qualified
            missing = [n for n in names if n not in present]
            if not missing and matched < len(infos):
                missing = [f"{len(infos) - matched} subscription(s) listed but not matched yet"]
        if matched >= count and not missing:
            return
        if time.monotonic() - last > warn_every_s:
            last = time.monotonic()
            node.get_logger().warning(f"{pub.topic_name}: still waiting after {last - t0:.0f} s for "
                                      f"{', '.join(missing) or f'{count} subscribers (matched {matched})'}")
        ex.spin_once(timeout_sec=0.05)


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


def task_config(cfg: TrainConfig):
    """The task constants the config names (relative paths: to the package root), as the Trainer loads them."""
    from snn_drone.core.env import task
    from snn_drone.core.common.config import resolve_path
    return task.load_task_config(resolve_path(cfg.task_config) if cfg.task_config else None)


def train_config(path: str, overrides: str) -> TrainConfig:
    over = yaml.safe_load(overrides) if overrides.strip() else {}
    if not isinstance(over, dict):
        raise ValueError(f"overrides must be a YAML mapping of config keys, got {overrides!r}")
    return load_train_config(path or None, over)


def _realtime_priority() -> tuple[bool, str]:
    """SCHED_FIFO at the priority in $SNN_DRONE_REALTIME_PRIORITY (set by the flight graph for the
    nodes in the control loop); returns (granted, what happened for the node's log; "" when not asked)."""
    want = os.environ.get("SNN_DRONE_REALTIME_PRIORITY", "").strip()
    if not want or want == "0":
        return False, ""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(want)))
    except (PermissionError, OSError, ValueError, AttributeError) as e:
        return False, (f"no real-time priority (SCHED_FIFO {want}: {e}); the control loop runs with normal scheduling "
                "and may miss 10 ms deadlines on a busy machine (run as root, or allow rtprio in "
                "/etc/security/limits.conf; realtime_priority:=0 silences this)")
    return True, f"real-time priority: SCHED_FIFO {want}"


HUNG_SHUTDOWN_EXIT = 1  # faulthandler's exit code
SHUTDOWN_WATCHDOG_VAR = "SNN_DRONE_SHUTDOWN_WATCHDOG_S"


def shutdown_watchdog_s() -> float:
    """Seconds a node may take to stop after SIGINT/SIGTERM before it dumps its threads' stacks and
    exits (default 15; below the launcher's 20 s grace, above a landing's few seconds)."""
    value = os.environ.get(SHUTDOWN_WATCHDOG_VAR, "15")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{SHUTDOWN_WATCHDOG_VAR}={value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ValueError(f"{SHUTDOWN_WATCHDOG_VAR}={value!r} must be positive")
    return seconds


def run_node(factory, argv: list[str] | None = None) -> int:
    """Entry point of a node process: loopback DDS defaults, rclpy init, ``factory()`` builds the
    node, ``node.run()`` (or a plain spin) until shutdown; SIGINT/SIGTERM end it cleanly (exit 0).
    A configuration error is one logged line and exit code 2.

    Signals are handled in Python, in the main thread between two bytecodes (rclpy's own handler
    shuts the context down from another thread, which raced with a running take/publish here): the
    first SIGINT/SIGTERM shuts the context down so that every loop on ``context.ok()`` ends, a
    second one exits at once. A stop that hangs where no Python runs (seen once in CI, in DDS
    teardown after the graph had finished) ends after :func:`shutdown_watchdog_s` with every
    thread's stack on stderr and exit code 1, so the launcher need not SIGKILL it."""
    args = sys.argv if argv is None else argv
    user = args[1:args.index("--ros-args")] if "--ros-args" in args else args[1:]
    if "-h" in user or "--help" in user:
        module = sys.modules.get(factory.__module__)
        name = factory.__module__.rsplit(".", 1)[-1]
        print(f"usage: ros2 run snn_drone {name} [--ros-args -p NAME:=VALUE ... | --params-file FILE]\n")
        print((module.__doc__ or "").strip())
        print("\nIts parameters, with types and descriptions: `ros2 param describe` on the running node.")
        return 0
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from .dds import apply_localhost_defaults
    apply_localhost_defaults()
    realtime, realtime_text = _realtime_priority()  # before rclpy starts its threads: they inherit the policy
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: where is a node stuck?
    watchdog_s = shutdown_watchdog_s()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signals = []

    def on_signal(signum, _frame):
        signals.append(signum)
        if len(signals) > 1:
            os._exit(128 + signum)
        # a shutdown stuck in C (DDS teardown) runs no Python, so neither a second signal nor any
        # Python timer could end it: faulthandler's own C thread prints "Timeout" and every
        # thread's stack, then exits, if the process still lives after the watchdog's seconds
        faulthandler.dump_traceback_later(watchdog_s, exit=True)
        rclpy.try_shutdown()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    node = None
    code = 0
    try:
        node = factory()
        if realtime:
            node.get_logger().info(realtime_text)
            gc.freeze()  # what start-up built is never collected: no long collector pause in the loop
        elif realtime_text:
            node.get_logger().warning(realtime_text)
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
        if not signals:
            raise
        # a take/publish after the signal's shutdown: a clean stop
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
        name = getattr(node, "get_name", lambda: factory.__name__)()
        print(f"{name}: error: {e}", file=sys.stderr)
        if "--debug" in sys.argv:
            traceback.print_exc()
        code = 2
    finally:
        try:
            if node is not None and hasattr(node, "close"):
                node.close()
            if node is not None:
                node.destroy_node()
        finally:
            rclpy.try_shutdown()
            for s, h in previous.items():
                signal.signal(s, h)
    return code
