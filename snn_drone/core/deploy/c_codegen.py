"""Shared pieces of the C exports (export_c.py: the spiking actor; export_c_guide.py: the guide MLP
and the onboard observation): the torch reference of the C summation order, exact float32
literals, parameter arrays, the contraction-off prelude with the dense kernel, atomic writes."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

VALUES_PER_LINE = 6


def sequential_affine(weight: Tensor, bias: Tensor, x: Tensor) -> Tensor:
    """``bias + sum_j weight[:, j] * x[..., j]`` summed left to right with every product and sum
    rounded in ``x``'s dtype (elementwise torch ops round exactly like C float arithmetic)."""
    acc = bias.expand(*x.shape[:-1], bias.shape[0]).clone()
    for j in range(weight.shape[1]):
        acc = acc + weight[:, j] * x[..., j:j + 1]
    return acc


def _f32_literal(v: np.float32) -> str:
    """Shortest decimal that parses back to exactly this float32, as a C float literal."""
    return np.format_float_scientific(v, unique=True, trim="0") + "f"


def _array(name: str, values: np.ndarray, comment: str) -> str:
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    lines = [f"/* {comment} */", f"static const float {name}[{flat.size}] = {{"]
    for i in range(0, flat.size, VALUES_PER_LINE):
        lines.append("  " + ", ".join(_f32_literal(v) for v in flat[i:i + VALUES_PER_LINE]) + ",")
    lines.append("};")
    return "\n".join(lines)


def _checked(params):
    checked = []
    for name, t, desc in params:
        a = t.to("cpu", torch.float32).numpy()
        if not np.isfinite(a).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
            raise ValueError(f"cannot export {desc.split(' ')[0]}: non-finite value {a[bad]} at index {bad}")
        checked.append((name, a, desc))
    return checked



_BLOCK = 16  # outputs summed in registers at a time by the blocked kernels


def _unrolled(fmt: str, indent: str) -> str:
    return "\n".join(indent + fmt.format(k=k) for k in range(_BLOCK))


_PRELUDE = r"""
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#ifndef SNN_TANHF
#include <math.h>
#define SNN_TANHF tanhf
#endif

/* SNN_BLOCKED 1 (default): the kernels sum @B@ outputs at a time in registers (one pass over the
 * inputs per block); 0: the plain loops (out[i] loaded and stored per input). Both evaluate each
 * output's sum in the same order, j ascending, so they give bit-identical results; the blocked
 * ones need about half the instructions on a Cortex-M4 (bench/onboard_m4.py). */
#ifndef SNN_BLOCKED
#define SNN_BLOCKED 1
#endif

/* out += sum_j W^T[j][:] * x[j], j ascending: every product and every sum rounded on its own. */
static void snn_accumulate_dense(const float *wt, const float *x, int n_in, int n_out, float *out)
{
  int i, j;
#if SNN_BLOCKED
  const int blocked = n_out - n_out % @B@;
  for (i = 0; i < blocked; i += @B@) {
    const float *c = wt + i;
@DECL_A@
    for (j = 0; j < n_in; ++j, c += n_out) {
      const float xj = x[j];
@MAC@
    }
@STORE@
  }
  for (i = blocked; i < n_out; ++i) {
    float a = out[i];
    for (j = 0; j < n_in; ++j) a = a + wt[(long)j * n_out + i] * x[j];
    out[i] = a;
  }
#else
  for (j = 0; j < n_in; ++j) {
    const float xj = x[j];
    const float *col = wt + (long)j * n_out;
    for (i = 0; i < n_out; ++i) {
      const float p = col[i] * xj;
      out[i] = out[i] + p;
    }
  }
#endif
}
"""

_ACTIVE_KERNEL = r"""
/* out += sum over the active inputs k of W^T[active[k]][:] (0/1 inputs: silent ones add exactly 0
 * and are left out), k ascending. */
static void snn_accumulate_active(const float *wt, const uint16_t *active, int n_active, int n_out, float *out)
{
  int i, k;
#if SNN_BLOCKED
  const int blocked = n_out - n_out % @B@;
  for (i = 0; i < blocked; i += @B@) {
@DECL_A@
    for (k = 0; k < n_active; ++k) {
      const float *c = wt + (long)active[k] * n_out + i;
@ADD@
    }
@STORE@
  }
  for (i = blocked; i < n_out; ++i) {
    float a = out[i];
    for (k = 0; k < n_active; ++k) a = a + wt[(long)active[k] * n_out + i];
    out[i] = a;
  }
#else
  for (k = 0; k < n_active; ++k) {
    const float *col = wt + (long)active[k] * n_out;
    for (i = 0; i < n_out; ++i) out[i] = out[i] + col[i];
  }
#endif
}
"""


def _fill(template: str) -> str:
    return template.replace("@B@", str(_BLOCK)).replace("@DECL_A@", _unrolled("float a{k} = out[i + {k}];", "    ")).replace(
        "@MAC@", _unrolled("a{k} = a{k} + c[{k}] * xj;", "      ")).replace(
        "@ADD@", _unrolled("a{k} = a{k} + c[{k}];", "      ")).replace(
        "@STORE@", _unrolled("out[i + {k}] = a{k};", "    "))


_PRELUDE = _fill(_PRELUDE)
_ACTIVE_KERNEL = _fill(_ACTIVE_KERNEL)


def _write(out: Path, files: dict[str, str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = out / name
        tmp = path.with_name(f".{name}.tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths


__all__ = ["sequential_affine"]
