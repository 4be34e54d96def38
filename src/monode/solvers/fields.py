"""What the adjoint may ask of a vector field beyond `func(t, y)`: a typed contract, not attribute probing.

`odeint_adjoint(func, ...)` treats `func` by what it declares:

* any callable: gradients for `adjoint_params` (default `func.parameters()`) through autograd, as in
  torchdiffeq;
* a `ParametrizedField`: it names the tensors its right-hand side reads (`adjoint_params`, the default
  set to differentiate) and, per tensor, how much larger its gradient is than the gradient of the raw
  parameter behind it (`gradient_scales`), so that the adjoint's error control sees the raw gradients;
* a `ClosedFormField`: it also gives its vector-Jacobian product in closed form (`vjp`), and the
  adjoint integrates without autograd.

`monode.dynamics` fields bound to their coefficients implement these (`VectorField.bind`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["ParametrizedField", "ClosedFormField"]


@runtime_checkable
class ParametrizedField(Protocol):
    """A field that says which tensors it reads, and their gradient scales."""

    def __call__(self, t: torch.Tensor, y: Any) -> Any: ...

    def adjoint_params(self) -> tuple[torch.Tensor, ...]:
        """Every tensor the right-hand side reads that a gradient may flow to, in a fixed order."""
        ...

    def gradient_scales(self) -> tuple[float, ...]:
        """Per `adjoint_params()` tensor, |d tensor / d raw parameter| (1.0 for a parameter read as it is)."""
        ...


@runtime_checkable
class ClosedFormField(ParametrizedField, Protocol):
    """A `ParametrizedField` that computes its vector-Jacobian product without autograd."""

    def vjp(self, t: torch.Tensor, y: Any, cotangent: Any) -> tuple[Any, Any, tuple[torch.Tensor, ...]]:
        """(f(t, y), c . df/dy, (c . df/dp for p in `adjoint_params()`)) for the cotangent c shaped like y."""
        ...
