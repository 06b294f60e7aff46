"""The spiking actor against snntorch (the reference the paper used), its fused training path
against its step-by-step path, explicit state, the slope as data, bad input and checkpoints."""
from __future__ import annotations

import pytest
import snntorch
import torch
from snntorch import surrogate as snn_surrogate

from snn_drone.core.snn import lif_kernels
from snn_drone.core.snn.lif import LIFState, lif_sequence, lif_sequence_reference
from snn_drone.core.snn.spiking_actor import (ActorState, SpikingActor, SpikingActorConfig, load_actor,
                                          save_actor)
from snn_drone.core.snn.surrogate import spike


def snntorch_twin(actor: SpikingActor, slope: float, dtype):
    """snntorch Leaky layers with the actor's weights, per-neuron beta and threshold."""
    fcs = [torch.nn.Linear(f.in_features, f.out_features).to(dtype) for f in actor.fc]
    lifs = [snntorch.Leaky(beta=l.beta.detach().clone(), threshold=l.threshold.detach().clone(),
                           learn_beta=True, learn_threshold=True, reset_mechanism="subtract",
                           spike_grad=snn_surrogate.fast_sigmoid(slope=slope)).to(dtype)
            for l in actor.lif]
    readout = torch.nn.Linear(actor.readout.in_features, actor.readout.out_features).to(dtype)
    with torch.no_grad():
        for f, g in zip(fcs, actor.fc):
            f.weight.copy_(g.weight)
            f.bias.copy_(g.bias)
        readout.weight.copy_(actor.readout.weight)
        readout.bias.copy_(actor.readout.bias)

    def run(obs):
        mems = [torch.zeros(obs.shape[1], l.beta.shape[0], dtype=dtype) for l in lifs]
        actions, spikes = [], [[] for _ in lifs]
        for t in range(obs.shape[0]):
            x = obs[t]
            for i, (fc, lif) in enumerate(zip(fcs, lifs)):
                x, mems[i] = lif(fc(x), mems[i])
                x = x.to(dtype)  # snntorch's spike is float32 whatever the input dtype
                spikes[i].append(x)
            actions.append(torch.tanh(readout(x)))
        return torch.stack(actions), [torch.stack(s) for s in spikes]

    grads = lambda: {**{f"fc.{i}.weight": f.weight.grad for i, f in enumerate(fcs)},  # noqa: E731
                     **{f"fc.{i}.bias": f.bias.grad for i, f in enumerate(fcs)},
                     **{f"lif.{i}.beta": l.beta.grad for i, l in enumerate(lifs)},
                     **{f"lif.{i}.threshold": l.threshold.grad for i, l in enumerate(lifs)},
                     "readout.weight": readout.weight.grad, "readout.bias": readout.bias.grad}
    return run, grads


# Tolerances: spikes and actions must be equal (actions to 1e-12 / 1e-6 for float64 / float32).
# Gradients: max |ours - snntorch| <= rtol * max |snntorch| per tensor, rtol 1e-6 in float64
# (snntorch casts its spikes to float32, so even its float64 gradients carry float32 rounding) and
# 1e-4 in float32 (summation order differs: one fused reduction against 100 autograd steps).
@pytest.mark.parametrize("dtype,rtol,steps,batch", [(torch.float64, 1e-6, 25, 6), (torch.float32, 1e-4, 30, 8)])
@pytest.mark.parametrize("slope", [1.0, 2.0, 25.0, 100.0])
def test_spikes_equal_and_gradients_match_snntorch_leaky(slope, dtype, rtol, steps, batch):
    actor = SpikingActor(SpikingActorConfig(slope=slope, seed=3)).to(dtype)
    gen = torch.Generator().manual_seed(int(slope))
    obs = 2 * torch.randn(steps, batch, 18, generator=gen, dtype=dtype)
    target = torch.rand(steps, batch, 4, generator=gen, dtype=dtype) * 2 - 1

    actions, _, spikes = actor.forward_sequence(obs, return_spikes=True)
    torch.nn.functional.mse_loss(actions, target).backward()
    ours = {n: p.grad for n, p in actor.named_parameters()}

    run, their_grads = snntorch_twin(actor, slope, dtype)
    ref_actions, ref_spikes = run(obs)
    torch.nn.functional.mse_loss(ref_actions, target).backward()

    for layer, (s, r) in enumerate(zip(spikes, ref_spikes)):
        assert 0.05 < s.mean() < 0.95, f"layer {layer} barely spikes: the comparison would be weak"
        assert torch.equal(s, r), f"layer {layer}: {(s != r).sum()} spikes differ from snntorch"
    assert torch.allclose(actions, ref_actions, atol=1e-12 if dtype == torch.float64 else 1e-6, rtol=0)
    for name, g in their_grads().items():
        scale = g.abs().max().item()
        assert scale > 1e-9, f"{name}: gradient vanished, the comparison would prove nothing"
        err = (ours[name] - g).abs().max().item()
        assert err <= rtol * scale, f"{name}: max |ours - snntorch| = {err:.3g} > {rtol} * {scale:.3g} (k={slope})"


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_sequence_gradients_equal_step_by_step_autograd(native, dtype):
    """Fused LIF (C loops or torch loops) == plain autograd through lif_step, including a nonzero
    initial state, a gradient into the final state and betas clamped outside [0, 1]."""
    if native and not lif_kernels.usable(torch.zeros(1, dtype=dtype)):
        pytest.skip("no C compiler: native LIF loops unavailable")
    gen = torch.Generator().manual_seed(0)
    T, B, N = 25, 6, 33
    current = (torch.randn(T, B, N, generator=gen, dtype=dtype)).requires_grad_()
    mem0 = torch.randn(B, N, generator=gen, dtype=dtype).requires_grad_()
    beta = torch.rand(N, generator=gen, dtype=dtype)
    beta[:3] = torch.tensor([1.3, -0.2, 1.0], dtype=dtype)
    beta.requires_grad_()
    threshold = (torch.rand(N, generator=gen, dtype=dtype) + 0.2).requires_grad_()
    slope = torch.tensor(5.0, dtype=dtype)
    w_spikes = torch.randn(T, B, N, generator=gen, dtype=dtype)
    w_last = torch.randn(B, N, generator=gen, dtype=dtype)
    leaves = (current, mem0, beta, threshold)

    def grads(fn):
        s, last = fn(current, LIFState(mem0), beta, threshold, slope)
        loss = (s * w_spikes).sum() + (last.membrane * w_last).sum()
        return s.detach(), last.membrane.detach(), torch.autograd.grad(loss, leaves)

    old = lif_kernels.set_enabled(native)
    try:
        s_fused, last_fused, g_fused = grads(lif_sequence)
    finally:
        lif_kernels.set_enabled(old)
    s_ref, last_ref, g_ref = grads(lif_sequence_reference)
    assert torch.equal(s_fused, s_ref)
    assert torch.equal(last_fused, last_ref)
    assert 0.05 < s_ref.mean() < 0.95
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for name, a, b in zip(("current", "mem0", "beta", "threshold"), g_fused, g_ref):
        assert torch.allclose(a, b, atol=tol, rtol=tol), f"d/d{name}: max err {(a - b).abs().max():.3g}"
    assert g_ref[2][0] == 0 and g_ref[2][1] == 0 and g_ref[2][2] != 0  # clamp: no grad beyond [0, 1]


def test_native_and_torch_lif_loops_agree_bitwise_on_spikes_and_membranes():
    if not lif_kernels.usable(torch.zeros(1)):
        pytest.skip("no C compiler: native LIF loops unavailable")
    gen = torch.Generator().manual_seed(1)
    current = torch.randn(50, 64, 128, generator=gen)
    beta, threshold = torch.rand(128, generator=gen), torch.rand(128, generator=gen)
    out = {}
    for native in (True, False):
        old = lif_kernels.set_enabled(native)
        try:
            with torch.no_grad():
                out[native] = lif_sequence(current, LIFState(torch.zeros(64, 128)), beta, threshold,
                                           torch.tensor(2.0))
        finally:
            lif_kernels.set_enabled(old)
    assert torch.equal(out[True][0], out[False][0])
    assert torch.equal(out[True][1].membrane, out[False][1].membrane)


def test_control_steps_reproduce_the_training_sequence():
    actor = SpikingActor(SpikingActorConfig(seed=1))
    obs = torch.randn(20, 3, 18, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        seq_actions, seq_state = actor.forward_sequence(obs)
        state = actor.init_state(3)
        step_actions = []
        for t in range(20):
            a, state = actor.step(obs[t], state)
            step_actions.append(a)
    assert torch.allclose(torch.stack(step_actions), seq_actions, atol=1e-6)
    for a, b in zip(state.layers, seq_state.layers):
        assert torch.allclose(a.membrane, b.membrane, atol=1e-5)
    assert seq_actions.abs().max() <= 1.0 and seq_actions.std() > 0.01


def test_sequence_continues_from_a_given_state_like_one_long_sequence():
    actor = SpikingActor(SpikingActorConfig(seed=4))
    obs = torch.randn(30, 2, 18, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        whole, _ = actor.forward_sequence(obs)
        first, mid = actor.forward_sequence(obs[:12])
        second, _ = actor.forward_sequence(obs[12:], mid)
    assert torch.allclose(torch.cat([first, second]), whole, atol=1e-6)


def test_reset_state_zeroes_only_the_masked_rows():
    actor = SpikingActor(SpikingActorConfig(seed=0))
    with torch.no_grad():
        _, state = actor.forward_sequence(torch.randn(10, 4, 18))
    mask = torch.tensor([False, True, False, True])
    reset = actor.reset_state(state, mask)
    for before, after in zip(state.layers, reset.layers):
        assert torch.equal(after.membrane[mask], torch.zeros_like(after.membrane[mask]))
        assert torch.equal(after.membrane[~mask], before.membrane[~mask])
        assert before.membrane[mask].abs().sum() > 0  # there was something to reset
    with pytest.raises(ValueError, match=r"bool of shape \[4\]"):
        actor.reset_state(state, torch.tensor([True, False]))


def _weights_grad(actor, obs, target):
    actor.zero_grad()
    actions, _ = actor.forward_sequence(obs)
    torch.nn.functional.mse_loss(actions, target).backward()
    return actor.fc[0].weight.grad.clone()


def test_set_slope_takes_effect_at_next_backward_and_survives_state_dict(tmp_path):
    gen = torch.Generator().manual_seed(7)
    obs, target = torch.randn(15, 4, 18, generator=gen), torch.rand(15, 4, 4, generator=gen) * 2 - 1
    actor = SpikingActor(SpikingActorConfig(slope=2.0, seed=9))
    g2 = _weights_grad(actor, obs, target)
    actor.set_slope(25.0)
    g25 = _weights_grad(actor, obs, target)
    fresh25 = SpikingActor(SpikingActorConfig(slope=25.0, seed=9))
    assert torch.equal(g25, _weights_grad(fresh25, obs, target))
    assert not torch.allclose(g2, g25, rtol=0.1)

    # A graph built before set_slope keeps the slope it was built with.
    actor.zero_grad()
    actions, _ = actor.forward_sequence(obs)
    actor.set_slope(2.0)
    torch.nn.functional.mse_loss(actions, target).backward()
    assert torch.equal(actor.fc[0].weight.grad, g25)

    actor.set_slope(25.0)
    other = SpikingActor(SpikingActorConfig(slope=2.0, seed=9))
    other.load_state_dict(actor.state_dict())
    assert other.slope.item() == 25.0
    save_actor(tmp_path / "actor.pt", actor)
    assert load_actor(tmp_path / "actor.pt").slope.item() == 25.0
    with pytest.raises(ValueError, match="slope"):
        actor.set_slope(0.0)


def test_spike_requires_slope_as_tensor_and_uses_eq5_surrogate():
    x = torch.tensor([-0.5, 0.0, 0.25, 2.0], requires_grad=True)
    s = spike(x, torch.tensor(4.0))
    assert s.tolist() == [0.0, 0.0, 1.0, 1.0]  # heaviside, x > 0
    s.sum().backward()
    expected = 1.0 / (1.0 + 4.0 * x.detach().abs()) ** 2
    assert torch.allclose(x.grad, expected)
    with pytest.raises(TypeError, match="tensor"):
        spike(x, 4.0)


def test_bad_observations_name_the_shape_or_the_offending_index():
    actor = SpikingActor(SpikingActorConfig(seed=0))
    state = actor.init_state(2)
    with pytest.raises(ValueError, match=r"shape \[2, 17\], expected \[any, 18\]"):
        actor.step(torch.zeros(2, 17), state)
    with pytest.raises(ValueError, match=r"shape \[5, 18\], expected \[any, any, 18\]"):
        actor.forward_sequence(torch.zeros(5, 18))
    obs = torch.zeros(2, 18)
    obs[1, 13] = float("nan")
    with pytest.raises(ValueError, match=r"index \(1, 13\) \(field velocity\[1\]\)"):
        actor.step(obs, state)
    seq = torch.zeros(3, 2, 18)
    seq[2, 0, 16] = float("inf")
    with pytest.raises(ValueError, match=r"inf at index \(2, 0, 16\) \(field angular_velocity\[1\]\)"):
        actor.forward_sequence(seq)
    with pytest.raises(ValueError, match=r"layer 0 membrane has shape \[3, 256\], expected \[2, 256\]"):
        actor.step(torch.zeros(2, 18), actor.init_state(3))


def test_checkpoint_with_other_layer_sizes_names_the_layer_and_both_sizes(tmp_path):
    path = save_actor(tmp_path / "actor.pt", SpikingActor(SpikingActorConfig(hidden=(256, 128))))
    with pytest.raises(ValueError, match=r"LIF layer 1 has 128 neurons in the checkpoint but 64 in the config"):
        load_actor(path, SpikingActorConfig(hidden=(256, 64)))
    with pytest.raises(ValueError, match=r"checkpoint has 2 LIF layers, the config 3"):
        load_actor(path, SpikingActorConfig(hidden=(256, 128, 32)))
    with pytest.raises(ValueError, match=r"reads 18 observation values in the checkpoint but 20"):
        SpikingActor(SpikingActorConfig(obs_dim=20)).load_state_dict(torch.load(path)["state_dict"])


def test_save_and_load_actor_round_trip_config_weights_and_outputs(tmp_path):
    cfg = SpikingActorConfig(hidden=(32, 16, 8), slope=7.0, seed=11, beta_init=(0.5, 0.9))
    actor = SpikingActor(cfg)
    path = save_actor(tmp_path / "sub" / "a.pt", actor)
    assert [p.name for p in path.parent.iterdir()] == ["a.pt"]  # no temporary file left behind
    loaded = load_actor(path)
    assert loaded.cfg == cfg
    obs = torch.randn(6, 2, 18)
    with torch.no_grad():
        assert torch.equal(actor.forward_sequence(obs)[0], loaded.forward_sequence(obs)[0])
    assert 0.5 <= actor.lif[0].beta.min() and actor.lif[0].beta.max() < 0.9


def test_any_number_of_hidden_layers_and_spikes_per_layer():
    actor = SpikingActor(SpikingActorConfig(hidden=(20, 10, 5), seed=0))
    actions, state, spikes = actor.forward_sequence(torch.randn(7, 3, 18), return_spikes=True)
    assert actions.shape == (7, 3, 4)
    assert [tuple(s.shape) for s in spikes] == [(7, 3, 20), (7, 3, 10), (7, 3, 5)]
    assert isinstance(state, ActorState) and len(state.layers) == 3
    assert all(set(s.unique().tolist()) <= {0.0, 1.0} for s in spikes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sequence_matches_cpu():
    actor = SpikingActor(SpikingActorConfig(seed=0))
    obs = torch.randn(20, 8, 18)
    cpu, _ = actor.forward_sequence(obs)
    gpu, _ = actor.to("cuda").forward_sequence(obs.cuda())
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)
