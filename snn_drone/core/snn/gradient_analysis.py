"""Surrogate-gradient analysis of paper Fig. 1: how the slope k shapes the gradient of a deep SNN.

A spiking network of four LIF layers of 64 neurons (the ``SpikingActor`` with hidden=(64,)*4, so the
same LIF layers and fused training path) gets ``samples`` random inputs and targets. For each slope k
we compute each sample's gradient of its loss with respect to every weight matrix, then per layer

- magnitude: the mean |dL/dW| over samples and weight entries;
- cosine similarity: cos(dL_i/dW at k, dL_i/dW at the reference slope, k = 100) per sample i,
  averaged over the samples whose two gradients are both nonzero (``zero_fraction`` counts the rest).

The forward pass does not depend on k (spikes are Heaviside), so every slope sees the same spikes;
only the backward differs. Inputs (paper's script: static random inputs presented twice): an
observation x ~ N(0, I) held for ``steps`` time steps; target y ~ U(-1, 1)^action_dim; loss of
sample i: mean over steps and outputs of (action_t - y)^2. Computed in float64.
Per-sample gradients come from one batched backward per slope: dL_i/dW = sum_t dL/dI[t, i] x[t, i]^T,
with I the layer's input currents (samples do not interact, so this is exact).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .spiking_actor import SpikingActor, SpikingActorConfig

CSV_COLUMNS = ("slope", "layer", "layer_name", "grad_magnitude", "cosine_similarity",
               "cosine_similarity_std", "zero_fraction", "samples")


@dataclass
class GradientAnalysisConfig:
    """The Fig. 1 experiment."""

    hidden: tuple[int, ...] = (64, 64, 64, 64)
    """LIF layer sizes (paper: 4 layers of 64)."""
    slopes: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0)
    """Surrogate slopes k to compare."""
    reference_slope: float = 100.0
    """Cosine similarity is measured against the gradient at this slope (paper: 100)."""
    samples: int = 1024
    """Random (input, target) pairs; each gives one per-sample gradient."""
    steps: int = 2
    """Time steps each static input is presented (the paper's script runs the network twice)."""
    obs_dim: int = 18
    """Input width (the actor's observation)."""
    action_dim: int = 4
    """Output width (tanh readout)."""
    seed: int = 0
    """Seed of the network initialisation and of the random inputs and targets."""
    actor: SpikingActorConfig = field(default_factory=SpikingActorConfig)
    """Initialisation of decays/thresholds (hidden, obs_dim, action_dim, seed above override it)."""

    def __post_init__(self):
        if self.samples < 1 or self.steps < 1:
            raise ValueError(f"samples and steps must be >= 1, got {self.samples} and {self.steps}")
        if not self.slopes or any(not (math.isfinite(k) and k > 0) for k in self.slopes):
            raise ValueError(f"slopes must be finite and > 0, got {self.slopes}")
        if self.reference_slope not in self.slopes:
            self.slopes = tuple(sorted((*self.slopes, self.reference_slope)))


def per_sample_weight_grads(actor: SpikingActor, obs: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    """Per-sample gradients [S, out, in] of every weight matrix (fc layers, then readout) of
    sum_i loss_i, loss_i = mean over steps and outputs of (action - target)^2, obs [T, S, in]."""
    linears = [*actor.fc, actor.readout]
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, inputs, output):
        output.retain_grad()
        captured.append((inputs[0].detach(), output))

    handles = [m.register_forward_hook(hook) for m in linears]
    try:
        actions, _ = actor.forward_sequence(obs, validate=False)
    finally:
        for h in handles:
            h.remove()
    steps, _, out_dim = actions.shape
    loss = ((actions - target) ** 2).mean(dim=(0, 2)).sum()  # sum of per-sample losses
    loss.backward()
    return [torch.einsum("tso,tsi->soi", out.grad, inp) for inp, out in captured]


def analyze(cfg: GradientAnalysisConfig) -> list[dict]:
    """Rows (one per slope and layer) with the columns of ``CSV_COLUMNS``."""
    actor_cfg = SpikingActorConfig(**{**cfg.actor.__dict__, "hidden": tuple(cfg.hidden),
                                      "obs_dim": cfg.obs_dim, "action_dim": cfg.action_dim,
                                      "seed": cfg.seed})
    actor = SpikingActor(actor_cfg).double()
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    x = torch.randn(cfg.samples, cfg.obs_dim, generator=gen, dtype=torch.float64)
    obs = x.expand(cfg.steps, -1, -1).contiguous()
    target = (torch.rand(cfg.samples, cfg.action_dim, generator=gen, dtype=torch.float64) * 2 - 1)
    target = target.expand(cfg.steps, -1, -1)

    grads = {}
    for k in cfg.slopes:
        actor.set_slope(k)
        actor.zero_grad(set_to_none=True)
        grads[k] = [g.reshape(cfg.samples, -1) for g in per_sample_weight_grads(actor, obs, target)]
    names = [f"fc{i}" for i in range(len(cfg.hidden))] + ["readout"]
    rows = []
    ref = grads[cfg.reference_slope]
    for k in cfg.slopes:
        for layer, (g, r) in enumerate(zip(grads[k], ref)):
            gn, rn = g.norm(dim=1), r.norm(dim=1)
            ok = (gn > 0) & (rn > 0)
            cos = (g * r).sum(1)[ok] / (gn[ok] * rn[ok])
            rows.append({
                "slope": k, "layer": layer, "layer_name": names[layer],
                "grad_magnitude": g.abs().mean().item(),
                "cosine_similarity": cos.mean().item() if ok.any() else float("nan"),
                "cosine_similarity_std": cos.std().item() if ok.sum() > 1 else float("nan"),
                "zero_fraction": 1.0 - ok.double().mean().item(),
                "samples": cfg.samples,
            })
    return rows


def write_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in CSV_COLUMNS})
    return path


def plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Two panels against k, one line per layer: gradient magnitude (log) and cosine similarity."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    layers = sorted({(r["layer"], r["layer_name"]) for r in rows})
    fig, (ax_m, ax_c) = plt.subplots(1, 2, figsize=(11, 4.2))
    for layer, name in layers:
        rs = sorted((r for r in rows if r["layer"] == layer), key=lambda r: r["slope"])
        ks = [r["slope"] for r in rs]
        ax_m.plot(ks, [r["grad_magnitude"] for r in rs], "o-", label=f"layer {layer} ({name})")
        ax_c.plot(ks, [r["cosine_similarity"] for r in rs], "o-", label=f"layer {layer} ({name})")
    for ax in (ax_m, ax_c):
        ax.set_xscale("log")
        ax.set_xlabel("surrogate slope k")
        ax.grid(True, which="both", alpha=0.3)
    ax_m.set_yscale("log")
    ax_m.set_ylabel("mean |dL/dW|")
    ax_m.set_title("gradient magnitude")
    ax_c.set_ylabel("cosine similarity to k = 100")
    ax_c.set_title("gradient direction")
    ax_c.set_ylim(-0.05, 1.05)
    ax_c.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def format_table(rows: list[dict]) -> str:
    """Plain-text table: one line per slope, magnitude and cosine per layer."""
    layers = sorted({r["layer"] for r in rows})
    head = "k".rjust(6) + "".join(f"  |dW| L{l}".rjust(12) for l in layers) + "".join(
        f"  cos L{l}".rjust(9) for l in layers)
    lines = [head]
    for k in sorted({r["slope"] for r in rows}):
        by = {r["layer"]: r for r in rows if r["slope"] == k}
        lines.append(f"{k:6g}" + "".join(f"{by[l]['grad_magnitude']:12.3e}" for l in layers)
                     + "".join(f"{by[l]['cosine_similarity']:9.3f}" for l in layers))
    return "\n".join(lines)
