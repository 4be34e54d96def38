"""AdamNODE (Cho et al. 2022): adaptive first and second moments of f drive h.

    h' = sigma(m) / sqrt(act(v) + eps^2)
    m' = beta1 (f(t, h) - m) - xi h
    v' = beta2 (f(t, h)^2 - v)

m tracks f, v tracks f^2, and h moves along f / sqrt(f^2): self-normalised dynamics without
GHBNODE's ad-hoc gates. beta_i = sigmoid(beta~_i), learnable; act is the v-activation
(softplus, sigmoid or identity; identity needs v > 0); xi >= 0 is an optional restoring term.

The two published variants are the same system under m = -m_c (the code tracks -f with
h' = sigma(-m_c)):
* MNIST/Silverbox (`base.py: AdamNODEs`): beta~ = (-5, +5), act = softplus (defaults here). Its
  corr terms softplus(c~_1) h on m_c' (= -xi h here) and softplus(c~_2) h on v' are frozen at
  c~ = -100, i.e. zero; the second is not offered.
* CIFAR (`cifar10/models.py`): beta~ = (+3, +3), act = sigmoid: preset "cifar".

eps (1e-8) enters as sqrt(act(v) + eps^2) rather than the code's sqrt(act(v)) + eps: both are
1/eps at act(v) = 0 and their relative difference is below eps / sqrt(act(v)) elsewhere, and the
field then costs one rsqrt and a multiply instead of sqrt, add and a division.
"""
from __future__ import annotations

import torch

from ._base import ActivationSpec, ModelSpec, VectorField, dot, register_scalar, register_xi, resolve_activation
from ._derivatives import activation_backward
from .networks import AdamInitialState
from . import _fused

__all__ = ["AdamField", "ADAMNODE_SPEC"]



class AdamField(VectorField):
    """State (h, m, v): h' = sigma(m) / sqrt(act(v) + eps^2), m' = beta1 (f - m) - xi h, v' = beta2 (f^2 - v).

    Args:
        net: f(t, h), dim -> dim channels.
        activation: sigma on m (None = identity, as in both papers' variants).
        v_activation: act on v: "softplus" (MNIST), "sigmoid" (CIFAR) or None/"identity".
        beta_logits: initial (beta~1, beta~2); learn_betas=False freezes them.
        eps: floor of the denominator, entering as sqrt(act(v) + eps^2) (see the module docstring).
        xi, xi_logit: restoring term on m, as in `HeavyBallField`.
    """

    state_size = 3

    def __init__(self, net: torch.nn.Module, *, activation: ActivationSpec = None,
                 v_activation: ActivationSpec = "softplus", beta_logits: tuple[float, float] = (-5.0, 5.0),
                 learn_betas: bool = True, eps: float = 1e-8, xi: float = 0.0, xi_logit: float | None = None) -> None:
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
        # the fused CPU kernel's code for this v-activation (None: ATen ops only, e.g. a gate on m)
        self._fused_kind = None if self.gate is not None else _fused.ADAM_ACTIVATIONS.get(self.v_act)

    def coefficients(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(beta1, -beta2, -xi or None): signs folded in once per solve, so each call saves an op."""
        xi = self.xi_value()
        return torch.sigmoid(self.beta1_logit), -torch.sigmoid(self.beta2_logit), None if xi is None else -xi

    def rhs(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
            coef: tuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._tail(self.net(t, state[0]), state, coef)[0]

    def _tail(self, f: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor], coef: tuple
              ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple | None]:
        """(dh, dm, dv) from f, and (act(v), r, sigma(m)) for the backward (None from the fused op)."""
        h, m, v = state
        beta1, neg_beta2, neg_xi = coef
        if self._fused_kind is not None:
            fused = _fused.adam_tail(f, h, m, v, beta1, neg_beta2, neg_xi, self._fused_kind, self.eps_squared)
            if fused is not None:
                return fused, None
        act_v = v if self.v_act is None else self.v_act(v)
        inv_scale = torch.rsqrt(act_v + self.eps_squared)
        gate_m = m if self.gate is None else self.gate(m)
        dm = (f - m) * beta1
        if neg_xi is not None:
            dm = dm.addcmul_(h, neg_xi)
        dv = torch.addcmul(v, f, f, value=-1.0).mul_(neg_beta2)  # beta2 (f^2 - v)
        return (gate_m * inv_scale, dm, dv), (act_v, inv_scale, gate_m)

    def rhs_forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                    coef: tuple) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple]:
        f, net_saved = self.net.forward_saved(t, state[0])
        out, aux = self._tail(f, state, coef)
        return out, (f, net_saved, state, aux)

    def rhs_backward(self, t: torch.Tensor, saved: tuple, coef: tuple,
                     cotangent: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[tuple, list, tuple]:
        """With r = (act(v) + eps^2)^(-1/2) and cotangents (c_h, c_m, c_v):
        f gets beta1 c_m + 2 beta2 f c_v, so c_h' = (that) . df/dh - xi c_m; c_m' = sigma'(m) r c_h - beta1 c_m;
        c_v' = -r^3 act'(v) sigma(m) c_h / 2 - beta2 c_v; d/dbeta1 = <c_m, f - m>, d/d(-beta2) = <c_v, v - f^2>,
        d/d(-xi) = <c_m, h>."""
        f, net_saved, (h, m, v), aux = saved
        c_h, c_m, c_v = cotangent
        beta1, neg_beta2, neg_xi = coef
        fused = None
        if self._fused_kind is not None:
            fused = _fused.adam_backward(f, h, m, v, c_h, c_m, c_v, beta1, neg_beta2, neg_xi, self._fused_kind,
                                         self.eps_squared)
        if fused is not None:
            grad_f, grad_m, grad_v, *grad_coef = fused
        else:
            grad_f, grad_m, grad_v = self._backward_aten(f, (h, m, v), coef, cotangent, aux)
            grad_coef = (dot(c_m, f - m) if beta1.requires_grad else None,
                         dot(c_v, torch.addcmul(v, f, f, value=-1.0)) if neg_beta2.requires_grad else None,
                         dot(c_m, h) if neg_xi is not None and neg_xi.requires_grad else None)
        grad_h, grad_net = self.net.vjp(net_saved, grad_f)
        if neg_xi is not None:
            grad_h = grad_h.addcmul_(c_m, neg_xi)
        return (grad_h, grad_m, grad_v), grad_net, tuple(grad_coef)

    def _backward_aten(self, f: torch.Tensor, state: tuple, coef: tuple, cotangent: tuple, aux: tuple | None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(grad_f, grad_m, grad_v) with ATen ops; `aux` = (act(v), r, sigma(m)) from the forward, if it has them."""
        h, m, v = state
        c_h, c_m, c_v = cotangent
        beta1, neg_beta2, _ = coef
        if aux is None:
            act_v = v if self.v_act is None else self.v_act(v)
            aux = act_v, torch.rsqrt(act_v + self.eps_squared), m if self.gate is None else self.gate(m)
        act_v, inv_scale, gate_m = aux
        grad_f = torch.mul(c_m, beta1).addcmul_(f, c_v * neg_beta2, value=-2.0)
        c_h_scaled = c_h * inv_scale
        d_act = (c_h_scaled * gate_m).mul_(inv_scale.square()).mul_(-0.5)  # d/d act(v)
        grad_m = (c_h_scaled if self.gate is None else self._gate_backward(c_h_scaled, m, gate_m)).sub_(c_m * beta1)
        if self.v_act is not None:
            d_act = self._v_backward(d_act, v, act_v)
        return grad_f, grad_m, d_act.addcmul_(c_v, neg_beta2)

    def vjp_supported(self) -> bool:
        return (super().vjp_supported() and (self.gate is None or self._gate_backward is not None)
                and (self.v_act is None or self._v_backward is not None))


ADAMNODE_SPEC = ModelSpec(
    "adamnode", AdamField, AdamInitialState, "h' = m / sqrt(v), m' = beta1 (f - m), v' = beta2 (f^2 - v)",
    presets={
        "mnist": dict(dim=5, hidden=50),
        "cifar": dict(beta_logits=(3.0, 3.0), v_activation="sigmoid", dim=15, hidden=31),
        "pv": {}, "walker": {}, "pointcloud": {}, "silverbox": {},
    },
)
