"""AdamNODE: adaptive first and second moments of f drive h.

    h' = sigma(m) / sqrt(act(v) + eps^2)
    m' = beta1 (f(t, h) - m) - xi h
    v' = beta2 (f(t, h)^2 - v)

m tracks f, v tracks f^2, and h moves along f / sqrt(f^2): self-normalised dynamics without
GHBNODE's ad-hoc gates. beta_i = sigmoid(beta~_i), learnable; act is the v-activation
(softplus, sigmoid or identity; identity needs v > 0); xi >= 0 is an optional restoring term.

The two released variants are this system under m = -m_c (the code tracks -f with h' = sigma(-m_c)):
* MNIST/Silverbox: beta~ = (-5, +5), act = softplus (the defaults here). Its terms softplus(c~_1) h
  on m_c' (= -xi h here) and softplus(c~_2) h on v' are frozen at c~ = -100, i.e. zero; the second
  is not offered.
* CIFAR: beta~ = (+3, +3), act = sigmoid: preset "cifar10".

eps (1e-8) enters as sqrt(act(v) + eps^2) rather than the code's sqrt(act(v)) + eps: both are 1/eps at
act(v) = 0 and their relative difference is below eps / sqrt(act(v)) elsewhere.

Reference: Cho, Hong, Lee, Park (2022), AdamNODEs: when neural ODE meets adaptive moment
estimation, arXiv:2207.06066.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._activations import ActivationSpec, activation_backward, resolve_activation
from ._base import VectorField, dot, register_scalar, register_xi
from ._spec import ModelSpec
from .networks import AdamInitialState

__all__ = ["AdamField", "AdamCoefficients", "ADAMNODE_SPEC"]

AdamState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class AdamCoefficients(NamedTuple):
    beta1: torch.Tensor
    beta2: torch.Tensor
    xi: torch.Tensor | None


class AdamField(VectorField):
    """State (h, m, v): h' = sigma(m) / sqrt(act(v) + eps^2), m' = beta1 (f - m) - xi h, v' = beta2 (f^2 - v).

    Args:
        net: f(t, h), dim -> dim channels.
        activation: sigma on m (None = identity, as in both released variants).
        v_activation: act on v: "softplus" (MNIST), "sigmoid" (CIFAR) or None/"identity".
        beta_logits: initial (beta~1, beta~2); learn_betas=False freezes them.
        eps: floor of the denominator, entering as sqrt(act(v) + eps^2) (see the module docstring).
        xi: fixed restoring coefficient on m, as in `HeavyBallField`.
        xi_logit: learnable restoring coefficient softplus(xi~), as in `HeavyBallField`.
    """

    state_size = 3

    def __init__(
        self,
        net: torch.nn.Module,
        *,
        activation: ActivationSpec = None,
        v_activation: ActivationSpec = "softplus",
        beta_logits: tuple[float, float] = (-5.0, 5.0),
        learn_betas: bool = True,
        eps: float = 1e-8,
        xi: float = 0.0,
        xi_logit: float | None = None,
    ) -> None:
        super().__init__(net)
        if len(beta_logits) != 2:
            raise ValueError(f"beta_logits must be a pair (beta~1, beta~2), got {beta_logits!r}")
        self.gate = resolve_activation(activation, "activation")
        self.v_act = resolve_activation(v_activation, "v_activation")
        self._gate_backward, self._v_backward = activation_backward(self.gate), activation_backward(self.v_act)
        register_scalar(self, "beta1_logit", beta_logits[0], trainable=learn_betas)
        register_scalar(self, "beta2_logit", beta_logits[1], trainable=learn_betas)
        register_xi(self, xi, xi_logit)
        self.eps_squared = float(eps) ** 2

    def coefficients(self) -> AdamCoefficients:
        return AdamCoefficients(
            torch.sigmoid(self.scalar("beta1_logit")), torch.sigmoid(self.scalar("beta2_logit")), self.xi_value()
        )

    def rhs(self, t: torch.Tensor, state: AdamState, coef: AdamCoefficients) -> AdamState:
        return self._equations(self.net(t, state[0]), state, coef)[0]

    def _equations(
        self, f: torch.Tensor, state: AdamState, coef: AdamCoefficients
    ) -> tuple[AdamState, tuple[torch.Tensor, ...]]:
        """(h', m', v') from f = f(t, h), and (act(v), r = (act(v) + eps^2)^(-1/2), sigma(m), f - m, f^2 - v)
        for the VJP."""
        h, m, v = state
        act_v = v if self.v_act is None else self.v_act(v)
        inv_scale = torch.add(act_v, self.eps_squared).rsqrt_()
        gate_m = m if self.gate is None else self.gate(m)
        dh = gate_m * inv_scale
        f_minus_m = f - m
        dm = f_minus_m * coef.beta1
        if coef.xi is not None:
            dm = dm.addcmul_(h, coef.xi, value=-1.0)
        f2_minus_v = f.square().sub_(v)
        return (dh, dm, f2_minus_v * coef.beta2), (act_v, inv_scale, gate_m, f_minus_m, f2_minus_v)

    def rhs_forward(self, t: torch.Tensor, state: AdamState, coef: AdamCoefficients) -> tuple[AdamState, tuple]:
        f, net_saved = self.closed_net.forward_saved(t, state[0])
        out, aux = self._equations(f, state, coef)
        return out, (f, net_saved, state, out[0], aux)

    def rhs_backward(
        self, t: torch.Tensor, saved: tuple, coef: AdamCoefficients, cotangent: AdamState
    ) -> tuple[AdamState, list[torch.Tensor], AdamCoefficients]:
        """With r = (act(v) + eps^2)^(-1/2), h' = sigma(m) r and cotangents (c_h, c_m, c_v): f gets
        beta1 c_m + 2 beta2 f c_v, so c_h' = (that) . df/dh - xi c_m; c_m' = sigma'(m) r c_h - beta1 c_m;
        c_v' = -act'(v) (r c_h) h' r / 2 - beta2 c_v; d/dbeta1 = <c_m, f - m>, d/dbeta2 = <c_v, f^2 - v>,
        d/dxi = -<c_m, h>."""
        f, net_saved, (h, m, v), dh, (act_v, inv_scale, gate_m, f_minus_m, f2_minus_v) = saved
        c_h, c_m, c_v = cotangent
        beta1_c_m = c_m * coef.beta1
        grad_f = torch.addcmul(beta1_c_m, f, c_v * coef.beta2, value=2.0)
        c_h_scaled = c_h * inv_scale
        d_act = torch.mul(c_h_scaled, dh).mul_(inv_scale)  # -2 d/d act(v)
        gate_grad = c_h_scaled if self._gate_backward is None else self._gate_backward(c_h_scaled, m, gate_m)
        grad_m = gate_grad.sub_(beta1_c_m)
        if self._v_backward is not None:
            d_act = self._v_backward(d_act, v, act_v)
        grad_v = torch.addcmul(d_act, c_v, coef.beta2, value=2.0).mul_(-0.5)
        grad_h, grad_net = self.closed_net.vjp(net_saved, grad_f)
        if coef.xi is not None:
            grad_h = grad_h.addcmul_(c_m, coef.xi, value=-1.0)
        grad_coef = AdamCoefficients(
            dot(c_m, f_minus_m) if coef.beta1.requires_grad else None,  # type: ignore[arg-type]
            dot(c_v, f2_minus_v) if coef.beta2.requires_grad else None,  # type: ignore[arg-type]
            -dot(c_m, h) if coef.xi is not None and coef.xi.requires_grad else None,
        )
        return (grad_h, grad_m, grad_v), grad_net, grad_coef

    def closed_form(self) -> bool:
        return (
            super().closed_form()
            and (self.gate is None or self._gate_backward is not None)
            and (self.v_act is None or self._v_backward is not None)
        )


ADAMNODE_SPEC = ModelSpec(
    "adamnode",
    AdamField,
    AdamInitialState,
    "h' = m / sqrt(v), m' = beta1 (f - m), v' = beta2 (f^2 - v)",
    presets={
        "mnist": dict(dim=5, hidden=50),
        "cifar10": dict(beta_logits=(3.0, 3.0), v_activation="sigmoid", dim=15, hidden=31),
    },
)
