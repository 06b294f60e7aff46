"""The TD3BC + JSRL update computes Algorithm 1's numbers: target, masking, lambda, BC term."""
import pytest
import torch

from snn_drone.core.common import layout
from snn_drone.core.learning.jsrl import HorizonConfig, jump_start_action
from snn_drone.core.learning.learner import Batch, LearnerConfig, TD3BCLearner
from snn_drone.core.learning.networks import MLPPolicy, MLPPolicyConfig, TwinCritic

T, N, W = 6, 3, 2  # steps, sequences, warm-up


def _constant_critic(q1: float, q2: float) -> TwinCritic:
    c = TwinCritic()
    with torch.no_grad():
        for net, v in ((c.q1, q1), (c.q2, q2)):
            for p in net.parameters():
                p.zero_()
            net[-1].bias.fill_(v)
    return c


def _batch(reward=None, terminated=None, valid=None, guide=None) -> Batch:
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(T + 1, N, layout.OBS_DIM, generator=g)
    priv = torch.randn(T + 1, N, layout.PRIV_OBS_DIM, generator=g)
    valid = torch.ones(T, N, dtype=torch.bool) if valid is None else valid
    steps = torch.arange(T)[:, None]
    return Batch(
        actor_obs=obs, priv_obs=priv,
        action=torch.rand(T, N, 4, generator=g) * 2 - 1,
        guide_action=torch.zeros(T, N, 4) if guide is None else guide,
        reward=torch.ones(T, N) if reward is None else reward,
        terminated=torch.zeros(T, N) if terminated is None else terminated,
        valid=valid, actor_mask=valid & (steps >= W), burn_in_mask=valid & (steps >= W))


def _learner(q1=3.0, q2=5.0, **cfg) -> TD3BCLearner:
    torch.manual_seed(0)
    actor = MLPPolicy(MLPPolicyConfig(inputs="observation", hidden=(8,)))
    return TD3BCLearner(actor, LearnerConfig(warmup=W, **cfg), critic=_constant_critic(q1, q2))


def test_critic_target_is_reward_plus_discounted_min_of_target_critics():
    learner = _learner(q1=3.0, q2=5.0, gamma=0.9, critic_lr=0.0, actor_lr=0.0)
    reward = torch.arange(T * N, dtype=torch.float).reshape(T, N)
    terminated = torch.zeros(T, N)
    terminated[2, 1] = 1.0
    b = _batch(reward=reward, terminated=terminated)
    m = learner.update(b)
    # y = r + 0.9 * (1 - d) * min(3, 5); Q1 = 3, Q2 = 5 on every step
    y = reward + 0.9 * (1 - terminated) * 3.0
    expected = (((3.0 - y) ** 2 + (5.0 - y) ** 2).mean()).item()
    assert abs(m["critic_loss"] - expected) < 1e-3 * expected


def test_critic_loss_ignores_padded_steps():
    valid = torch.ones(T, N, dtype=torch.bool)
    valid[4:, 0] = False
    reward = torch.zeros(T, N)
    reward[4:, 0] = 1e6  # garbage on padded steps must not count
    learner = _learner(q1=0.0, q2=0.0, gamma=0.0, critic_lr=0.0, actor_lr=0.0)
    m = learner.update(_batch(reward=reward, valid=valid))
    assert m["critic_loss"] == 0.0


def test_actor_loss_uses_steps_after_warmup_only_and_lambda_is_alpha_over_mean_abs_q():
    guide = torch.zeros(T, N, 4)
    guide[:W] = 100.0  # the BC target is absurd during the warm-up only
    learner = _learner(q1=-4.0, q2=0.0, alpha=2.0, lambda_bc=0.5)
    b = _batch(guide=guide)
    loss, out = learner.actor_loss(b)
    assert out["lambda"] == 2.0 / 4.0
    assert out["actor_q"] == -4.0
    pi, _ = learner.actor.forward_sequence(b.actor_obs[:-1])
    bc = (pi[W:] ** 2).sum(-1).mean().item()  # warm-up steps excluded
    assert abs(out["bc_loss"] - bc) < 1e-6
    assert abs(loss.item() - (-(2.0 / 4.0) * -4.0 + 0.5 * bc)) < 1e-6
    # no gradient flows from warm-up steps: perturbing them changes nothing
    pi_leaf = pi.detach().requires_grad_(True)
    sq = ((pi_leaf - guide) ** 2).sum(-1)
    (sq * b.actor_mask).sum().backward()
    assert torch.all(pi_leaf.grad[:W] == 0)


def test_actor_gradient_reaches_the_actor_through_q():
    # Q1 = a_0 + 3 (linear in the action): the Q term alone must move the actor, and only
    # through the first motor's output
    learner = _learner(use_bc=False)
    with torch.no_grad():
        learner.critic.q1[-1].bias.fill_(1.0)
        learner.critic.q1[0].weight.zero_()
        learner.critic.q1[0].weight[0, layout.PRIV_OBS_DIM] = 1.0  # unit 0 = relu(a_0 + 2) = a_0 + 2
        learner.critic.q1[0].bias[0] = 2.0
        learner.critic.q1[2].weight[0, 0] = 1.0
        learner.critic.q1[4].weight[0, 0] = 1.0  # Q1 = a_0 + 3
    loss, _ = learner.actor_loss(_batch())
    loss.backward()
    out_w = learner.actor.net[-1].weight.grad
    assert out_w[0].abs().sum() > 0 and torch.all(out_w[1:] == 0)


def test_policy_delay_and_soft_target_update():
    learner = _learner(policy_delay=2, tau=0.25)
    before = [p.clone() for p in learner.actor_target.parameters()]
    m1 = learner.update(_batch())
    assert "actor_loss" not in m1
    assert all(torch.equal(a, b) for a, b in zip(before, learner.actor_target.parameters()))
    m2 = learner.update(_batch())
    assert "actor_loss" in m2
    for old, new, cur in zip(before, learner.actor_target.parameters(), learner.actor.parameters()):
        assert torch.allclose(new, 0.75 * old + 0.25 * cur.detach(), atol=1e-6)


def test_pure_bc_leaves_the_critic_alone_and_still_trains_the_actor():
    learner = _learner(use_q=False, policy_delay=1)
    critic = [p.clone() for p in learner.critic.parameters()]
    actor = [p.clone() for p in learner.actor.parameters()]
    m = learner.update(_batch(guide=torch.full((T, N, 4), 0.5)))
    assert "critic_loss" not in m and "lambda" not in m and m["actor_loss"] == pytest.approx(0.2 * m["bc_loss"])
    assert all(torch.equal(a, b) for a, b in zip(critic, learner.critic.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(actor, learner.actor.parameters()))


def test_lambda_bc_decays_per_epoch():
    learner = _learner(lambda_bc=0.2, lambda_bc_decay=0.99)
    for _ in range(3):
        learner.end_epoch()
    assert abs(learner.lambda_bc - 0.2 * 0.99 ** 3) < 1e-12


def test_lambda_bc_floor_stops_the_decay():
    learner = _learner(lambda_bc=0.2, lambda_bc_decay=0.5, lambda_bc_min=0.06)
    seen = []
    for _ in range(3):
        learner.end_epoch()
        seen.append(learner.lambda_bc)
    assert seen == [0.1, 0.06, 0.06]


def test_on_eval_hand_over_holds_while_the_evaluation_is_below_the_best():
    h = HorizonConfig(advance="on_eval", hold_fraction=0.9)
    assert h.should_advance(None, -1e9)                  # no evaluation yet: follow the schedule
    assert h.should_advance(90.0, 100.0) and not h.should_advance(89.9, 100.0)
    assert h.should_advance(-55.0, -50.0) and not h.should_advance(-55.1, -50.0)  # |best| for negatives
    assert HorizonConfig().should_advance(0.0, 100.0)     # the paper's fixed schedule never holds
    assert [h.guide_steps_at_stage(s) for s in (0, 1, 16, 17, 30)] == [450, 425, 50, 50, 50]
    with pytest.raises(ValueError, match="horizon.advance"):
        HorizonConfig(advance="sometimes")


def test_horizon_schedule_matches_public_code_and_ends_at_warmup():
    h = HorizonConfig()
    # public code: guide steps max(50, 500 - i), i = 50, 75, ..., 50 epochs per stage
    assert [h.guide_steps(e) for e in (0, 49, 50, 100, 799, 800, 5000)] == [450, 450, 425, 400, 75, 50, 50]
    assert h.final_epoch == 800 and h.guide_steps(h.final_epoch) == 50 and h.guide_steps(h.final_epoch - 1) > 50


def test_jump_start_action_hands_over_at_guide_steps():
    step = torch.tensor([0, 49, 50, 400])
    guide = torch.full((4, 4), 0.5)
    actor = torch.full((4, 4), -0.5)
    a = jump_start_action(step, 50, guide, actor)
    assert a[:, 0].tolist() == [0.5, 0.5, -0.5, -0.5]
    noisy = jump_start_action(step, 50, guide, actor, noise_std=10.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(noisy[:2], guide[:2]) and noisy[2:].abs().max() <= 1.0 and not torch.equal(noisy[2:], actor[2:])


def _sequences(start_steps, T_=T):
    """Stored sequences whose derived batch only matters for its masks (states at rest)."""
    from snn_drone.core.learning.sequence_replay import Sequences
    n = len(start_steps)
    state = torch.zeros(n, T_ + 1, layout.STATE_DIM)
    state[..., 3] = 1.0  # identity quaternion
    valid = torch.ones(n, T_, dtype=torch.bool)
    valid[1, -1] = False  # the mid-episode sequence ends one step early
    return Sequences(state=state, action=torch.zeros(n, T_, 4), guide_action=torch.zeros(n, T_, 4),
                     history0=torch.zeros(n, layout.ACTION_HISTORY, 4), target=torch.zeros(n, 3),
                     terminated=torch.zeros(n, T_, dtype=torch.bool), valid=valid,
                     start_step=torch.tensor(start_steps))


def test_actor_masks_follow_what_the_actor_flies_and_the_burn_in_mask_keeps_episode_starts():
    from snn_drone.core.env import task
    from snn_drone.core.learning.learner import derive_batch
    cfg = task.load_task_config()
    seqs = _sequences([0, 50])  # one sequence from the episode's first step, one from step 50
    masks = {mode: derive_batch(seqs, cfg, task.eval_coefficients(cfg), "observation", W, mode)
             for mode in ("all", "mid_episode", "none")}
    col = lambda m, i: m[:, i].int().tolist()  # noqa: E731  (time steps of sequence i)
    # the paper's SNN (the guide flies the deployed warm-up): no actor loss on steps 0, 1 anywhere
    assert col(masks["all"].actor_mask, 0) == [0, 0, 1, 1, 1, 1]
    assert col(masks["all"].actor_mask, 1) == [0, 0, 1, 1, 1, 0]
    # an SNN that flies from step 0: the episode's own first steps count (true zero hidden state)
    assert col(masks["mid_episode"].actor_mask, 0) == [1, 1, 1, 1, 1, 1]
    assert col(masks["mid_episode"].actor_mask, 1) == [0, 0, 1, 1, 1, 0]
    # an actor without hidden state: every valid step
    assert col(masks["none"].actor_mask, 0) == [1] * 6 and col(masks["none"].actor_mask, 1) == [1] * 5 + [0]
    assert col(masks["all"].burn_in_mask, 0) == [1] * 6 and col(masks["all"].burn_in_mask, 1) == [0, 0, 1, 1, 1, 0]
    with pytest.raises(ValueError, match="actor_warmup"):
        derive_batch(seqs, cfg, task.eval_coefficients(cfg), "observation", W, "some")


def test_burn_in_critic_skips_warmup_steps_of_mid_episode_sequences_only():
    valid = torch.ones(T, N, dtype=torch.bool)
    steps = torch.arange(T)[:, None]
    starts_episode = torch.tensor([True, False, True])[None, :]
    burn_in = valid & ((steps >= W) | starts_episode)
    reward = torch.zeros(T, N)
    reward[:W, 1] = 10.0  # only on the warm-up of the sequence that starts mid-episode
    b = _batch(reward=reward)._replace(burn_in_mask=burn_in)
    all_steps = _learner(q1=0.0, q2=0.0, gamma=0.0, critic_lr=0.0, actor_lr=0.0).update(b)
    assert all_steps["critic_loss"] == pytest.approx(2 * 100.0 * W / (T * N))  # (0-10)^2 twice on 2 of 18 steps
    burn = _learner(q1=0.0, q2=0.0, gamma=0.0, critic_lr=0.0, actor_lr=0.0, critic_steps="burn_in").update(b)
    assert burn["critic_loss"] == 0.0
    with pytest.raises(ValueError, match="critic_steps"):
        LearnerConfig(critic_steps="warm")


def test_pure_bc_steps_the_actor_on_every_update_and_leaves_the_targets_alone():
    learner = _learner(use_q=False, policy_delay=2)
    targets = [p.clone() for p in (*learner.actor_target.parameters(), *learner.critic_target.parameters())]
    steps = [("actor_loss" in learner.update(_batch(guide=torch.full((T, N, 4), 0.5)))) for _ in range(4)]
    assert steps == [True, True, True, True]
    assert all(torch.equal(a, b) for a, b in
               zip(targets, (*learner.actor_target.parameters(), *learner.critic_target.parameters())))
    td3 = _learner(policy_delay=2)
    assert [("actor_loss" in td3.update(_batch())) for _ in range(4)] == [False, True, False, True]


def test_lambda_bc_decays_per_stage_when_asked_and_not_per_epoch():
    learner = _learner(lambda_bc=0.2, lambda_bc_decay=0.99, lambda_bc_decay_per="stage")
    for _ in range(5):
        learner.end_epoch()
    assert learner.lambda_bc == 0.2
    learner.end_stage()
    learner.end_stage()
    assert learner.lambda_bc == pytest.approx(0.2 * 0.99 ** 2, abs=1e-15)
    per_epoch = _learner(lambda_bc=0.2, lambda_bc_decay=0.5)
    per_epoch.end_stage()
    assert per_epoch.lambda_bc == 0.2


def test_critic_and_actor_losses_on_the_masked_rows_only_equal_the_masked_means_over_every_step():
    """The learner sends only the steps a loss reads through the critics: the losses and every
    gradient equal the masked mean over all T x N steps, computed here by hand on a spiking actor."""
    from snn_drone.core.snn.spiking_actor import SpikingActor, SpikingActorConfig
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(5)
    valid = torch.rand(T, N, generator=g) > 0.3
    b = _batch(reward=torch.randn(T, N, generator=g), terminated=(torch.rand(T, N, generator=g) > 0.8).float(),
               valid=valid, guide=torch.rand(T, N, 4, generator=g) * 2 - 1)
    actor = SpikingActor(SpikingActorConfig(hidden=(16, 8)))
    learner = TD3BCLearner(actor, LearnerConfig(warmup=W, critic_lr=0.0, actor_lr=0.0, policy_delay=2,
                                                lambda_bc=0.5), critic=TwinCritic())
    c = learner.cfg

    def masked(x, m):
        m = m.float()
        return (x * m).sum() / m.sum().clamp_min(1.0)
    # by hand, every step through the networks, the masks in the means (the same noise draw)
    torch.manual_seed(11)
    with torch.no_grad():
        next_pi = learner.actor_target.forward_sequence(b.actor_obs)[0][1:]
        noise = (torch.randn_like(next_pi) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
        q1_t, q2_t = learner.critic_target(b.priv_obs[1:], (next_pi + noise).clamp(-1, 1))
        y = b.reward + c.gamma * (1 - b.terminated) * torch.minimum(q1_t, q2_t)
    q1, q2 = learner.critic(b.priv_obs[:-1], b.action)
    critic_loss = masked((q1 - y) ** 2 + (q2 - y) ** 2, b.valid)
    critic_grads = torch.autograd.grad(critic_loss, list(learner.critic.parameters()))
    pi = actor.forward_sequence(b.actor_obs[:-1])[0]
    q = learner.critic.q1_only(b.priv_obs[:-1], pi)
    lam = c.alpha / masked(q.abs(), b.actor_mask).detach()
    actor_loss = -lam * masked(q, b.actor_mask) + 0.5 * masked(((pi - b.guide_action) ** 2).sum(-1), b.actor_mask)
    actor_grads = torch.autograd.grad(actor_loss, list(actor.parameters()))
    # the learner (its first update steps the critic only: policy_delay 2)
    torch.manual_seed(11)
    m = learner.update(b)
    assert m["critic_loss"] == pytest.approx(critic_loss.item(), rel=1e-5)
    for got, want in zip((p.grad for p in learner.critic.parameters()), critic_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    loss, out = learner.actor_loss(b)
    assert out["actor_loss"] == pytest.approx(actor_loss.item(), rel=1e-5)
    for got, want in zip(torch.autograd.grad(loss, list(actor.parameters())), actor_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
