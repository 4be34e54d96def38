"""The explicit Runge-Kutta step, written once: fixed-step and adaptive methods, eager and compiled.

Arithmetic is torchdiffeq's, operation for operation, so that values agree to the last bit where its
kernels allow and step control (which divides an error estimate that is a small difference of stages by
the tolerance) takes the same decisions, also in float32: a linear combination y + dt sum_j w_j k_j is
formed as the products k_j * (w_j dt) (coefficients rounded to the state's dtype first), summed as
`torch.sum` over the stacked stages, then added to y. Sums of up to four stages are written as the
sequential additions `torch.sum` performs for them (no stack); zero weights are skipped there.

`dt` is a Python float eagerly, or a 0-d tensor (under options['compile'], so a graph is not specialised
on its value, or when gradients with respect to t are taken); the same code serves both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Union

import torch

from ._tableau import ButcherTableau

Scalar = Union[float, torch.Tensor]
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_SEQUENTIAL = 4  # torch.sum over a last dimension of at most this size adds left to right


def axpy(base: torch.Tensor, k: torch.Tensor, a: Scalar) -> torch.Tensor:
    """base + a k as a new tensor (one fused op)."""
    if isinstance(a, torch.Tensor):
        return torch.addcmul(base, k, a)
    return torch.add(base, k, alpha=a)


def axpy_(out: torch.Tensor, k: torch.Tensor, a: Scalar) -> torch.Tensor:
    """out += a k, in place."""
    if isinstance(a, torch.Tensor):
        return out.addcmul_(k, a)
    return out.add_(k, alpha=a)


@functools.lru_cache(maxsize=256)
def _weights(weights: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(weights, dtype=dtype, device=device)


def _coefficients(weights: tuple[float, ...], dt: Scalar, like: torch.Tensor) -> torch.Tensor:
    """w * dt with w rounded to the state's dtype first (a tensor of len(weights))."""
    if torch.compiler.is_compiling():  # a constant of the graph
        w = torch.tensor(weights, dtype=like.dtype, device=like.device)
    else:
        w = _weights(weights, like.dtype, like.device)
    return w * dt


class Stages(list[torch.Tensor]):
    """The stages k_0, k_1, ... of one step. For a method with more than four stages and without autograd
    (forward-only and adjoint solves) each is also copied into a column of one [..., s] tensor, torchdiffeq's
    layout, so that a sum of more than four multiplies a view of it instead of first stacking copies (an
    interleaving copy, the costliest op of a high-order step). With autograd, or under torch.compile (which
    fuses the stack), there is no such tensor; short sums always read the stages themselves."""

    def __init__(self, f0: torch.Tensor, stages: int) -> None:
        super().__init__()
        self.buffer: torch.Tensor | None = None
        if stages > _SEQUENTIAL and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
            self.buffer = f0.new_empty((*f0.shape, stages))
        self.append(f0)

    def append(self, k: torch.Tensor) -> None:
        if self.buffer is not None:
            self.buffer[..., len(self)].copy_(k)
        super().append(k)


def weighted_sum(ks: Sequence[torch.Tensor], weights: tuple[float, ...], dt: Scalar) -> torch.Tensor:
    """dt sum_j weights[j] ks[j] (over the first len(weights) stages), as torch.sum of the products."""
    like = ks[0]
    coefficients = _coefficients(weights, dt, like)
    buffer = ks.buffer if isinstance(ks, Stages) else None
    if buffer is not None and len(weights) > _SEQUENTIAL:
        return (buffer[..., : len(weights)] * coefficients).sum(dim=-1)
    if len(weights) <= _SEQUENTIAL:
        terms = [ks[j] * coefficients[j] for j, w in enumerate(weights) if w != 0.0]
        if not terms:
            return torch.zeros_like(like)
        out = terms[0]
        for term in terms[1:]:
            out = out + term
        return out
    return (torch.stack(list(ks[: len(weights)]), dim=-1) * coefficients).sum(dim=-1)


def combine(base: torch.Tensor, ks: Sequence[torch.Tensor], weights: tuple[float, ...], dt: Scalar) -> torch.Tensor:
    """base + dt sum_j weights[j] ks[j] (torchdiffeq's `y0 + torch.sum(k * (w * dt), dim=-1)`)."""
    return base + weighted_sum(ks, weights, dt)


def rk_step(
    func: Field, tab: ButcherTableau, times: Sequence[torch.Tensor], dt: Scalar, y: torch.Tensor, f0: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One explicit RK step from (times[0], y) with f0 = func(times[0], y): (y1, the stages [f0, k1, ...])."""
    ks = Stages(f0, tab.stages)
    y_stage = y
    for j in range(1, tab.stages):
        y_stage = combine(y, ks, tab.a[j], dt)
        ks.append(func(times[j], y_stage))
    y1 = y_stage if tab.last_is_solution else combine(y, ks, tab.b, dt)
    return y1, ks
