"""HBNODE and GHBNODE (Xia et al., NeurIPS 2021): the continuous heavy-ball limit.

    h' = sigma(m)
    m' = -gamma m + f(t, h) - xi h

HBNODE: sigma = identity and xi = 0, i.e. h'' + gamma h' = f(t, h). GHBNODE gates h' with sigma
(tanh or hardtanh(+-c)) and adds the restoring term -xi h, xi >= 0. gamma = sigmoid(gamma~) with
gamma~ learnable (initialised at -3, gamma_0 = 0.047); xi is fixed or learnable as softplus(xi~).

Mapping to the official code (`base.py: HeavyBallNODE`), which integrates h' = sigma(-m_c),
m_c' = s f_c(t, h) - sigmoid(gamma~) m_c + softplus(c~) h (s = +1): substituting m = -m_c gives
m' = -gamma m - s f_c - softplus(c~) h, i.e. this system with f = -s f_c (a learned f absorbs the
sign: negate its last layer) and xi = softplus(c~) (the code's "+corr h" is a restoring force under
its sign). The CIFAR code's "+xres h" is xi = xres (1.5 for GHBNODE); the frozen c~ = -100 of
HBNODE on MNIST is xi = 0 here (no term).
"""
from __future__ import annotations

import math

import torch

from ._base import ActivationSpec, ModelSpec, VectorField, dot, register_scalar, register_xi, resolve_activation
from ._derivatives import activation_backward
from .networks import InitialVelocity
from . import _fused

__all__ = ["HeavyBallField", "HBNODE_SPEC", "GHBNODE_SPEC"]


class HeavyBallField(VectorField):
    """State (h, m): h' = sigma(m), m' = -gamma m + f(t, h) - xi h.

    Args:
        net: f(t, h), dim -> dim channels.
        activation: sigma (see `resolve_activation`); None = identity (HBNODE).
        gamma_logit: initial gamma~, gamma = sigmoid(gamma~); learn_gamma=False freezes it.
        xi: fixed restoring coefficient (0 = no term); xi_logit: learnable instead, xi = softplus(xi~).
    """

    state_size = 2

    def __init__(self, net: torch.nn.Module, *, activation: ActivationSpec = None, gamma_logit: float = -3.0,
                 learn_gamma: bool = True, xi: float = 0.0, xi_logit: float | None = None) -> None:
        super().__init__(net)
        self.gate = resolve_activation(activation, "activation")
        self._gate_backward = activation_backward(self.gate)
        register_scalar(self, "gamma_logit", gamma_logit, trainable=learn_gamma)
        register_xi(self, xi, xi_logit)
        # the fused tail op's gate code where there is a gate (GHBNODE), else None: the ungated tail's one or two
        # addcmul ops cost less than a call (measured with benchmarks/field_overhead.py)
        self._fused_gate = None if self.gate is None else _fused.gate_code(self.gate)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(-gamma, -xi or None)."""
        xi = self.xi_value()
        return -torch.sigmoid(self.gamma_logit), None if xi is None else -xi

    def rhs(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
            coef: tuple[torch.Tensor, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._tail(self.net(t, state[0]), state, coef)

    def _tail(self, f: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
              coef: tuple[torch.Tensor, torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
        h, m = state
        neg_gamma, neg_xi = coef
        if self._fused_gate is not None:
            fused = _fused.momentum_tail(f, h, m, neg_gamma, neg_xi, 1.0, 1.0, 0.0, 1, self._fused_gate, _IDENTITY)
            if fused is not None:
                return fused
        dm = torch.addcmul(f, m, neg_gamma)
        if neg_xi is not None:
            dm = dm.addcmul_(h, neg_xi)
        return (m if self.gate is None else self.gate(m)), dm

    def rhs_forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
                    coef: tuple) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple]:
        f, net_saved = self.net.forward_saved(t, state[0])
        out = self._tail(f, state, coef)
        return out, (net_saved, state, out[0])

    def rhs_backward(self, t: torch.Tensor, saved: tuple, coef: tuple,
                     cotangent: tuple[torch.Tensor, torch.Tensor]) -> tuple[tuple, list[torch.Tensor], tuple]:
        """With (c_h, c_m) and g = c_m . df/dh:
        (g - xi c_m, c_h sigma'(m) - gamma c_m); d/d(-gamma) = <c_m, m>, d/d(-xi) = <c_m, h>."""
        net_saved, (h, m), dh = saved
        c_h, c_m = cotangent
        neg_gamma, neg_xi = coef
        fused = None
        if self._fused_gate is not None:
            # f is read only through sigma3 = identity's slope: any tensor of its shape stands in for it
            fused = _fused.momentum_backward(c_m, h, m, neg_gamma, neg_xi, c_h, c_m, 1.0, 1.0, 0.0, 1,
                                             self._fused_gate, _IDENTITY)
        if fused is not None:
            _, grad_tail, grad_m, *grad_coef = fused  # grad_tail = -xi c_m, grad_m = sigma'(m) c_h - gamma c_m
            grad_h, grad_net = self.net.vjp(net_saved, c_m)
            return (grad_h.add_(grad_tail) if neg_xi is not None else grad_h, grad_m), grad_net, tuple(grad_coef)
        if self.gate is None:
            grad_m = torch.addcmul(c_h, c_m, neg_gamma)
        else:
            grad_m = self._gate_backward(c_h, m, dh).addcmul_(c_m, neg_gamma)
        grad_h, grad_net = self.net.vjp(net_saved, c_m)
        if neg_xi is not None:
            grad_h = grad_h.addcmul_(c_m, neg_xi)
        grad_coef = (dot(c_m, m) if neg_gamma.requires_grad else None,
                     dot(c_m, h) if neg_xi is not None and neg_xi.requires_grad else None)
        return (grad_h, grad_m), grad_net, grad_coef

    def vjp_supported(self) -> bool:
        return super().vjp_supported() and (self.gate is None or self._gate_backward is not None)


_IDENTITY = _fused.gate_code(None)
_LN2 = math.log(2.0)  # softplus(0): the official c~ = 0

HBNODE_SPEC = ModelSpec(
    "hbnode", HeavyBallField, InitialVelocity, "h' = m, m' = -gamma m + f(t, h)",
    presets={
        "mnist": dict(dim=5, hidden=50),
        "cifar": dict(dim=12, hidden=51),
        "pv": dict(xi_logit=0.0),          # c~ = 0 trainable
        "walker": dict(xi=_LN2),           # c~ = 0 frozen: a fixed restoring term, as released
        "pointcloud": {},
        "silverbox": {},
    },
)
GHBNODE_SPEC = ModelSpec(
    "ghbnode", HeavyBallField, InitialVelocity, "h' = sigma(m), m' = -gamma m + f(t, h) - xi h",
    options=dict(activation="tanh", xi_logit=2.0),  # MNIST: tanh, c~_0 = 2 trainable
    presets={
        "mnist": dict(dim=6, hidden=45),   # HB repo; the Nesterov repo used (5, 50)
        "cifar": dict(xi=1.5, xi_logit=None, dim=12, hidden=51),
        "pv": dict(xi_logit=0.0),
        "walker": dict(xi_logit=1.0),
        "pointcloud": dict(activation=None, xi=2.0, xi_logit=None),
        "silverbox": dict(activation=("hardtanh", 5.0), xi=_LN2, xi_logit=None),
    },
)
