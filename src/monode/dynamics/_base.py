"""The `VectorField` base every model family derives from, and the field bound to its coefficients.

A model family is a `VectorField` subclass whose `rhs` is its system of equations. The rest of the
class says how the system meets the outside world, so that layers and tasks never branch on a name:

* `state_size`: 1 (the solver state is a tensor) or 2, 3 (a tuple such as (h, m) or (h, m, v));
* `t_span`: the default integration interval ([0, 1]; Nesterov's [1, 2]);
* `f_channels(dim)`: what the f network maps, (in, out) channels, for a model of dimension dim;
* `encode(variables, t)` / `decode(state, t)`: the model's variables (h, m, ...), which initial-state
  networks produce and ODE-RNN cells update, to and from the solver state (they differ only where
  the papers change variables, e.g. Nesterov's x = h / k(t)); `readout` is the decoded h;
* `coefficients()`: the scalar parameters turned into the values the equations use (gamma =
  sigmoid(gamma~), xi = softplus(xi~), ...), as a named tuple. Layers compute them once per solve and
  integrate `field.bind(coefficients)`.

A family with a closed-form vector-Jacobian product implements `rhs_forward` / `rhs_backward` beside
`rhs`; its bound field is then a `monode.solvers.ClosedFormField` and the adjoint skips autograd.
`field(t, state)` also works on its own, as any torchdiffeq field does (it then computes the
coefficients on every call, and the adjoint differentiates `field.parameters()` through autograd).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol, Union, cast, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from ..solvers import ClosedFormField, ParametrizedField
from ._time_free import as_field_network

__all__ = [
    "VectorField",
    "BoundField",
    "ClosedFormBoundField",
    "State",
    "NoCoefficients",
    "register_scalar",
    "register_xi",
    "dot",
]

State = Union[torch.Tensor, tuple[torch.Tensor, ...]]
Coefficients = tuple[torch.Tensor | None, ...]
"""A family's named tuple of coefficient tensors (None for an absent term)."""


@runtime_checkable
class ClosedFormNetwork(Protocol):
    """An f network with a closed-form VJP (`MLPField`): what `rhs_forward` / `rhs_backward` call."""

    def forward_saved(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(f(t, x), what `vjp` needs)."""
        ...

    def vjp(self, saved: list[torch.Tensor], grad: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(grad . df/dx, [grad . df/dp for p in parameters()])."""
        ...

    def closed_form(self) -> bool:
        """Whether `forward_saved` / `vjp` apply."""
        ...


class NoCoefficients(NamedTuple):
    """The coefficients of a family without scalar parameters (NODE, SONODE)."""


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b) as a 0-d tensor: the gradient of a scalar coefficient multiplying b."""
    return torch.dot(a.reshape(-1), b.reshape(-1))


def register_scalar(module: nn.Module, name: str, value: float, trainable: bool) -> None:
    """A scalar on `module`: an nn.Parameter if trainable, else a buffer (saved, moved, never trained)."""
    tensor = torch.tensor(float(value))
    if trainable:
        module.register_parameter(name, nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)


def register_xi(module: nn.Module, xi: float, xi_logit: float | None) -> None:
    """The restoring coefficient xi >= 0 of the -xi*h terms: fixed `xi`, or learnable softplus(`xi_logit`).

    Fixed xi = 0 registers nothing and the term is skipped; `VectorField.xi_value()` gives the tensor or None.
    """
    if xi_logit is not None and xi != 0.0:
        raise ValueError(f"give either a fixed xi or a learnable xi_logit, got xi={xi!r} and xi_logit={xi_logit!r}")
    if not (isinstance(xi, (int, float)) and xi >= 0 and math.isfinite(xi)):
        raise ValueError(f"xi must be a finite float >= 0, got {xi!r}")
    if xi_logit is not None:
        register_scalar(module, "xi_logit", xi_logit, trainable=True)
    elif xi != 0.0:
        register_scalar(module, "xi", xi, trainable=False)


def _graph_leaves(tensors: Coefficients) -> set[int]:
    """The ids of the leaf tensors (parameters) that `tensors` were computed from."""
    ids = {id(c) for c in tensors if c is not None and c.grad_fn is None}
    stack: list[Any] = [c.grad_fn for c in tensors if c is not None and c.grad_fn is not None]
    seen: set[Any] = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None:
            ids.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return ids


class VectorField(nn.Module):
    """The right-hand side of a neural ODE, `net` being the learned f(t, h) (a network of h alone, such as
    an `nn.Sequential`, is detected from its signature and called without t).

    Subclasses define `rhs` (the equations, in their docstring) and, where the defaults below do
    not fit, `coefficients`, `f_channels`, `encode` and `decode`; a closed-form VJP adds
    `rhs_forward` and `rhs_backward` (see `closed_form`).
    """

    state_size: int = 1
    t_span: tuple[float, float] = (0.0, 1.0)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = as_field_network(net)

    @classmethod
    def f_channels(cls, dim: int) -> tuple[int, int]:
        """(input, output) channels of f for a model whose h has `dim` channels."""
        return dim, dim

    def coefficients(self) -> Coefficients:
        """The values the equations read, computed from the scalar parameters (once per solve)."""
        return NoCoefficients()

    def scalar(self, name: str) -> torch.Tensor:
        """A scalar parameter or buffer registered by `register_scalar`."""
        value = getattr(self, name)
        assert isinstance(value, torch.Tensor)
        return value

    @property
    def closed_net(self) -> ClosedFormNetwork:
        """`net` as a network with a closed-form VJP (valid where `closed_form()` holds)."""
        return cast(ClosedFormNetwork, self.net)

    def xi_value(self) -> torch.Tensor | None:
        """xi of the restoring term registered by `register_xi` (None when there is none)."""
        if "xi_logit" in self._parameters:
            return F.softplus(self.scalar("xi_logit"))
        return self._buffers.get("xi")

    def rhs(self, t: torch.Tensor, state: Any, coef: Any) -> Any:
        raise NotImplementedError

    def forward(self, t: torch.Tensor, state: State) -> State:
        return self.rhs(t, state, self.coefficients())

    # -- closed-form VJP -------------------------------------------------------------------------------
    def rhs_forward(self, t: torch.Tensor, state: Any, coef: Any) -> tuple[Any, Any]:
        """`rhs` plus what `rhs_backward` needs: (F, saved)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form VJP")

    def rhs_backward(
        self, t: torch.Tensor, saved: Any, coef: Any, cotangent: Any
    ) -> tuple[Any, list[torch.Tensor], Any]:
        """The vector-Jacobian products at `rhs_forward`'s point for the cotangent c (shaped like the state):
        (c . dF/dstate, [c . dF/dp for p in net.parameters()], c . dF/dcoef as the family's coefficient
        tuple, None where the coefficient is None or does not require grad)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form VJP")

    def closed_form(self) -> bool:
        """Whether `rhs_forward` / `rhs_backward` apply: the family implements them, f is the only submodule
        and has a closed-form VJP itself (`MLPField`), and every gate has a known derivative (families with
        gates extend this)."""
        return (
            type(self).rhs_backward is not VectorField.rhs_backward
            and isinstance(self.net, ClosedFormNetwork)
            and self.net.closed_form()
            and len(list(self.children())) == 1
        )

    # -- binding ---------------------------------------------------------------------------------------
    def bind(self, coef: Coefficients | None = None, dtype: torch.dtype | None = None) -> BoundField:
        """This field with fixed coefficients (default: computed now, cast to `dtype`): what a solve integrates.

        Returns a `ClosedFormBoundField` when the closed-form VJP applies to every tensor the equations read.
        """
        coef = self.coefficients() if coef is None else coef
        if dtype is not None:
            coef = type(coef)(*[None if c is None else c.to(dtype) for c in coef])  # type: ignore[arg-type]
        params, direct = self._bound_params(coef)
        if not direct and self.closed_form():
            return ClosedFormBoundField(self, coef, params)
        return BoundField(self, coef, params)

    def _bound_params(self, coef: Coefficients) -> tuple[tuple[torch.Tensor, ...], bool]:
        """(every tensor `rhs(., ., coef)` reads that may need a gradient, whether any of them is a parameter of
        this module read directly rather than through `coef`).

        The coefficients carry the gradients of the parameters they were computed from. Every other
        parameter (the network's, or a field's own parameter used directly in `rhs`) is differentiated
        itself, so no parameter loses its gradient under the adjoint."""
        through_coef = _graph_leaves(coef)
        own = {id(p) for p in self._parameters.values() if p is not None}
        params: list[torch.Tensor] = []
        direct = False
        for p in self.parameters():
            if id(p) in through_coef:
                continue
            params.append(p)
            direct = direct or (id(p) in own and p.requires_grad)
        params.extend(c for c in coef if c is not None and c.requires_grad)
        return tuple(params), direct

    # -- variables -------------------------------------------------------------------------------------
    def encode(self, variables: State, t: torch.Tensor) -> State:
        """Solver state at time t from the model's variables; trailing ones not given start at zero."""
        parts = (variables,) if isinstance(variables, torch.Tensor) else tuple(variables)
        if not 1 <= len(parts) <= self.state_size:
            raise ValueError(
                f"{type(self).__name__} has {self.state_size} state variable(s); got {len(parts)} initial value(s)"
            )
        parts = parts + tuple(torch.zeros_like(parts[0]) for _ in range(self.state_size - len(parts)))
        return parts[0] if self.state_size == 1 else parts

    def decode(self, state: State, t: torch.Tensor) -> State:
        """The model's variables (h, m, ...) from the solver state at time t."""
        return state

    def readout(self, state: State, t: torch.Tensor) -> torch.Tensor:
        """h, the hidden state a classifier or decoder reads."""
        variables = self.decode(state, t)
        return variables if isinstance(variables, torch.Tensor) else variables[0]


class BoundField(nn.Module, ParametrizedField):
    """A field with its coefficients fixed for one solve: `rhs(t, state, coef)` and nothing else."""

    def __init__(self, field: VectorField, coef: Coefficients, params: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.field = field
        self.coef = coef
        self._rhs = field.rhs
        self._params = params
        self._gradient_scales: tuple[float, ...] | None = None

    def forward(self, t: torch.Tensor, state: State) -> State:
        return self._rhs(t, state, self.coef)

    # A bound field is made per solve and never hooked: the solvers call it without nn.Module's hook
    # dispatch (its `net` is still called as a module, so hooks there run).
    __call__ = forward  # type: ignore[assignment]

    def adjoint_params(self) -> tuple[torch.Tensor, ...]:
        return self._params

    def gradient_scales(self) -> tuple[float, ...]:
        """1 for a tensor read as it is; for a coefficient (gamma = sigmoid(gamma~), ...) its derivative in the
        field's own scalar parameter. The adjoint integrates coefficient gradients, while torchdiffeq (and
        the papers' code) integrates the raw parameters' gradients, which are these factors smaller; the
        adjoint's error control uses them so that both take the same steps."""
        if self._gradient_scales is None:
            own = [p for p in self.field._parameters.values() if p is not None and p.requires_grad]
            scales = []
            for p in self._params:
                if own and p.grad_fn is not None and any(p is c for c in self.coef):
                    grads = torch.autograd.grad(p, own, allow_unused=True, retain_graph=True)
                    scales.append(sum(float(g.abs().sum()) for g in grads if g is not None))
                else:
                    scales.append(1.0)
            self._gradient_scales = tuple(scales)
        return self._gradient_scales


class ClosedFormBoundField(BoundField, ClosedFormField):
    """A bound field whose family computes its vector-Jacobian product in closed form (`VectorField.rhs_backward`)."""

    def vjp(self, t: torch.Tensor, state: State, cotangent: State) -> tuple[State, State, tuple[torch.Tensor, ...]]:
        """(F, c . dF/dstate, c . dF/dp for p in `adjoint_params()`) without autograd."""
        out, saved = self.field.rhs_forward(t, state, self.coef)
        grad_state, grad_net, grad_coef = self.field.rhs_backward(t, saved, self.coef, cotangent)
        grads = (*grad_net, *(g for g, c in zip(grad_coef, self.coef) if c is not None and c.requires_grad))
        return out, grad_state, grads
