"""Training speed of the default configuration (config/train.yaml): gradient steps/s and
environment steps/s, with an snntorch-actor learner timed in the same process as the baseline.

- env steps/s: ``JumpStartRollout.collect`` of the default B drones with the spiking actor and the
  guide both in the loop (every drone-step counts), the way ``snn-drone train`` collects.
- gradient steps/s: ``TD3BCLearner.update`` on replayed sequences of the default batch (critic
  every step, actor BPTT over 100 steps every ``policy_delay`` steps, as in training).
- baseline: the same updates with the same weights in a plain snntorch ``Leaky`` step loop as the
  actor (what the paper's code uses), alternated with ours so a busy CPU slows both alike.
  For scale: PAPER.md measured the paper's own code at 0.80-0.89 s per update (350 sequences) and
  811 env-steps/s on this 2-core machine.

Last line: ``name=value ...`` with grad_steps_per_s, env_steps_per_s, snntorch_grad_steps_per_s and
speedup_vs_snntorch. The guide is the shipped checkpoint if present, else the geometric controller.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from snn_drone.core.learner import TD3BCLearner, derive_batch  # noqa: E402
from snn_drone.core.training import Trainer, load_train_config, resolve_path  # noqa: E402


class SnntorchActor(torch.nn.Module):
    """The spiking actor's weights in a plain snntorch step loop, with the actors' sequence API."""

    inputs = "observation"

    def __init__(self, actor):
        super().__init__()
        from snn_bptt import snntorch_net
        self.net, self._forward = snntorch_net(actor, float(actor.slope))

    def forward_sequence(self, obs, state=None):
        return self._forward(obs), None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--updates", type=int, default=8, help="timed updates per learner and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    ap.add_argument("--collect-steps", type=int, default=100, help="timed control steps of all drones")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    over = {} if resolve_path("checkpoints/guide.pt").exists() else {"guide": "controller"}
    cfg = load_train_config(None, over)
    out = Path("/tmp/snn_drone_train_speed")
    trainer = Trainer(cfg, out, progress=False, log=lambda *a: None)

    # environment steps: collection as in training (fills the replay too)
    trainer.rollout.collect(10, cfg.horizon.guide_steps(0))  # warm-up
    t0 = time.perf_counter()
    steps = 0
    while len(trainer.replay) < cfg.batch_sequences * 2 or steps < args.collect_steps:
        seqs, _ = trainer.rollout.collect(10, cfg.horizon.guide_steps(0))
        if seqs is not None:
            trainer.replay.add(seqs)
        steps += 10
    env_steps_per_s = steps * cfg.num_drones / (time.perf_counter() - t0)

    gen = torch.Generator().manual_seed(0)
    batches = [derive_batch(trainer.replay.sample(cfg.batch_sequences, gen), trainer.task_cfg,
                            trainer.env.coeffs, "observation", cfg.learner.warmup) for _ in range(4)]
    ours = trainer.learner
    base = TD3BCLearner(SnntorchActor(trainer.actor), cfg.learner)

    def timed(learner) -> float:
        t = time.perf_counter()
        for i in range(args.updates):
            learner.update(batches[i % len(batches)])
        return (time.perf_counter() - t) / args.updates

    timed(ours), timed(base)  # warm-up (native kernels, allocator)
    ours_s, base_s = [], []
    for _ in range(args.rounds):
        ours_s.append(timed(ours))
        base_s.append(timed(base))
    o, b = min(ours_s), min(base_s)
    print(f"batch {cfg.batch_sequences} sequences x {cfg.sequences.length} steps, {cfg.num_drones} drones, "
          f"threads {torch.get_num_threads()}; per update: ours {o * 1e3:.1f} ms (median "
          f"{statistics.median(ours_s) * 1e3:.1f}), snntorch {b * 1e3:.1f} ms (median {statistics.median(base_s) * 1e3:.1f})")
    print(f"grad_steps_per_s={1 / o:.2f} env_steps_per_s={env_steps_per_s:.0f} "
          f"snntorch_grad_steps_per_s={1 / b:.2f} speedup_vs_snntorch={b / o:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
