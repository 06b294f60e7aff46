"""Flying policies in the batched env: jump-start training rollouts and deployment evaluation.

Both use the one hand-over rule of ``jsrl.jump_start_action``: the guide flies an episode's first
steps while the actor runs on the same states to warm its hidden state, then the actor flies.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import seeds
from ..env import task
from ..env.batched_env import BatchedHoverEnv
from .jsrl import jump_start_action
from ..sim.dynamics import QuadrotorDynamics
from ..sim.prediction import advance
from ..common.layout import ACTION_DIM, POS
from .sequence_replay import EpisodeSlicer, SequenceConfig, Sequences


def actor_input(actor, obs: torch.Tensor, priv: torch.Tensor) -> torch.Tensor:
    """The observation an actor reads: the 146-value privileged one or the 18-value one."""
    return priv if getattr(actor, "inputs", "observation") == "privileged" else obs


def _act(actor, x: torch.Tensor, state):
    """One control step of any actor (spiking: stateful; MLP: stateless); inputs come from the env."""
    return actor.step(x, state, validate=False)


class JumpStartRollout:
    """Flies the env's B drones with the jump-start mux and cuts what is flown into sequences.

    Episodes continue across :meth:`collect` calls; the actor's hidden state is reset per drone
    whenever its episode restarts.
    """

    def __init__(self, env: BatchedHoverEnv, actor, guide, seq_cfg: SequenceConfig,
                 noise_std: float, generator: torch.Generator):
        self.env, self.actor, self.guide = env, actor, guide
        self.noise_std, self.generator = noise_std, generator
        self.slicer = EpisodeSlicer(env.num_drones, env.cfg.episode_steps, seq_cfg, device=env.device)
        self.obs = env.reset()
        self.actor_state = actor.init_state(env.num_drones, device=env.device)
        self.env_steps = 0

    @torch.no_grad()
    def collect(self, steps: int, guide_steps: int, guide_noise: float = 0.0) -> tuple[Sequences | None, dict]:
        """Fly ``steps`` control steps of all drones; return the completed sequences and the
        returns/lengths of the episodes that ended. ``guide_noise`` adds N(0, std) to the guide's
        executed actions (the stored BC target stays the guide's own action)."""
        env, b = self.env, self.env.num_drones
        target = env.target.expand(b, 3)
        out, returns, lengths = [], [], []
        zeros = torch.zeros(b, ACTION_DIM, device=env.device)
        for _ in range(steps):
            state, hist = env.state.clone(), env.action_history
            priv = env.privileged_obs()  # true state (the env's observation noise is the actor's only)
            a_actor, self.actor_state = _act(self.actor, actor_input(self.actor, self.obs, priv), self.actor_state)
            a_guide = self.guide(priv) if self.guide is not None else zeros
            a_flown = a_guide
            if guide_noise > 0:
                noise = torch.randn(a_guide.shape, generator=self.generator).to(a_guide)
                a_flown = (a_guide + guide_noise * noise).clamp(-1.0, 1.0)
            a = jump_start_action(env.steps, guide_steps, a_flown, a_actor, self.noise_std, self.generator)
            self.obs, _, term, trunc, info = env.step(a)
            seqs = self.slicer.record(state, a, a_guide, info["next_state"], term, trunc, hist, target)
            if seqs is not None:
                out.append(seqs)
            done = info["done"]
            if bool(done.any()):
                self.actor_state = self.actor.reset_state(self.actor_state, done)
                returns += info["episode_return"][done].tolist()
                lengths += info["episode_length"][done].tolist()
        self.env_steps += steps * b
        return (Sequences.cat(out) if out else None), {"returns": returns, "lengths": lengths}


def ci95(x: np.ndarray) -> float:
    """Half-width of the normal 95% confidence interval of the mean of ``x`` (1.96 s / sqrt(n))."""
    x = np.asarray(x, dtype=float)
    return float(1.96 * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


@dataclass
class EvalResult:
    """Deployment evaluation over N episodes, scored with the end-of-curriculum coefficients.

    The whole-episode figures count every step, the guide's warm-up included; the ``actor_*`` ones
    only the steps after the hand-over, which the actor flew (an episode that crashed during the
    warm-up never reached the actor and is left out of the actor's crash rate)."""

    returns: np.ndarray            # [N] sum of Eq. 8 over the whole episode
    lengths: np.ndarray            # [N] steps flown before the episode ended (crash or 500)
    crashed: np.ndarray            # [N] bool
    position_error_m: np.ndarray   # [N] mean |p - target| over the steps flown
    trajectories: np.ndarray = field(repr=False, default=None)  # [T+1, N, 3] positions (world m)
    guide_steps: int = 0           # steps the guide flew before the hand-over
    actor_returns: np.ndarray = field(repr=False, default=None)  # [N] sum of Eq. 8 over the actor's steps

    @property
    def mean_return(self) -> float:
        return float(self.returns.mean())

    @property
    def handed_over(self) -> np.ndarray:
        """[N] bool: the episode lived past the guide's warm-up, so the actor flew."""
        return self.lengths > self.guide_steps

    def summary(self) -> dict[str, float]:
        reached = self.handed_over
        actor_returns = self.actor_returns if self.actor_returns is not None else self.returns
        return {"return_mean": float(self.returns.mean()), "return_std": float(self.returns.std()),
                "return_ci95": ci95(self.returns),
                "length_mean": float(self.lengths.mean()), "crash_rate": float(self.crashed.mean()),
                "position_error_m": float(self.position_error_m.mean()),
                "actor_return_mean": float(actor_returns[reached].mean()) if reached.any() else float("nan"),
                "actor_return_ci95": ci95(actor_returns[reached]),
                "actor_crash_rate": float(self.crashed[reached].mean()) if reached.any() else float("nan"),
                "warmup_crash_rate": float((self.crashed & ~reached).mean()),
                "episodes": int(len(self.returns))}


@torch.no_grad()
def evaluate(actor, guide, env: BatchedHoverEnv, guide_steps: int, seed: int = seeds.TEST_SEED,
             start: str = "paper", predict_steps: int = 0) -> EvalResult:
    """Fly one episode per drone of ``env`` (autoreset off, progress 1.0) the way the actor is
    deployed: the guide flies the first ``guide_steps`` steps (the warm-up), the actor the rest,
    no exploration noise. Each drone's return sums Eq. 8 until its episode ends. ``start``: the
    task's initial-state distribution ('paper') or hover starts near the target ('hover',
    task.hover_initial_state), both drawn from ``seed``."""
    if env.autoreset:
        raise ValueError("evaluate needs an env built with autoreset=False")
    if guide_steps > 0 and guide is None:
        raise ValueError(f"evaluation hands over after {guide_steps} guide steps but no guide was given")
    env.set_progress(1.0)
    if start == "paper":
        obs = env.reset(seed=seed)
    elif start == "hover":
        generator = torch.Generator(device=env.device).manual_seed(seed)
        obs = env.reset(seed=seed, state=task.hover_initial_state(env.num_drones, generator, env.params, env.cfg,
                                                                   dtype=env.dtype))
    else:
        raise ValueError(f"start = {start!r}, expected 'paper' or 'hover'")
    n, T = env.num_drones, env.cfg.episode_steps
    state = actor.init_state(n, device=env.device)
    alive = torch.ones(n, dtype=torch.bool, device=env.device)
    ret = torch.zeros(n, device=env.device)
    actor_ret = torch.zeros(n, device=env.device)
    length = torch.zeros(n, dtype=torch.long, device=env.device)
    crashed = torch.zeros(n, dtype=torch.bool, device=env.device)
    err_sum = torch.zeros(n, device=env.device)
    traj = [env.state[:, POS].clone()]
    zeros = torch.zeros(n, ACTION_DIM, device=env.device)
    model = QuadrotorDynamics(env.params, device=env.device, dtype=env.dtype) if predict_steps > 0 else None
    for t in range(T):
        priv = env.privileged_obs()
        if model is not None:  # the env's observation noise stays on what the actor reads
            history = env.action_history
            seen = task.observation(advance(model, env.state, history[:, -predict_steps:]), env.target)
            obs = seen + (obs - task.observation(env.state, env.target))
            priv = task.privileged_observation(seen, history)
        a_actor, state = _act(actor, actor_input(actor, obs, priv), state)
        a_guide = guide(priv) if guide is not None and t < guide_steps else zeros  # every episode is at step t
        actor_flies = env.steps >= guide_steps
        a = jump_start_action(env.steps, guide_steps, a_guide, a_actor)
        obs, r, term, trunc, info = env.step(a)
        pos = info["next_state"][:, POS]
        ret += torch.where(alive, r, 0.0)
        actor_ret += torch.where(alive & actor_flies, r, 0.0)
        err_sum += torch.where(alive, (pos - env.target).norm(dim=1), 0.0)
        length += alive.long()
        crashed |= alive & term
        traj.append(torch.where(alive[:, None], pos, traj[-1]))
        alive &= ~(term | trunc)
        if not bool(alive.any()):
            break
    return EvalResult(returns=ret.cpu().numpy(), lengths=length.cpu().numpy(),
                      crashed=crashed.cpu().numpy(),
                      position_error_m=(err_sum / length.clamp_min(1)).cpu().numpy(),
                      trajectories=torch.stack(traj).cpu().numpy(), guide_steps=int(guide_steps),
                      actor_returns=actor_ret.cpu().numpy())
