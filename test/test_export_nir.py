"""`snn-drone export --format nir`: the file read back with nir.read has the documented graph
(nodes, edges, shapes, parameter values), and simulating the read-back graph step by step with
NIR's own semantics reproduces the actor's spikes and actions (the mapping keeps the subtract
reset; a plain nir.LIF with v_reset = 0 would not)."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from snn_drone.cli import main
from snn_drone.core.deploy.export_nir import actor_to_nir, export_nir
from snn_drone.core.snn.spiking_actor import SpikingActor, SpikingActorConfig, save_actor


def simulate_nir(graph: nir.NIRGraph, obs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Discrete-time simulation of a NIR graph of Affine/LI/Threshold/Scale nodes (float64).

    Nodes run in the order of a depth-first walk from the input; an edge whose source has not run
    yet in this step (a cycle's back edge) carries that source's output of the previous step. LI:
    one forward-Euler step of tau dv/dt = v_leak - v + r I. Returns the output [T, B, out] and the
    outputs of every Threshold node [T, B, N].
    """
    order, seen = [], set()

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        order.append(name)
        for a, b in graph.edges:
            if a == name:
                visit(b)

    visit("input")
    incoming = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
    steps, batch = obs.shape[:2]
    prev = {n: 0.0 for n in graph.nodes}
    state = {n: np.zeros((batch, len(node.tau))) for n, node in graph.nodes.items() if isinstance(node, nir.LI)}
    outputs, spikes = [], {n: [] for n, node in graph.nodes.items() if isinstance(node, nir.Threshold)}
    dt = float(graph.metadata["dt"])
    for t in range(steps):
        cur = {}
        for n in order:
            node = graph.nodes[n]
            x = sum(cur[a] if a in cur else prev[a] for a in incoming[n]) if incoming[n] else None
            if isinstance(node, nir.Input):
                y = obs[t]
            elif isinstance(node, nir.Affine):
                y = x @ node.weight.astype(np.float64).T + node.bias
            elif isinstance(node, nir.LI):
                v = state[n]
                v = v + dt / node.tau * (node.v_leak - v + node.r * x)
                state[n] = y = v
            elif isinstance(node, nir.Threshold):
                y = (x > node.threshold).astype(np.float64)
                spikes[n].append(y)
            elif isinstance(node, nir.Scale):
                y = x * node.scale
            elif isinstance(node, nir.Output):
                y = x
                outputs.append(y)
            else:
                raise TypeError(f"simulate_nir does not know {type(node).__name__}")
            cur[n] = y
        prev = cur
    return np.stack(outputs), {n: np.stack(s) for n, s in spikes.items()}


@pytest.fixture(scope="module")
def paper_actor():
    return SpikingActor(SpikingActorConfig(seed=0)).eval()


def test_nir_file_reads_back_with_the_documented_graph_and_exact_parameters(paper_actor, tmp_path):
    actor = paper_actor
    path = export_nir(actor, tmp_path / "actor.nir", dt_s=0.01, source="test")
    g = nir.read(path)
    kinds = {n: type(node).__name__ for n, node in g.nodes.items()}
    assert kinds == {"input": "Input", "fc0": "Affine", "lif0_membrane": "LI", "lif0_spike": "Threshold",
                     "lif0_reset": "Scale", "fc1": "Affine", "lif1_membrane": "LI", "lif1_spike": "Threshold",
                     "lif1_reset": "Scale", "readout": "Affine", "output": "Output"}
    assert sorted(g.edges) == sorted([
        ("input", "fc0"), ("fc0", "lif0_membrane"), ("lif0_membrane", "lif0_spike"),
        ("lif0_spike", "lif0_reset"), ("lif0_reset", "lif0_membrane"), ("lif0_spike", "fc1"),
        ("fc1", "lif1_membrane"), ("lif1_membrane", "lif1_spike"), ("lif1_spike", "lif1_reset"),
        ("lif1_reset", "lif1_membrane"), ("lif1_spike", "readout"), ("readout", "output")])
    assert list(g.input_type["input"]) == [18] and list(g.output_type["output"]) == [4]
    assert g.nodes["fc0"].weight.shape == (256, 18) and g.nodes["fc1"].weight.shape == (128, 256)
    assert g.nodes["readout"].weight.shape == (4, 128)
    assert list(g.nodes["lif1_membrane"].input_type["input"]) == [128]
    for l, (fc, lif) in enumerate(zip(actor.fc, actor.lif)):
        assert np.array_equal(g.nodes[f"fc{l}"].weight, fc.weight.detach().numpy())
        assert np.array_equal(g.nodes[f"fc{l}"].bias, fc.bias.detach().numpy())
        thr = lif.threshold.detach().numpy()
        assert np.array_equal(g.nodes[f"lif{l}_spike"].threshold, thr)
        assert np.array_equal(g.nodes[f"lif{l}_reset"].scale, -thr)
        li = g.nodes[f"lif{l}_membrane"]
        beta = lif.beta.detach().clamp(0, 1).numpy()
        assert np.array_equal(li.metadata["beta"], beta)
        # Euler convention: beta = 1 - dt/tau, input gain r dt/tau = 1, no leak voltage
        assert np.abs((1 - 0.01 / li.tau) - beta).max() < 1e-15
        assert np.abs(li.r * 0.01 / li.tau - 1).max() < 1e-12
        assert np.all(li.v_leak == 0)
    assert g.metadata["output_activation"] == "tanh"
    assert float(g.metadata["dt"]) == 0.01


@torch.no_grad()
def test_simulating_the_read_back_graph_reproduces_the_actor_spikes_and_actions(tmp_path):
    """float64 on both sides, so summation order cannot decide a spike; 40 steps x 6 sequences."""
    actor = SpikingActor(SpikingActorConfig(hidden=(32, 24), seed=4)).double().eval()
    g = nir.read(export_nir(actor, tmp_path / "a.nir"))
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(40, 6, 18, generator=gen, dtype=torch.float64) * 0.6
    actions, _, spikes = actor.forward_sequence(obs, return_spikes=True)
    out, nir_spikes = simulate_nir(g, obs.numpy())
    for l in range(2):
        assert np.array_equal(nir_spikes[f"lif{l}_spike"], spikes[l].numpy())
    assert 0.05 < float(spikes[0].mean()) < 0.95
    # the weights went through float32 in the file, the double actor has float32-valued weights too
    assert np.abs(np.tanh(out) - actions.numpy()).max() < 1e-9


@torch.no_grad()
def test_a_hard_reset_lif_node_would_change_the_spikes(tmp_path):
    """Why the export does not use nir.LIF(v_reset=0) (snnTorch's route): replace each soft-reset
    loop by a hard reset and the spike trains differ."""
    actor = SpikingActor(SpikingActorConfig(hidden=(32, 24), seed=4)).double().eval()
    g = actor_to_nir(actor)
    obs = torch.randn(40, 6, 18, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.6
    _, _, spikes = actor.forward_sequence(obs, return_spikes=True)
    # hard reset: emulate by zeroing the membrane after a spike (v_reset = 0) in the same step
    beta = actor.lif[0].beta.clamp(0, 1)
    thr = actor.lif[0].threshold
    current = actor.fc[0](obs)
    v, hard = torch.zeros(6, 32, dtype=torch.float64), []
    for t in range(40):
        v = beta * v + current[t]
        s = (v > thr).double()
        v = v * (1 - s)
        hard.append(s)
    assert not torch.equal(torch.stack(hard), spikes[0])
    assert isinstance(g.nodes["lif0_membrane"], nir.LI)


def test_cli_export_nir_and_bad_dt(tmp_path, capsys):
    ckpt = save_actor(tmp_path / "a.pt", SpikingActor(SpikingActorConfig(hidden=(8, 6), seed=1)))
    assert main(["export", str(ckpt), "--format", "nir", "--out", str(tmp_path / "o"), "--dt", "0.02"]) == 0
    g = nir.read(tmp_path / "o" / "snn_actor.nir")
    assert float(g.metadata["dt"]) == 0.02 and g.metadata["source"] == "a.pt"
    assert main(["export", str(ckpt), "--format", "nir", "--dt", "0"]) == 2
    assert "dt_s = 0.0" in capsys.readouterr().err
