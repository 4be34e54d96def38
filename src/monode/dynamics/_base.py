"""What every model family shares: the `VectorField` base, field wrappers and the registry entry.

A model family is a `VectorField` subclass whose `rhs` is its system of equations. The rest of the
class says how the system meets the outside world, so that layers and tasks never branch on a name:

* `state_size`: 1 (the solver state is a tensor) or 2, 3 (a tuple such as (h, m) or (h, m, v));
* `t_span`: the default integration interval ([0, 1]; Nesterov's [1, 2]);
* `f_channels(dim)`: what the f network maps, (in, out) channels, for a model of dimension dim;
* `encode(variables, t)` / `decode(state, t)`: the model's variables (h, m, ...), which initial-state
  networks produce and ODE-RNN cells update, to and from the solver state (they differ only where
  the papers change variables, e.g. Nesterov's x = h / k(t)); `readout` is the decoded h;
* `coefficients()`: the scalar parameters turned into the tensors the equations use (gamma =
  sigmoid(gamma~), xi = softplus(xi~), ...). Layers compute them once per solve and integrate
  `field.bind(coefficients)`, so a field call is the network plus a few fused tensor ops.
  `field(t, state)` also works on its own (it then computes the coefficients on every call).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VectorField", "BoundField", "TimeScaledField", "ModelSpec", "State", "ActivationSpec",
           "resolve_activation", "register_scalar", "register_xi"]

State = Union[torch.Tensor, tuple[torch.Tensor, ...]]
Coefficients = tuple[Optional[torch.Tensor], ...]
ActivationSpec = Union[None, str, tuple[str, float], Callable[[torch.Tensor], torch.Tensor]]

_NAMED_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh, "sigmoid": torch.sigmoid, "softplus": F.softplus, "relu": torch.relu,
    "hardtanh": F.hardtanh,
}


def resolve_activation(spec: ActivationSpec, name: str = "activation") -> Callable | None:
    """A gate sigma from its description; None means identity (the op is skipped, not applied).

    Accepted: None or "identity"; "tanh", "sigmoid", "softplus", "relu", "hardtanh" (clips to +-1);
    ("hardtanh", c) (clips to +-c, the papers' bounded gates); or any callable.
    """
    if spec is None or spec == "identity":
        return None
    if isinstance(spec, str) and spec in _NAMED_ACTIVATIONS:
        return _NAMED_ACTIVATIONS[spec]
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] == "hardtanh":
        bound = float(spec[1])
        if not bound > 0:
            raise ValueError(f"{name}: the hardtanh bound must be > 0, got {spec!r}")
        return functools.partial(F.hardtanh, min_val=-bound, max_val=bound)
    if callable(spec):
        return spec
    raise ValueError(f"{name} must be None, 'identity', one of {sorted(_NAMED_ACTIVATIONS)}, "
                     f"('hardtanh', bound) or a callable, got {spec!r}")


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b) as a 0-d tensor (one op): the gradient of a scalar coefficient multiplying b."""
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

    Fixed xi = 0 registers nothing and the term is skipped; `module.xi_value()` gives the tensor or None.
    """
    if xi_logit is not None and xi != 0.0:
        raise ValueError(f"give either a fixed xi or a learnable xi_logit, got xi={xi!r} and xi_logit={xi_logit!r}")
    if not (isinstance(xi, (int, float)) and xi >= 0 and math.isfinite(xi)):
        raise ValueError(f"xi must be a finite float >= 0, got {xi!r}")
    if xi_logit is not None:
        register_scalar(module, "xi_logit", xi_logit, trainable=True)
    elif xi != 0.0:
        register_scalar(module, "xi", xi, trainable=False)


class VectorField(nn.Module):
    """The right-hand side of a neural ODE, `net` being the learned f(t, h).

    Subclasses define `rhs` (the equations, in their docstring) and, where the defaults below do
    not fit, `coefficients`, `f_channels`, `encode` and `decode`.
    """

    state_size: int = 1
    t_span: tuple[float, float] = (0.0, 1.0)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @classmethod
    def f_channels(cls, dim: int) -> tuple[int, int]:
        """(input, output) channels of f for a model whose h has `dim` channels."""
        return dim, dim

    def coefficients(self) -> Coefficients:
        """In-graph scalars the equations use, computed from the scalar parameters (once per solve)."""
        return ()

    def xi_value(self) -> torch.Tensor | None:
        """xi of the restoring term registered by `register_xi` (None when there is none)."""
        if "xi_logit" in self._parameters:
            return F.softplus(self.xi_logit)
        return self._buffers.get("xi")

    def rhs(self, t: torch.Tensor, state: State, coef: Coefficients) -> State:
        raise NotImplementedError

    def forward(self, t: torch.Tensor, state: State) -> State:
        return self.rhs(t, state, self.coefficients())

    def rhs_forward(self, t: torch.Tensor, state: State, coef: Coefficients) -> tuple[State, Any]:
        """`rhs` without autograd, plus what `rhs_backward` needs: (F, saved).

        Fields with a closed-form VJP implement this pair; the adjoint then integrates without autograd.
        """
        raise NotImplementedError(f"{type(self).__name__} has no closed-form VJP")

    def rhs_backward(self, t: torch.Tensor, saved: Any, coef: Coefficients, cotangent: State
                     ) -> tuple[State, list[torch.Tensor], tuple[torch.Tensor | None, ...]]:
        """The vector-Jacobian products at `rhs_forward`'s point, c being `cotangent` (shaped like the state):
        (c . dF/dstate, [c . dF/dp for p in net.parameters()], c . dF/dcoef per coefficient: None where
        the coefficient is None or does not require grad)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form VJP")

    def rhs_vjp(self, t: torch.Tensor, state: State, coef: Coefficients, cotangent: State
                ) -> tuple[State, State, list[torch.Tensor], tuple[torch.Tensor | None, ...]]:
        """(F, c . dF/dstate, c . dF/dnet, c . dF/dcoef): `rhs_forward` then `rhs_backward`, for the adjoint."""
        out, saved = self.rhs_forward(t, state, coef)
        return (out, *self.rhs_backward(t, saved, coef, cotangent))

    def vjp_supported(self) -> bool:
        """Whether the closed-form pair applies: the class implements it, f (the only submodule) has a
        closed-form VJP, and the gates are ones with known derivatives (subclasses check theirs)."""
        net_supported = getattr(self.net, "vjp_supported", None)
        return (type(self).rhs_backward is not VectorField.rhs_backward and callable(net_supported)
                and net_supported() and len(list(self.children())) == 1)

    def bind(self, coef: Coefficients | None = None, dtype: torch.dtype | None = None) -> "BoundField":
        """This field with fixed coefficients (default: computed now, cast to `dtype`): what a solve integrates."""
        coef = self.coefficients() if coef is None else coef
        if dtype is not None:
            coef = tuple(None if c is None else c.to(dtype) for c in coef)
        return BoundField(self, coef)

    def adjoint_params(self, coef: Coefficients) -> tuple[torch.Tensor, ...]:
        """What an adjoint solve of `bind(coef)` differentiates: the network's parameters and `coef`.

        Scalar parameters registered directly on the field reach the equations only through
        `coef`, so their gradients flow through it; parameters of submodules are used directly.
        """
        own = {id(p) for p in self._parameters.values() if p is not None}
        params = tuple(p for p in self.parameters() if id(p) not in own)
        return params + tuple(c for c in coef if c is not None and c.requires_grad)

    def encode(self, variables: State, t: torch.Tensor) -> State:
        """Solver state at time t from the model's variables; trailing ones not given start at zero."""
        parts = (variables,) if isinstance(variables, torch.Tensor) else tuple(variables)
        if not 1 <= len(parts) <= self.state_size:
            raise ValueError(f"{type(self).__name__} has {self.state_size} state variable(s); "
                             f"got {len(parts)} initial value(s)")
        parts = parts + tuple(torch.zeros_like(parts[0]) for _ in range(self.state_size - len(parts)))
        return parts[0] if self.state_size == 1 else parts

    def decode(self, state: State, t: torch.Tensor) -> State:
        """The model's variables (h, m, ...) from the solver state at time t."""
        return state

    def readout(self, state: State, t: torch.Tensor) -> torch.Tensor:
        """h, the hidden state a classifier or decoder reads."""
        variables = self.decode(state, t)
        return variables if isinstance(variables, torch.Tensor) else variables[0]


class BoundField(nn.Module):
    """A field with its coefficients fixed for one solve: `rhs(t, state, coef)` and nothing else."""

    def __init__(self, field: VectorField, coef: Coefficients) -> None:
        super().__init__()
        self.field = field
        self.coef = coef
        self._rhs = field.rhs
        self._gradient_scales: tuple[float, ...] | None = None
        # fixed for this bind, asked for by every solve of it (an ODE-RNN solves once per observation)
        self._adjoint_params: tuple[torch.Tensor, ...] | None = None
        self._vjp_supported: bool | None = None

    def forward(self, t: torch.Tensor, state: State) -> State:
        return self._rhs(t, state, self.coef)

    # called without `nn.Module.__call__`'s hook handling: a bound field is made per solve and never hooked,
    # and the solvers call it on every step (the field's `net` is still called as a module)
    __call__ = forward

    def adjoint_params(self) -> tuple[torch.Tensor, ...]:
        if self._adjoint_params is None:
            self._adjoint_params = self.field.adjoint_params(self.coef)
        return self._adjoint_params

    def vjp_supported(self) -> bool:
        if self._vjp_supported is None:
            self._vjp_supported = self.field.vjp_supported()
        return self._vjp_supported

    def gradient_scales(self) -> tuple[float, ...]:
        """Per `adjoint_params()` tensor, |d tensor / d raw parameter|: 1 for the network's weights, and for
        a coefficient (gamma = sigmoid(gamma~), ...) its derivative in the field's own scalar parameter.

        The adjoint integrates coefficient gradients, while torchdiffeq (and the papers' code) integrates
        the raw parameters' gradients, which are these factors smaller; the adjoint's error control uses
        them so that both take the same steps. Computed once per bind (one small autograd call per
        coefficient)."""
        if self._gradient_scales is None:
            own = [p for p in self.field._parameters.values() if p is not None and p.requires_grad]
            scales = []
            for p in self.adjoint_params():
                if own and p.grad_fn is not None and any(p is c for c in self.coef):
                    grads = torch.autograd.grad(p, own, allow_unused=True, retain_graph=True)
                    scales.append(sum(float(g.abs().sum()) for g in grads if g is not None))
                else:
                    scales.append(1.0)
            self._gradient_scales = tuple(scales)
        return self._gradient_scales

    def vjp(self, t: torch.Tensor, state: State, cotangent: State) -> tuple[State, State, tuple[torch.Tensor, ...]]:
        """(F, c . dF/dstate, c . dF/dp for p in `adjoint_params()`) without autograd (`VectorField.rhs_vjp`)."""
        out, saved = self.field.rhs_forward(t, state, self.coef)
        return (out, *self.backward(t, saved, cotangent))

    def backward(self, t: torch.Tensor, saved: Any, cotangent: State) -> tuple[State, tuple[torch.Tensor, ...]]:
        """(c . dF/dstate, c . dF/dp for p in `adjoint_params()`) at the point `rhs_forward` saved."""
        grad_state, grad_net, grad_coef = self.field.rhs_backward(t, saved, self.coef, cotangent)
        return grad_state, (*grad_net, *(g for g, c in zip(grad_coef, self.coef) if c is not None and c.requires_grad))


class TimeScaledField(nn.Module):
    """Every sample integrated over its own interval length, in one batched solve.

    Sample i must advance by `dt[i]`. Integrating over the field's span of length L instead, with
    dy_i/dtau = (dt[i] / L) * F(tau, y_i), reaches the same end state (substitute
    s = dt[i] * tau / L): the papers' `elem_t` trick, here a stateless wrapper. The inner field sees
    the span's time tau, not each sample's physical time, exactly as in the papers; for autonomous
    fields (f ignores t) the result is exact. A sample with dt[i] = 0 stays where it is.
    """

    def __init__(self, field: Callable[[torch.Tensor, State], State], dt: torch.Tensor, ndim: int,
                 span_length: float = 1.0) -> None:
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

    def adjoint_params(self) -> tuple[torch.Tensor, ...]:
        inner = self.field.adjoint_params() if hasattr(self.field, "adjoint_params") else tuple(self.field.parameters())
        return inner + ((self.scale,) if self.scale.requires_grad else ())

    def gradient_scales(self) -> tuple[float, ...]:
        """The inner field's `gradient_scales` (1 for each tensor if it has none), then 1 for the scale."""
        inner = getattr(self.field, "gradient_scales", None)
        n_scale = int(self.scale.requires_grad)
        scales = tuple(inner()) if callable(inner) else (1.0,) * (len(self.adjoint_params()) - n_scale)
        return scales + (1.0,) * n_scale

    def vjp_supported(self) -> bool:
        inner = getattr(self.field, "vjp_supported", None)
        return callable(inner) and inner() and not self.scale.requires_grad

    def vjp(self, t: torch.Tensor, state: State, cotangent: State) -> tuple[State, State, tuple[torch.Tensor, ...]]:
        """The inner field's `vjp` with cotangent c * scale (d(scale F)/dy = scale dF/dy), its output scaled."""
        scale = self.scale
        if isinstance(cotangent, torch.Tensor):
            out, grad_state, grads = self.field.vjp(t, state, cotangent * scale)
            return out * scale, grad_state, grads
        out, grad_state, grads = self.field.vjp(t, state, tuple(c * scale for c in cotangent))
        return tuple(d * scale for d in out), grad_state, grads


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry entry: everything a task needs to build a model by name.

    field: the `VectorField` class; options: the keyword arguments that make this name (e.g.
    GHBNODE's gate), defaulting to the paper's MNIST configuration; initializer: the module class
    building the initial variables from an input, called as initializer(in_channels, dim, hidden,
    conv=...); presets: named paper configurations (field options, plus "dim" and "hidden" sizes
    for image presets), data only.
    """

    name: str
    field: type[VectorField]
    initializer: type[nn.Module]
    summary: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def state_size(self) -> int:
        return self.field.state_size

    @property
    def t_span(self) -> tuple[float, float]:
        return self.field.t_span

    def f_channels(self, dim: int) -> tuple[int, int]:
        return self.field.f_channels(dim)

    def preset(self, name: str | None) -> dict[str, Any]:
        """The preset's settings (a copy); {} for None."""
        if name is None:
            return {}
        if name not in self.presets:
            raise ValueError(f"model {self.name!r} has no preset {name!r}; presets: {sorted(self.presets)}")
        return dict(self.presets[name])

