"""Input checks with errors that name the array, what it had and what was expected."""
from __future__ import annotations

import numpy as np
import torch

from .layout import Field, describe


def _as_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_array(name: str, x, shape: tuple, fields: tuple[Field, ...] | None = None,
                finite: bool = True) -> None:
    """Raise ValueError unless ``x`` has ``shape`` (None = any size) and, if ``finite``, no NaN/inf.

    ``fields`` (a layout from snn_drone.core.common.layout) is quoted when the last axis is wrong and is
    used to name the field holding a non-finite value.
    """
    if not hasattr(x, "shape"):
        raise TypeError(f"{name} must be an array or tensor, got {type(x).__name__}")
    got = tuple(x.shape)
    ok = len(got) == len(shape) and all(e is None or e == g for e, g in zip(shape, got))
    if not ok:
        exp = "[" + ", ".join("any" if e is None else str(e) for e in shape) + "]"
        msg = f"{name} has shape {list(got)}, expected {exp}"
        if fields is not None:
            msg += f" (last axis: {describe(fields)})"
        raise ValueError(msg)
    if finite:
        a = _as_numpy(x)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            where = "index " + str(tuple(int(i) for i in bad))
            if fields is not None and a.ndim >= 1:
                col, start = int(bad[-1]), 0
                for f in fields:
                    if col < start + f.size:
                        where += f" (field {f.name}[{col - start}])"
                        break
                    start += f.size
            raise ValueError(f"{name} holds a non-finite value {a[tuple(bad)]} at {where}")
