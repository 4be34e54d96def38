r"""NesterovNODE and GNesterovNODE: the ODE limit of Nesterov's accelerated gradient.

Nesterov's ODE h'' + (p/t) h' = -grad F (p = 3) has singular damping at t = 0. With
k(t) = t^{-p/2} e^{t/2} and h = k x the layer integrates, on t in [1, 2]:

    NesterovNODE:   x' = m,          m' = -m - f(t, h(t)),                   h(t) = k(t) x
    GNesterovNODE:  x' = sigma2(m),  m' = -m - sigma3(f(t, h(t))) - xi h(t), h(t) = sigma1(k(t)) x

and reads out h(T) = sigma1(k(T)) x(T). (With identity gates and xi = 0, h satisfies
h'' + (p/t) h' + ((p/2)(p/2 - 1)/t^2 - 1/4) h = -k(t) f(t, h); `tests/problems.py` integrates that
form as an oracle.) Initial state from the input's variables (h0, m0): x0 = h0 / sigma1(k(t0)) and m0
as given. `sign` multiplies f (m' = -m + sign sigma3(f) - xi h); the paper's -f is sign = -1.

`OfficialNesterovField` (`build_model(name, official=True)`) is what the released code integrates,
which is not the system above: see its docstring.

Reference: Nguyen, Nguyen, Vo, Osher, Vo (2022), Improving neural ordinary differential equations
with Nesterov's accelerated gradient method, NeurIPS 2022.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._activations import ActivationSpec, activation_backward, resolve_activation
from ._base import State, VectorField, dot, register_xi
from ._spec import ModelSpec
from .networks import InitialVelocity

__all__ = [
    "NesterovField",
    "OfficialNesterovField",
    "NesterovCoefficients",
    "nesterov_k",
    "nesterov_r",
    "nesterov_dr",
    "NESTEROVNODE_SPEC",
    "GNESTEROVNODE_SPEC",
]

Pair = tuple[torch.Tensor, torch.Tensor]


def nesterov_k(t: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """k(t) = t^{-p/2} e^{t/2} = exp(-(p/2) log t + t/2); k(1) = 1.6487, k(2) = 0.9610 for p = 3."""
    return torch.xlogy(-0.5 * p, t).add_(t, alpha=0.5).exp_()


def nesterov_r(t: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """r(t) = 1/k(t) = t^{p/2} e^{-t/2}; r(1) = 0.6065, r(2) = 1.0405 for p = 3."""
    return torch.xlogy(0.5 * p, t).add_(t, alpha=-0.5).exp_()


def nesterov_dr(t: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """r'(t) = (p/(2t) - 1/2) r(t); r'(1) = 0.6065, r'(2) = 0.2601 for p = 3."""
    return (0.5 * p / t - 0.5) * nesterov_r(t, p)


class NesterovCoefficients(NamedTuple):
    xi: torch.Tensor | None


class _NesterovFamily(VectorField):
    """What the paper and the released systems share: the gates, sign, p, xi and the clock k(t)."""

    state_size = 2
    t_span = (1.0, 2.0)

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        activation: ActivationSpec = None,
        k_activation: ActivationSpec = None,
        f_activation: ActivationSpec = None,
        sign: int = -1,
        p: float = 3.0,
        xi: float = 0.0,
        xi_logit: float | None = None,
    ) -> None:
        super().__init__(net)
        if sign not in (-1, 1):
            raise ValueError(f"sign must be -1 or +1, got {sign!r}")
        if not (isinstance(p, (int, float)) and p > 0 and math.isfinite(p)):
            raise ValueError(f"p must be a finite float > 0, got {p!r}")
        self.gate = resolve_activation(activation, "activation")
        self.k_gate = resolve_activation(k_activation, "k_activation")
        self.f_gate = resolve_activation(f_activation, "f_activation")
        self._gate_backward, self._f_backward = activation_backward(self.gate), activation_backward(self.f_gate)
        self.sign, self.p = int(sign), float(p)
        register_xi(self, xi, xi_logit)

    def coefficients(self) -> NesterovCoefficients:
        return NesterovCoefficients(self.xi_value())

    def gated_k(self, t: torch.Tensor) -> torch.Tensor:
        """sigma1(k(t))."""
        k = nesterov_k(t, self.p)
        return k if self.k_gate is None else self.k_gate(k)

    def _momentum_equations(
        self, f: torch.Tensor, h: torch.Tensor, u: torch.Tensor, coef: NesterovCoefficients
    ) -> Pair:
        """(sigma2(u), sign sigma3(f) - u - xi h): both systems' right-hand side in their momentum u."""
        gated_f = f if self.f_gate is None else self.f_gate(f)
        dm = torch.sub(gated_f, u) if self.sign == 1 else torch.add(gated_f, u).neg_()
        if coef.xi is not None:
            dm = dm.addcmul_(h, coef.xi, value=-1.0)
        return (u if self.gate is None else self.gate(u)), dm

    def _momentum_backward(
        self,
        f: torch.Tensor,
        h: torch.Tensor,
        u: torch.Tensor,
        cotangent: Pair,
        coef: NesterovCoefficients,
        net_saved: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], NesterovCoefficients]:
        """The VJP of `_momentum_equations` through f = f(t, h): (c_h, c_u, c . dF/dnet, c . dF/dcoef) with
        c_h = (sign sigma3'(f) c_2) . df/dh - xi c_2 and c_u = sigma2'(u) c_1 - c_2."""
        c_1, c_2 = cotangent
        grad_f = c_2 if self.sign == 1 else -c_2
        if self._f_backward is not None:
            grad_f = self._f_backward(grad_f, f, self.f_gate(f))  # type: ignore[misc]
        grad_h, grad_net = self.closed_net.vjp(net_saved, grad_f)
        if coef.xi is not None:
            grad_h = grad_h.addcmul_(c_2, coef.xi, value=-1.0)
        gate_grad = c_1 if self._gate_backward is None else self._gate_backward(c_1, u, self.gate(u))  # type: ignore[misc]
        grad_u = gate_grad - c_2
        grad_xi = -dot(c_2, h) if coef.xi is not None and coef.xi.requires_grad else None
        return grad_h, grad_u, grad_net, NesterovCoefficients(grad_xi)

    def closed_form(self) -> bool:
        return super().closed_form() and all(
            g is None or b is not None for g, b in ((self.gate, self._gate_backward), (self.f_gate, self._f_backward))
        )


class NesterovField(_NesterovFamily):
    """State (x, m): x' = sigma2(m), m' = -m + sign sigma3(f(t, h)) - xi h with h = sigma1(k(t)) x.

    Args:
        net: f(t, h), dim -> dim channels.
        activation: sigma2 on m (None = identity, as NesterovNODE).
        k_activation: sigma1 on k(t) (None = identity).
        f_activation: sigma3 on f (None = identity).
        sign: +-1 multiplying sigma3(f); -1 is the paper's m' = -m - f.
        p: the damping factor of h'' + (p/t) h' (3 in the papers).
        xi: fixed restoring coefficient, as in `HeavyBallField`.
        xi_logit: learnable restoring coefficient softplus(xi~), as in `HeavyBallField`.
    """

    def rhs(self, t: torch.Tensor, state: Pair, coef: NesterovCoefficients) -> Pair:
        x, m = state
        h = x * self.gated_k(t)
        return self._momentum_equations(self.net(t, h), h, m, coef)

    def rhs_forward(self, t: torch.Tensor, state: Pair, coef: NesterovCoefficients) -> tuple[Pair, tuple]:
        x, m = state
        k = self.gated_k(t)
        h = x * k
        f, net_saved = self.closed_net.forward_saved(t, h)
        return self._momentum_equations(f, h, m, coef), (net_saved, f, h, m, k)

    def rhs_backward(
        self, t: torch.Tensor, saved: tuple, coef: NesterovCoefficients, cotangent: Pair
    ) -> tuple[Pair, list[torch.Tensor], NesterovCoefficients]:
        """c_x = k c_h, c_m = c_u (see `_momentum_backward`)."""
        net_saved, f, h, m, k = saved
        grad_h, grad_u, grad_net, grad_coef = self._momentum_backward(f, h, m, cotangent, coef, net_saved)
        return (grad_h.mul_(k), grad_u), grad_net, grad_coef

    def encode(self, variables: State, t: torch.Tensor) -> State:
        """x0 = h0 / sigma1(k(t0)), m0 as given (zeros if absent)."""
        x, m = super().encode(variables, t)
        return x / self.gated_k(t), m

    def decode(self, state: State, t: torch.Tensor) -> State:
        """(h, m) = (sigma1(k(t)) x, m)."""
        return self.gated_k(t) * state[0], state[1]


class OfficialNesterovField(_NesterovFamily):
    """The released code's Nesterov system (a compatibility mode; not the paper's, see `NesterovField`).

    The state is read as (a, b) = "(h, h')"; with r = 1/k = t^{p/2} e^{-t/2} and r' = (p/(2t) - 1/2) r:

        u = r'(t) a + r(t) b,   a' = sigma2(u),   b' = sign sigma3(f(t, a)) - u - xi a

    so f sees the raw a, not k x. The initial state is the input's variables unchanged, and the final
    state is reinterpreted as (x, m): h = sigma1(k(T)) a, h' = sigma1(k(T)) (b - c_T h) with
    c_T = (p/(2T)) r(T) - 1/(2 sigma1(k(T))) (`decode`; only h is read out). The released ODE-RNN applies
    this to a [B, 2, H] slice and so skips batch row 0; here every row is transformed. Released signs:
    MNIST and point cloud sign = -1 (the default), Walker2D sign = +1 (preset "walker2d").
    """

    def _momentum(
        self, t: torch.Tensor, a: torch.Tensor, b: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, r, r') at t."""
        r = nesterov_r(t, self.p)
        dr = (0.5 * self.p / t - 0.5) * r
        return torch.mul(b, r).addcmul_(a, dr), r, dr

    def rhs(self, t: torch.Tensor, state: Pair, coef: NesterovCoefficients) -> Pair:
        a, b = state
        return self._momentum_equations(self.net(t, a), a, self._momentum(t, a, b)[0], coef)

    def rhs_forward(self, t: torch.Tensor, state: Pair, coef: NesterovCoefficients) -> tuple[Pair, tuple]:
        a, b = state
        u, r, dr = self._momentum(t, a, b)
        f, net_saved = self.closed_net.forward_saved(t, a)
        return self._momentum_equations(f, a, u, coef), (net_saved, f, a, u, r, dr)

    def rhs_backward(
        self, t: torch.Tensor, saved: tuple, coef: NesterovCoefficients, cotangent: Pair
    ) -> tuple[Pair, list[torch.Tensor], NesterovCoefficients]:
        """c_a = c_h + r' c_u, c_b = r c_u (see `_momentum_backward`)."""
        net_saved, f, a, u, r, dr = saved
        grad_h, grad_u, grad_net, grad_coef = self._momentum_backward(f, a, u, cotangent, coef, net_saved)
        return (grad_h.addcmul_(grad_u, dr), grad_u.mul_(r)), grad_net, grad_coef

    def decode(self, state: State, t: torch.Tensor) -> State:
        """The released `calc_algebraic_factor`: (h, h') from the final (a, b)."""
        s1 = self.gated_k(t)
        h = s1 * state[0]
        c = 0.5 * self.p / t * nesterov_r(t, self.p) - 0.5 / s1
        return h, s1 * (state[1] - c * h)


_HARDTANH_HALF = ("hardtanh", 0.5)

NESTEROVNODE_SPEC = ModelSpec(
    "nesterovnode",
    NesterovField,
    InitialVelocity,
    "h = k(t) x, x' = m, m' = -m - f(t, h)",
    presets={
        "mnist": dict(dim=5, hidden=50),
        "cifar10": dict(dim=12, hidden=51),
        "walker2d": dict(sign=1),
    },
    official_field=OfficialNesterovField,
)
GNESTEROVNODE_SPEC = ModelSpec(
    "gnesterovnode",
    NesterovField,
    InitialVelocity,
    "h = sigma1(k(t)) x, x' = sigma2(m), m' = -m - sigma3(f(t, h)) - xi h",
    options=dict(
        activation=_HARDTANH_HALF, k_activation=_HARDTANH_HALF, f_activation=_HARDTANH_HALF, xi_logit=2.0
    ),  # MNIST
    presets={
        "mnist": dict(dim=5, hidden=50),
        "cifar10": dict(
            activation="tanh", k_activation="tanh", f_activation="tanh", xi=1.5, xi_logit=None, dim=12, hidden=51
        ),
        "walker2d": dict(activation=None, k_activation=None, f_activation=None, xi_logit=0.0, sign=1),
        "point-cloud": dict(
            activation=("hardtanh", 5.0),
            k_activation=("hardtanh", 5.0),
            f_activation=("hardtanh", 5.0),
            xi=0.5,
            xi_logit=None,
        ),
        "silverbox-init": dict(
            activation=("hardtanh", 0.25),
            k_activation=("hardtanh", 0.25),
            f_activation=("hardtanh", 0.25),
            xi=math.log(2.0),
            xi_logit=None,
        ),
    },
    official_field=OfficialNesterovField,
)
