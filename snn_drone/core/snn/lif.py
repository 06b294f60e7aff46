"""Leaky integrate-and-fire neurons with soft (subtract) reset, paper Eq. 4.

    U[t+1] = beta U[t] + I[t+1] - r[t+1] U_thr,   r[t+1] = H(U[t] - U_thr)   (reset, no gradient)
    s[t+1] = H(U[t+1] - U_thr)                                              (spike, surrogate grad)

in exactly snntorch ``Leaky(reset_mechanism="subtract")``'s order: the reset is computed from the
previous membrane with the current threshold and carries no gradient through ``H`` (only through
``U_thr``); beta is clamped to [0, 1] in the forward pass (a clamped beta gets no gradient beyond the
bounds, as in snntorch). Decay ``beta`` and threshold ``U_thr`` are learnable, one per neuron.

State is explicit (norse style): a ``LIFState`` NamedTuple that the caller owns and passes in.
Two paths compute the same numbers:
- ``lif_step``: one time step, plain autograd through ``surrogate.spike`` (control, the reference);
- ``lif_sequence``: all T steps of a layer in one autograd Function. Its forward runs the time loop
  without building a graph and keeps the membrane trace and spikes; its backward runs the
  reverse-time recurrence dL/dU[t] = dL/ds[t] * sg(U[t]) + beta dL/dU[t+1] by hand. The loops run
  in C on CPU float32/float64 (lif_kernels.py, same operation order) and in torch ops elsewhere
  (CUDA, other dtypes, no compiler). Both are tested against ``lif_step`` and snntorch in
  test/test_spiking_actor.py; bench/snn_bptt.py measures them.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from . import lif_kernels
from .surrogate import spike


class LIFState(NamedTuple):
    """Hidden state of one LIF layer."""
    membrane: Tensor  # [B, N] membrane potential U (threshold units are the layer's U_thr)


def lif_step(current: Tensor, state: LIFState, beta: Tensor, threshold: Tensor,
             slope: Tensor) -> tuple[Tensor, LIFState]:
    """One LIF time step: ``current`` [B, N] -> (spikes [B, N], new state). ``beta`` is clamped here."""
    mem = state.membrane
    reset = (mem > threshold).to(mem.dtype)  # r = H(U[t] - U_thr), detached like snntorch's reset
    new = beta.clamp(0, 1) * mem + current - reset * threshold
    return spike(new - threshold, slope), LIFState(new)


class _LIFSequence(torch.autograd.Function):
    """Spikes [T, B, N] and last membrane of one LIF layer driven by currents [T, B, N]."""

    @staticmethod
    def forward(ctx, current: Tensor, mem0: Tensor, beta: Tensor, threshold: Tensor, slope: Tensor):
        steps = current.shape[0]
        reset0 = (mem0 > threshold).to(current.dtype)
        mem0 = mem0.contiguous()
        if steps and lif_kernels.usable(current, mem0, beta, threshold):
            mem_trace, spikes = lif_kernels.forward(current, mem0, beta, threshold)
        else:
            mem_trace, spikes = _forward_torch(current, mem0, reset0, beta, threshold)
        ctx.save_for_backward(mem_trace, spikes, mem0, reset0, beta, threshold, slope.detach().clone())
        last = mem_trace[-1].clone() if steps else mem0.clone()
        return spikes, last

    @staticmethod
    def backward(ctx, grad_spikes: Tensor, grad_last: Tensor):
        mem_trace, spikes, mem0, reset0, beta, threshold, slope = ctx.saved_tensors
        steps = mem_trace.shape[0]
        need_current, need_mem0, need_beta, need_threshold, _ = ctx.needs_input_grad
        if steps == 0:
            return (torch.zeros_like(mem_trace), grad_last if need_mem0 else None,
                    torch.zeros_like(beta) if need_beta else None,
                    torch.zeros_like(threshold) if need_threshold else None, None)
        if lif_kernels.usable(mem_trace, spikes, mem0, beta, threshold):
            grad_cur, grad_mem0, grad_beta, grad_threshold = lif_kernels.backward(
                mem_trace, mem0, grad_spikes.contiguous(), grad_last.contiguous(), beta,
                threshold, float(slope))
        else:
            grad_cur, grad_mem0, grad_beta, grad_threshold = _backward_torch(
                mem_trace, spikes, mem0, reset0, grad_spikes, grad_last, beta, threshold, slope)
        return (grad_cur if need_current else None, grad_mem0 if need_mem0 else None,
                grad_beta if need_beta else None, grad_threshold if need_threshold else None, None)


def _forward_torch(current, mem0, reset0, beta, threshold):
    """The forward time loop in torch ops (any device, any float dtype)."""
    mem_trace = torch.empty_like(current)
    spikes = torch.empty_like(current)
    mem, reset = mem0, reset0
    for t in range(current.shape[0]):
        u = mem_trace[t]
        # Same operation order as snntorch (beta*U + I, then - r*U_thr): identical spikes.
        torch.mul(beta, mem, out=u)
        u.add_(current[t])
        u.addcmul_(reset, threshold, value=-1)  # r in {0, 1}: exactly u - r*U_thr
        torch.gt(u, threshold, out=spikes[t])
        mem, reset = u, spikes[t]
    return mem_trace, spikes


def _backward_torch(mem_trace, spikes, mem0, reset0, grad_spikes, grad_last, beta, threshold, slope):
    """The reverse-time recurrence in torch ops: (dL/dI, dL/dU0, dL/dbeta, dL/dU_thr)."""
    steps, n = mem_trace.shape[0], beta.shape[-1]
    # a[t] = dL/ds[t] * dS/dx at x = U[t] - U_thr, in snntorch's expression.
    a = torch.sub(mem_trace, threshold)
    a.abs_().mul_(slope).add_(1.0).square_()
    torch.div(grad_spikes, a, out=a)
    # Reverse time: g[t] = beta g[t+1] + a[t]; g[T-1] = dL/dU[T-1] from the returned state + a[T-1].
    g = torch.empty_like(mem_trace)
    torch.add(grad_last, a[-1], out=g[-1])
    nxt = g[-1]
    for t in range(steps - 2, -1, -1):
        torch.mul(beta, nxt, out=g[t])
        g[t].add_(a[t])
        nxt = g[t]
    grad_mem0 = beta * g[0]
    # dL/dbeta = sum_t g[t] U[t-1]  (U[-1] = the initial membrane)
    grad_beta = (g[0] * mem0).reshape(-1, n).sum(0)
    # dL/dU_thr = -sum_t a[t] - sum_t g[t] r[t]  (spike term and reset term, r[t] = s[t-1])
    grad_threshold = -a.reshape(-1, n).sum(0) - (g[0] * reset0).reshape(-1, n).sum(0)
    if steps > 1:
        grad_beta += (g[1:] * mem_trace[:-1]).reshape(-1, n).sum(0)
        grad_threshold -= (g[1:] * spikes[:-1]).reshape(-1, n).sum(0)
    return g, grad_mem0, grad_beta, grad_threshold


def lif_sequence(current: Tensor, state: LIFState, beta: Tensor, threshold: Tensor,
                 slope: Tensor) -> tuple[Tensor, LIFState]:
    """All T steps of one layer: ``current`` [T, B, N] -> (spikes [T, B, N], state after step T).

    Fused path (one autograd node per layer); numerically the same as looping ``lif_step``.
    """
    spikes, last = _LIFSequence.apply(current, state.membrane, beta.clamp(0, 1), threshold, slope)
    return spikes, LIFState(last)


def lif_sequence_reference(current: Tensor, state: LIFState, beta: Tensor, threshold: Tensor,
                           slope: Tensor) -> tuple[Tensor, LIFState]:
    """``lif_sequence`` as a plain loop of ``lif_step`` with autograd (the reference for tests)."""
    out = []
    for t in range(current.shape[0]):
        s, state = lif_step(current[t], state, beta, threshold, slope)
        out.append(s)
    spikes = torch.stack(out) if out else current.new_zeros(current.shape)
    return spikes, state


class LIF(nn.Module):
    """A layer of ``size`` LIF neurons with learnable per-neuron decay and threshold.

    Holds parameters only; state and slope are passed in on every call.
    """

    def __init__(self, size: int, beta: Tensor, threshold: Tensor):
        super().__init__()
        if beta.shape != (size,) or threshold.shape != (size,):
            raise ValueError(f"LIF layer of {size} neurons needs beta and threshold of shape [{size}], "
                             f"got {list(beta.shape)} and {list(threshold.shape)}")
        self.size = size
        self.beta = nn.Parameter(beta.clone())            # decay per time step, clamped to [0, 1] in use
        self.threshold = nn.Parameter(threshold.clone())  # firing threshold U_thr

    def init_state(self, batch: int, device=None, dtype=None) -> LIFState:
        return LIFState(torch.zeros(batch, self.size, device=device or self.beta.device,
                                    dtype=dtype or self.beta.dtype))

    def step(self, current: Tensor, state: LIFState, slope: Tensor) -> tuple[Tensor, LIFState]:
        return lif_step(current, state, self.beta, self.threshold, slope)

    def forward(self, current: Tensor, state: LIFState, slope: Tensor,
                fused: bool = True) -> tuple[Tensor, LIFState]:
        """Sequence forward: ``current`` [T, B, N] -> (spikes [T, B, N], last state)."""
        fn = lif_sequence if fused else lif_sequence_reference
        return fn(current, state, self.beta, self.threshold, slope)

    def extra_repr(self) -> str:
        return f"size={self.size}, reset=subtract"
