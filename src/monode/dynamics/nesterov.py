r"""NesterovNODE and GNesterovNODE (Nguyen et al., NeurIPS 2022): the ODE limit of NAG.

Nesterov's ODE h'' + (p/t) h' = -grad F (p = 3) has singular damping at t = 0. With
k(t) = t^{-p/2} e^{t/2} and h = k x the layer integrates, on t in [1, 2]:

    NesterovNODE:   x' = m,          m' = -m - f(t, h(t)),                 h(t) = k(t) x
    GNesterovNODE:  x' = sigma2(m),  m' = -m - sigma3(f(t, h(t))) - xi h(t), h(t) = sigma1(k(t)) x

and reads out h(T) = sigma1(k(T)) x(T). (With identity gates and xi = 0, h satisfies
h'' + (p/t) h' + ((p/2)(p/2 - 1)/t^2 - 1/4) h = -k(t) f(t, h), i.e. (p = 3)
h'' + (3/t) h' + (3/(4 t^2) - 1/4) h = -k f; `tests/problems.py` integrates that form as an oracle.)
Initial state from the input's variables (h0, m0): x0 = h0 / sigma1(k(t0)) and m0 as given: the
learned initial-velocity network's second output is taken as m0 directly (zeros without one).
`sign` multiplies f (m' = -m + sign sigma3(f) - xi h); the paper's -f is the default sign = -1.

official=True is the compatibility mode reproducing what the released code integrates
(`base.py: NesterovNODE` + `NODEintegrate.calc_algebraic_factor`), which is NOT the system
above. The state is read as (a, b) = "(h, h')"; with r = 1/k = t^{p/2} e^{-t/2} and
r' = (p/(2t) - 1/2) r:

    m~ = r'(t) a + r(t) b,   a' = sigma2(m~),   b' = sign sigma3(f(t, a)) - m~ - xi a

so f sees the raw a, not k x. The initial state is the input's variables unchanged, and the
final state is reinterpreted as (x, m): h = sigma1(k(T)) a, h' = sigma1(k(T)) (b - c_T h) with
c_T = (p/(2T)) r(T) - 1/(2 sigma1(k(T))) (`decode`; only h is read out). The released ODE-RNN
applies this to a [B, 2, H] slice and so skips batch row 0; here every row is transformed.
Official signs: MNIST/point cloud sign = -1 (default), Walker sign = +1 (preset "walker").
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ._base import ActivationSpec, ModelSpec, State, VectorField, dot, register_xi, resolve_activation
from ._derivatives import activation_backward, hardtanh_bounds
from . import _fused
from .networks import InitialVelocity

__all__ = ["NesterovField", "nesterov_k", "nesterov_r", "nesterov_dr", "NESTEROVNODE_SPEC", "GNESTEROVNODE_SPEC"]


def nesterov_k(t: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """k(t) = t^{-p/2} e^{t/2} = exp(-(p/2) log t + t/2); k(1) = 1.6487, k(2) = 0.9610 for p = 3."""
    return torch.xlogy(-0.5 * p, t).add_(t, alpha=0.5).exp_()


def nesterov_r(t: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """r(t) = 1/k(t) = t^{p/2} e^{-t/2}; r(1) = 0.6065, r(2) = 1.0405 for p = 3."""
    return torch.xlogy(0.5 * p, t).add_(t, alpha=-0.5).exp_()


def nesterov_dr(t: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    """r'(t) = (p/(2t) - 1/2) r(t); r'(1) = 0.6065, r'(2) = 0.2601 for p = 3."""
    return (0.5 * p / t - 0.5) * nesterov_r(t, p)


class NesterovField(VectorField):
    """State (x, m) of the paper system, or (a, b) with official=True (see the module docstring).

    Args:
        net: f(t, h), dim -> dim channels.
        official: reproduce the released code's field and readout instead of the paper system.
        activation: sigma2 on m (on m~ in official mode); k_activation: sigma1 on k(t);
            f_activation: sigma3 on f. None = identity (NesterovNODE).
        sign: +-1 multiplying sigma3(f); -1 is the paper's m' = -m - f.
        p: the damping factor of h'' + (p/t) h' (3 in the papers).
        xi, xi_logit: restoring term, fixed or learnable softplus(xi~), as in `HeavyBallField`.
    """

    state_size = 2
    t_span = (1.0, 2.0)

    def __init__(self, net: torch.nn.Module, *, official: bool = False, activation: ActivationSpec = None,
                 k_activation: ActivationSpec = None, f_activation: ActivationSpec = None, sign: int = -1,
                 p: float = 3.0, xi: float = 0.0, xi_logit: float | None = None) -> None:
        super().__init__(net)
        if sign not in (-1, 1):
            raise ValueError(f"sign must be -1 or +1, got {sign!r}")
        if not (isinstance(p, (int, float)) and p > 0 and math.isfinite(p)):
            raise ValueError(f"p must be a finite float > 0, got {p!r}")
        self.official = bool(official)
        self.gate = resolve_activation(activation, "activation")
        self.k_gate = resolve_activation(k_activation, "k_activation")
        self._k_gate_float = _float_gate(self.k_gate)  # sigma1 on Python floats, None if unknown (`_clock`)
        self.f_gate = resolve_activation(f_activation, "f_activation")
        self._gate_backward, self._f_backward = activation_backward(self.gate), activation_backward(self.f_gate)
        self.sign, self.p = int(sign), float(p)
        register_xi(self, xi, xi_logit)
        # The fused tail op's gate codes, or None (ATen ops): one op call pays off over a gate or the official
        # u = r b + r' a; the plain tail (u - sign f, its negation, the xi term) is cheaper as ATen ops.
        gates = (_fused.gate_code(self.gate), _fused.gate_code(self.f_gate))
        worth_it = self.official or self.gate is not None or self.f_gate is not None
        self._fused_gates = None if None in gates or not worth_it else gates

    def coefficients(self) -> tuple[torch.Tensor | None]:
        """(-xi or None,): the sign folded in once per solve."""
        xi = self.xi_value()
        return (None if xi is None else -xi,)

    def gated_k(self, t: torch.Tensor) -> torch.Tensor:
        """sigma1(k(t)): h = sigma1(k(t)) x."""
        k = nesterov_k(t, self.p)
        return k if self.k_gate is None else self.k_gate(k)

    def _clock(self, t: torch.Tensor) -> tuple[Any, tuple[Any, Any]]:
        """(k, (r, dr)) for `rhs`: f is evaluated at h = k x (k = sigma1(k(t)); official: k = None, h = a) and
        the momentum is u = r p + dr h ((r, dr) = (1, 0) for the paper system, (r(t), r'(t)) official).
        Python floats for a CPU time outside torch.compile (t never carries gradients, so this only saves
        the scalar tensor ops of every call), tensors otherwise."""
        if t.is_cpu and not torch.compiler.is_compiling():
            tf, p = t.item(), self.p
            if tf > 0:
                if self.official:
                    r = math.exp(0.5 * p * math.log(tf) - 0.5 * tf)
                    return None, (r, (0.5 * p / tf - 0.5) * r)
                if self._k_gate_float is not None:
                    return self._k_gate_float(math.exp(0.5 * tf - 0.5 * p * math.log(tf))), _PAPER_R
        if self.official:
            r = nesterov_r(t, self.p)
            return None, (r, (0.5 * self.p / t - 0.5) * r)
        return self.gated_k(t), _PAPER_R

    def rhs(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
            coef: tuple[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        k, r = self._clock(t)
        x, p = state
        net = self.net
        if k is None:  # official: f sees a
            return self._tail(net(t, x), x, 1.0, p, r, coef)
        if type(k) is float and getattr(net, "accepts_input_scale", False):  # h = k x folded into f's first layer
            return self._tail(net(t, x, k), x, k, p, r, coef)
        h = x * k
        return self._tail(net(t, h), h, 1.0, p, r, coef)

    def _u(self, x: torch.Tensor, p: torch.Tensor, r: tuple) -> torch.Tensor:
        """The momentum u = r p + dr h the gate sees (p itself for the paper system; h = x in official mode)."""
        if not self.official:
            return p
        r_t, dr_t = r
        if isinstance(dr_t, float):
            return torch.mul(p, r_t).add_(x, alpha=dr_t)
        return torch.mul(p, r_t).addcmul_(x, dr_t)

    def _tail(self, f: torch.Tensor, x: torch.Tensor, hs: float, p: torch.Tensor, r: tuple,
              coef: tuple[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma2(u), sign sigma3(f) - u - xi h) with h = hs x (hs: a Python float)."""
        (neg_xi,) = coef
        if self._fused_gates is not None and type(r[0]) is float:
            fused = _fused.momentum_tail(f, x, p, None, neg_xi, hs, r[0], r[1], self.sign, *self._fused_gates)
            if fused is not None:
                return fused
        u = self._u(x, p, r)
        gated_f = f if self.f_gate is None else self.f_gate(f)
        dm = torch.add(u, gated_f) if self.sign == -1 else torch.sub(u, gated_f)  # -(dm) = u - sign sigma3(f) + xi h
        if neg_xi is not None:
            dm = dm.addcmul_(x, neg_xi, value=-hs)
        return (u if self.gate is None else self.gate(u)), dm.neg_()

    def rhs_forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                    coef: tuple[torch.Tensor | None]) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple]:
        k, r = self._clock(t)
        h, p = (state[0] if k is None else state[0] * k), state[1]
        f, net_saved = self.net.forward_saved(t, h)
        return self._tail(f, h, 1.0, p, r, coef), (net_saved, f, h, p, k, r)

    def rhs_backward(self, t: torch.Tensor, saved: tuple, coef: tuple[torch.Tensor | None],
                     cotangent: tuple[torch.Tensor, torch.Tensor]) -> tuple[tuple, list, tuple]:
        """With g = (sign sigma3'(f) c_2) . df/dh and c_u = sigma2'(u) c_1 - c_2 (the cotangent of u):
        paper (h = k x, u = m): c_x' = k (g - xi c_2), c_m' = c_u;
        official (h = a, u = r b + r' a): c_a' = g - xi c_2 + r' c_u, c_b' = r c_u; d/d(-xi) = <c_2, h>."""
        (neg_xi,) = coef
        net_saved, f, h, p, k, (r_t, dr_t) = saved
        c_1, c_2 = cotangent
        fused = None
        if self._fused_gates is not None and type(r_t) is float:
            fused = _fused.momentum_backward(f, h, p, None, neg_xi, c_1, c_2, 1.0, r_t, dr_t, self.sign,
                                             *self._fused_gates)
        if fused is not None:
            grad_f, grad_tail, grad_u, _, grad_xi = fused  # grad_tail = dr c_u - xi c_2; grad_u = r c_u
            grad_h, grad_net = self.net.vjp(net_saved, grad_f)
            grad_h = grad_h.add_(grad_tail)
            return (grad_h if k is None else grad_h.mul_(k), grad_u), grad_net, (grad_xi,)
        u = self._u(h, p, (r_t, dr_t))
        grad_f = c_2 if self.sign == 1 else -c_2
        if self.f_gate is not None:
            grad_f = self._f_backward(grad_f, f, self.f_gate(f))
        grad_h, grad_net = self.net.vjp(net_saved, grad_f)
        if neg_xi is not None:
            grad_h = grad_h.addcmul_(c_2, neg_xi)
        grad_u = (c_1 if self.gate is None else self._gate_backward(c_1, u, self.gate(u))) - c_2
        grad_xi = dot(c_2, h) if neg_xi is not None and neg_xi.requires_grad else None
        if not self.official:
            return (grad_h.mul_(k), grad_u), grad_net, (grad_xi,)
        grad_a = grad_h.add_(grad_u, alpha=dr_t) if isinstance(dr_t, float) else grad_h.addcmul_(grad_u, dr_t)
        return (grad_a, grad_u.mul_(r_t)), grad_net, (grad_xi,)

    def vjp_supported(self) -> bool:
        """Known gates (user callables integrate through autograd)."""
        return (super().vjp_supported()
                and all(g is None or b is not None for g, b in ((self.gate, self._gate_backward),
                                                               (self.f_gate, self._f_backward))))

    def encode(self, variables: State, t: torch.Tensor) -> State:
        """Paper: x0 = h0 / sigma1(k(t0)), m0 as given (zeros if absent). Official: unchanged."""
        state = super().encode(variables, t)
        if self.official:
            return state
        return state[0] / self.gated_k(t), state[1]

    def decode(self, state: State, t: torch.Tensor) -> State:
        """Paper: (h, m) = (sigma1(k(t)) x, m). Official: the calc_algebraic_factor (h, h')."""
        s1 = self.gated_k(t)
        h = s1 * state[0]
        if not self.official:
            return h, state[1]
        c = 0.5 * self.p / t * nesterov_r(t, self.p) - 0.5 / s1
        return h, s1 * (state[1] - c * h)

    def readout(self, state: State, t: torch.Tensor) -> torch.Tensor:
        """h(T) = sigma1(k(T)) x(T) (in official mode: of the state's first half)."""
        return self.gated_k(t) * state[0]


def _float_gate(gate: Callable | None) -> Callable[[float], float] | None:
    """The Python-float version of a k-gate sigma1 (identity, tanh, sigmoid, hardtanh(+-c)), or None."""
    if gate is None:
        return lambda k: k
    if gate is torch.tanh:
        return math.tanh
    if gate is torch.sigmoid:
        return lambda k: 1.0 / (1.0 + math.exp(-k))
    bounds = hardtanh_bounds(gate)
    if bounds is not None:
        low, high = bounds
        return lambda k: min(max(k, low), high)
    return None


_PAPER_R = (1.0, 0.0)  # (r, dr) of the paper system: u = m
_HARDTANH_HALF = ("hardtanh", 0.5)

NESTEROVNODE_SPEC = ModelSpec(
    "nesterovnode", NesterovField, InitialVelocity, "h = k(t) x, x' = m, m' = -m - f(t, h)",
    presets={
        "mnist": dict(dim=5, hidden=50),
        "cifar": dict(dim=12, hidden=51),
        "walker": dict(sign=1),
        "pv": {}, "pointcloud": {}, "silverbox": {},
    },
)
GNESTEROVNODE_SPEC = ModelSpec(
    "gnesterovnode", NesterovField, InitialVelocity,
    "h = sigma1(k(t)) x, x' = sigma2(m), m' = -m - sigma3(f(t, h)) - xi h",
    options=dict(activation=_HARDTANH_HALF, k_activation=_HARDTANH_HALF, f_activation=_HARDTANH_HALF,
                 xi_logit=2.0),  # MNIST
    presets={
        "mnist": dict(dim=5, hidden=50),
        "cifar": dict(activation="tanh", k_activation="tanh", f_activation="tanh", xi=1.5, xi_logit=None,
                      dim=12, hidden=51),
        "walker": dict(activation=None, k_activation=None, f_activation=None, xi_logit=0.0, sign=1),
        "pointcloud": dict(activation=("hardtanh", 5.0), k_activation=("hardtanh", 5.0),
                           f_activation=("hardtanh", 5.0), xi=0.5, xi_logit=None),
        "silverbox": dict(activation=("hardtanh", 0.25), k_activation=("hardtanh", 0.25),
                          f_activation=("hardtanh", 0.25), xi=math.log(2.0), xi_logit=None),
        "pv": {},
    },
)
