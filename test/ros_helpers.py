"""Real node processes and a probe node for the ROS tests: each test gets its own ROS_DOMAIN_ID,
DDS stays on the loopback (snn_drone/nodes/dds.py), and every process is killed at the end."""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from snn_drone.graphs import NodeSpec
from snn_drone.launcher import node_command, write_params
from snn_drone.nodes.dds import localhost_defaults

TINY = {
    "num_drones": 4, "epochs": 6, "steps_per_epoch": 30, "updates_per_epoch": 2, "batch_sequences": 4,
    "min_replay_sequences": 2, "eval_every": 2, "eval_episodes": 4, "threads": 1, "snn.hidden": [16, 8],
    "sequences.length": 20, "sequences.stride": 10, "sequences.warmup": 5,
    "sequences.capacity_transitions": 10000, "learner.warmup": 5, "horizon.warmup": 5,
    "validation_episodes": 8,
}
"""A run of seconds: small spiking actor, 20-step sequences."""

LEARNING = {**TINY, "epochs": 25, "steps_per_epoch": 50, "updates_per_epoch": 15, "batch_sequences": 16,
            "min_replay_sequences": 8, "eval_every": 5, "eval_episodes": 32, "snn.hidden": [64, 32],
            "sequences.length": 60, "sequences.stride": 30, "sequences.warmup": 30, "learner.warmup": 30,
            "horizon.warmup": 30, "sequences.capacity_transitions": 200000, "learner.lambda_bc": 1.0,
            "learner.alpha": 0.5}
"""The default task, guide (the geometric controller) and hand-over schedule; a small actor, 60-step
sequences with a 30-step warm-up and a strong BC term, so that 25 short epochs of 2 x 8 drones show
learning through the graph (a later evaluation beats the first by 10)."""

_used: set[int] = set()


def fresh_domain_id() -> int:
    rng = random.Random(os.getpid() * 7919 + time.monotonic_ns())
    while (d := rng.randrange(20, 100)) in _used:
        pass
    _used.add(d)
    return d


def overrides(**over) -> str:
    return yaml.safe_dump({**TINY, **over}, default_flow_style=True).strip()


def fresh_guide(path: Path) -> Path:
    """An untrained privileged guide (the plumbing needs one; checkpoints/guide.pt is the trained one)."""
    from snn_drone.core.learning.checkpoint import save_policy
    from snn_drone.core.learning.networks import MLPPolicy, MLPPolicyConfig
    torch.manual_seed(0)
    return save_policy(path, MLPPolicy(MLPPolicyConfig(inputs="privileged")))


def child_pid(parent: int, marker: bytes, timeout_s: float = 60.0) -> int:
    """pid of a direct child of ``parent`` whose command line holds ``marker`` (a node of that
    launch, never one of another graph running on the machine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == parent and marker in (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except (ValueError, OSError, IndexError):
                continue
        time.sleep(0.05)
    raise AssertionError(f"no child of {parent} with {marker!r} in its command line within {timeout_s} s")


class Processes:
    """Node and CLI processes with logs in ``folder``; ``stop_all`` (SIGINT, then SIGKILL) in a finally."""

    def __init__(self, folder: Path, domain_id: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items()
               if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE",
                            "FASTRTPS_DEFAULT_PROFILES_FILE")}
        env.update(localhost_defaults(env))
        env.update(ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED="1")
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, label: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{label.replace('/', '__')}.log", "w")
        p = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[label] = p
        return p

    def node(self, executable: str, namespace: str = "", remappings=(), **params) -> subprocess.Popen:
        spec = NodeSpec(executable, executable, namespace, params, list(remappings))
        return self._start(spec.label, node_command(spec, write_params(spec, self.folder)))

    def cli(self, label: str, *args: str) -> subprocess.Popen:
        return self._start(label, [sys.executable, "-m", "snn_drone.cli", *args])

    def log(self, label: str) -> str:
        return (self.folder / f"{label.replace('/', '__')}.log").read_text(errors="replace")

    def wait_log(self, label: str, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            m = re.search(pattern, self.log(label))
            if m:
                return m
            if self.procs[label].poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{label} did not log {pattern!r} within {timeout_s} s:\n{self.log(label)[-3000:]}")

    def stop(self, label: str, sig=signal.SIGINT, timeout_s: float = 20.0) -> int:
        p = self.procs[label]
        if p.poll() is None:
            os.killpg(p.pid, sig)
        try:
            return p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            raise AssertionError(f"{label} did not stop within {timeout_s} s after {sig!r}:\n{self.log(label)[-2000:]}")

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


class Probe:
    """A node in the test process (own rclpy context on the test's domain) that listens and publishes."""

    def __init__(self, domain_id: int):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        os.environ.update(localhost_defaults())
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain_id)
        self.node = rclpy.create_node("test_probe", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.received: dict[str, list] = {}

    def listen(self, topic: str, msg_type, latched: bool = False, depth: int = 1000) -> list:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
        got = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    def publisher(self, topic: str, msg_type, depth: int = 10):
        return self.node.create_publisher(msg_type, topic, depth)

    def spin_until(self, predicate, timeout_s: float, what: str = "", procs: Processes | None = None,
                   alive: str | None = None) -> None:
        """Spin until ``predicate()``; fail after ``timeout_s`` or as soon as process ``alive`` ended."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            if alive is not None and procs.procs[alive].poll() is not None and not predicate():
                raise AssertionError(f"{alive} ended (code {procs.procs[alive].poll()}) before {what}:\n"
                                     f"{procs.log(alive)[-3000:]}")
            self.ex.spin_once(timeout_sec=0.02)
        if not predicate():
            tail = f"\n{procs.log(alive)[-3000:]}" if alive is not None else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}{tail}")

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.02)

    def drain(self, quiet_s: float = 1.0, timeout_s: float = 30.0) -> None:
        """Take what the DDS readers still hold (a probe busy with many topics on a loaded machine lags
        the graph by seconds): spin until nothing new came for ``quiet_s``."""
        count = lambda: sum(len(v) for v in self.received.values())  # noqa: E731
        deadline, last, since = time.monotonic() + timeout_s, count(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
            self.ex.spin_once(timeout_sec=0.02)
            if count() != last:
                last, since = count(), time.monotonic()

    def close(self) -> None:
        self.node.destroy_node()
        self.ctx.try_shutdown()


class CflibRecorder:
    """Stands in for cflib's Crazyflie in the bridge tests (the radio is absent): every attribute is
    a callable that appends its dotted name to ``calls``, with its arguments as (name, args) when
    ``with_args``. No ``supervisor`` (an older firmware: loc.send_emergency_stop); the protocol
    version is 10."""

    def __init__(self, calls, prefix="", with_args=True):
        self._calls, self._prefix, self._with_args = calls, prefix, with_args

    def __getattr__(self, name):
        if name == "supervisor":
            raise AttributeError(name)
        return CflibRecorder(self._calls, f"{self._prefix}{name}.", self._with_args)

    def __call__(self, *args):
        name = self._prefix.rstrip(".")
        self._calls.append((name, args) if self._with_args else name)
        return 10 if name.endswith("get_protocol_version") else None
