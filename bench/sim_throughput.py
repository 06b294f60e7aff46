"""Simulator throughput in drone-steps per second (one step = one dt of 0.01 s for one drone).

pybullet world with 1 and 64 drones (substeps=1, the default; also 1 drone with substeps=10),
the batched torch model (float32, CPU, validate=False as in the training loop) at B = 1, 64,
1024 and 4096, all in the same run. Each figure is the best of three timed runs of ~0.5 s.
Goals (issue 2): batched B=4096 >= 1e6 steps/s; one pybullet drone >= 2e4 steps/s.
Torch runs with one intra-op thread by default (--threads): this machine's 2 cores are shared
(pybullet, ROS nodes, other jobs), and with 2 OpenMP threads every parallel op (>= 32768
elements, e.g. the [17, 4096] state) stalls whenever another process holds a core: measured
13k drone-steps/s at B=4096 under load 3 with 2 threads, 4.3M with 1. --threads 0 keeps torch's
default. With --compile it also times the torch.compile'd model at B = 1 and 4096 and its compile time.
The last line is `name=value ...`.

    .venv/bin/python bench/sim_throughput.py [--preset cf21_paper] [--seconds 0.5] [--compile]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from snn_drone.core.sim.dynamics import QuadrotorDynamics
from snn_drone.core.sim.params import load_preset
from snn_drone.core.sim.pybullet_world import PybulletWorld


def _best_rate(step, drones: int, seconds: float) -> float:
    for _ in range(3):  # warm-up
        step()
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while True:
            step()
            n += 1
            el = time.perf_counter() - t0
            if el >= seconds:
                break
        best = max(best, n * drones / el)
    return best


def _random_walk_actions(params, n, rng):
    """Commands near hover, so the drones fly about instead of resting on the ground."""
    return params.hover_action + 0.01 * rng.standard_normal((n, 4))


def bench_pybullet(params, n: int, seconds: float, substeps: int = 1) -> float:
    rng = np.random.default_rng(0)
    with PybulletWorld(params, n, substeps=substeps) as world:
        s0 = QuadrotorDynamics(params, dtype=torch.float64).hover_state(n, [0.0, 0.0, 1.0]).numpy()
        s0[:, 0] = np.arange(n) * 0.2
        world.reset(s0)
        actions = _random_walk_actions(params, n, rng)
        return _best_rate(lambda: world.step(actions), n, seconds)


def bench_batched(params, batch: int, seconds: float, compile: bool = False) -> float:
    dyn = QuadrotorDynamics(params, dtype=torch.float32, compile=compile)
    state = [dyn.hover_state(batch, [0.0, 0.0, 1.0])]
    actions = torch.as_tensor(_random_walk_actions(params, batch, np.random.default_rng(0)),
                              dtype=torch.float32)

    def step():
        state[0] = dyn.step(state[0], actions, validate=False)

    return _best_rate(step, batch, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cf21_paper")
    ap.add_argument("--seconds", type=float, default=0.5, help="length of each timed run")
    ap.add_argument("--compile", action="store_true", help="also time the torch.compile'd model")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1; 0: torch's default). With other processes "
                         "busy on the same cores, 2 OpenMP threads stall on every parallel op")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_preset(args.preset)
    print(f"preset {params.name}, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (other work skews timings)")
    res = {}
    res["pybullet_1"] = bench_pybullet(params, 1, args.seconds)
    res["pybullet_64"] = bench_pybullet(params, 64, args.seconds)
    res["pybullet_1_substeps10"] = bench_pybullet(params, 1, args.seconds, substeps=10)
    for b in (1, 64, 1024, 4096):
        res[f"batched_{b}"] = bench_batched(params, b, args.seconds)
    if args.compile:
        t0 = time.perf_counter()
        dyn = QuadrotorDynamics(params, dtype=torch.float32, compile=True)
        dyn.step(dyn.hover_state(8), torch.zeros(8, 4), validate=False)
        res["compile_s"] = time.perf_counter() - t0
        for b in (1, 4096):
            res[f"batched_compiled_{b}"] = bench_batched(params, b, args.seconds, compile=True)
    for k, v in res.items():
        if k == "compile_s":
            print(f"{k:24s} {v:14.1f} s (first compiled step)")
        else:
            print(f"{k:24s} {v:14,.0f} drone-steps/s  ({v * params.dt_s:10,.0f}x real time per drone)")
    print(f"goal ratios: batched_4096 / 1e6 = {res['batched_4096'] / 1e6:.2f}, "
          f"pybullet_1 / 2e4 = {res['pybullet_1'] / 2e4:.2f}")
    print(" ".join(f"{k}={v:.1f}" if k == "compile_s" else f"{k}={v:.0f}" for k, v in res.items()))


if __name__ == "__main__":
    main()
