"""The critic's speed paths (fused twin pass, bfloat16 hidden matmuls) compute the same Q as the plain one."""
import copy

import pytest
import torch

from snn_drone.core.common import layout
from snn_drone.core.learning.networks import CriticConfig, TwinCritic

LEAD = (7, 5)  # [T, N] as the learner calls the critic


def _inputs(seed=0, lead=LEAD):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, layout.PRIV_OBS_DIM, generator=g), torch.rand(*lead, 4, generator=g) * 2 - 1


def _pair(**cfg) -> tuple[TwinCritic, TwinCritic]:
    """The plain float32 critic and one with ``cfg``, holding the same weights."""
    torch.manual_seed(0)
    ref = TwinCritic(CriticConfig())
    other = TwinCritic(CriticConfig(**cfg))
    other.load_state_dict(ref.state_dict())
    with torch.no_grad():  # Q1 ~ 100 +- 35, Q2 ~ -80 +- 35: the critic's scale in training
        for c in (ref, other):
            for net, bias in ((c.q1, 100.0), (c.q2, -80.0)):
                net[-1].weight.mul_(500.0)
                net[-1].bias.fill_(bias)
    return ref, other


def _grads(critic: TwinCritic, obs, act) -> list[torch.Tensor]:
    critic.zero_grad(set_to_none=True)
    q1, q2 = critic(obs, act)
    (q1.square().mean() + 0.5 * q2.square().mean()).backward()
    return [p.grad.clone() for p in critic.parameters()]


def test_default_hidden_is_the_papers_256_128_and_the_layout_is_q1_q2_sequentials():
    assert CriticConfig().hidden == (256, 128)
    c = TwinCritic()
    for net in (c.q1, c.q2):
        assert isinstance(net, torch.nn.Sequential) and len(net) == 5
        assert [tuple(net[i].weight.shape) for i in (0, 2, 4)] == [(256, 150), (128, 256), (1, 128)]
    assert sorted(c.state_dict()) == sorted(f"{q}.{i}.{p}" for q in ("q1", "q2") for i in (0, 2, 4)
                                            for p in ("weight", "bias"))


@pytest.mark.parametrize("hidden", [(256, 128), (256, 256), (32,), (16, 8, 4)])
def test_fused_equals_unfused_in_q_and_parameter_gradients(hidden):
    torch.manual_seed(0)
    ref = TwinCritic(CriticConfig(hidden=hidden))
    fused = TwinCritic(CriticConfig(hidden=hidden, fused=True))
    fused.load_state_dict(ref.state_dict())
    obs, act = _inputs()
    r1, r2 = ref(obs, act)
    f1, f2 = fused(obs, act)
    assert r1.shape == f1.shape == f2.shape == LEAD and f1.dtype == torch.float32
    torch.testing.assert_close(f1, r1, atol=1e-5, rtol=0)
    torch.testing.assert_close(f2, r2, atol=1e-5, rtol=0)
    assert not torch.allclose(f1, f2)  # the two nets really are computed apart
    for gr, gf in zip(_grads(ref, obs, act), _grads(fused, obs, act)):
        torch.testing.assert_close(gf, gr, atol=1e-5, rtol=1e-4)


def test_fused_keeps_the_leading_shape_and_the_gradient_to_the_action():
    ref, fused = _pair(fused=True)
    for lead in [(), (3,), (2, 3, 4)]:
        obs, act = _inputs(lead=lead)
        assert fused(obs, act)[0].shape == lead and fused(obs, act)[1].shape == lead
        torch.testing.assert_close(fused(obs, act)[1], ref(obs, act)[1], atol=1e-5, rtol=1e-6)  # ulp(128) = 1.5e-5
    obs, act = _inputs()
    a_ref, a_fused = act.clone().requires_grad_(), act.clone().requires_grad_()
    sum(q.sum() for q in ref(obs, a_ref)).backward()
    sum(q.sum() for q in fused(obs, a_fused)).backward()
    torch.testing.assert_close(a_fused.grad, a_ref.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fused", [False, True])
def test_bfloat16_returns_float32_q_close_to_float32_with_aligned_gradients(fused):
    ref, half = _pair(matmul_dtype="bfloat16", fused=fused)
    obs, act = _inputs(seed=1, lead=(50, 20))
    for qr, qh in zip(ref(obs, act), half(obs, act)):
        assert qh.dtype == torch.float32
        spread = (qr - qr.mean()).norm()
        assert spread > 20 * qr.numel() ** 0.5  # the hidden layers, not the bias, make Q's spread
        assert (qh - qr).norm() < 2e-2 * spread  # relative 2e-2 of the part the bf16 matmuls compute
        torch.testing.assert_close(qh, qr, rtol=0, atol=2e-2 * qr.abs().max().item())
        assert len(torch.unique(qh)) > 0.9 * qh.numel()  # float32 resolution, not bf16's 0.5 steps at 100
    for gr, gh in zip(_grads(ref, obs, act), _grads(half, obs, act)):
        assert gh.dtype == torch.float32
        cos = torch.nn.functional.cosine_similarity(gh.flatten(), gr.flatten(), dim=0)
        assert cos > 0.99, float(cos)
        assert 0.9 < float(gh.norm() / gr.norm()) < 1.1


@pytest.mark.parametrize("cfg", [{}, {"fused": True}, {"matmul_dtype": "bfloat16"},
                                 {"fused": True, "matmul_dtype": "bfloat16"}])
def test_q1_only_equals_forwards_q1(cfg):
    _, critic = _pair(**cfg)
    obs, act = _inputs(seed=2)
    torch.testing.assert_close(critic.q1_only(obs, act), critic(obs, act)[0], atol=1e-5, rtol=1e-6)  # ulp(128) = 1.5e-5


def test_paths_survive_deepcopy_and_a_frozen_copy_still_computes():
    _, critic = _pair(fused=True, matmul_dtype="bfloat16")
    target = copy.deepcopy(critic).requires_grad_(False)
    obs, act = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(target(obs, act)[1], critic(obs, act)[1], atol=0, rtol=0)
    assert target.cfg == critic.cfg and all(not p.requires_grad for p in target.parameters())


def test_bad_config_values_raise_naming_them():
    with pytest.raises(ValueError, match=r"matmul_dtype = 'float16'.*'float32', 'bfloat16'"):
        CriticConfig(matmul_dtype="float16")
    with pytest.raises(ValueError, match=r"fused = 1, expected True or False"):
        CriticConfig(fused=1)
    for bad in [(), (256, 0), (256.0,), 256]:
        with pytest.raises(ValueError, match=r"hidden = .*expected a non-empty tuple of positive ints"):
            CriticConfig(hidden=bad)
    assert CriticConfig(hidden=[64, 32]).hidden == (64, 32)
