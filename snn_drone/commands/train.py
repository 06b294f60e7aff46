"""`snn-drone train` and `snn-drone train-guide`."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

ALGOS = ("td3bc_jsrl", "td3", "td3bc", "bc")
ACTORS = ("snn", "ann", "ann_history")


def _parse_set(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ValueError(f"--set expects KEY=VALUE (dotted keys allowed, e.g. learner.alpha=2.5), got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="training YAML (default: config/train.yaml; keys: TrainConfig)")
    p.add_argument("--out", metavar="DIR", help="run folder for checkpoints, metrics, TensorBoard, plots")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--task", metavar="FILE", help="task YAML (default: config/task.yaml; e.g. config/task_symmetric_rotors.yaml)")
    p.add_argument("--epochs", type=int, help="number of epochs")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override any config key, dotted for sections (repeatable), e.g. --set learner.alpha=2.5")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def register(sub) -> None:
    p = sub.add_parser("train", help="train an actor (default: the spiking actor with TD3BC + JSRL, adaptive slope)",
                       description="Train an actor in the batched simulator. Default: the paper's TD3BC + JSRL with "
                                   "the spiking actor and the adaptive surrogate slope (config/train.yaml). Writes "
                                   "checkpoint.pt (atomic; --resume continues), actor_best.pt, actor_last.pt, "
                                   "metrics.jsonl, TensorBoard scalars (tb/) and training.png to the run folder.")
    _common(p)
    p.add_argument("--algo", choices=ALGOS, help="td3bc_jsrl (paper), td3 (online, no guide), td3bc / bc (offline)")
    p.add_argument("--actor", choices=ACTORS, help="snn, ann (18 inputs) or ann_history (146 privileged inputs)")
    p.add_argument("--slope", metavar="SPEC", help="surrogate slope schedule: fixed:K | interval | adaptive")
    p.add_argument("--no-jump-start", action="store_true", help="ablation: the guide never flies (BC labels only)")
    p.add_argument("--no-bc", action="store_true", help="ablation: no BC term in the actor loss")
    p.add_argument("--from-bags", nargs="+", metavar="DIR",
                   help="train offline from the rollout topics of recorded bags (snn-drone record) instead of flying")
    p.add_argument("--salvage", action="store_true", help="with --from-bags: use the intact part of truncated bags")
    p.set_defaults(func=run_train)

    g = sub.add_parser("train-guide", help="train the privileged guide policy with TD3 (config/guide.yaml)",
                       description="Train the privileged ANN guide (146 -> 64 -> 64 -> 4) with TD3 + BC from the geometric "
                                   "controller (config/guide.yaml), report whether the best guide meets the "
                                   "criterion (95%% of the evaluation episodes survive 100 steps) and copy it to "
                                   "--install (default checkpoints/guide.pt).")
    _common(g)
    g.add_argument("--install", metavar="FILE", default="checkpoints/guide.pt",
                   help="where to copy the finished guide (default: %(default)s; '' to skip)")
    g.set_defaults(func=run_train_guide)


def _build(args, default_config: Path, defaults: dict | None = None):
    from snn_drone.core.snn.slope_schedules import parse_slope_spec
    from snn_drone.core.learning.train_config import load_train_config
    over = dict(defaults or {})
    for key in ("seed", "epochs", "algo", "actor"):
        if getattr(args, key, None) is not None:
            over[key] = getattr(args, key)
    if getattr(args, "task", None):
        over["task_config"] = args.task
    if getattr(args, "no_jump_start", False):
        over["jump_start"] = False
    if getattr(args, "no_bc", False):
        over["learner.use_bc"] = False
    over.update(_parse_set(args.set))
    cfg = load_train_config(args.config or default_config, over)
    if getattr(args, "slope", None):
        cfg.slope = parse_slope_spec(args.slope, cfg.slope)
    return cfg


def _run_name(cfg) -> str:
    slope = cfg.slope.kind + (f"{cfg.slope.k:g}" if cfg.slope.kind == "fixed" else "") if cfg.actor == "snn" else cfg.actor
    extra = ("-nojs" if not cfg.jump_start else "") + ("-nobc" if cfg.algo == "td3bc_jsrl" and not cfg.learner.use_bc else "")
    return f"{cfg.algo}{extra}-{slope}-s{cfg.seed}"


def run_train(args) -> int:
    from snn_drone.core.learning.trainer import Trainer
    from snn_drone.core.learning.train_config import default_config_path
    cfg = _build(args, default_config_path())
    out = Path(args.out or Path("runs") / _run_name(cfg))
    bags = getattr(args, "from_bags", None)
    trainer = Trainer(cfg, out, resume=args.resume, progress=not args.no_progress, collect=not bags)
    print(f"run folder: {out}")
    if bags and len(trainer.replay) == 0:  # a resumed run has the bags' sequences in its checkpoint
        from snn_drone.nodes.bag_io import load_rollouts
        data = load_rollouts(bags, cfg.sequences.length, salvage=args.salvage)
        if data.sequences is None:
            raise ValueError(f"no rollout sequences in {', '.join(bags)} (topics named .../rollout)")
        trainer.ingest(data.sequences, data.env_steps, data.returns, data.lengths)
        print(f"offline from bags: {data.sequences.n} sequences ({data.messages} rollout messages, "
              f"{data.env_steps} drone steps)")
    trainer.run()
    _report(trainer, out)
    return 0


def run_train_guide(args) -> int:
    from snn_drone.core.common import config
    from snn_drone.core.learning.trainer import Trainer
    from snn_drone.core.common.config import package_root
    cfg = _build(args, config.config_dir() / "guide.yaml")
    out = Path(args.out or Path("runs") / f"guide-s{cfg.seed}")
    trainer = Trainer(cfg, out, resume=args.resume, progress=not args.no_progress)
    print(f"run folder: {out}")
    trainer.run()
    _report(trainer, out)
    evals = [r for r in trainer.history if "eval_return" in r]
    best = max(evals, key=lambda r: r["eval_return"]) if evals else None
    if best is not None:
        ok = best["eval_survival"] >= 0.95
        print(f"criterion ({'met' if ok else 'NOT met'}): {best['eval_survival']:.0%} of {cfg.eval_episodes} "
              f"evaluation episodes of the best guide (epoch {best['epoch']}) flew {cfg.survival_steps} steps "
              f"or more; 95% required")
    if args.install and best is not None:
        dest = Path(args.install)
        if not dest.is_absolute():
            dest = package_root() / dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "actor_best.pt", dest)
        print(f"guide installed: {dest} (the best evaluation's actor)")
    return 0


def _report(trainer, out: Path) -> None:
    evals = [r for r in trainer.history if "eval_return" in r]
    if evals:
        last, best = evals[-1], max(evals, key=lambda r: r["eval_return"])
        print(f"final eval return {last['eval_return']:.1f} +- {last['eval_return_std']:.1f} "
              f"(best {best['eval_return']:.1f} at epoch {best['epoch']}), {trainer.env_steps} env steps, "
              f"{trainer.learner.updates} updates, {trainer.wall_s:.0f} s")
    print(f"plots: {out / 'training.png'}")
