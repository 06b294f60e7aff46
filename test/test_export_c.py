"""`snn-drone export --format c`: the generated C99 step function, compiled with the real gcc and
run on observation sequences recorded from BatchedHoverEnv rollouts of the actor (with episode
resets), against the torch actor: bit-identical to the actor summed in the C order, and the same
spikes as ``actor.step`` (BLAS order) wherever float32 rounding can decide a spike at all."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from snn_drone.cli import main
from snn_drone.core.env.batched_env import BatchedHoverEnv
from snn_drone.core.learning.checkpoint import save_policy
from snn_drone.core.deploy.export_c import export_c, footprint_bytes, sequential_affine, sequential_step
from snn_drone.core.snn.lif import LIFState
from snn_drone.core.learning.networks import MLPPolicy, MLPPolicyConfig
from snn_drone.core.snn.spiking_actor import ActorState, SpikingActor, SpikingActorConfig, save_actor

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

HARNESS = Path(__file__).parent / "c" / "snn_harness.c"
U32 = 2.0 ** -24  # unit roundoff of float32


@torch.no_grad()
def record_rollout(actor: SpikingActor, drones: int, steps: int, seed: int):
    """Observations [T, B, 18] the actor saw flying BatchedHoverEnv closed loop, and reset flags
    [T, B] (True: the drone's episode restarted before step t, so its hidden state is zeroed)."""
    env = BatchedHoverEnv(drones, seed=seed)
    obs, state = env.reset(), actor.init_state(drones)
    reset = torch.zeros(drones, dtype=torch.bool)
    all_obs, all_reset = [], []
    for _ in range(steps):
        all_obs.append(obs.clone())
        all_reset.append(reset.clone())
        state = actor.reset_state(state, reset)
        action, state = actor.step(obs, state)
        obs, _, _, _, info = env.step(action)
        reset = info["done"]
    return torch.stack(all_obs), torch.stack(all_reset)


def build(export_dir: Path, flags=("-std=c99", "-O2"), source: Path | None = None) -> Path:
    exe = export_dir / "harness"
    cmd = ["gcc", *flags, "-Wall", "-Wextra", "-Werror", "-I", str(export_dir),
           str(source or export_dir / "snn_actor.c"), str(HARNESS), "-lm", "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def run_c(exe: Path, obs: torch.Tensor, reset: torch.Tensor, neurons: int, actions: int) -> np.ndarray:
    steps, drones = reset.shape
    inp, out = exe.parent / "in.bin", exe.parent / "out.bin"
    with open(inp, "wb") as f:
        np.array([steps, drones], np.int32).tofile(f)
        obs.numpy().astype(np.float32).tofile(f)
        reset.numpy().astype(np.uint8).tofile(f)
    subprocess.run([str(exe), str(inp), str(out)], check=True)
    rec = np.dtype([("membrane", np.float32, neurons), ("spikes", np.uint8, neurons), ("action", np.float32, actions)])
    return np.fromfile(out, rec).reshape(steps, drones)


def run_sequential_reference(actor, obs, reset):
    """sequential_step free-running over the sequences: membranes, spikes, actions (numpy)."""
    state = actor.init_state(obs.shape[1])
    mem, spk, act = [], [], []
    for t in range(obs.shape[0]):
        state = actor.reset_state(state, reset[t])
        a, state, spikes = sequential_step(actor, obs[t], state)
        mem.append(torch.cat([s.membrane for s in state.layers], 1).numpy())
        spk.append(torch.cat(spikes, 1).numpy().astype(np.uint8))
        act.append(a.numpy())
    return np.stack(mem), np.stack(spk), np.stack(act)


@pytest.fixture(scope="module")
def paper_case(tmp_path_factory):
    """The paper's 18-256-128-4 actor (fixed seed), 8 drones x 200 steps of its own rollouts."""
    actor = SpikingActor(SpikingActorConfig(seed=0)).eval()
    obs, reset = record_rollout(actor, drones=8, steps=200, seed=1)
    d = tmp_path_factory.mktemp("paper_c")
    export_c(actor, d)
    out = run_c(build(d), obs, reset, neurons=384, actions=4)
    return actor, obs, reset, out, d


def test_c_step_is_bit_identical_to_the_torch_actor_summed_in_the_c_order(paper_case):
    actor, obs, reset, out, _ = paper_case
    mem, spk, act = run_sequential_reference(actor, obs, reset)
    # the sequences are not trivial: episodes restart mid-sequence and neurons both fire and rest
    assert int(reset.sum()) >= 8
    assert 0.05 < spk.mean() < 0.95
    assert np.array_equal(out["membrane"], mem), "membranes differ"
    assert int((out["spikes"] != spk).sum()) == 0
    assert out["spikes"].size == 200 * 8 * 384
    assert float(np.abs(out["action"] - act).max()) <= 1e-6  # tanhf vs torch.tanh, a few ulp


def _rounding_bound(weight, bias, x, pre, current, threshold):
    """A rigorous bound on how far two float32 evaluations of ``U = pre + (b + W x) - r U_thr``
    summed in different orders can end apart: 2 gamma_(n+1) sum|terms| for the dot products plus
    a few ulp for the final additions (Higham, Accuracy and Stability, Thm 3.1)."""
    n = weight.shape[1] + 1
    gamma = n * U32 / (1 - n * U32)
    terms = bias.abs() + x.abs() @ weight.abs().T
    return 2 * gamma * terms + 4 * U32 * (pre.abs() + current.abs() + threshold.abs())


@torch.no_grad()
def test_c_spikes_match_torch_actor_step_given_the_same_state_except_within_rounding(paper_case):
    """Teacher-forced: at every step, actor.step (torch's BLAS summation order) starts from the C
    code's own state, so one borderline spike cannot cascade. Every spike that differs must sit
    within the rigorous float32 rounding bound of its threshold; actions agree to 1e-5."""
    actor, obs, reset, out, _ = paper_case
    steps, drones = reset.shape
    sizes = actor.cfg.hidden
    offsets = np.cumsum((0, *sizes))
    thresholds = [l.threshold for l in actor.lif]
    betas = [l.beta.clamp(0, 1) for l in actor.lif]
    prev = torch.zeros(drones, sum(sizes))
    explained = unexplained = compared = 0
    worst_action = 0.0
    rows_clean = 0
    for t in range(steps):
        prev[reset[t]] = 0.0
        state = ActorState(tuple(LIFState(prev[:, offsets[l]:offsets[l + 1]].clone()) for l in range(len(sizes))))
        action, new = actor.step(obs[t], state)
        c_mem = torch.from_numpy(out["membrane"][t])
        c_spk = torch.from_numpy(out["spikes"][t]).bool()
        row_ok = torch.ones(drones, dtype=torch.bool)
        x = obs[t]
        for l in range(len(sizes)):
            sl = slice(offsets[l], offsets[l + 1])
            torch_spk = new.layers[l].membrane > thresholds[l]
            pre = betas[l] * state.layers[l].membrane
            current = c_mem[:, sl] - pre
            bound = _rounding_bound(actor.fc[l].weight, actor.fc[l].bias, x, pre, current, thresholds[l])
            differ = (torch_spk != c_spk[:, sl]) & row_ok[:, None]  # rows whose input still agrees
            near = (c_mem[:, sl] - thresholds[l]).abs() <= bound
            explained += int((differ & near).sum())
            unexplained += int((differ & ~near).sum())
            compared += int(row_ok.sum()) * sizes[l]
            row_ok &= ~differ.any(1)
            x = c_spk[:, sl].float()
        rows_clean += int(row_ok.sum())
        if bool(row_ok.any()):
            worst_action = max(worst_action, float((action[row_ok] - torch.from_numpy(out["action"][t])[row_ok]).abs().max()))
        prev = c_mem.clone()
    print(f"compared={compared} explained={explained} unexplained={unexplained} rows_clean={rows_clean} worst_action={worst_action:.3g}")
    assert compared >= steps * drones * sum(sizes) * 0.999
    assert unexplained == 0
    assert explained <= 1e-4 * compared
    assert rows_clean >= 0.999 * steps * drones
    assert worst_action <= 1e-5


def test_deeper_actor_with_clamped_beta_and_negative_thresholds_matches_bit_for_bit(tmp_path):
    """Three LIF layers; beta above 1 (clamped in use), beta 0, and negative thresholds (a neuron
    whose membrane starts above threshold spikes and resets from the very first step)."""
    actor = SpikingActor(SpikingActorConfig(hidden=(16, 12, 8), seed=3)).eval()
    with torch.no_grad():
        actor.lif[0].beta[:4] = torch.tensor([1.3, 1.0, 0.0, -0.2])
        actor.lif[1].threshold[:3] = torch.tensor([-0.5, -1e-3, 0.0])
    obs, reset = record_rollout(actor, drones=4, steps=120, seed=2)
    export_c(actor, tmp_path)
    out = run_c(build(tmp_path), obs, reset, neurons=36, actions=4)
    mem, spk, act = run_sequential_reference(actor, obs, reset)
    assert np.array_equal(out["membrane"], mem)
    assert np.array_equal(out["spikes"], spk)
    assert float(np.abs(out["action"] - act).max()) <= 1e-6
    # a negative threshold makes the first step after a reset subtract it (reset term H(0 - U_thr))
    with torch.no_grad():
        x = torch.from_numpy(out["spikes"][0, :, :16]).float()
        current = sequential_affine(actor.fc[1].weight, actor.fc[1].bias, x)
    assert np.array_equal(out["membrane"][0, :, 16], (current[:, 0] + 0.5).numpy())


def _has_fma() -> bool:
    try:
        return " fma " in Path("/proc/cpuinfo").read_text().replace("\n", " ")
    except OSError:
        return False


@pytest.mark.skipif(not _has_fma(), reason="needs a CPU with fused multiply-add")
def test_pragma_keeps_bit_parity_under_fma_flags_and_removing_it_breaks_parity(paper_case):
    """-std=gnu11 -march=native lets gcc fuse a*b+c (-ffp-contract=fast): with the generated
    pragma the membranes stay bit-identical; without it they do not (the parity test can fail)."""
    actor, obs, reset, _, d = paper_case
    obs, reset = obs[:60], reset[:60]
    mem, _, _ = run_sequential_reference(actor, obs, reset)
    flags = ("-std=gnu11", "-O2", "-march=native")
    with_pragma = run_c(build(d, flags), obs, reset, 384, 4)
    assert np.array_equal(with_pragma["membrane"], mem)
    src = (d / "snn_actor.c").read_text()
    assert '#pragma GCC optimize("fp-contract=off")' in src
    stripped = d / "snn_actor_fma.c"
    stripped.write_text(src.replace('#pragma GCC optimize("fp-contract=off")', ""))
    fused = run_c(build(d, flags, stripped), obs, reset, 384, 4)
    assert int((fused["membrane"] != mem).sum()) > 1000


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils nm")
def test_object_file_needs_only_tanhf_and_fits_a_cortex_m4(paper_case, tmp_path):
    _, _, _, _, d = paper_case
    obj = tmp_path / "snn_actor.o"
    subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-c",
                    str(d / "snn_actor.c"), "-o", str(obj)], check=True)
    undefined = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
    assert [s for s in undefined if s != "U"] == ["tanhf"]
    size = footprint_bytes(SpikingActor(SpikingActorConfig(seed=0)))
    # 18*256 + 256 + 2*256 + 256*128 + 128 + 2*128 + 128*4 + 4 floats; STM32F405: 1 MB flash, 192 KB RAM
    assert size["weights_flash"] == 4 * 39044
    assert size["state_ram"] == 4 * 384 + 384 + 6 * 256


def test_cli_export_c_writes_compilable_files_for_the_actor_and_the_guide(tmp_path, capsys):
    actor = SpikingActor(SpikingActorConfig(hidden=(8, 6), seed=1))
    ckpt = save_actor(tmp_path / "actor.pt", actor)
    assert main(["export", str(ckpt), "--format", "c"]) == 0
    out_dir = tmp_path / "actor_export"
    assert sorted(p.name for p in out_dir.iterdir()) == ["snn_actor.c", "snn_actor.h", "snn_actor_weights.h",
                                                         "snn_observation.c", "snn_observation.h",
                                                         "snn_onboard_config.h"]
    assert "weights_flash_bytes=" in capsys.readouterr().out
    obs = torch.randn(5, 2, 18)
    reset = torch.zeros(5, 2, dtype=torch.bool)
    out = run_c(build(out_dir), obs, reset, neurons=14, actions=4)
    _, _, act = run_sequential_reference(actor, obs, reset)
    assert float(np.abs(out["action"] - act).max()) <= 1e-6

    mlp = save_policy(tmp_path / "mlp.pt", MLPPolicy(MLPPolicyConfig()))
    assert main(["export", str(mlp), "--format", "c", "--out", str(tmp_path / "x")]) == 0
    assert "weights_flash_bytes=55312 state_ram_bytes=1540" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["snn_guide.c", "snn_guide.h", "snn_guide_weights.h",
                                                                  "snn_observation.c", "snn_observation.h",
                                                                  "snn_onboard_config.h"]
    subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O2", "-c", "-I", str(tmp_path / "x"),
                    str(tmp_path / "x" / "snn_guide.c"), "-o", str(tmp_path / "g.o")], check=True)
    with pytest.raises(TypeError, match="spiking actor .* or an MLP policy"):
        export_c(torch.nn.Linear(18, 4), tmp_path / "y")


def test_export_names_a_non_finite_parameter(tmp_path):
    actor = SpikingActor(SpikingActorConfig(hidden=(8, 6), seed=1))
    with torch.no_grad():
        actor.fc[1].weight[2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"fc\.1\.weight.*non-finite value nan at index \(3, 2\)"):
        export_c(actor, tmp_path)
