"""The spike nonlinearity and its surrogate gradient (paper Eq. 5).

Forward: the Heaviside step, ``spike = 1 if x > 0 else 0`` (x = membrane - threshold), exactly
snntorch's ``(input_ > 0)``.
Backward: the derivative of the fast sigmoid of ``k x`` normalised by 1/k,

    dS/dx = 1 / (1 + k |x|)^2,

with the slope ``k`` passed as a tensor on every call. The slope is data, not a closure (norse
style): an adaptive schedule changes it between updates without rebuilding anything. The value used
by a backward pass is the value at the time of the forward pass that built the graph.
"""
from __future__ import annotations

import torch
from torch import Tensor


def fast_sigmoid_grad(x: Tensor, slope: Tensor) -> Tensor:
    """dS/dx = 1 / (1 + k|x|)^2, computed as snntorch computes it (same operation order)."""
    return 1.0 / (slope * torch.abs(x) + 1.0) ** 2


class _FastSigmoidSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, slope: Tensor) -> Tensor:
        # A private copy of the slope: set_slope() may change the caller's tensor in place before
        # this graph's backward runs; the graph keeps the slope it was built with.
        ctx.save_for_backward(x, slope.detach().clone())
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, slope = ctx.saved_tensors
        # Same expression as snntorch.surrogate.FastSigmoid.backward, so gradients match it bitwise.
        return grad_output / (slope * torch.abs(x) + 1.0) ** 2, None


def spike(x: Tensor, slope: Tensor) -> Tensor:
    """Heaviside forward (x > 0 -> 1.0), fast-sigmoid surrogate backward with slope ``k``.

    ``slope`` is a tensor (0-dim or broadcastable to ``x``). Without autograd (``torch.no_grad``)
    this is a plain comparison, with no graph bookkeeping.
    """
    if not torch.is_tensor(slope):
        raise TypeError(f"slope must be a tensor (data, not a constant), got {type(slope).__name__}")
    if torch.is_grad_enabled() and x.requires_grad:
        return _FastSigmoidSpike.apply(x, slope)
    return (x > 0).to(x.dtype)
