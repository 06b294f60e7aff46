"""The training loop: collect with jump-start rollouts (or read a fixed data set), update with the
TD3BC learner, evaluate, adapt the slope, checkpoint atomically, resume.

Algorithms (``TrainConfig.algo``), all through the same learner:

- ``td3bc_jsrl``: the paper's method. Online; the guide flies each episode's first steps on the
  hand-over schedule; actor loss -lambda Q + lambda_BC BC.
- ``td3``: online, no guide at all (the actor flies from step 0), actor loss -lambda Q.
- ``td3bc`` / ``bc``: offline, from a fixed data set of guide rollouts; -lambda Q + BC / BC only.
- Table 4 ablations: ``td3bc_jsrl`` with ``jump_start: false`` (BC only: the guide never flies but
  still labels every state) and/or ``learner.use_bc: false`` (JS only).

An epoch collects ``steps_per_epoch`` control steps of all ``num_drones`` drones (online) and then
runs ``updates_per_epoch`` gradient updates on ``batch_sequences`` replayed sequences.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from . import config, seeds, task
from .batched_env import BatchedHoverEnv
from .checkpoint import atomic_torch_save, load_policy, save_policy
from .controller import GeometricController
from .jsrl import HorizonConfig
from .learner import LearnerConfig, TD3BCLearner, derive_batch
from .malloc_tuning import retain_freed_memory
from .networks import CriticConfig, MLPPolicy, MLPPolicyConfig, TwinCritic, init_output_layer
from .params import load_preset
from .rollout import EvalResult, JumpStartRollout, evaluate
from .sequence_replay import SequenceConfig, SequenceReplay, Sequences
from .slope_schedules import SlopeScheduleConfig, make_slope_schedule
from .spiking_actor import SpikingActor, SpikingActorConfig

Algo = Literal["td3bc_jsrl", "td3", "td3bc", "bc"]
ActorKind = Literal["snn", "ann", "ann_history"]


@dataclass
class TrainConfig:
    """Everything a training run needs; config/train.yaml holds the defaults of `snn-drone train`."""

    algo: Algo = "td3bc_jsrl"
    """td3bc_jsrl (the paper), td3 (online, no guide), td3bc or bc (offline from guide rollouts)."""
    actor: ActorKind = "snn"
    """snn (the spiking actor), ann (MLP on the 18 observations) or ann_history (MLP on the 146 privileged)."""
    jump_start: bool = True
    """td3bc_jsrl only: the guide flies each episode's first steps (False: the BC-only ablation)."""
    seed: int = 0
    """Seeds torch, numpy, the envs and the initialisation."""
    preset: str = "cf21_paper"
    """Quadrotor model preset (config/presets)."""
    task_config: str = ""
    """Task YAML (empty: config/task.yaml)."""
    device: str = "cpu"
    """torch device for env, networks and replay."""
    threads: int = 0
    """torch intra-op threads (0: torch's default)."""
    num_drones: int = 64
    """Drones flown in parallel by the training rollouts."""
    epochs: int = 300
    """Training epochs."""
    steps_per_epoch: int = 50
    """Control steps of all drones collected per epoch (online algorithms)."""
    updates_per_epoch: int = 10
    """Gradient updates per epoch."""
    batch_sequences: int = 32
    """Sequences per gradient update (each `sequences.length` steps)."""
    min_replay_sequences: int = 64
    """Updates start once the replay holds this many sequences."""
    offline_episodes: int = 200
    """td3bc/bc: guide episodes in the fixed data set."""
    offline_noise: float = 0.1
    """td3bc/bc: exploration noise of the guide while recording the data set."""
    init_actor_at_hover: bool = False
    """Start the actor's tanh readout at the preset's hover action (small weights, bias atanh(hover))."""
    guide: str = "checkpoints/guide.pt"
    """Guide policy checkpoint (relative paths: to the package root), used by every algorithm but td3;
    'controller' uses the hand-written geometric controller (how the ANN guide itself is trained)."""
    eval_every: int = 10
    """Evaluate (and update the slope schedule) every this many epochs."""
    eval_episodes: int = 20
    """Episodes per training evaluation, from fresh initial states every time (seeds.training_eval_seed):
    the progress curve and the adaptive slope (Eq. 7) read them."""
    validation_episodes: int = 100
    """Episodes of the run's fixed validation set (seeds.validation_seed), flown at every evaluation:
    actor_best.pt is the actor with the best validation return (0: the training evaluation picks it)."""
    checkpoint_every_s: float = 120.0
    """Seconds between checkpoints (also written after every evaluation and at the end)."""
    survival_steps: int = 100
    """Evaluations report eval_survival: the fraction of episodes flying at least this many steps
    (the guide's criterion: 95% of 100 random initial states survive 100 steps)."""
    stop_survival_fraction: float = 0.0
    """Stop early once eval_survival reaches this fraction (0: never)."""
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    sequences: SequenceConfig = field(default_factory=SequenceConfig)
    horizon: HorizonConfig = field(default_factory=HorizonConfig)
    slope: SlopeScheduleConfig = field(default_factory=SlopeScheduleConfig)
    snn: SpikingActorConfig = field(default_factory=SpikingActorConfig)
    ann: MLPPolicyConfig = field(default_factory=lambda: MLPPolicyConfig(inputs="observation", hidden=(64, 64)))

    def __post_init__(self):
        if self.algo == "td3" and self.learner.use_bc:
            self.learner = dataclasses.replace(self.learner, use_bc=False)
        if self.algo == "bc":
            self.learner = dataclasses.replace(self.learner, use_q=False)
        if self.actor == "ann_history":
            self.ann = dataclasses.replace(self.ann, inputs="privileged")
        elif self.actor == "ann":
            self.ann = dataclasses.replace(self.ann, inputs="observation")
        warmups = {"learner.warmup": self.learner.warmup, "sequences.warmup": self.sequences.warmup,
                   "horizon.warmup": self.horizon.warmup}
        if len(set(warmups.values())) > 1:
            raise ValueError("the warm-up is one value but the config gives "
                             + ", ".join(f"{k} = {v}" for k, v in warmups.items())
                             + ": set all three to the same number of steps")
        seeds._check_run_seed(self.seed)

    @property
    def online(self) -> bool:
        return self.algo in ("td3bc_jsrl", "td3")

    @property
    def needs_guide(self) -> bool:
        return self.algo != "td3"

    @property
    def uses_slope(self) -> bool:
        return self.actor == "snn"

    @property
    def deployed_warmup(self) -> int:
        """Steps the guide flies before the hand-over when the actor is deployed (and evaluated)."""
        return deployed_warmup(self.algo, self.actor, self.horizon.warmup)


def deployed_warmup(algo: str, actor: str, warmup: int) -> int:
    """The guide flies the deployed warm-up of a spiking actor trained with a guide; an actor trained
    without a guide (td3) or without hidden state (an ANN) flies from the episode's first step."""
    return warmup if algo != "td3" and actor == "snn" else 0


def package_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_path(p: str) -> Path:
    path = Path(p)
    if not path.is_absolute() and not path.exists():
        cand = package_root() / path
        if cand.exists():
            return cand
    return path


def default_config_path() -> Path:
    return config.config_dir() / "train.yaml"


def load_train_config(path=None, overrides: dict | None = None) -> TrainConfig:
    """Defaults, then the YAML (default config/train.yaml), then ``overrides`` (dotted keys allowed)."""
    data = config.load_yaml(path or default_config_path())
    for k, v in (overrides or {}).items():
        d = data
        *parents, last = k.split(".")
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = v
    return config.from_dict(TrainConfig, data, source=str(path or default_config_path()))


def load_guide(spec: str, preset: str, device="cpu") -> torch.nn.Module:
    """The guide: a policy checkpoint, or 'controller' for the geometric hover controller."""
    if spec == "controller":
        return GeometricController(load_preset(preset)).to(device)
    return load_policy(resolve_path(spec), map_location=device).requires_grad_(False)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_actor(cfg: TrainConfig) -> torch.nn.Module:
    if cfg.actor == "snn":
        actor = SpikingActor(dataclasses.replace(cfg.snn, seed=cfg.seed if cfg.snn.seed is None else cfg.snn.seed))
        readout = actor.readout
    else:
        actor = MLPPolicy(cfg.ann)
        readout = actor.net[-1]
    if cfg.init_actor_at_hover:
        init_output_layer(readout, load_preset(cfg.preset).hover_action)
    return actor


class Trainer:
    """One training run in ``out_dir``: ``run()`` trains to ``cfg.epochs``; resumable.

    With ``collect=False`` the trainer flies nothing itself: rollouts collected elsewhere (the
    ROS graph's sim workers, bags) arrive through :meth:`ingest`, and each :meth:`train_epoch`
    updates, evaluates, logs and checkpoints exactly as ``run()`` does.
    """

    CHECKPOINT = "checkpoint.pt"

    def __init__(self, cfg: TrainConfig, out_dir: str | os.PathLike, resume: bool = False,
                 progress: bool = True, log=print, collect: bool = True):
        self.cfg, self.out = cfg, Path(out_dir)
        self.collect = collect
        self.log = log
        self.progress_bar = progress
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        retain_freed_memory()  # keep freed BPTT buffers: ~10x fewer page faults per update
        seed_everything(cfg.seed)
        dev = torch.device(cfg.device)
        task_cfg = task.load_task_config(resolve_path(cfg.task_config) if cfg.task_config else None)
        self.task_cfg = task_cfg
        self.env = BatchedHoverEnv(cfg.num_drones, task_cfg, cfg.preset, device=dev, seed=cfg.seed,
                                   progress=0.0)
        self.eval_env = BatchedHoverEnv(cfg.eval_episodes, task_cfg, cfg.preset, device=dev,
                                        seed=seeds.training_eval_seed(cfg.seed, 0), autoreset=False)
        self.validation_env = None
        if cfg.validation_episodes > 0:
            self.validation_env = BatchedHoverEnv(cfg.validation_episodes, task_cfg, cfg.preset, device=dev,
                                                  seed=seeds.validation_seed(cfg.seed), autoreset=False)
        self.guide = None
        if cfg.needs_guide:
            self.guide = load_guide(cfg.guide, cfg.preset, dev)
        self.actor = make_actor(cfg).to(dev)
        self.learner = TD3BCLearner(self.actor, cfg.learner, critic=TwinCritic(cfg.critic))
        self.replay = SequenceReplay(cfg.sequences, device=dev)
        self.slope = make_slope_schedule(cfg.slope) if cfg.uses_slope else None
        if self.slope is not None:
            self.actor.set_slope(self.slope.k)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.rollout = None
        if cfg.online and collect:
            self.rollout = JumpStartRollout(self.env, self.actor, self.guide, cfg.sequences,
                                            cfg.horizon.exploration_noise, self.gen)
        self.epoch = 0
        self.stage = 0          # hand-over stage (horizon.guide_steps_at_stage)
        self.stage_epochs = 0   # epochs spent in it
        self.evaluations = 0    # training evaluations so far (each draws fresh starts)
        self.stopped_early = False
        self.env_steps = 0
        self.history: list[dict] = []
        self.best_return = -math.inf
        self.wall_s = 0.0
        self._writer = None
        self._ingested: dict[str, list] = {"returns": [], "lengths": []}
        self._last_ckpt = time.monotonic()
        if resume and (self.out / self.CHECKPOINT).exists():
            self._load()
        elif resume:
            self.log(f"no checkpoint in {self.out}; starting a new run")
        self._write_config()

    # ---- schedule -----------------------------------------------------------------------------
    def guide_steps(self) -> int:
        """Steps the guide flies in the current epoch's rollouts (the current hand-over stage)."""
        cfg = self.cfg
        if cfg.algo == "td3" or not cfg.jump_start:
            return 0
        return cfg.horizon.guide_steps_at_stage(self.stage)

    def _advance_stage(self, row: dict) -> None:
        """End of an epoch: after ``epochs_per_stage`` epochs in a stage, move to the next one (on the
        fixed schedule always; with ``horizon.advance: on_eval`` only if the evaluation holds up)."""
        h = self.cfg.horizon
        self.stage_epochs += 1
        if self.stage_epochs < max(1, h.epochs_per_stage):
            return
        self.stage_epochs = 0
        self.learner.end_stage()
        key = self._selection_key
        evals = [r[key] for r in self.history if key in r] + ([row[key]] if key in row else [])
        if h.should_advance(evals[-1] if evals else None, self.best_return):
            self.stage += 1
        elif self.guide_steps() > h.warmup:
            self.log(f"epoch {self.epoch}: evaluation {evals[-1]:.1f} below {h.hold_fraction:.0%} of the best "
                     f"({self.best_return:.1f}); the guide keeps {self.guide_steps()} steps")

    def eval_guide_steps(self) -> int:
        """At deployment the guide flies the warm-up only (none without a guide)."""
        return self.cfg.deployed_warmup

    @property
    def actor_warmup(self) -> str:
        """Which sequences' warm-up steps carry no actor loss (``derive_batch``): none for an actor
        without hidden state; for a spiking actor that flies from the first step at deployment (no
        guide), only those of sequences starting mid-episode; else all (the paper)."""
        if self.cfg.actor != "snn":
            return "none"
        return "all" if self.eval_guide_steps() > 0 else "mid_episode"

    @property
    def _selection_key(self) -> str:
        """The metrics row key that picks actor_best (and gates an on_eval hand-over)."""
        return "validation_return" if self.validation_env is not None else "eval_return"

    # ---- main loop ----------------------------------------------------------------------------
    def run(self) -> list[dict]:
        cfg = self.cfg
        if not cfg.online and len(self.replay) == 0 and self.collect:
            self._record_offline_dataset()
        bar = None
        if self.progress_bar:
            from tqdm import tqdm
            bar = tqdm(total=cfg.epochs, initial=self.epoch, desc=f"{cfg.algo}/{cfg.actor}", unit="epoch",
                       dynamic_ncols=True)
        self._last_ckpt = time.monotonic()
        try:
            while self.epoch < cfg.epochs and not self.stopped_early:
                row = self.train_epoch()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(self._postfix(row))
        finally:
            if bar is not None:
                bar.close()
        self.finish()
        return self.history

    def train_epoch(self) -> dict:
        """One epoch: collect (own rollouts) or use what :meth:`ingest` added, update, evaluate on
        schedule, log, checkpoint; returns the metrics row. Sets ``stopped_early`` on the stop criterion."""
        cfg = self.cfg
        t0 = time.perf_counter()
        row = self._train_epoch()
        self.epoch += 1
        if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
            row.update(self._evaluate())
        self._advance_stage(row)
        self.wall_s += time.perf_counter() - t0  # training and evaluation: the run's own time
        row.update(epoch=self.epoch, env_steps=self.env_steps, updates=self.learner.updates,
                   wall_s=round(self.wall_s, 3))
        self.history.append(row)
        self._log_row(row)
        if "eval_return" in row or time.monotonic() - self._last_ckpt > cfg.checkpoint_every_s:
            self.save()
            self._last_ckpt = time.monotonic()
        if cfg.stop_survival_fraction > 0 and row.get("eval_survival", 0.0) >= cfg.stop_survival_fraction:
            self.log(f"stopping at epoch {self.epoch}: {row['eval_survival']:.0%} of the evaluation "
                     f"episodes flew {cfg.survival_steps} steps or more")
            self.stopped_early = True
        return row

    def ingest(self, seqs: Sequences | None, env_steps: int = 0, returns=(), lengths=()) -> None:
        """Rollouts collected elsewhere: sequences into the replay, env steps and finished-episode
        returns/lengths into the next epoch's row."""
        if seqs is not None and seqs.n:
            self.replay.add(seqs)
        self.env_steps += int(env_steps)
        self._ingested["returns"] += [float(r) for r in returns]
        self._ingested["lengths"] += [float(n) for n in lengths]

    def finish(self) -> None:
        """Final checkpoint and plots (``run()`` ends with it)."""
        self.save()
        self._plots()

    def _train_epoch(self) -> dict:
        cfg = self.cfg
        row: dict = {}
        progress = min(1.0, self.epoch / max(1, cfg.epochs))
        self.env.set_progress(progress)
        if self.rollout is not None:
            h = self.guide_steps()
            seqs, stats = self.rollout.collect(cfg.steps_per_epoch, h)
            if seqs is not None:
                self.replay.add(seqs)
            self.env_steps += cfg.steps_per_epoch * cfg.num_drones
            row["guide_steps"] = h
            if stats["returns"]:
                row["train_return"] = float(np.mean(stats["returns"]))
                row["train_length"] = float(np.mean(stats["lengths"]))
        elif not self.collect:
            if cfg.online:
                row["guide_steps"] = self.guide_steps()
            if self._ingested["returns"]:
                row["train_return"] = float(np.mean(self._ingested["returns"]))
                row["train_length"] = float(np.mean(self._ingested["lengths"]))
            self._ingested = {"returns": [], "lengths": []}
        metrics: list[dict] = []
        if len(self.replay) >= min(cfg.min_replay_sequences, self.replay.cfg.capacity_sequences):
            coeffs = self.env.coeffs
            inputs = getattr(self.actor, "inputs", "observation")
            for _ in range(cfg.updates_per_epoch):
                seqs = self.replay.sample(cfg.batch_sequences, self.gen)
                batch = derive_batch(seqs, self.task_cfg, coeffs, inputs, cfg.learner.warmup, self.actor_warmup)
                metrics.append(self.learner.update(batch))
        for k in {k for m in metrics for k in m}:
            vals = [m[k] for m in metrics if k in m]
            row[k] = float(np.mean(vals))
        self.learner.end_epoch()
        row["lambda_bc"] = self.learner.lambda_bc
        row["slope"] = float(self.actor.slope) if cfg.uses_slope else float("nan")
        row["replay_sequences"] = len(self.replay)
        return row

    def _evaluate(self) -> dict:
        res = self.evaluate(seeds.training_eval_seed(self.cfg.seed, self.evaluations))
        self.evaluations += 1
        s = res.summary()
        row = {"eval_return": s["return_mean"], "eval_return_std": s["return_std"],
               "eval_length": s["length_mean"], "eval_crash_rate": s["crash_rate"],
               "eval_position_error_m": s["position_error_m"], "eval_actor_return": s["actor_return_mean"],
               "eval_actor_crash_rate": s["actor_crash_rate"]}
        row["eval_survival"] = float((res.lengths >= self.cfg.survival_steps).mean())
        if self.validation_env is not None:
            v = self.validate().summary()
            row.update(validation_return=v["return_mean"], validation_ci95=v["return_ci95"],
                       validation_crash_rate=v["crash_rate"])
        if self.slope is not None:  # Eq. 7 reads the training evaluation (fresh starts)
            k = self.slope.update(s["return_mean"])
            self.actor.set_slope(k)
            self.learner.actor_target.set_slope(k)
        score = row[self._selection_key]
        if score > self.best_return:
            self.best_return = score
            row["best"] = True
            save_policy(self.out / "actor_best.pt", self.actor)
        return row

    def evaluate(self, seed: int | None = None) -> EvalResult:
        """Fly the training evaluation as deployed; ``seed`` None: the next evaluation's fresh starts."""
        if seed is None:
            seed = seeds.training_eval_seed(self.cfg.seed, self.evaluations)
        return evaluate(self.actor, self.guide, self.eval_env, self.eval_guide_steps(), seed=seed)

    def validate(self) -> EvalResult:
        """Fly the run's fixed validation set as deployed (the choice of actor_best)."""
        return evaluate(self.actor, self.guide, self.validation_env, self.eval_guide_steps(),
                        seed=seeds.validation_seed(self.cfg.seed))

    def _record_offline_dataset(self) -> None:
        """td3bc / bc: a fixed data set of whole episodes flown by the guide with exploration noise."""
        cfg = self.cfg
        rollout = JumpStartRollout(self.env, self.actor, self.guide, cfg.sequences, 0.0, self.gen)
        episodes = 0
        self.env.set_progress(0.0)
        while episodes < cfg.offline_episodes:
            seqs, stats = rollout.collect(cfg.steps_per_epoch, guide_steps=self.task_cfg.episode_steps,
                                          guide_noise=cfg.offline_noise)
            if seqs is not None:
                self.replay.add(seqs)
            episodes += len(stats["returns"])
            self.env_steps += cfg.steps_per_epoch * cfg.num_drones
        self.log(f"offline data set: {episodes} guide episodes, {len(self.replay)} sequences")

    # ---- logging, plots, checkpoints ---------------------------------------------------------
    def _postfix(self, row: dict) -> str:
        parts = []
        if "eval_return" in row:
            parts.append(f"eval={row['eval_return']:.1f}")
        elif self.history and any("eval_return" in r for r in self.history):
            parts.append(f"eval={[r for r in self.history if 'eval_return' in r][-1]['eval_return']:.1f}")
        if "validation_return" in row:
            parts.append(f"val={row['validation_return']:.1f}")
        if "train_return" in row:
            parts.append(f"ret={row['train_return']:.1f}")
        if self.cfg.uses_slope:
            parts.append(f"k={row['slope']:.2f}")
        parts.append(f"lbc={row['lambda_bc']:.3f}")
        if "guide_steps" in row:
            parts.append(f"H={row['guide_steps']}")
        if self.wall_s > 0:
            parts.append(f"env/s={self.env_steps / self.wall_s:.0f} upd/s={self.learner.updates / self.wall_s:.1f}")
        return " ".join(parts)

    def _log_row(self, row: dict) -> None:
        path = self.out / "metrics.jsonl"
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._writer = SummaryWriter(str(self.out / "tb"))
            except Exception as e:  # tensorboard missing: metrics.jsonl still has everything
                self.log(f"TensorBoard logging off: {e}")
                self._writer = False
        if self._writer:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch",) and math.isfinite(v):
                    self._writer.add_scalar(k, v, self.learner.updates)
            self._writer.flush()

    def _write_config(self) -> None:
        import yaml
        with open(self.out / "config.yaml", "w") as f:
            yaml.safe_dump(config.to_dict(self.cfg), f, sort_keys=False)

    def state_dict(self) -> dict:
        return {
            "config": config.to_dict(self.cfg), "epoch": self.epoch, "env_steps": self.env_steps,
            "learner": self.learner.state_dict(), "replay": self.replay.state_dict(),
            "slope": self.slope.state_dict() if self.slope is not None else None,
            "history": self.history, "best_return": self.best_return, "wall_s": self.wall_s,
            "stage": self.stage, "stage_epochs": self.stage_epochs, "evaluations": self.evaluations,
            "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                    "env": self.env.generator.get_state(), "numpy": np.random.get_state(),
                    "python": random.getstate()},
        }

    def save(self) -> None:
        """Checkpoint (atomic) and the current actor as actor_last.pt."""
        atomic_torch_save(self.state_dict(), self.out / self.CHECKPOINT)
        save_policy(self.out / "actor_last.pt", self.actor)

    def _load(self) -> None:
        path = self.out / self.CHECKPOINT
        sd = torch.load(path, map_location=self.cfg.device, weights_only=False)
        # keys added to TrainConfig after the checkpoint was written take their defaults (the
        # behaviour of the code that wrote it), so an old run resumes unless a value really differs
        stored = config.to_dict(config.from_dict(TrainConfig, sd["config"], source=str(path)))
        mine = config.to_dict(self.cfg)
        differ = [d for d in config.diff(stored, mine) if not d.startswith(("epochs:", "checkpoint_every_s:", "threads:", "eval_every:"))]
        if differ:
            raise ValueError(f"cannot resume {path}: the config differs from the checkpoint's in "
                             f"{'; '.join(differ)} (use the checkpoint's values or a new output folder)")
        self.epoch, self.env_steps = sd["epoch"], sd["env_steps"]
        self.learner.load_state_dict(sd["learner"])
        self.replay.load_state_dict(sd["replay"])
        if self.slope is not None and sd["slope"] is not None:
            self.slope.load_state_dict(sd["slope"])
            self.actor.set_slope(self.slope.k)
        self.history, self.best_return, self.wall_s = sd["history"], sd["best_return"], sd["wall_s"]
        eps = max(1, self.cfg.horizon.epochs_per_stage)  # checkpoints from before stages were stored
        self.stage = sd.get("stage", self.epoch // eps)
        self.stage_epochs = sd.get("stage_epochs", self.epoch % eps)
        self.evaluations = sd.get("evaluations", sum(1 for r in self.history if "eval_return" in r))
        torch.set_rng_state(sd["rng"]["torch"])
        self.gen.set_state(sd["rng"]["gen"])
        self.env.generator.set_state(sd["rng"]["env"])
        if isinstance(sd["rng"]["numpy"], tuple):  # checkpoints before both were stored whole lack them
            np.random.set_state(sd["rng"]["numpy"])
            random.setstate(sd["rng"]["python"])
        self.log(f"resumed {path} at epoch {self.epoch} ({self.learner.updates} updates, "
                 f"{len(self.replay)} sequences in replay)")

    def _plots(self) -> None:
        from .plots import plot_training
        try:
            plot_training(self.history, self.out / "training.png", title=f"{self.cfg.algo} / {self.cfg.actor}")
        except Exception as e:  # a plot must never lose a finished run
            self.log(f"could not draw training plots: {e}")
