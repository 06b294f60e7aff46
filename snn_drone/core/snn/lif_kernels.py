"""Native CPU loops for the fused LIF sequence (lif.py), built on first use with the system C compiler.

Why: on CPU a LIF layer's time loop in torch ops costs ~5 small kernel launches per time step and
~10 full passes over [T, B, N] in the backward; a C loop per batch row keeps a row's state in
cache and does the whole recurrence in one pass (bench/snn_bptt.py measures the difference).

What: two loops, float32 and float64, that compute exactly what lif.py's torch path computes, in the
same floating-point order as snntorch (compiled with -ffp-contract=off, no fast-math):
- forward: U[t] = (beta U[t-1] + I[t]) - r[t] U_thr, s[t] = U[t] > U_thr, r[t] = s[t-1];
- backward: a[t] = dL/ds[t] / (k|U[t] - U_thr| + 1)^2, g[t] = beta g[t+1] + a[t],
  dbeta += g[t] U[t-1], dU_thr -= a[t] + g[t] r[t] (accumulated in double).
Batch rows are split over ``torch.get_num_threads()`` Python threads (ctypes releases the GIL).

The shared library is cached under $SNN_DRONE_CACHE_DIR or ~/.cache/snn_drone, keyed by a hash of
source, flags, compiler and CPU. Without a compiler (or with SNN_DRONE_NATIVE_LIF=0) ``available()``
is False and lif.py uses its torch path, which also serves CUDA and other dtypes.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

_HEADER = "#include <math.h>\n#include <stdint.h>\n#include <stdlib.h>\n"

# Written once with REAL/FABS/_SUF, instantiated for float (f32) and double (f64).
_TEMPLATE = r"""

/* One batch row, one time step. u, s are fresh rows; nothing aliases. */
static void forward_row_SUF(const REAL* restrict prev, const REAL* restrict cur,
                            const REAL* restrict reset, const REAL* restrict beta,
                            const REAL* restrict thr, REAL* restrict u, REAL* restrict s,
                            int64_t n_neurons) {
    for (int64_t n = 0; n < n_neurons; ++n) {
        REAL v = beta[n] * prev[n];
        v = v + cur[n];
        v = v - reset[n] * thr[n];
        u[n] = v;
        s[n] = v > thr[n] ? (REAL)1 : (REAL)0;
    }
}

static void backward_row_SUF(const REAL* restrict u, const REAL* restrict grad_s,
                             const REAL* restrict u_prev, const REAL* restrict g_next, const REAL* restrict decay,
                             const REAL* restrict thr, REAL slope, REAL* restrict g,
                             double* restrict dbeta, double* restrict dthr, int64_t n_neurons) {
    for (int64_t n = 0; n < n_neurons; ++n) {
        REAL d = slope * FABS(u[n] - thr[n]) + (REAL)1;
        REAL a = grad_s[n] / (d * d);
        REAL gn = decay[n] * g_next[n];
        gn = gn + a;
        g[n] = gn;
        dbeta[n] += (double)gn * (double)u_prev[n];
        /* reset r[t] = H(U[t-1] - U_thr), recomputed rather than read back */
        dthr[n] -= (double)a + (u_prev[n] > thr[n] ? (double)gn : 0.0);
    }
}

/* Rows [b0, b1) of a [T, B, N] layer. */
void lif_forward_SUF(const REAL* cur, const REAL* mem0, const REAL* beta, const REAL* thr,
                     REAL* mem_trace, REAL* spikes, int64_t T, int64_t B, int64_t N,
                     int64_t b0, int64_t b1) {
    REAL* reset0 = (REAL*)malloc(sizeof(REAL) * (size_t)N);
    for (int64_t b = b0; b < b1; ++b) {
        const REAL* prev = mem0 + b * N;
        for (int64_t n = 0; n < N; ++n) reset0[n] = prev[n] > thr[n] ? (REAL)1 : (REAL)0;
        const REAL* reset = reset0;
        for (int64_t t = 0; t < T; ++t) {
            const int64_t off = (t * B + b) * N;
            forward_row_SUF(prev, cur + off, reset, beta, thr, mem_trace + off, spikes + off, N);
            prev = mem_trace + off;
            reset = spikes + off;
        }
    }
    free(reset0);
}

/* grad_last, grad_mem0: [B, N]; dbeta, dthr: [N] sums over rows [b0, b1) (double). */
void lif_backward_SUF(const REAL* mem_trace, const REAL* mem0,
                      const REAL* grad_spikes, const REAL* grad_last, const REAL* beta,
                      const REAL* thr, REAL slope, REAL* grad_cur, REAL* grad_mem0,
                      double* dbeta, double* dthr, int64_t T, int64_t B, int64_t N,
                      int64_t b0, int64_t b1) {
    REAL* ones = (REAL*)malloc(sizeof(REAL) * (size_t)N);
    for (int64_t n = 0; n < N; ++n) ones[n] = (REAL)1;
    for (int64_t b = b0; b < b1; ++b) {
        const REAL* m0 = mem0 + b * N;
        const REAL* next = grad_last + b * N;
        for (int64_t t = T - 1; t >= 0; --t) {
            const int64_t off = (t * B + b) * N;
            const REAL* u_prev = t > 0 ? mem_trace + off - B * N : m0;
            /* dL/dU[T-1] takes the last-state gradient as is; earlier steps get beta * g[t+1]. */
            backward_row_SUF(mem_trace + off, grad_spikes + off, u_prev, next,
                             t == T - 1 ? ones : beta, thr, slope,
                             grad_cur + off, dbeta, dthr, N);
            next = grad_cur + off;
        }
        REAL* gm = grad_mem0 + b * N;
        for (int64_t n = 0; n < N; ++n) gm[n] = beta[n] * next[n];
    }
    free(ones);
}
"""

_SOURCE = _HEADER + "".join(
    _TEMPLATE.replace("REAL", real).replace("FABS", fabs).replace("_SUF", suffix)
    for real, fabs, suffix in (("float", "fabsf", "_f32"), ("double", "fabs", "_f64")))

_FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared"]
_lock = threading.Lock()
_lib = None
_tried = False
_pool: ThreadPoolExecutor | None = None
_enabled = os.environ.get("SNN_DRONE_NATIVE_LIF", "1") != "0"


def _cache_dir() -> Path:
    env = os.environ.get("SNN_DRONE_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "snn_drone"
    return base


def _cpu_id() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor()


def _build() -> ctypes.CDLL | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    key = hashlib.sha256("\n".join([_SOURCE, " ".join(_FLAGS), cc, platform.machine(), _cpu_id()])
                         .encode()).hexdigest()[:16]
    out = _cache_dir() / f"lif_kernels_{key}.so"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            src = Path(tmp) / "lif_kernels.c"
            src.write_text(_SOURCE)
            so = Path(tmp) / out.name
            res = subprocess.run([cc, *_FLAGS, str(src), "-o", str(so), "-lm"],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                warnings.warn(f"snn_drone: building the native LIF loops with {cc} failed, using the "
                              f"torch path (slower on CPU): {res.stderr.strip()[:500]}")
                return None
            os.replace(so, out)  # atomic: concurrent builders each write their own tmp dir
    lib = ctypes.CDLL(str(out))
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    for suffix, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
        getattr(lib, f"lif_forward_{suffix}").argtypes = [vp] * 6 + [i64] * 5
        getattr(lib, f"lif_backward_{suffix}").argtypes = [vp] * 6 + [real] + [vp] * 4 + [i64] * 5
    return lib


def _library() -> ctypes.CDLL | None:
    global _lib, _tried
    if not _tried:
        with _lock:
            if not _tried:
                try:
                    _lib = _build()
                except OSError as e:  # unwritable cache, missing loader, ...
                    warnings.warn(f"snn_drone: native LIF loops unavailable ({e}); using the torch path")
                    _lib = None
                _tried = True
    return _lib


def set_enabled(flag: bool) -> bool:
    """Turn the native loops on/off (tests compare both paths); returns the previous setting."""
    global _enabled
    old, _enabled = _enabled, bool(flag)
    return old


def usable(*tensors: Tensor) -> bool:
    """True when the native loops can run on these tensors (CPU, float32/float64, contiguous)."""
    if not _enabled:
        return False
    t0 = tensors[0]
    if t0.device.type != "cpu" or t0.dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device != t0.device or t.dtype != t0.dtype or not t.is_contiguous() for t in tensors):
        return False
    return _library() is not None


def _row_blocks(batch: int) -> list[tuple[int, int]]:
    """Split ``batch`` rows into one contiguous block per torch thread."""
    workers = max(1, min(torch.get_num_threads(), batch))
    bounds = [batch * i // workers for i in range(workers + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _parallel(fn, blocks: list[tuple[int, int]]) -> None:
    """Run ``fn(i, b0, b1)`` for every row block: the first in this thread, the others on the pool."""
    global _pool
    if len(blocks) > 1 and (_pool is None or _pool._max_workers < len(blocks) - 1):
        _pool = ThreadPoolExecutor(max_workers=len(blocks) - 1, thread_name_prefix="snn_drone_lif")
    futures = [_pool.submit(fn, i, b0, b1) for i, (b0, b1) in enumerate(blocks) if i > 0]
    fn(0, *blocks[0])
    for f in futures:
        f.result()


def _ptr(t: Tensor) -> int:
    return t.data_ptr()


def forward(current: Tensor, mem0: Tensor, beta: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor]:
    """Membrane trace and spikes [T, B, N] of one layer (see module docstring)."""
    T, B, N = current.shape
    mem_trace = torch.empty_like(current)
    spikes = torch.empty_like(current)
    fn = getattr(_library(), "lif_forward_" + ("f32" if current.dtype == torch.float32 else "f64"))
    args = [_ptr(t) for t in (current, mem0, beta, threshold, mem_trace, spikes)] + [T, B, N]
    _parallel(lambda i, b0, b1: fn(*args, b0, b1), _row_blocks(B))
    return mem_trace, spikes


def backward(mem_trace: Tensor, mem0: Tensor, grad_spikes: Tensor, grad_last: Tensor,
             beta: Tensor, threshold: Tensor, slope: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dL/dI [T, B, N], dL/dU0 [B, N], dL/dbeta [N], dL/dU_thr [N]) of one layer."""
    T, B, N = mem_trace.shape
    grad_cur = torch.empty_like(mem_trace)
    grad_mem0 = torch.empty_like(mem0)
    fn = getattr(_library(), "lif_backward_" + ("f32" if mem_trace.dtype == torch.float32 else "f64"))
    blocks = _row_blocks(B)
    partial = torch.zeros(2, len(blocks), N, dtype=torch.float64)  # per block: dbeta, dthr
    head = [_ptr(t) for t in (mem_trace, mem0, grad_spikes, grad_last, beta, threshold)]

    def rows(i, b0, b1):
        fn(*head, slope, _ptr(grad_cur), _ptr(grad_mem0), _ptr(partial[0, i]), _ptr(partial[1, i]),
           T, B, N, b0, b1)

    _parallel(rows, blocks)
    sums = partial.sum(1).to(mem_trace.dtype)
    return grad_cur, grad_mem0, sums[0], sums[1]
