"""`snn-drone metrics`: NeuroBench-style efficiency metrics and the paper's energy estimate of a
spiking-actor checkpoint (activation sparsity, dense SynOps, effective MACs/ACs, footprint)."""
from __future__ import annotations

import argparse

from snn_drone.core.snn.neurobench_metrics import (default_observations, load_observations,
                                               measure_actor)
from snn_drone.core.snn.spiking_actor import load_actor


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "metrics",
        help="NeuroBench-style metrics and energy per inference of an actor checkpoint",
        description="Run a spiking-actor checkpoint over observation sequences and print NeuroBench-"
                    "style metrics beside the paper's Table 2: activation sparsity (all LIF layers and "
                    "per layer), dense SynOps, effective MACs (observation layer) and ACs (spike-fed "
                    "layers), parameter count and footprint, and energy per inference from the paper's "
                    "formula (P_s 23.6 pJ, P_w 1.7 pJ, P_u 81 pJ). Counts are per inference step (one "
                    "control step of one drone). The hidden state starts at zero.",
        epilog="Without --obs, the observations are independent draws from the task's initial-state "
               "distribution (l2f init_90_deg: within 0.2 m, up to 90 deg, 1 m/s, 1 rad/s; no guided "
               "starts), --steps x --batch of them from --seed.")
    p.add_argument("checkpoint", help="actor checkpoint written by save_actor (.pt)")
    p.add_argument("--obs", metavar="OBS.npz",
                   help="observation sequences: .npz with array 'obs' [T, B, 18] (overrides --steps/--batch/--seed)")
    p.add_argument("--steps", type=int, default=500, help="T, steps per synthetic sequence (default 500: one episode)")
    p.add_argument("--batch", type=int, default=16, help="B, synthetic sequences (default 16)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic observations (default 0)")
    p.add_argument("--device", default="cpu", help="torch device to run on (default cpu)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    actor = load_actor(args.checkpoint).to(args.device).eval()
    if args.obs:
        obs = load_observations(args.obs, actor.cfg.obs_dim)
    else:
        obs = default_observations(args.steps, args.batch, args.seed, actor.cfg.obs_dim)
    metrics = measure_actor(actor, obs)
    print(metrics.to_json() if args.json else metrics.table())
    return 0
