"""NeuroBench-style metrics: counts on a tiny hand-built spiking actor worked out by hand, the paper's
energy formula (Table 2), the paper network's dense SynOps and MACs, and `snn-drone metrics` end to
end on saved checkpoints."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from snn_drone import cli
from snn_drone.core.snn.neurobench_metrics import (EnergyModelConfig, default_observations,
                                               dense_synops, effective_operations,
                                               energy_per_inference_pj, load_observations,
                                               measure_actor)
from snn_drone.core.snn.spiking_actor import SpikingActor, SpikingActorConfig, save_actor


def tiny_actor() -> SpikingActor:
    """2 -> LIF(3) -> LIF(2) -> 1, zero biases, beta 0 (no memory), thresholds 0.5.

    fc0 = [[1, 0], [0, 1], [1, 1]]   fc1 = [[0.4, 0.4, 0], [0, 0, 1]]   readout = [[1, 1]]
    """
    actor = SpikingActor(SpikingActorConfig(obs_dim=2, hidden=(3, 2), action_dim=1, seed=0))
    with torch.no_grad():
        actor.fc[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        actor.fc[1].weight.copy_(torch.tensor([[0.4, 0.4, 0.0], [0.0, 0.0, 1.0]]))
        actor.readout.weight.copy_(torch.tensor([[1.0, 1.0]]))
        for lin in (*actor.fc, actor.readout):
            lin.bias.zero_()
        for lif in actor.lif:
            lif.beta.zero_()
            lif.threshold.fill_(0.5)
    return actor


# Sequence 0 drives the network; sequence 1 is all zeros and never spikes.
# Layer 1 (U = I - r * 0.5, r = previous U > 0.5):
#   t0 obs [2, 0]       I = [2, 0, 2]        spikes [1, 0, 1]
#   t1 obs [0, 0]       U = [-.5, 0, -.5]    spikes [0, 0, 0]
#   t2 obs [.75, .75]   I = [.75, .75, 1.5]  spikes [1, 1, 1]
# Layer 2: t0 I = [.4, 1] -> [0, 1]; t1 U = [0, -.5] -> [0, 0]; t2 I = [.8, 1] -> [1, 1]
TINY_OBS = torch.tensor([[[2.0, 0.0], [0.0, 0.0]],
                         [[0.0, 0.0], [0.0, 0.0]],
                         [[0.75, 0.75], [0.0, 0.0]]])


def test_tiny_network_spikes_are_the_hand_worked_ones():
    _, _, spikes = tiny_actor().forward_sequence(TINY_OBS, return_spikes=True)
    assert spikes[0][:, 0].tolist() == [[1, 0, 1], [0, 0, 0], [1, 1, 1]]
    assert spikes[1][:, 0].tolist() == [[0, 1], [0, 0], [1, 1]]
    assert spikes[0][:, 1].sum() == 0 and spikes[1][:, 1].sum() == 0


def test_tiny_network_counts_match_hand_count():
    m = measure_actor(tiny_actor(), TINY_OBS)
    assert (m.steps, m.batch, m.layer_sizes) == (3, 2, (2, 3, 2, 1))
    # 8 spikes in 2 x 3 x (3 + 2) = 30 slots; per layer 5/18 and 3/12 spikes
    assert m.activation_sparsity == pytest.approx(22 / 30, abs=1e-15)
    assert m.activation_sparsity_by_layer == pytest.approx((13 / 18, 9 / 12), abs=1e-15)
    assert m.spikes_per_inference_by_layer == pytest.approx((5 / 6, 3 / 6), abs=1e-15)
    # MACs: nonzero obs x nonzero weights in their column (col 0: 2, col 1: 2)
    #   t0: obs0 -> 2;  t2: obs0, obs1 -> 4;  total 6 over 6 inferences
    # ACs layer 2 (fan-out 1 for each of the 3 inputs): 5 spikes -> 5
    # ACs readout (fan-out 1 each): 3 spikes -> 3
    assert m.ops_by_layer == pytest.approx((6 / 6, 5 / 6, 3 / 6), abs=1e-15)
    assert m.effective_macs == pytest.approx(1.0, abs=1e-15)
    assert m.effective_acs == pytest.approx(8 / 6, abs=1e-15)
    # Dense: every input and weight counted: 2*3 + 3*2 + 2*1
    assert m.dense_synops == 14
    # parameters: fc 6+3, 6+2, 2+1; beta and threshold 2*(3+2) -> 30 float32; + slope buffer
    assert (m.parameter_count, m.parameter_bytes, m.footprint_bytes) == (30, 120, 124)


def test_tiny_network_energy_is_the_paper_formula_by_hand():
    m = measure_actor(tiny_actor(), TINY_OBS)
    a = 22 / 30
    by_hand_pj = (3 * (81 + 2 * 1.7) + 23.6 * (1 - a) * 3
                  + 2 * (81 + 3 * 1.7) + 23.6 * (1 - a) * 2
                  + 1 * (2 * 1.7))
    assert m.energy_per_inference_mj == pytest.approx(by_hand_pj * 1e-9, rel=1e-12)


def test_energy_formula_gives_the_paper_value_for_18_256_128_4_at_sparsity_079():
    # 256 (81 + 18*1.7) + 23.6*0.21*256 + 128 (81 + 256*1.7) + 23.6*0.21*128 + 4 (128*1.7)
    # = 28569.6 + 1268.736 + 66073.6 + 634.368 + 870.4 = 97416.704 pJ = 9.74e-5 mJ
    pj = energy_per_inference_pj((18, 256, 128, 4), 0.79)
    assert pj == pytest.approx(97416.704, rel=1e-12)
    assert pj * 1e-9 == pytest.approx(9.7e-5, rel=0.01)   # Table 2: ~9.7e-5 mJ


def test_energy_per_layer_sparsity_and_constants():
    e = EnergyModelConfig(spike_pj=10.0, weight_pj=1.0, update_pj=0.0)
    # layer 1: 4*2*1 + 10*(1-0.5)*4 = 28; layer 2: 3*4*1 + 10*(1-1)*3 = 12; out: 1*3*1 = 3
    assert energy_per_inference_pj((2, 4, 3, 1), (0.5, 1.0), e) == pytest.approx(43.0, rel=1e-12)
    with pytest.raises(ValueError, match="2 activation sparsities for 1 hidden layers"):
        energy_per_inference_pj((2, 4, 1), (0.5, 0.5))
    with pytest.raises(ValueError, match="sparsity 1.5 outside"):
        energy_per_inference_pj((2, 4, 1), 1.5)


def test_paper_network_dense_synops_and_macs():
    assert dense_synops((18, 256, 128, 4)) == 37_888
    actor = SpikingActor(SpikingActorConfig(seed=1))
    m = measure_actor(actor, default_observations(20, 4, seed=3))
    assert m.dense_synops == 37_888
    assert m.effective_macs == 18 * 256            # observations hold no exact zeros
    assert m.parameter_count == 4608 + 256 + 32768 + 128 + 512 + 4 + 2 * (256 + 128)
    # ACs = spikes x fan-out, from the same spikes the actor emits
    _, _, spikes = actor.forward_sequence(default_observations(20, 4, seed=3), return_spikes=True)
    acs = (spikes[0].sum() * 128 + spikes[1].sum() * 4).item() / 80
    assert m.effective_acs == pytest.approx(acs, rel=1e-12)
    assert 0.0 < m.activation_sparsity < 1.0


def test_effective_operations_skips_zero_weights_and_zero_inputs():
    w = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])   # fan-out per input: 1, 0, 2
    x = torch.tensor([[5.0, 7.0, 0.0], [1.0, 1.0, 1.0]])    # 5->1 + 7->0 ; 1->1 + 1->0 + 1->2
    assert effective_operations(w, x) == 1 + 0 + 1 + 0 + 2


def test_default_observations_are_task_observations_and_reproducible():
    a = default_observations(7, 5, seed=11)
    assert a.shape == (7, 5, 18)
    assert torch.equal(a, default_observations(7, 5, seed=11))
    assert not torch.equal(a, default_observations(7, 5, seed=12))
    rot = a[..., 3:12].reshape(-1, 3, 3)
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(35, 3, 3), atol=1e-5)
    assert a[..., 0:3].abs().max() <= 0.2 + 1e-6       # position error within 0.2 m
    assert a[..., 12:15].abs().max() <= 1.0 + 1e-6     # velocity up to 1 m/s per axis


def test_bad_observations_are_refused_with_shape_and_index():
    actor = tiny_actor()
    with pytest.raises(ValueError, match=r"shape \[3, 2, 5\], expected \[any, any, 2\]"):
        measure_actor(actor, torch.zeros(3, 2, 5))
    bad = TINY_OBS.clone()
    bad[2, 1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"index \(2, 1, 0\)"):
        measure_actor(actor, bad)


# ---- the command -------------------------------------------------------------------------------

def test_metrics_command_json_on_npz_observations_gives_hand_counts(tmp_path, capsys):
    ckpt = save_actor(tmp_path / "tiny.pt", tiny_actor())
    np.savez(tmp_path / "obs.npz", obs=TINY_OBS.numpy())
    assert cli.main(["metrics", str(ckpt), "--obs", str(tmp_path / "obs.npz"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["activation_sparsity"] == pytest.approx(22 / 30, abs=1e-15)
    assert out["effective_macs"] == pytest.approx(1.0) and out["effective_acs"] == pytest.approx(8 / 6)
    assert out["dense_synops"] == 14 and out["parameter_count"] == 30


def test_metrics_command_table_on_default_observations_matches_the_library(tmp_path, capsys):
    actor = SpikingActor(SpikingActorConfig(seed=5))
    ckpt = save_actor(tmp_path / "actor.pt", actor)
    assert cli.main(["metrics", str(ckpt), "--steps", "30", "--batch", "3", "--seed", "2"]) == 0
    table = capsys.readouterr().out
    expected = measure_actor(actor, default_observations(30, 3, seed=2))
    assert "18-256-128-4" in table and "3 x 30" in table
    assert f"{expected.activation_sparsity:.4f}" in table
    assert "37,888" in table and "4,608" in table
    assert f"{expected.energy_per_inference_mj:.4g}" in table


def test_metrics_command_reports_bad_inputs_in_one_line(tmp_path, capsys):
    ckpt = save_actor(tmp_path / "actor.pt", SpikingActor(SpikingActorConfig(seed=0)))
    np.savez(tmp_path / "wide.npz", obs=np.zeros((4, 2, 17), np.float32))
    np.savez(tmp_path / "other.npz", states=np.zeros((4, 2, 18), np.float32))
    assert cli.main(["metrics", str(ckpt), "--obs", str(tmp_path / "wide.npz")]) == 2
    assert "wide.npz:obs has shape [4, 2, 17], expected [any, any, 18]" in capsys.readouterr().err
    assert cli.main(["metrics", str(ckpt), "--obs", str(tmp_path / "other.npz")]) == 2
    assert "has no array 'obs' (it holds ['states'])" in capsys.readouterr().err
    assert cli.main(["metrics", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt' not found: looked in" in capsys.readouterr().err
    assert cli.main(["metrics", str(ckpt), "--steps", "0"]) == 2
    assert "steps=0" in capsys.readouterr().err


def test_metrics_console_entry_point_runs(tmp_path):
    ckpt = save_actor(tmp_path / "actor.pt", SpikingActor(SpikingActorConfig(seed=0)))
    out = subprocess.run([sys.executable, "-m", "snn_drone.cli", "metrics", str(ckpt), "--steps", "10",
                          "--batch", "2", "--json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["dense_synops"] == 37_888


def test_load_observations_checks_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz does not exist"):
        load_observations(tmp_path / "nope.npz")
