"""Closed-form VJPs (fields and MLP networks) against autograd, and the adjoint's use of them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from monode.dynamics import MODELS, MLPField, build_initializer, build_model, time_scaled
from monode.dynamics._activations import activation_backward
from monode.layers import ODEBlock
from monode.solvers import ClosedFormField, odeint, odeint_adjoint

F64 = torch.float64

FIELDS = [  # (model, field options): every supported model and gate
    ("node", {}),
    ("anode", {}),
    ("sonode", {}),
    ("hbnode", {}),
    ("hbnode", dict(xi_logit=0.5)),
    ("hbnode", dict(xi=0.7)),
    ("ghbnode", {}),
    ("ghbnode", dict(activation=("hardtanh", 0.3))),
    ("ghbnode", dict(activation="sigmoid", xi=1.5, xi_logit=None)),
    ("adamnode", {}),
    ("adamnode", dict(activation="tanh", v_activation="sigmoid", xi_logit=0.2)),
    ("adamnode", dict(v_activation=None, xi=0.5)),
    ("nesterovnode", {}),
    ("nesterovnode", dict(sign=1)),
    ("gnesterovnode", {}),
    ("gnesterovnode", dict(activation="tanh", k_activation="tanh", f_activation="tanh", xi=1.5, xi_logit=None)),
    ("nesterovnode", dict(official=True)),
    ("nesterovnode", dict(official=True, sign=1, xi_logit=0.3)),
    ("gnesterovnode", dict(official=True, activation="tanh", k_activation="tanh", f_activation="sigmoid")),
]
NETS = [
    dict(depth=1),
    dict(depth=3, activation="tanh"),
    dict(depth=2, activation="relu"),
    dict(depth=3, activation="sigmoid", time=True),
]


def _autograd_vjp(bound, t, state, cotangent):
    """Autograd through the field's call."""
    parts = state if isinstance(state, tuple) else (state,)
    leaves = tuple(p.detach().requires_grad_(True) for p in parts)
    out = bound(t, leaves if isinstance(state, tuple) else leaves[0])
    outs = out if isinstance(out, tuple) else (out,)
    cots = cotangent if isinstance(cotangent, tuple) else (cotangent,)
    grads = torch.autograd.grad(outs, (*leaves, *bound.adjoint_params()), cots, allow_unused=True)
    return outs, grads[: len(leaves)], grads[len(leaves) :]


@pytest.mark.parametrize("net_options", NETS)
@pytest.mark.parametrize("name, options", FIELDS)
def test_field_vjp_equals_autograd(name, options, net_options):
    torch.manual_seed(0)
    field = build_model(name, dim=3, hidden=5, net_options=net_options, **options).double()
    with torch.no_grad():  # move scalar parameters off their defaults so every term matters
        for p in field.parameters():
            p.add_(0.3 * torch.randn_like(p))
    bound = field.bind()
    assert isinstance(bound, ClosedFormField)
    state = tuple(torch.randn(4, 3, dtype=F64) for _ in range(field.state_size))
    if name == "adamnode":  # v > 0, as the identity v-activation needs
        state = (state[0], state[1], state[2].abs() + 0.1)
    state = state if field.state_size > 1 else state[0]
    cot = tuple(torch.randn(4, 3, dtype=F64) for _ in range(field.state_size))
    cot = cot if field.state_size > 1 else cot[0]
    t = torch.tensor(1.4, dtype=F64)  # inside every field's span (Nesterov's [1, 2])
    reference = _autograd_vjp(bound, t, state, cot)
    checks = []
    for grad_mode in (True, False):  # the closed form, with and without autograd recording
        with torch.set_grad_enabled(grad_mode):
            out, g_state, g_params = bound.vjp(t, state, cot)
        assert len(g_params) == len(bound.adjoint_params())
        checks.append(
            (out if isinstance(out, tuple) else (out,), g_state if isinstance(g_state, tuple) else (g_state,), g_params)
        )
    for outs, grad_state, grad_params in checks:
        for a, b in zip(reference[0] + reference[1], outs + grad_state):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        for a, b in zip(reference[2], grad_params):
            if a is None or b is None:
                assert (a if b is None else b) is None or not (a if b is None else b).abs().max()
            else:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_time_scaled_vjp_scales_cotangent_and_output():
    torch.manual_seed(1)
    field = build_model("hbnode", dim=3, hidden=4, xi_logit=0.1).double()
    scaled = time_scaled(field.bind(), torch.rand(5, dtype=F64), ndim=2, span_length=2.0)
    assert isinstance(scaled, ClosedFormField)
    state = (torch.randn(5, 3, dtype=F64), torch.randn(5, 3, dtype=F64))
    cot = (torch.randn(5, 3, dtype=F64), torch.randn(5, 3, dtype=F64))
    t = torch.tensor(0.0, dtype=F64)
    outs, grad_state, grad_params = _autograd_vjp(scaled, t, state, cot)
    out, g_state, g_params = scaled.vjp(t, state, cot)
    for a, b in zip((*outs, *grad_state, *grad_params), (*out, *g_state, *g_params)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "act",
    [
        torch.tanh,
        torch.sigmoid,
        torch.relu,
        F.softplus,
        F.hardtanh,
        nn.Tanh(),
        nn.ReLU(),
        nn.Sigmoid(),
        nn.Hardtanh(-0.5, 2.0),
    ],
)
def test_activation_backward_equals_autograd(act):
    x = torch.linspace(-3, 3, 61, dtype=F64).requires_grad_(True)
    g = torch.randn(61, dtype=F64)
    y = act(x)
    (expected,) = torch.autograd.grad(y, x, g)
    torch.testing.assert_close(activation_backward(act)(g, x.detach(), y.detach()), expected)


def test_unknown_activations_fall_back_to_autograd():
    assert activation_backward(lambda x: x * 2) is None
    assert not MLPField(3, 4, activation="elu").closed_form()
    field = build_model("ghbnode", dim=3, hidden=4, activation=lambda m: m.clamp(-1, 1))
    assert not isinstance(field.bind(), ClosedFormField)
    assert not isinstance(build_model("hbnode", net="conv", dim=2, hidden=3).bind(), ClosedFormField)


def _walker_gradients(name: str, closed_form: bool, monkeypatch) -> list[torch.Tensor]:
    from monode.tasks.walker2d import build_walker_model

    torch.manual_seed(0)
    model = build_walker_model(name, rtol=1e-10, atol=1e-10, adjoint=True).double()
    x, dt = torch.randn(6, 4, 17, dtype=F64), torch.rand(6, 4, dtype=F64)
    field = model.rnn.field
    if not closed_form:
        monkeypatch.setattr(type(field), "closed_form", lambda self: False)
    assert isinstance(field.bind(), ClosedFormField) == closed_form
    model(x, dt).prediction.square().mean().backward()
    monkeypatch.undo()
    return [p.grad for p in model.parameters()]


@pytest.mark.parametrize("name", ["node", "sonode", "ghbnode", "adamnode", "gnesterovnode"])
def test_adjoint_with_closed_form_vjp_gives_autograd_gradients(name, monkeypatch):
    """The whole ODE-RNN's adjoint gradients are the same whichever way the VJPs are computed."""
    fast = _walker_gradients(name, True, monkeypatch)
    slow = _walker_gradients(name, False, monkeypatch)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_adjoint_on_a_subset_of_parameters_uses_the_matching_vjp_parts():
    torch.manual_seed(2)
    field = build_model("hbnode", dim=2, hidden=3, xi_logit=0.0).double()
    bound = field.bind()
    h0, m0 = torch.randn(3, 2, dtype=F64), torch.randn(3, 2, dtype=F64)
    weight = field.net.layers[0].weight
    t = torch.tensor([0.0, 1.0], dtype=F64)
    (g_fast,) = torch.autograd.grad(odeint_adjoint(bound, (h0, m0), t, adjoint_params=(weight,))[0][-1].sum(), weight)
    (g_ref,) = torch.autograd.grad(odeint(bound, (h0, m0), t)[0][-1].sum(), weight)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-6, atol=1e-8)


def test_adjoint_takes_torchdiffeq_steps_on_the_official_stacked_state():
    """HBNODE with learnable gamma~ and xi~ in an ODE-RNN gap: monode's adjoint (closed-form VJPs, coefficient
    gradients measured in raw-parameter units, norm="rms") takes exactly the steps of torchdiffeq's adjoint on
    the official [B, 2, H] stacked state, and gives the same gradients."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    torch.manual_seed(0)
    field = build_model("hbnode", dim=6, hidden=6, xi_logit=0.0, net_options=dict(depth=3, activation="relu")).double()
    with torch.no_grad():
        for p in field.parameters():
            p.mul_(0.1)
    h0, m0 = torch.randn(8, 6, dtype=F64), torch.randn(8, 6, dtype=F64)
    dt = torch.rand(8, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    from monode.solvers import record_stats

    func = time_scaled(field.bind(), dt, 2)
    with record_stats() as stats:
        h, m = odeint_adjoint(func, (h0, m0), t, rtol=1e-7, atol=1e-7, options=dict(norm="rms"))
        (h[-1].sum() + m[-1].square().sum()).backward()
    ours = [p.grad.clone() for p in field.parameters()]
    field.zero_grad()
    calls = []

    def stacked(t, x):
        calls.append(1)
        return dt.view(-1, 1, 1) * torch.stack(field(t, tuple(x.unbind(1))), 1)

    y = torchdiffeq.odeint_adjoint(
        stacked, torch.stack([h0, m0], 1), t, rtol=1e-7, atol=1e-7, adjoint_params=tuple(field.parameters())
    )
    forward = len(calls)
    (y[-1][:, 0].sum() + y[-1][:, 1].square().sum()).backward()
    assert (stats.forward_nfe, stats.backward_nfe) == (forward, len(calls) - forward)
    for a, p in zip(ours, field.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-8)


def _gradients_by(solve, field: torch.nn.Module, y0, t) -> list[torch.Tensor]:
    field.zero_grad()
    out = solve(field, y0, t, rtol=1e-10, atol=1e-10)
    parts = out if isinstance(out, tuple) else (out,)
    sum(p[-1].square().sum() for p in parts).backward()
    return [p.grad.clone() for p in field.parameters() if p.requires_grad]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registry_field_straight_into_odeint_adjoint(name):
    """A field used as a plain nn.Module (coefficients computed per call), as torchdiffeq users pass theirs:
    the adjoint differentiates field.parameters() and agrees with torchdiffeq's adjoint (backprop through the
    solver differs from both by more than the tolerance where hardtanh gates have kinks)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    torch.manual_seed(3)
    field = build_model(name, dim=2, hidden=3).double()
    t0, t1 = field.t_span
    y0 = field.encode(
        build_initializer(name, in_channels=2, dim=2, hidden=3, conv=False).double()(torch.randn(3, 2, dtype=F64)),
        torch.tensor(t0, dtype=F64),
    )
    y0 = tuple(y.detach() for y in y0) if isinstance(y0, tuple) else y0.detach()
    t = torch.tensor([t0, t1], dtype=F64)
    for a, b in zip(
        _gradients_by(odeint_adjoint, field, y0, t), _gradients_by(torchdiffeq.odeint_adjoint, field, y0, t)
    ):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_own_parameter_of_a_registered_field_gets_its_gradient_under_the_adjoint(toy_model):
    """A field that reads its own nn.Parameter in `rhs` (not through its coefficients): identical gradients by
    backprop and by the adjoint, through the layers as a task builds them."""
    torch.manual_seed(4)
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(4)
        field = build_model(toy_model, dim=2, hidden=3).double()
        assert not isinstance(field.bind(), ClosedFormField)  # w is read directly: autograd VJPs
        block = ODEBlock(field, rtol=1e-10, atol=1e-10, adjoint=adjoint)
        block(torch.randn(4, 2, dtype=F64)).square().sum().backward()
        assert field.w.grad is not None and field.decay_logit.grad is not None
        grads.append([p.grad for p in block.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
