"""The Fig. 1 gradient analysis on a tiny network: per-sample gradients, CSV, cosine at k = 100."""
from __future__ import annotations

import csv

import torch

from snn_drone.core.snn.gradient_analysis import (CSV_COLUMNS, GradientAnalysisConfig, analyze,
                                              per_sample_weight_grads, plot, write_csv)
from snn_drone.core.snn.spiking_actor import SpikingActor, SpikingActorConfig


def test_batched_per_sample_gradients_equal_one_backward_per_sample():
    actor = SpikingActor(SpikingActorConfig(hidden=(12, 10, 8), seed=2)).double()
    actor.set_slope(5.0)
    gen = torch.Generator().manual_seed(3)
    obs = torch.randn(3, 4, 18, generator=gen, dtype=torch.float64)
    target = torch.rand(3, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
    batched = per_sample_weight_grads(actor, obs, target)
    weights = [*(f.weight for f in actor.fc), actor.readout.weight]
    for i in range(4):
        actor.zero_grad()
        actions, _ = actor.forward_sequence(obs[:, i:i + 1])
        ((actions - target[:, i:i + 1]) ** 2).mean().backward()
        for layer, w in enumerate(weights):
            assert torch.allclose(batched[layer][i], w.grad, atol=1e-14, rtol=1e-10), f"sample {i} layer {layer}"
    assert batched[0].abs().max() > 0


def test_analysis_writes_csv_and_png_with_cosine_one_at_reference_slope(tmp_path):
    cfg = GradientAnalysisConfig(hidden=(8, 8, 8), slopes=(1.0, 10.0, 100.0), samples=32, steps=3, seed=1)
    rows = analyze(cfg)
    assert len(rows) == 3 * 4  # slopes x (3 fc layers + readout)
    path = write_csv(rows, tmp_path / "g.csv")
    with open(path) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == CSV_COLUMNS
        table = list(reader)
    at_ref = [r for r in table if float(r["slope"]) == 100.0]
    assert all(abs(float(r["cosine_similarity"]) - 1.0) < 1e-12 for r in at_ref)
    # The readout's gradient does not pass through a spike: identical for every k.
    readout = [r for r in rows if r["layer_name"] == "readout"]
    assert all(abs(r["cosine_similarity"] - 1.0) < 1e-12 for r in readout)
    assert len({round(r["grad_magnitude"], 15) for r in readout}) == 1
    # Shallower slopes pass more gradient to the first layer (the paper's Fig. 1 trend).
    first = {r["slope"]: r["grad_magnitude"] for r in rows if r["layer"] == 0}
    assert first[1.0] > first[10.0] > first[100.0] > 0
    png = plot(rows, tmp_path / "g.png")
    assert png.stat().st_size > 10_000
