"""Pictures of training runs and flights (matplotlib, Agg backend: no screen needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path, title: str = "") -> Path:
    """Title, tight layout, PNG at ``path`` (folders made), figure closed."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def plot_training(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Four panels against gradient updates: evaluation (and training) return, episode length,
    surrogate slope k, lambda_BC."""
    plt = _plt()
    path = Path(path)
    x = np.array([r.get("updates", i) for i, r in enumerate(history)], dtype=float)

    def series(key):
        pts = [(xi, r[key]) for xi, r in zip(x, history) if key in r and r[key] == r[key]]
        return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else (np.array([]), np.array([]))

    fig, ax = plt.subplots(2, 2, figsize=(11, 7))
    for key, label in (("train_return", "training episodes"),
                       ("eval_return", "evaluation, fresh starts (end-of-curriculum reward)"),
                       ("validation_return", "validation set (picks actor_best)")):
        xs, ys = series(key)
        if xs.size:
            ax[0, 0].plot(xs, ys, label=label, marker=None if key == "train_return" else "o", ms=3)
    ax[0, 0].set_ylabel("return"); ax[0, 0].legend(fontsize=8)
    for key, label in (("train_length", "training"), ("eval_length", "evaluation")):
        xs, ys = series(key)
        if xs.size:
            ax[0, 1].plot(xs, ys, label=label)
    ax[0, 1].set_ylabel("episode length [steps]"); ax[0, 1].legend(fontsize=8)
    xs, ys = series("slope")
    ax[1, 0].plot(xs, ys); ax[1, 0].set_ylabel("surrogate slope k")
    xs, ys = series("lambda_bc")
    ax[1, 1].plot(xs, ys); ax[1, 1].set_ylabel("lambda_BC")
    for a in ax.flat:
        a.set_xlabel("gradient updates"); a.grid(alpha=0.3)
    return _save(fig, path, title)


def plot_trajectories_3d(trajectories: np.ndarray, target, path: str | Path, title: str = "",
                         lengths: np.ndarray | None = None) -> Path:
    """3-D positions [T+1, N, 3] (world m) of N flights, the target marked."""
    plt = _plt()
    path = Path(path)
    fig = plt.figure(figsize=(7, 6))
    ax = fig.add_subplot(projection="3d")
    n = trajectories.shape[1]
    for i in range(n):
        end = int(lengths[i]) + 1 if lengths is not None else trajectories.shape[0]
        p = trajectories[:end, i]
        ax.plot(p[:, 0], p[:, 1], p[:, 2], lw=0.8)
        ax.scatter(*p[0], s=8, c="k")
    t = np.asarray(target, dtype=float)
    ax.scatter(*t, s=80, c="r", marker="*", label="target")
    ax.set_xlabel("x [m]"); ax.set_ylabel("y [m]"); ax.set_zlabel("z [m]")
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def plot_variant_curves(groups: dict[str, list[tuple[np.ndarray, np.ndarray]]], path: str | Path,
                        title: str = "", columns: int = 3) -> Path:
    """One panel per variant: evaluation return against epoch, a thin line per seed and the mean
    over seeds (on the epochs every seed evaluated) in bold, with the 100 and 400 marks."""
    plt = _plt()
    path = Path(path)
    names = list(groups)
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows), sharey=True, squeeze=False)
    for ax, name in zip(axes.flat, names):
        runs = groups[name]
        for x, y in runs:
            ax.plot(x, y, lw=0.8, alpha=0.6)
        common = sorted(set.intersection(*(set(x.tolist()) for x, _ in runs)))
        if len(runs) > 1 and common:
            mean = [np.mean([y[list(x).index(e)] for x, y in runs]) for e in common]
            ax.plot(common, mean, color="k", lw=2, label=f"mean of {len(runs)} seeds")
            ax.legend(fontsize=7, loc="lower right")
        for level in (100, 400):
            ax.axhline(level, color="grey", ls=":", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("evaluation return")
    return _save(fig, path, title)
