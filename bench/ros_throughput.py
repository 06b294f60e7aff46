"""Environment steps per second through the ROS 2 graph against in-process collection (same B, same
run), and the graph's state -> motor_cmd latency at B = 1.

- in-process: ``JumpStartRollout`` flying B drones with the spiking actor and the guide (what
  `snn-drone train` collects with), one torch thread;
- graph: sim_node, actor_node, guide_node and jumpstart_node as separate processes (one torch
  thread each, DDS on the loopback), lockstep; the sim reports its drone steps/s after its first
  100 steps and the time from each state's publication to the motor_cmd answering it.

Goals (issue 5): ratio >= 0.5 at B = 64, latency median <= 2 ms at B = 1; (issue 12) p99 <= 2 ms
at B = 1 with every core busy, measured with normal and with real-time (SCHED_FIFO) scheduling. Timings on a shared
machine are noisy; the ratio is measured in one run. Last line: ``name=value`` pairs.

    .venv/bin/python bench/ros_throughput.py [--drones 64] [--steps 1500] [--latency-steps 2000]
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import tempfile
import time
from pathlib import Path

import subprocess
import sys

import torch
import yaml

from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.learning.checkpoint import load_policy, save_policy
from snn_drone.core.learning.networks import MLPPolicy, MLPPolicyConfig
from snn_drone.core.learning.rollout import JumpStartRollout
from snn_drone.core.learning.train_config import load_train_config, make_actor
from snn_drone.graphs import REALTIME_ENV, NodeSpec, environment
from snn_drone.launcher import node_command, write_params


def in_process(b: int, steps: int, guide_path: Path) -> float:
    """Drone steps/s of jump-start collection in this process (guide flies 100 steps, then the SNN)."""
    torch.set_num_threads(1)
    cfg = load_train_config()
    env = BatchedHoverEnv(b, seed=0, progress=0.0)
    ro = JumpStartRollout(env, make_actor(cfg), load_policy(guide_path), cfg.sequences, 0.1,
                          torch.Generator().manual_seed(0))
    ro.collect(100, 100)
    t0 = time.perf_counter()
    ro.collect(steps, 100)
    return steps * b / (time.perf_counter() - t0)


def through_graph(b: int, steps: int, guide_path: Path, folder: Path, realtime: int = 0) -> dict[str, float]:
    """Run the live graph for ``steps`` lockstep steps; parse the sim's speed report. ``realtime``: the
    nodes' SCHED_FIFO priority (0: normal scheduling), as fly_real's realtime_priority gives them."""
    folder.mkdir(parents=True)
    env = {**os.environ, **environment(), "ROS_DOMAIN_ID": str(90 + os.getpid() % 10), "PYTHONUNBUFFERED": "1"}
    if realtime:
        env[REALTIME_ENV] = str(realtime)
    ov = yaml.safe_dump({"guide": str(guide_path), "horizon.snn_steps_start": 400}, default_flow_style=True)
    procs = {}
    try:
        for name, extra in (("actor_node", {}), ("guide_node", {}), ("jumpstart_node", {}),
                            ("sim_node", {"max_steps": steps, "wait_for_subscribers": 3})):
            spec = NodeSpec(name, name, "", {"overrides": ov, "num_drones": b, **extra})
            with open(folder / f"{name}.log", "w") as log:
                procs[name] = subprocess.Popen(node_command(spec, write_params(spec, folder)), env=env, stdout=log,
                                               stderr=subprocess.STDOUT)
        if procs["sim_node"].wait(timeout=600) != 0:
            raise RuntimeError((folder / "sim_node.log").read_text())
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    log = (folder / "sim_node.log").read_text()
    rate = re.search(r"([\d.]+) drone steps/s after step 100", log)
    lat = re.search(r"latency median ([\d.]+) ms, p99 ([\d.]+) ms", log)
    if not (rate and lat):
        raise RuntimeError(f"no speed report in the sim's log:\n{log}")
    return {"steps_per_s": float(rate.group(1)), "median_ms": float(lat.group(1)), "p99_ms": float(lat.group(2))}


class Burners:
    """``n`` busy processes (one per core: the "loaded machine"), each ending by itself."""

    def __init__(self, n: int, seconds: float = 900.0):
        code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
        self.procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drones", type=int, default=64, help="B for the throughput comparison")
    ap.add_argument("--steps", type=int, default=1500, help="lockstep steps of the throughput runs")
    ap.add_argument("--latency-steps", type=int, default=2000, help="steps of each B = 1 latency run")
    ap.add_argument("--priority", type=int, default=10, help="SCHED_FIFO priority of the real-time latency runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        guide = Path("checkpoints/guide.pt")
        if not guide.is_file():  # speed does not depend on how well it flies
            guide = save_policy(tmp / "guide.pt", MLPPolicy(MLPPolicyConfig(inputs="privileged")))
        b = args.drones
        graph = through_graph(b, args.steps, guide, tmp / "graph")
        local = in_process(b, args.steps, guide)
        one = through_graph(1, args.latency_steps, guide, tmp / "latency")
        lat = {("quiet", 0): one, ("quiet", args.priority): through_graph(1, args.latency_steps, guide, tmp / "q_rt",
                                                                         args.priority)}
        with Burners(os.cpu_count() or 2):
            for prio in (0, args.priority):
                lat[("loaded", prio)] = through_graph(1, args.latency_steps, guide, tmp / f"l_{prio}", prio)
    ratio = graph["steps_per_s"] / local
    print(f"B={b}: graph {graph['steps_per_s']:.0f} drone steps/s, in-process {local:.0f} drone steps/s "
          f"(ratio {ratio:.2f}, goal >= 0.5); graph latency at B={b}: median {graph['median_ms']:.2f} ms")
    print(f"B=1: state -> motor_cmd latency median {one['median_ms']:.3f} ms, p99 {one['p99_ms']:.3f} ms "
          f"(goal median <= 2 ms); {one['steps_per_s']:.0f} steps/s; cpus={os.cpu_count()}")
    print(f"B=1 state -> motor_cmd latency, quiet and with {os.cpu_count()} busy processes (goal: p99 <= 2 ms "
          f"loaded):")
    for (load, prio), r in lat.items():
        sched = f"SCHED_FIFO {prio}" if prio else "normal scheduling"
        print(f"  {load:6s} {sched:18s} median {r['median_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms")
    print(f"ros_steps_per_s={graph['steps_per_s']:.0f} inproc_steps_per_s={local:.0f} ratio={ratio:.3f} B={b} "
          f"latency_median_ms={one['median_ms']:.3f} latency_p99_ms={one['p99_ms']:.3f} "
          + " ".join(f"{load}_{'rt' if prio else 'normal'}_p99_ms={r['p99_ms']:.3f}" for (load, prio), r in lat.items()))


if __name__ == "__main__":
    main()
