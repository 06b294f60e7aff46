"""What a training run writes beside its checkpoint, and the one-line progress it shows.

A run folder holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one row per epoch, the
record every table and plot reads), ``tb/`` (the same scalars for TensorBoard, against gradient
updates) and ``training.png``. None of these feed back into training: losing TensorBoard or a plot
never loses a run.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ..common import config


class RunLog:
    """The run folder's records. ``log`` prints messages (``print`` by default)."""

    def __init__(self, out_dir: Path, log=print):
        self.out, self.log = Path(out_dir), log
        self._writer = None

    def write_config(self, cfg) -> None:
        import yaml
        with open(self.out / "config.yaml", "w") as f:
            yaml.safe_dump(config.to_dict(cfg), f, sort_keys=False)

    def append(self, row: dict, step: int) -> None:
        """One epoch's row into metrics.jsonl and its finite numbers into TensorBoard at ``step``."""
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._writer = SummaryWriter(str(self.out / "tb"))
            except Exception as e:  # tensorboard missing: metrics.jsonl still has everything
                self.log(f"TensorBoard logging off: {e}")
                self._writer = False
        if self._writer:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch",) and math.isfinite(v):
                    self._writer.add_scalar(k, v, step)
            self._writer.flush()

    def plot(self, history: list[dict], title: str) -> None:
        from .plots import plot_training
        try:
            plot_training(history, self.out / "training.png", title=title)
        except Exception as e:  # a plot must never lose a finished run
            self.log(f"could not draw training plots: {e}")


def progress_postfix(row: dict, history: list[dict], uses_slope: bool, env_steps: int, updates: int,
                     wall_s: float) -> str:
    """The progress bar's figures: last evaluation and validation return, training return, slope k,
    lambda_BC, the guide's steps H and throughput."""
    parts = []
    if "eval_return" in row:
        parts.append(f"eval={row['eval_return']:.1f}")
    elif any("eval_return" in r for r in history):
        parts.append(f"eval={[r for r in history if 'eval_return' in r][-1]['eval_return']:.1f}")
    if "validation_return" in row:
        parts.append(f"val={row['validation_return']:.1f}")
    if "train_return" in row:
        parts.append(f"ret={row['train_return']:.1f}")
    if uses_slope:
        parts.append(f"k={row['slope']:.2f}")
    parts.append(f"lbc={row['lambda_bc']:.3f}")
    if "guide_steps" in row:
        parts.append(f"H={row['guide_steps']}")
    if wall_s > 0:
        parts.append(f"env/s={env_steps / wall_s:.0f} upd/s={updates / wall_s:.1f}")
    return " ".join(parts)
