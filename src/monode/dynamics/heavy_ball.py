"""HBNODE and GHBNODE: the continuous limit of the heavy-ball method.

    h' = sigma(m)
    m' = -gamma m + f(t, h) - xi h

HBNODE: sigma = identity and xi = 0, i.e. h'' + gamma h' = f(t, h). GHBNODE gates h' with sigma
(tanh or hardtanh(+-c)) and adds the restoring term -xi h, xi >= 0. gamma = sigmoid(gamma~) with
gamma~ learnable (initialised at -3, gamma_0 = 0.047); xi is fixed or learnable as softplus(xi~).

The released code integrates h' = sigma(-m_c), m_c' = f_c(t, h) - gamma m_c + softplus(c~) h.
Substituting m = -m_c gives this system with f = -f_c (a learned f absorbs the sign) and
xi = softplus(c~). The CIFAR code's "+xres h" is xi = xres (1.5 for GHBNODE); the frozen c~ = -100
of HBNODE on MNIST is xi = 0 here (no term).

Reference: Xia, Suliafu, Ji, Nguyen, Bertozzi, Osher, Wang (2021), Heavy ball neural ordinary
differential equations, NeurIPS 2021, arXiv:2110.04840.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ._activations import ActivationSpec, activation_backward, resolve_activation
from ._base import VectorField, dot, register_scalar, register_xi
from ._spec import ModelSpec
from .networks import InitialVelocity

__all__ = ["HeavyBallField", "HeavyBallCoefficients", "HBNODE_SPEC", "GHBNODE_SPEC"]


class HeavyBallCoefficients(NamedTuple):
    gamma: torch.Tensor
    xi: torch.Tensor | None


class HeavyBallField(VectorField):
    """State (h, m): h' = sigma(m), m' = -gamma m + f(t, h) - xi h.

    Args:
        net: f(t, h), dim -> dim channels.
        activation: sigma (see `resolve_activation`); None = identity (HBNODE).
        gamma_logit: initial gamma~, gamma = sigmoid(gamma~); learn_gamma=False freezes it.
        xi: fixed restoring coefficient (0 = no term); xi_logit: learnable instead, xi = softplus(xi~).
    """

    state_size = 2

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        activation: ActivationSpec = None,
        gamma_logit: float = -3.0,
        learn_gamma: bool = True,
        xi: float = 0.0,
        xi_logit: float | None = None,
    ) -> None:
        super().__init__(net)
        self.gate = resolve_activation(activation, "activation")
        self._gate_backward = activation_backward(self.gate)
        register_scalar(self, "gamma_logit", gamma_logit, trainable=learn_gamma)
        register_xi(self, xi, xi_logit)

    def coefficients(self) -> HeavyBallCoefficients:
        return HeavyBallCoefficients(torch.sigmoid(self.scalar("gamma_logit")), self.xi_value())

    def rhs(
        self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], coef: HeavyBallCoefficients
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._equations(self.net(t, state[0]), state, coef)

    def _equations(
        self, f: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], coef: HeavyBallCoefficients
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma(m), -gamma m + f - xi h) from f = f(t, h)."""
        h, m = state
        dm = torch.addcmul(f, m, coef.gamma, value=-1.0)
        if coef.xi is not None:
            dm = dm.addcmul_(h, coef.xi, value=-1.0)
        return (m if self.gate is None else self.gate(m)), dm

    def rhs_forward(
        self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], coef: HeavyBallCoefficients
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple]:
        f, net_saved = self.closed_net.forward_saved(t, state[0])
        out = self._equations(f, state, coef)
        return out, (net_saved, state, out[0])

    def rhs_backward(
        self, t: torch.Tensor, saved: tuple, coef: HeavyBallCoefficients, cotangent: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], list[torch.Tensor], HeavyBallCoefficients]:
        """With (c_h, c_m) and g = c_m . df/dh: (g - xi c_m, sigma'(m) c_h - gamma c_m);
        d/dgamma = -<c_m, m>, d/dxi = -<c_m, h>."""
        net_saved, (h, m), dh = saved
        c_h, c_m = cotangent
        gate_grad = c_h if self._gate_backward is None else self._gate_backward(c_h, m, dh)
        grad_m = torch.addcmul(gate_grad, c_m, coef.gamma, value=-1.0)
        grad_h, grad_net = self.closed_net.vjp(net_saved, c_m)
        if coef.xi is not None:
            grad_h = grad_h.addcmul_(c_m, coef.xi, value=-1.0)
        grad_coef = HeavyBallCoefficients(
            -dot(c_m, m) if coef.gamma.requires_grad else None,  # type: ignore[arg-type]
            -dot(c_m, h) if coef.xi is not None and coef.xi.requires_grad else None,
        )
        return (grad_h, grad_m), grad_net, grad_coef

    def closed_form(self) -> bool:
        return super().closed_form() and (self.gate is None or self._gate_backward is not None)


_LN2 = math.log(2.0)  # softplus(0): the released c~ = 0

HBNODE_SPEC = ModelSpec(
    "hbnode",
    HeavyBallField,
    InitialVelocity,
    "h' = m, m' = -gamma m + f(t, h)",
    presets={
        "mnist": dict(dim=5, hidden=50),
        "cifar10": dict(dim=12, hidden=51),
        "plane-vibration": dict(xi_logit=0.0),  # c~ = 0 trainable
        "walker2d": dict(xi=_LN2),  # c~ = 0 frozen: a fixed restoring term, as released
    },
)
GHBNODE_SPEC = ModelSpec(
    "ghbnode",
    HeavyBallField,
    InitialVelocity,
    "h' = sigma(m), m' = -gamma m + f(t, h) - xi h",
    options=dict(activation="tanh", xi_logit=2.0),  # MNIST: tanh, c~_0 = 2 trainable
    presets={
        "mnist": dict(dim=6, hidden=45),  # HB repo; the Nesterov repo used (5, 50)
        "cifar10": dict(xi=1.5, xi_logit=None, dim=12, hidden=51),
        "plane-vibration": dict(xi_logit=0.0),
        "walker2d": dict(xi_logit=1.0),
        "point-cloud": dict(activation=None, xi=2.0, xi_logit=None),
        "silverbox-init": dict(activation=("hardtanh", 5.0), xi=_LN2, xi_logit=None),
    },
)
