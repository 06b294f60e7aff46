"""What a training run is: :class:`TrainConfig` (config/train.yaml holds the defaults of
`snn-drone train`), its loading, and the parts every run builds from it (the actor, the guide).

Algorithms (``TrainConfig.algo``), all through the same learner:

- ``td3bc_jsrl``: the paper's method. Online; the guide flies each episode's first steps on the
  hand-over schedule; actor loss -lambda Q + lambda_BC BC.
- ``td3``: online, no guide at all (the actor flies from step 0), actor loss -lambda Q.
- ``td3bc`` / ``bc``: offline, from a fixed data set of guide rollouts; -lambda Q + BC / BC only.
- Table 4 ablations: ``td3bc_jsrl`` with ``jump_start: false`` (BC only: the guide never flies but
  still labels every state) and/or ``learner.use_bc: false`` (JS only).
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from ..common import config
from ..common.config import resolve_path
from ..sim.controller import GeometricController
from ..sim.params import load_preset
from ..snn.slope_schedules import SlopeScheduleConfig
from ..snn.spiking_actor import SpikingActor, SpikingActorConfig
from . import seeds
from .checkpoint import load_policy
from .jsrl import HorizonConfig
from .learner import LearnerConfig
from .networks import CriticConfig, MLPPolicy, MLPPolicyConfig, init_output_layer
from .sequence_replay import SequenceConfig

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
    randomisation: str = ""
    """Domain-randomisation YAML (config/randomisation.yaml: the sim-to-real ranges) that replaces the
    task's randomisation block for training, its evaluations and its validation (empty: the task's
    own block, off in the shipped task files)."""
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
