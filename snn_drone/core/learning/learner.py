"""TD3BC + JSRL learner (PAPER.md Algorithm 1): one update on a batch of replayed sequences.

Read :meth:`TD3BCLearner.update` next to Algorithm 1:

- critic (twin ANN on privileged input) on every valid step:
  y = r + gamma (1 - d) min_j Q'_j(s', pi'(s') + clip(N(0, sigma), -c, c)),
  (``critic_steps: burn_in``: not on the warm-up steps of sequences that start mid-episode, where
  pi' runs from a zero hidden state the flying SNN never had, as R2D2's burn-in),
- actor (the SNN, run over the whole sequence from a zero hidden state) every ``policy_delay``
  updates, on steps t >= warm-up only (``derive_batch`` builds the mask; an actor without hidden
  state, or one that flies from the episode's first step, also learns on the steps it flies there):
  L = -lambda Q1(s, pi(s)) + lambda_BC |pi(s) - a_guide|^2,  lambda = alpha / mean|Q1(s, pi(s))|,
- soft target updates with tau after each actor update; lambda_BC decays once per epoch or once
  per hand-over stage (the trainer calls ``end_epoch`` / ``end_stage``).
- pure BC (``use_q`` False) has no critic and no targets to read: the actor steps on every update.

Unlike the public code, Q is evaluated on the actor's own actions pi(s) (so its gradient reaches the
actor) and the critic target uses the target actor's actions pi'(s'), not stored ones.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch

from ..env import randomisation, task
from .networks import TwinCritic
from .sequence_replay import Sequences, privileged_history


@dataclass
class LearnerConfig:
    """Hyperparameters of the TD3BC + JSRL update (defaults: PAPER.md Table 6)."""

    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.01
    """Soft target update rate (the public code: 0.005)."""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor."""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics (the public code: 3e-4)."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise."""
    noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update, as in TD3."""
    alpha: float = 2.0
    """Q-term weight: lambda = alpha / mean|Q| (the public code: 2.5)."""
    use_q: bool = True
    """Include the -lambda Q term in the actor loss (False: pure behaviour cloning)."""
    use_bc: bool = True
    """Include the lambda_BC BC term towards the guide's actions in the actor loss."""
    lambda_bc: float = 0.2
    """Initial weight of the BC term."""
    lambda_bc_decay: float = 0.99
    """lambda_BC <- max(lambda_bc_min, decay * lambda_BC) after every epoch or stage (``lambda_bc_decay_per``)."""
    lambda_bc_decay_per: Literal["epoch", "stage"] = "epoch"
    """When lambda_BC decays: after every epoch (the paper's text) or after every hand-over stage
    (the paper's code: 0.2 -> 0.164 over its 20 stages)."""
    lambda_bc_min: float = 0.0
    """Floor of the decaying lambda_BC (the paper: none, 0.0)."""
    bc_reduction: Literal["sum", "mean"] = "sum"
    """|pi(s) - a_guide|^2 summed over the 4 motors (the paper's squared norm) or averaged (TD3+BC's mse)."""
    critic_steps: Literal["all", "burn_in"] = "all"
    """Steps the critic trains on: every valid step (the paper), or burn_in: not the warm-up steps of
    sequences that start mid-episode (their critic target comes from the target SNN started from a
    zero hidden state, actions the flying SNN never took)."""
    warmup: int = 50
    """Leading steps of each sequence without actor loss (the SNN's hidden state warms up)."""

    def __post_init__(self):
        if self.lambda_bc_decay_per not in ("epoch", "stage"):
            raise ValueError(f"learner.lambda_bc_decay_per = {self.lambda_bc_decay_per!r}; expected 'epoch' or 'stage'")
        if self.critic_steps not in ("all", "burn_in"):
            raise ValueError(f"learner.critic_steps = {self.critic_steps!r}; expected 'all' or 'burn_in'")


class Batch(NamedTuple):
    """What an update reads, time-major, derived from stored sequences (``derive_batch``)."""

    actor_obs: torch.Tensor   # [T+1, N, D] the actor's input (18 observation or 146 privileged)
    priv_obs: torch.Tensor    # [T+1, N, 146]
    action: torch.Tensor      # [T, N, 4] executed
    guide_action: torch.Tensor  # [T, N, 4]
    reward: torch.Tensor      # [T, N]
    terminated: torch.Tensor  # [T, N] float
    valid: torch.Tensor       # [T, N] bool
    actor_mask: torch.Tensor  # [T, N] bool: the steps the actor loss reads
    burn_in_mask: torch.Tensor  # [T, N] bool: valid and (t >= warm-up or the sequence starts the episode)


def derive_batch(seqs: Sequences, task_cfg, coeffs, actor_inputs: str, warmup: int,
                 actor_warmup: Literal["all", "mid_episode", "none"] = "all",
                 generator: torch.Generator | None = None) -> Batch:
    """Observations, privileged observations and rewards of stored sequences, time-major.

    Uses the task's one definition of each (``snn_drone.core.env.task``); the reward of step t scores
    (s_{t+1}, a_t) with the curriculum coefficients ``coeffs`` and ``task_cfg``'s orientation cost.

    ``actor_warmup`` says which sequences' first ``warmup`` steps carry no actor loss:
    ``all`` (a spiking actor whose deployed warm-up the guide flies: the paper), ``mid_episode``
    (a spiking actor that flies from the episode's first step: a sequence that starts there starts
    from the true zero hidden state, so its first steps count) or ``none`` (an actor without hidden
    state learns on every step it may fly).

    When the task randomises observation noise (``task_cfg.randomisation``), an actor on the
    18-value observation reads it with fresh noise drawn from ``generator`` (i.i.d. per step like the
    env's, which is not stored); the critic's privileged observation and the reward stay true.
    """
    if actor_warmup not in ("all", "mid_episode", "none"):
        raise ValueError(f"actor_warmup = {actor_warmup!r}; expected 'all', 'mid_episode' or 'none'")
    n, t1 = seqs.state.shape[:2]
    T = t1 - 1
    flat = seqs.state.transpose(0, 1).reshape(t1 * n, -1)              # time-major, flattened
    target = seqs.target.repeat(t1, 1)                                  # [(T+1) N, 3]
    obs = task.observation(flat, target)                                # [(T+1) N, 18]
    hist = privileged_history(seqs.history0, seqs.action).transpose(0, 1)  # [T+1, N, H, 4]
    priv = task.privileged_observation(obs, hist.reshape(t1 * n, *hist.shape[2:]))
    action = seqs.action.transpose(0, 1)                                # [T, N, 4]
    reward = task.reward(flat[n:], action.reshape(T * n, -1), target[n:], coeffs,
                         task_cfg.orientation_cost).reshape(T, n)
    valid = seqs.valid.transpose(0, 1)
    after_warmup = torch.arange(T, device=valid.device)[:, None] >= warmup       # [T, 1]
    starts_episode = (seqs.start_step == 0)[None, :]                             # [1, N]
    burn_in = valid & (after_warmup | starts_episode)
    actor_mask = {"all": valid & after_warmup, "mid_episode": burn_in, "none": valid}[actor_warmup]
    obs, priv = obs.reshape(t1, n, -1), priv.reshape(t1, n, -1)
    dr = getattr(task_cfg, "randomisation", None)
    if actor_inputs != "privileged" and dr is not None and dr.obs_noise:
        if generator is None:
            raise ValueError("the task randomises observation noise: derive_batch needs a generator")
        obs = obs + randomisation.observation_noise(obs.shape, generator, dr, obs.dtype).to(obs.device)
    return Batch(
        actor_obs=priv if actor_inputs == "privileged" else obs,
        priv_obs=priv,
        action=action,
        guide_action=seqs.guide_action.transpose(0, 1),
        reward=torch.where(valid, reward, 0.0),
        terminated=seqs.terminated.transpose(0, 1).float(),
        valid=valid,
        actor_mask=actor_mask,
        burn_in_mask=burn_in,
    )


def _mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of the rows a mask selected; 0 when it selected none (as a masked mean over nothing)."""
    return x.sum() / max(x.numel(), 1)


class TD3BCLearner:
    """Owns the actor, the twin critics, their targets and optimisers; ``update(batch) -> metrics``."""

    def __init__(self, actor: torch.nn.Module, cfg: LearnerConfig | None = None,
                 critic: TwinCritic | None = None):
        self.cfg = cfg or LearnerConfig()
        self.actor = actor
        self.critic = critic or TwinCritic()
        device = next(actor.parameters()).device
        self.critic.to(device)
        self.actor_target = copy.deepcopy(actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr)
        self.lambda_bc = self.cfg.lambda_bc
        self.updates = 0

    # ---- Algorithm 1, one gradient step --------------------------------------------------------
    def update(self, b: Batch) -> dict[str, float]:
        cfg = self.cfg
        metrics: dict[str, float] = {}

        if cfg.use_q:  # pure BC (use_q False) never reads the critic: skip its update
            # only the steps the loss reads go through the critics ([T, N] -> [K] rows): the same
            # loss and gradients as a masked mean over every step, without the work on padding and
            # on the steps the mask leaves out
            m = b.valid if cfg.critic_steps == "all" else b.burn_in_mask
            # Critic target: y = r + gamma (1 - d) min_j Q'_j(s', pi'(s') + clipped noise)
            with torch.no_grad():
                next_pi, _ = self.actor_target.forward_sequence(b.actor_obs)   # pi'(s_0 .. s_T): the SNN needs every step
                next_pi = next_pi[1:]                                          # pi'(s_{t+1})
                noise = (torch.randn_like(next_pi) * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
                next_a = (next_pi + noise).clamp(-1.0, 1.0)[m]
                q1_t, q2_t = self.critic_target(b.priv_obs[1:][m], next_a)
                y = b.reward[m] + cfg.gamma * (1.0 - b.terminated[m]) * torch.minimum(q1_t, q2_t)

            # Critic loss on the stored (executed) actions
            q1, q2 = self.critic(b.priv_obs[:-1][m], b.action[m])
            critic_loss = _mean((q1 - y) ** 2 + (q2 - y) ** 2)
            self.critic_opt.zero_grad(set_to_none=True)
            critic_loss.backward()
            self.critic_opt.step()
            metrics["critic_loss"] = critic_loss.item()
            metrics["q_mean"] = _mean(q1.detach()).item()

        self.updates += 1
        if not cfg.use_q:  # pure BC: no critic to wait for and no target that anything reads
            metrics.update(self._actor_step(b))
        elif self.updates % cfg.policy_delay == 0:
            metrics.update(self._actor_step(b))
            self._soft_update()
        return metrics

    def actor_loss(self, b: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """-lambda Q1(s, pi(s)) + lambda_BC |pi(s) - a_guide|^2 on steps after the warm-up."""
        cfg = self.cfg
        pi, _ = self.actor.forward_sequence(b.actor_obs[:-1])              # [T, N, 4], hidden from zero
        m = b.actor_mask
        pi_m = pi[m]                                                       # [K, 4]: the steps the loss reads
        loss = pi.new_zeros(())
        out: dict[str, float] = {}
        if cfg.use_q:
            q = self.critic.q1_only(b.priv_obs[:-1][m], pi_m)
            lam = cfg.alpha / _mean(q.abs()).detach().clamp_min(1e-6)
            q_term = _mean(q)
            loss = loss - lam * q_term
            out["lambda"] = float(lam)
            out["actor_q"] = q_term.item()
        if cfg.use_bc:
            sq = (pi_m - b.guide_action[m]) ** 2
            sq = sq.sum(-1) if cfg.bc_reduction == "sum" else sq.mean(-1)
            bc = _mean(sq)
            loss = loss + self.lambda_bc * bc
            out["bc_loss"] = bc.item()
        out["actor_loss"] = loss.item()
        return loss, out

    def _actor_step(self, b: Batch) -> dict[str, float]:
        loss, out = self.actor_loss(b)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        return out

    @torch.no_grad()
    def _soft_update(self) -> None:
        tau = self.cfg.tau
        for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            for p, pt in zip(net.parameters(), tgt.parameters()):
                pt.lerp_(p, tau)
            for bf, bt in zip(net.buffers(), tgt.buffers()):
                if bt.shape == bf.shape:  # e.g. the surrogate slope; skip per-batch state buffers
                    bt.copy_(bf)

    def end_epoch(self) -> None:
        """After every epoch: lambda_BC <- max(lambda_bc_min, decay * lambda_BC) if it decays per epoch."""
        if self.cfg.lambda_bc_decay_per == "epoch":
            self._decay_lambda_bc()

    def end_stage(self) -> None:
        """After every hand-over stage: the same decay, if lambda_BC decays per stage (the paper's code)."""
        if self.cfg.lambda_bc_decay_per == "stage":
            self._decay_lambda_bc()

    def _decay_lambda_bc(self) -> None:
        self.lambda_bc = max(self.cfg.lambda_bc_min, self.lambda_bc * self.cfg.lambda_bc_decay)

    # ---- checkpointing ----------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "lambda_bc": self.lambda_bc, "updates": self.updates,
        }

    def load_state_dict(self, sd: dict) -> None:
        self.actor.load_state_dict(sd["actor"])
        self.critic.load_state_dict(sd["critic"])
        self.actor_target.load_state_dict(sd["actor_target"])
        self.critic_target.load_state_dict(sd["critic_target"])
        self.actor_opt.load_state_dict(sd["actor_opt"])
        self.critic_opt.load_state_dict(sd["critic_opt"])
        self.lambda_bc = sd["lambda_bc"]
        self.updates = sd["updates"]
