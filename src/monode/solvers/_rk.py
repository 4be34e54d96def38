"""The explicit Runge-Kutta step, written once: fixed-step and adaptive methods, eager and compiled.

A step gets its stage times as one tensor or tuple `times` (times[j] = t + c_j dt, made by the caller
in one op) and `dt`: eagerly a Python float, so a term y + (w dt) k is one fused op (`add` with
`alpha`); under `options['compile']` a 0-d tensor (so a graph is not specialised on its value), and the
same code traces to tensor expressions that the compiler fuses. Only `axpy` / `axpy_` look at which of
the two they got.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

import torch

from ._inputs import time_tensor
from ._tableau import ButcherTableau, Terms

Scalar = Union[float, torch.Tensor]
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def axpy(base: torch.Tensor, k: torch.Tensor, a: Scalar) -> torch.Tensor:
    """base + a k as a new tensor."""
    if isinstance(a, torch.Tensor):
        return torch.addcmul(base, k, a)
    return torch.add(base, k, alpha=a)


def axpy_(out: torch.Tensor, k: torch.Tensor, a: Scalar) -> torch.Tensor:
    """out += a k, in place."""
    if isinstance(a, torch.Tensor):
        return out.addcmul_(k, a)
    return out.add_(k, alpha=a)


def combine(base: torch.Tensor, ks: list[torch.Tensor], terms: Terms, dt: Scalar) -> torch.Tensor:
    """base + dt sum_j w_j ks[j] over `terms`: a new tensor (base itself when there are none)."""
    if not terms:
        return base
    (j, w), *rest = terms
    out = axpy(base, ks[j], w * dt)
    for j, w in rest:
        out = axpy_(out, ks[j], w * dt)
    return out


def weighted_sum(ks: list[torch.Tensor], terms: Terms, dt: Scalar) -> torch.Tensor:
    """dt sum_j w_j ks[j] over the (non-empty) `terms`."""
    (j, w), *rest = terms
    out = ks[j] * (w * dt)
    for j, w in rest:
        out = axpy_(out, ks[j], w * dt)
    return out


def stage_times(t: float, dt: float, nodes: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """[t + c dt for c in nodes], one tensor of the state's dtype on its device."""
    return time_tensor([t + c * dt for c in nodes], like)


def rk_step(
    func: Field, tab: ButcherTableau, times: Sequence[torch.Tensor], dt: Scalar, y: torch.Tensor, f0: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One explicit RK step from (times[0], y) with f0 = func(times[0], y): (y1, the stages [f0, k1, ...])."""
    terms = tab.terms
    ks = [f0]
    y_stage = y
    for j in range(1, tab.stages):
        y_stage = combine(y, ks, terms.stages[j], dt)
        ks.append(func(times[j], y_stage))
    y1 = y_stage if terms.last_is_solution else combine(y, ks, terms.solution, dt)
    return y1, ks
