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
- critic variants (``--variants``, letters of ``VARIANTS``): learners that differ only in the twin
  critic (``CriticConfig``: hidden widths, fused twin pass, bfloat16 hidden matmuls), each with its
  own copy of the actor, timed in alternating rounds at the default batch and at the paper's batch
  (350 sequences x 100 steps = 35,000 transitions) with ``--variant-threads`` torch threads. A timed
  block holds an even number of updates, so it averages critic-only and critic + actor updates as
  ``policy_delay = 2`` alternates them; transitions/s = sequences x 100 / seconds per update, and
  vs_paper_code = PAPER_CODE_S_PER_UPDATE / seconds per update (> 1: faster than the paper's code).

Last line: ``name=value ...`` with grad_steps_per_s, env_steps_per_s, snntorch_grad_steps_per_s,
speedup_vs_snntorch, then paper_batch_transitions_per_s and vs_paper_code of the default critic
(``CriticConfig()``; the fastest measured variant if the default is not among ``--variants``), its
variant letter, and the fastest variant at the paper batch. The guide is the shipped checkpoint if
present, else the geometric controller.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from snn_drone.core.learning.learner import TD3BCLearner, derive_batch  # noqa: E402
from snn_drone.core.learning.networks import CriticConfig, TwinCritic  # noqa: E402
from snn_drone.core.learning.trainer import Trainer
from snn_drone.core.learning.train_config import load_train_config
from snn_drone.core.common.config import resolve_path  # noqa: E402


PAPER_SEQUENCES = 350
PAPER_CODE_S_PER_UPDATE = 0.845  # PAPER.md: 0.80-0.89 s per update of 350 x 100 (39,300-43,800 transitions/s)

# letter: (label, CriticConfig). Every field spelled out, so a change of CriticConfig's defaults
# does not change what a letter measures.
VARIANTS = {
    "a": ("256x256_fp32", CriticConfig(hidden=(256, 256), fused=False, matmul_dtype="float32")),  # the old default
    "b": ("256x128_fp32", CriticConfig(hidden=(256, 128), fused=False, matmul_dtype="float32")),
    "c": ("256x128_fp32_fused", CriticConfig(hidden=(256, 128), fused=True, matmul_dtype="float32")),
    "d": ("256x128_bf16", CriticConfig(hidden=(256, 128), fused=False, matmul_dtype="bfloat16")),
    "e": ("256x128_bf16_fused", CriticConfig(hidden=(256, 128), fused=True, matmul_dtype="bfloat16")),
}


def time_variants(learners: dict, batches: list, updates: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per update of each learner, one entry per round; the order flips every round."""
    keys = list(learners)
    for k in keys:  # warm-up: one update (native kernels, allocator at this batch size)
        learners[k].update(batches[0])
    times: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            t = time.perf_counter()
            for i in range(updates):
                learners[k].update(batches[i % len(batches)])
            times[k].append((time.perf_counter() - t) / updates)
    return times


def variant_table(name: str, n_seq: int, steps: int, times: dict[str, list[float]], paper: bool) -> None:
    ref = min(times["a"]) if "a" in times else None
    print(f"{name}: {n_seq} sequences x {steps} steps = {n_seq * steps} transitions, threads "
          f"{torch.get_num_threads()}, seconds per update (best round; median)")
    for k, ts in times.items():
        s = min(ts)
        line = (f"  {k} {VARIANTS[k][0]:<20} {s:7.3f} s ({statistics.median(ts):7.3f})  "
                f"{n_seq * steps / s:9.0f} transitions/s")
        if ref is not None:
            line += f"  x{ref / s:.2f} vs a"
        if paper:
            line += f"  vs_paper_code={PAPER_CODE_S_PER_UPDATE / s:.2f}"
        print(line)


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
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the training config's)")
    ap.add_argument("--variants", default="a,b,c",
                    help="critic variants to compare, letters of " + ", ".join(f"{k}={v[0]}" for k, v in VARIANTS.items())
                    + " ('' skips the comparison; d and e only pay on a CPU with native bf16 matmuls)")
    ap.add_argument("--variant-threads", type=int, default=2, help="torch threads of the critic-variant timings")
    ap.add_argument("--variant-updates", type=int, default=2, help="timed updates per variant and round at the default batch (even)")
    ap.add_argument("--variant-rounds", type=int, default=3, help="alternating rounds at the default batch")
    ap.add_argument("--paper-updates", type=int, default=2, help="timed updates per variant and round at the paper batch (even)")
    ap.add_argument("--paper-rounds", type=int, default=2, help="alternating rounds at the paper batch")
    ap.add_argument("--paper-sequences", type=int, default=PAPER_SEQUENCES, help="sequences of the paper batch")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"--variants: unknown variant {v!r}, expected letters of {sorted(VARIANTS)}")
    for flag in ("variant_updates", "paper_updates"):
        if variants and (getattr(args, flag) < 2 or getattr(args, flag) % 2):
            ap.error(f"--{flag.replace('_', '-')} = {getattr(args, flag)}: expected an even number >= 2 "
                     "(a block averages critic-only and critic + actor updates)")
    over = {} if resolve_path("checkpoints/guide.pt").exists() else {"guide": "controller"}
    cfg = load_train_config(None, over)
    out = Path("/tmp/snn_drone_train_speed")
    trainer = Trainer(cfg, out, progress=False, log=lambda *a: None)
    if args.threads:  # after the trainer, which applies the config's threads
        torch.set_num_threads(args.threads)

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
    last = (f"grad_steps_per_s={1 / o:.2f} env_steps_per_s={env_steps_per_s:.0f} "
            f"snntorch_grad_steps_per_s={1 / b:.2f} speedup_vs_snntorch={b / o:.2f}")

    if variants:
        threads = torch.get_num_threads()
        torch.set_num_threads(args.variant_threads)

        def learners() -> dict:
            out = {}
            for k in variants:
                torch.manual_seed(0)
                out[k] = TD3BCLearner(copy.deepcopy(trainer.actor), cfg.learner,
                                      critic=TwinCritic(dataclasses.replace(VARIANTS[k][1])))
            return out

        steps = cfg.sequences.length
        t_default = time_variants(learners(), batches, args.variant_updates, args.variant_rounds)
        variant_table("default batch", cfg.batch_sequences, steps, t_default, paper=False)
        n = args.paper_sequences  # replay.sample draws with replacement: no need to hold n sequences
        paper_batches = [derive_batch(trainer.replay.sample(n, gen), trainer.task_cfg, trainer.env.coeffs,
                                      "observation", cfg.learner.warmup) for _ in range(2)]
        t_paper = time_variants(learners(), paper_batches, args.paper_updates, args.paper_rounds)
        variant_table("paper batch", n, steps, t_paper, paper=True)
        torch.set_num_threads(threads)

        best = min(t_paper, key=lambda k: min(t_paper[k]))
        default = next((k for k in variants if VARIANTS[k][1] == CriticConfig()), best)
        s = min(t_paper[default])
        last += (f" paper_batch_transitions_per_s={n * steps / s:.0f} vs_paper_code={PAPER_CODE_S_PER_UPDATE / s:.2f}"
                 f" paper_batch_variant={default} paper_batch_best_variant={best}"
                 f" paper_batch_best_transitions_per_s={n * steps / min(t_paper[best]):.0f}")
    print(last)
    return 0


if __name__ == "__main__":
    sys.exit(main())
