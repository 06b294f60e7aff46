"""The onboard step as the drone runs it: observation (snn_observation.c) + guide MLP with its own
32-step action history (snn_guide.c) + spiking actor (snn_actor.c), all from `snn-drone export
--format c`, on a flight of checkpoints/snn_actor.pt simulated here by BatchedHoverEnv (episodes
restarting mid-flight), against torch: built with the host gcc, and cross-compiled for the
Crazyflie's Cortex-M4F with Debian's gcc-arm-none-eabi and run on qemu-system-arm -M mps2-an386
with semihosting (the apt packages are installed when root, else the M4 test skips with the reason).

Tolerances: observations, membranes and spikes bit-identical (C and torch evaluate the same float32
operations in the same order); actions within 1e-6 of torch summed in the C order (tanhf differs
from torch.tanh by an ulp or so; newlib's from glibc's by one ulp) and within 1e-5 of the torch
networks themselves (BLAS summation order)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import onboard_support as onboard
from snn_drone.core.deploy.export_c import sequential_sequence, sequential_step
from snn_drone.core.deploy.export_c_guide import sequential_mlp
from snn_drone.core.learning.checkpoint import load_policy

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

CKPT = onboard.C_DIR.parents[1] / "checkpoints"
NEURONS = 384
DRONES, STEPS = 2, 250


@torch.no_grad()
def sequential_reference(actor, flight):
    """sequential_step free-running on the flight's observations (as sequential_sequence, checked
    against sequential_step itself on the first steps): membranes, spikes, actions."""
    reset = torch.from_numpy(flight.reset)
    mem, spk, act = sequential_sequence(actor, flight.obs, reset)
    state = actor.init_state(flight.obs.shape[1])
    for t in range(12):
        state = actor.reset_state(state, reset[t])
        a, state, spikes = sequential_step(actor, flight.obs[t], state)
        assert torch.equal(a, act[t]) and torch.equal(torch.cat(spikes, 1), spk[t])
        assert torch.equal(torch.cat([s.membrane for s in state.layers], 1), mem[t])
    return mem.numpy(), spk.numpy().astype(np.uint8), act.numpy()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is fastest, and stalls least on a loaded machine
    try:
        yield _case(tmp_path_factory)
    finally:
        torch.set_num_threads(threads)


def _case(tmp_path_factory):
    actor = load_policy(CKPT / "snn_actor.pt").eval()
    guide = load_policy(CKPT / "guide.pt").eval()
    flight = onboard.record_flight(actor, DRONES, STEPS, seed=7)
    d = onboard.export_onboard(actor, guide, tmp_path_factory.mktemp("onboard"))
    host = onboard.run_host(d, flight, NEURONS)
    return actor, guide, flight, d, host, sequential_reference(actor, flight)


@torch.no_grad()
def test_host_build_of_the_onboard_step_equals_torch_on_a_simulated_flight(case):
    actor, guide, flight, _, host, (mem, spk, act) = case
    assert int(flight.reset[1:].sum()) >= 2  # episodes restart mid-flight: resets are exercised
    assert 0.05 < spk.mean() < 0.95
    # the 18 observations from the state estimate: task.observation bit for bit
    assert np.array_equal(host["obs"], flight.obs.numpy())
    # the guide on its own action history (reset fill, pushes) = the env's privileged observation
    assert float(np.abs(host["guide"] - sequential_mlp(guide, flight.priv_obs).numpy()).max()) <= 1e-6
    assert float(np.abs(host["guide"] - guide(flight.priv_obs).numpy()).max()) <= 1e-5
    # the actor: bit-identical membranes and spikes to torch in the C order
    assert np.array_equal(host["membrane"], mem)
    assert np.array_equal(host["spikes"], spk)
    assert float(np.abs(host["action"] - act).max()) <= 1e-6
    # and the actions the flight actually flew (actor.step, BLAS order)
    assert float(np.abs(host["action"] - flight.applied).max()) <= 1e-5


def test_blocked_kernels_equal_the_plain_loops_bit_for_bit(case):
    """SNN_BLOCKED=1 (default: 16 outputs summed in registers) and 0 (plain loops) sum each output
    in the same order: every membrane, spike and action is identical."""
    _, _, flight, d, host, _ = case
    plain = onboard.run_host(d, flight, NEURONS, flags=("-std=c99", "-O2", "-DSNN_BLOCKED=0"), name="plain")
    for k in ("obs", "membrane", "spikes", "action", "guide"):
        assert np.array_equal(plain[k], host[k]), k


@torch.no_grad()
def test_guide_history_is_reset_to_the_fill_and_the_clipped_applied_actions_enter_it(case):
    """Applied actions far outside [-1, 1] and another fill: the C guide equals the guide on a
    history rebuilt here (fill at each reset, then each applied action clipped, oldest first)."""
    _, guide, flight, d, host, _ = case
    bent = onboard.Flight(**{**flight.__dict__, "applied": flight.applied * 3.0, "fill": flight.fill * 0.5 + 0.2})
    out = onboard.run_host(d, bent, NEURONS)
    L = guide.cfg.in_dim // 4 - 4
    hist = np.zeros((DRONES, L, 4), np.float32)
    priv = []
    for t in range(STEPS):
        for b in range(DRONES):
            if bent.reset[t, b]:
                hist[b] = bent.fill[t, b]
        priv.append(np.concatenate([flight.obs[t].numpy(), hist.reshape(DRONES, -1)], 1))
        hist = np.concatenate([hist[:, 1:], np.clip(bent.applied[t], -1, 1)[:, None]], 1)
    expected = sequential_mlp(guide, torch.from_numpy(np.stack(priv))).numpy()
    assert float(np.abs(out["guide"] - expected).max()) <= 1e-6
    assert float(np.abs(out["guide"] - host["guide"]).max()) > 1e-2  # the history is really read
    assert (np.abs(bent.applied) > 1).mean() > 0.1


@pytest.fixture(scope="module")
def m4(case):
    why = onboard.arm_tools_missing()
    if why:
        pytest.skip(why)
    _, _, flight, d, _, _ = case
    elf = onboard.build_m4(d)
    instr_per_tick, rec = onboard.run_m4(elf, flight, NEURONS)
    return elf, instr_per_tick, rec


def test_cortex_m4_build_on_qemu_mps2_an386_gives_torchs_spikes(case, m4):
    actor, guide, flight, _, host, (mem, spk, act) = case
    _, instr_per_tick, rec = m4
    assert np.array_equal(rec["obs"], flight.obs.numpy())
    assert np.array_equal(rec["membrane"], mem)
    assert np.array_equal(rec["spikes"], spk)
    assert float(np.abs(rec["action"] - act).max()) <= 1e-6
    assert float(np.abs(rec["guide"] - sequential_mlp(guide, flight.priv_obs).numpy()).max()) <= 1e-6
    # SysTick runs on the 25 MHz processor clock; -icount shift=0 makes 1 instruction 1 ns: 40 per tick
    assert abs(instr_per_tick - 40.0) < 0.1
    ticks = rec["ticks"].astype(np.int64)
    assert (ticks[..., 1:] > 0).all()  # guide and actor are timed at every step


def test_more_layer0_spikes_cost_more_instructions_on_the_m4(m4):
    """The spike-fed layers skip silent inputs, so the actor's count grows with layer-0 activity
    (the counts measure the code that ran, not a constant)."""
    _, instr_per_tick, rec = m4
    active = rec["spikes"][..., :256].sum(-1).ravel().astype(float)
    cost = rec["ticks"][..., 2].ravel() * instr_per_tick
    assert np.corrcoef(active, cost)[0, 1] > 0.9
