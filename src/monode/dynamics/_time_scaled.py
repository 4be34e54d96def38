"""Per-sample integration intervals in one batched solve: the papers' time rescaling as a field wrapper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from ..solvers import ClosedFormField, ParametrizedField
from ._base import State

__all__ = ["TimeScaledField", "ClosedFormTimeScaledField", "time_scaled"]


class TimeScaledField(nn.Module, ParametrizedField):
    """Every sample integrated over its own interval length, in one batched solve.

    Sample i must advance by `dt[i]`. Integrating over a span of length L instead, with
    dy_i/dtau = (dt[i] / L) * F(tau, y_i), reaches the same end state (substitute s = dt[i] tau / L).
    The inner field sees the span's time tau, not each sample's physical time, as in the papers'
    ODE-RNNs; for autonomous fields (f ignores t) the result is exact. A sample with dt[i] = 0 stays.
    Use `time_scaled` to get the closed-form variant where the inner field has one.
    """

    def __init__(
        self, field: Callable[[torch.Tensor, Any], Any], dt: torch.Tensor, ndim: int, span_length: float = 1.0
    ) -> None:
        super().__init__()
        if dt.ndim != 1:
            raise ValueError(f"dt must be a 1-D tensor of per-sample intervals, got shape {tuple(dt.shape)}")
        self.field = field
        self.scale = (dt / span_length).reshape(-1, *([1] * (ndim - 1)))

    def forward(self, t: torch.Tensor, state: State) -> State:
        out = self.field(t, state)
        if isinstance(out, torch.Tensor):
            return out * self.scale
        return tuple(d * self.scale for d in out)

    def _inner_params(self) -> tuple[torch.Tensor, ...]:
        if isinstance(self.field, ParametrizedField):
            return self.field.adjoint_params()
        return tuple(self.field.parameters()) if isinstance(self.field, nn.Module) else ()

    def adjoint_params(self) -> tuple[torch.Tensor, ...]:
        return self._inner_params() + ((self.scale,) if self.scale.requires_grad else ())

    def gradient_scales(self) -> tuple[float, ...]:
        """The inner field's (1 for each tensor if it has none), then 1 for the scale."""
        if isinstance(self.field, ParametrizedField):
            inner = tuple(self.field.gradient_scales())
        else:
            inner = (1.0,) * len(self._inner_params())
        return inner + (1.0,) * int(self.scale.requires_grad)


class ClosedFormTimeScaledField(TimeScaledField, ClosedFormField):
    """`TimeScaledField` over a `ClosedFormField` with constant intervals: d(s F)/dy = s dF/dy."""

    def vjp(self, t: torch.Tensor, state: State, cotangent: State) -> tuple[State, State, tuple[torch.Tensor, ...]]:
        """The inner field's `vjp` with cotangent c * scale, its output scaled."""
        scale, inner = self.scale, cast(ClosedFormField, self.field)  # `time_scaled` checked it once
        if isinstance(cotangent, torch.Tensor):
            out, grad_state, grads = inner.vjp(t, state, cotangent * scale)
            return out * scale, grad_state, grads
        out, grad_state, grads = inner.vjp(t, state, tuple(c * scale for c in cotangent))
        return tuple(d * scale for d in out), grad_state, grads


def time_scaled(
    field: Callable[[torch.Tensor, Any], Any], dt: torch.Tensor, ndim: int, span_length: float = 1.0
) -> TimeScaledField:
    """`field` advancing sample i by dt[i] over a span of length `span_length` (see `TimeScaledField`)."""
    closed_form = isinstance(field, ClosedFormField) and not dt.requires_grad
    return (ClosedFormTimeScaledField if closed_form else TimeScaledField)(field, dt, ndim, span_length)
