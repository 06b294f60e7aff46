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
    p.add_argument("--episodes", type=int, default=500,
                   help="episodes, one per drone, all flown at once (default: %(default)s, the least for a headline figure)")
    p.add_argument("--guide", default=None,
                   help="guide for the warm-up: a policy file or 'controller' (default: the guide of the run's "
                        "config.yaml next to the checkpoint, else that of config/train.yaml)")
    p.add_argument("--warmup", type=int, default=None,
                   help="guide steps before hand-over (default: the run's warm-up, 50, for a spiking actor; 0 for an ANN)")
    p.add_argument("--preset", default="cf21_paper", help="quadrotor preset (default: %(default)s)")
    p.add_argument("--task", metavar="FILE",
                   help="task YAML (default: the task_config of the run's config.yaml next to the checkpoint, "
                        "else that of config/train.yaml, where the shipped checkpoints were trained)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the initial states (default: %d, the first test seed; training, its evaluations "
                        "and its validation use other seeds: snn_drone/core/learning/seeds.py)" % 900_000_000)
    p.add_argument("--randomise", nargs="?", const="config/randomisation.yaml", default=None, metavar="FILE",
                   help="fly under per-episode domain randomisation (mass, thrust, motor lag, inertia, control "
                        "delay, observation noise): the ranges of FILE (default: %(const)s) replace the task's "
                        "randomisation block; without the flag the task's own block (off in the shipped tasks)")
    p.add_argument("--delay", type=int, default=None, metavar="K",
                   help="a control delay of exactly K steps (10 ms each) between the command and the motors, for "
                        "every episode (over the task's or --randomise's other ranges): how much latency the "
                        "policy tolerates")
    p.add_argument("--predict", type=int, default=0, metavar="K",
                   help="delay compensation: guide and actor act on the state predicted K steps ahead through the "
                        "last K commands (the preset's dynamics; crazyflie_bridge's predict_steps); default 0, off")
    p.add_argument("--start", choices=("paper", "hover"), default="paper",
                   help="initial states: the paper's distribution (default) or hover starts, the state after a "
                        "stock take-off (level, at rest, hover rotor speed, 5 cm position spread about the target)")
    p.add_argument("--plot", metavar="PNG", help="3-D trajectory picture (default: next to the checkpoint)")
    p.set_defaults(func=run)


def score_checkpoint(checkpoint: str, episodes: int = 500, seed: int | None = None, guide: str | None = None,
                     task_file: str | None = None, warmup: int | None = None, preset: str = "cf21_paper",
                     warn=print, randomise: str | None = None, delay_steps: int | None = None,
                     start: str = "paper", predict_steps: int = 0):
    """Fly ``checkpoint`` (a policy file or 'controller') as deployed on ``episodes`` fresh episodes.

    Defaults come from the run the checkpoint belongs to (its config.yaml, else config/train.yaml):
    the guide that flies the warm-up, the task, and the warm-up itself (a spiking actor only; an
    ANN flies from the first step). ``randomise``: a randomisation YAML whose ranges replace the
    task's (a run trained under randomisation is scored on its task's own block unless given);
    ``delay_steps``: a fixed control delay over that; ``start``: 'paper' or 'hover' initial states;
    ``predict_steps``: the delay compensation's horizon (0: off). Returns (EvalResult, env, a dict of what was used)."""
    from snn_drone.core.learning import seeds
    from snn_drone.core.env import task
    from snn_drone.core.env.batched_env import BatchedHoverEnv
    from snn_drone.core.learning.rollout import evaluate
    from snn_drone.core.snn.spiking_actor import SpikingActor
    from snn_drone.core.learning.train_config import deployed_warmup, load_guide

    actor = load_guide(checkpoint, preset)  # a policy file, or 'controller'
    actor.requires_grad_(False)
    run_cfg = _run_config(Path(checkpoint))
    if warmup is None:
        warmup = deployed_warmup(run_cfg.get("algo", "td3bc_jsrl"), "snn" if isinstance(actor, SpikingActor) else "ann",
                                 int((run_cfg.get("horizon") or {}).get("warmup", 50)))
    guide_spec = guide or run_cfg.get("guide") or "checkpoints/guide.pt"
    guide_net = load_guide(guide_spec, preset) if warmup > 0 else None
    task_file = task_file or _task_file(run_cfg)
    seed = seeds.TEST_SEED if seed is None else seed
    if seeds.is_training_seed(seed):
        warn(f"warning: seed {seed} belongs to the seeds training runs fly (snn_drone/core/learning/seeds.py); "
             f"a return scored on it is not a fresh-episode result")
    task_cfg = task.load_task_config(task_file)
    if randomise:
        from snn_drone.core.common.config import resolve_path
        task_cfg = task.with_randomisation(task_cfg, resolve_path(randomise))
    if delay_steps is not None:
        import dataclasses
        task_cfg = dataclasses.replace(task_cfg, randomisation=dataclasses.replace(
            task_cfg.randomisation, control_delay_steps_min=delay_steps, control_delay_steps_max=delay_steps))
    env = BatchedHoverEnv(episodes, task_cfg, preset, autoreset=False)
    if predict_steps < 0:
        raise ValueError(f"--predict {predict_steps}: expected K >= 0 control steps")
    res = evaluate(actor, guide_net, env, warmup, seed=seed, start=start, predict_steps=predict_steps)
    used = {"task": task_file or str(task.task_config_path()), "guide": guide_spec if warmup else "-",
            "warmup": warmup, "seed": seed, "episodes": episodes,
            "randomisation": task_cfg.randomisation if task_cfg.randomisation.enabled else None,
            "randomise_file": randomise, "start": start,
            "predict_steps": predict_steps}
    return res, env, used


def run(args) -> int:
    from snn_drone.core.learning.plots import plot_trajectories_3d

    ckpt = Path(args.checkpoint)
    res, env, used = score_checkpoint(args.checkpoint, args.episodes, args.seed, args.guide, args.task,
                                      args.warmup, args.preset, randomise=args.randomise, delay_steps=args.delay,
                                      start=args.start, predict_steps=args.predict)
    s, warmup = res.summary(), used["warmup"]
    print(f"task:              {used['task']}")
    dr = used["randomisation"]
    if dr is None:
        print("randomisation:     off")
    else:
        from snn_drone.core.common.config import to_dict
        on = ", ".join(f"{k} {v}" for k, v in to_dict(dr).items() if v)
        source = used['randomise_file'] or ('--delay' if args.delay is not None else 'the task file')
        print(f"randomisation:     {source}: {on or 'all ranges 0'}")
    if args.start == "hover":
        print("starts:            hover starts (level, at rest, hover rotor speed, 5 cm about the target)")
    if args.predict:
        print(f"prediction:        guide and actor act on the state {args.predict} steps ahead (delay compensation)")
    print(f"episodes:          {args.episodes}, "
          f"seed {used['seed']} (the guide {used['guide']} flies the "
          f"first {warmup} steps)")
    print(f"return:            {s['return_mean']:.1f} +- {s['return_ci95']:.1f} (95% CI; std {s['return_std']:.1f}; "
          f"end-of-curriculum reward, max 500)")
    during = f"; {s['warmup_crash_rate']:.3f} during the guide's warm-up" if warmup > 0 else ""
    print(f"crash rate:        {s['crash_rate']:.3f} ({int(res.crashed.sum())} of {args.episodes}{during})")
    if warmup > 0:
        n_actor = int(res.handed_over.sum())
        print(f"actor's steps:     return {s['actor_return_mean']:.1f} +- {s['actor_return_ci95']:.1f} (95% CI, the "
              f"{n_actor} episodes that reached the hand-over, steps {warmup}..), crash rate {s['actor_crash_rate']:.3f}")
    print(f"episode length:    {s['length_mean']:.1f} steps")
    print(f"position error:    {s['position_error_m']:.4f} m (mean over flown steps)")
    png = Path(args.plot) if args.plot else ckpt.with_name(ckpt.stem + "_eval3d.png")
    plot_trajectories_3d(res.trajectories, env.target.cpu().numpy(), png,
                         title=f"{ckpt.name}: return {s['return_mean']:.0f}", lengths=res.lengths)
    print(f"trajectories:      {png}")
    return 0


def _run_config(ckpt: Path) -> dict:
    """The training config an actor came from, so it is scored where and as it learned: the run's
    config.yaml next to the checkpoint, else the default training config (a shipped file in
    checkpoints/, 'controller')."""
    import yaml

    from snn_drone.core.learning.train_config import default_config_path
    cfg = ckpt.parent / "config.yaml"
    if not cfg.is_file():
        cfg = default_config_path()
    return yaml.safe_load(cfg.read_text()) or {}


def _task_file(run_cfg: dict) -> str | None:
    """The run's task file (None: config/task.yaml)."""
    from snn_drone.core.common.config import resolve_path
    task_file = run_cfg.get("task_config") or None
    return str(resolve_path(task_file)) if task_file else None
