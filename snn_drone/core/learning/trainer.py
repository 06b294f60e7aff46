"""The training loop: collect with jump-start rollouts (or read a fixed data set), update with the
TD3BC learner, evaluate, adapt the slope, checkpoint atomically, resume.

An epoch collects ``steps_per_epoch`` control steps of all ``num_drones`` drones (online) and then
runs ``updates_per_epoch`` gradient updates on ``batch_sequences`` replayed sequences. What a run
writes besides its checkpoint (metrics, TensorBoard, config.yaml, plots) is :mod:`.run_log`'s job.
"""
from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from ..common import config
from ..common.config import resolve_path
from ..env import task
from ..env.batched_env import BatchedHoverEnv
from ..snn.slope_schedules import make_slope_schedule
from . import seeds
from .checkpoint import atomic_torch_save, save_policy
from .learner import TD3BCLearner, derive_batch
from .malloc_tuning import retain_freed_memory
from .networks import TwinCritic
from .rollout import EvalResult, JumpStartRollout, evaluate
from .run_log import RunLog, progress_postfix
from .sequence_replay import SequenceReplay, Sequences
from .train_config import TrainConfig, load_guide, make_actor, seed_everything

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
        if cfg.randomisation:
            task_cfg = task.with_randomisation(task_cfg, resolve_path(cfg.randomisation))
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
        self.records = RunLog(self.out, log)
        self._ingested: dict[str, list] = {"returns": [], "lengths": []}
        self._last_ckpt = time.monotonic()
        if resume and (self.out / self.CHECKPOINT).exists():
            self._load()
        elif resume:
            self.log(f"no checkpoint in {self.out}; starting a new run")
        self.records.write_config(cfg)

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
                    bar.set_postfix_str(progress_postfix(
                        row, self.history[:-1], cfg.uses_slope, self.env_steps, self.learner.updates, self.wall_s))
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
        self.records.append(row, step=self.learner.updates)
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
        self.records.plot(self.history, title=f"{self.cfg.algo} / {self.cfg.actor}")

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
                batch = derive_batch(seqs, self.task_cfg, coeffs, inputs, cfg.learner.warmup, self.actor_warmup,
                                     generator=self.gen)
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

    # ---- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": config.to_dict(self.cfg), "epoch": self.epoch, "env_steps": self.env_steps,
            "learner": self.learner.state_dict(), "replay": self.replay.state_dict(),
            "slope": self.slope.state_dict() if self.slope is not None else None,
            "history": self.history, "best_return": self.best_return, "wall_s": self.wall_s,
            "stage": self.stage, "stage_epochs": self.stage_epochs, "evaluations": self.evaluations,
            "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                    "env": self.env.generator.get_state(), "numpy": np.random.get_state(),
                    "python": random.getstate(),
                    **({"env_randomisation": self.env.dr_generator.get_state()}
                       if self.env.dr_generator is not None else {})},
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
        if self.env.dr_generator is not None and "env_randomisation" in sd["rng"]:
            self.env.dr_generator.set_state(sd["rng"]["env_randomisation"])
        if isinstance(sd["rng"]["numpy"], tuple):  # checkpoints before both were stored whole lack them
            np.random.set_state(sd["rng"]["numpy"])
            random.setstate(sd["rng"]["python"])
        self.log(f"resumed {path} at epoch {self.epoch} ({self.learner.updates} updates, "
                 f"{len(self.replay)} sequences in replay)")
