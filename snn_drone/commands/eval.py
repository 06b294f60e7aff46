"""`snn-drone eval CHECKPOINT`: fly a trained actor as deployed and score it."""
from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate an actor checkpoint: return, position error, crash rate, 3-D plot",
                       description="Fly N episodes from the paper's initial-state distribution the way the actor is "
                                   "deployed (guide for the 50-step warm-up, then the actor, no noise), score them "
                                   "with the end-of-curriculum reward and draw the trajectories in 3-D.")
    p.add_argument("checkpoint", help="actor file (actor_best.pt / actor_last.pt of a run, a shipped actor), "
                                      "or 'controller' for the geometric controller")
    p.add_argument("--episodes", type=int, default=20, help="episodes (default: %(default)s)")
    p.add_argument("--guide", default="checkpoints/guide.pt", help="guide for the warm-up (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=None,
                   help="guide steps before hand-over (default: 50 for a spiking actor, 0 for an ANN)")
    p.add_argument("--preset", default="cf21_paper", help="quadrotor preset (default: %(default)s)")
    p.add_argument("--task", metavar="FILE",
                   help="task YAML (default: the task_config of the run's config.yaml next to the checkpoint, "
                        "else that of config/train.yaml, where the shipped checkpoints were trained)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the initial states (default: %(default)s)")
    p.add_argument("--plot", metavar="PNG", help="3-D trajectory picture (default: next to the checkpoint)")
    p.set_defaults(func=run)


def run(args) -> int:
    from snn_drone.core import task
    from snn_drone.core.batched_env import BatchedHoverEnv
    from snn_drone.core.jsrl import HorizonConfig
    from snn_drone.core.plots import plot_trajectories_3d
    from snn_drone.core.rollout import evaluate
    from snn_drone.core.spiking_actor import SpikingActor
    from snn_drone.core.training import load_guide

    ckpt = Path(args.checkpoint)
    actor = load_guide(args.checkpoint, args.preset)  # a policy file, or 'controller'
    actor.requires_grad_(False)
    warmup = args.warmup if args.warmup is not None else (HorizonConfig().warmup if isinstance(actor, SpikingActor) else 0)
    guide = load_guide(args.guide, args.preset) if warmup > 0 else None
    task_file = args.task or _run_task(ckpt)
    env = BatchedHoverEnv(args.episodes, task.load_task_config(task_file), args.preset, autoreset=False)
    res = evaluate(actor, guide, env, warmup, seed=args.seed)
    s = res.summary()
    print(f"task:              {task_file or task.task_config_path()}")
    print(f"episodes:          {args.episodes} (guide flies the first {warmup} steps)")
    print(f"return:            {s['return_mean']:.1f} +- {s['return_std']:.1f}   (end-of-curriculum reward, max 500)")
    print(f"episode length:    {s['length_mean']:.1f} steps")
    print(f"crash rate:        {s['crash_rate']:.2f}")
    print(f"position error:    {s['position_error_m']:.4f} m (mean over flown steps)")
    png = Path(args.plot) if args.plot else ckpt.with_name(ckpt.stem + "_eval3d.png")
    plot_trajectories_3d(res.trajectories, env.target.cpu().numpy(), png,
                         title=f"{ckpt.name}: return {s['return_mean']:.0f}", lengths=res.lengths)
    print(f"trajectories:      {png}")
    return 0


def _run_task(ckpt: Path) -> str | None:
    """The task file an actor was trained on, so it is scored where it learned: the task_config of
    the run's config.yaml next to the checkpoint, else that of the default training config (a
    shipped file in checkpoints/, 'controller'). None: config/task.yaml."""
    import yaml

    from snn_drone.core.training import default_config_path, resolve_path
    cfg = ckpt.parent / "config.yaml"
    if not cfg.is_file():
        cfg = default_config_path()
    task_file = (yaml.safe_load(cfg.read_text()) or {}).get("task_config") or None
    return str(resolve_path(task_file)) if task_file else None
