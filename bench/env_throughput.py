"""Drone-steps per second of the batched hover env (task + autoreset) against the bare dynamics.

Both are measured in the same run, interleaved, so the ratio is meaningful on a busy machine.
Actions are the hover action plus noise, so drones crash and autoreset at a realistic rate.
Last line: ``name=value`` pairs.

    .venv/bin/python bench/env_throughput.py [--device cpu] [--steps 200]
"""
from __future__ import annotations

import argparse
import time

import torch

from snn_drone.core.env.batched_env import BatchedHoverEnv


def _rate(fn, batch: int, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 1024, 4096])
    args = ap.parse_args()
    out = {}
    for b in args.batches:
        env = BatchedHoverEnv(b, seed=0, device=args.device)
        gen = torch.Generator(device=env.device).manual_seed(1)
        actions = (env.params.hover_action
                   + 0.1 * torch.randn(16, b, 4, generator=gen, device=env.device)).clamp(-1, 1)
        i = [0]

        def env_step():
            env.step(actions[i[0] % 16])
            i[0] += 1

        def dyn_step():
            env._dynamics.step(env.state, actions[i[0] % 16], validate=False)
            i[0] += 1

        for _ in range(10):
            env_step()
        env_rates, dyn_rates = [], []
        for _ in range(3):  # interleaved repeats; keep the best of each
            env_rates.append(_rate(env_step, b, args.steps))
            dyn_rates.append(_rate(dyn_step, b, args.steps))
        e, d = max(env_rates), max(dyn_rates)
        print(f"B={b:5d}  env {e:12.0f} drone-steps/s   dynamics {d:12.0f} drone-steps/s   env/dyn {e / d:.2f}")
        out[f"env_steps_per_s_b{b}"] = round(e)
        out[f"dynamics_steps_per_s_b{b}"] = round(d)
        out[f"env_over_dynamics_b{b}"] = round(e / d, 3)
    print(" ".join(f"{k}={v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
