"""Gradients with respect to the times t: by backpropagation through every method (gradcheck, and equal to
torchdiffeq's), and by the adjoint (torchdiffeq's time term: gradients, backward NFE and the user norm's
tuple equal to torchdiffeq's)."""

from __future__ import annotations

import importlib

import pytest
import torch

from monode import METHODS, odeint, odeint_adjoint, record_stats
from monode.solvers import ADAPTIVE

torchdiffeq = pytest.importorskip("torchdiffeq")
F64 = torch.float64
FIXED_STEP = 0.3  # no grid point near an output time: gradcheck's perturbations keep the grid's shape
TOLERANCES = {"dopri8": (1e-7, 1e-9), "fehlberg2": (1e-5, 1e-7), "adaptive_heun": (1e-5, 1e-7)}


class Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3, 3).double()

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(y)) * (1 + torch.sin(3 * t))


def _kwargs(method: str) -> dict:
    if method in ADAPTIVE:
        rtol, atol = TOLERANCES.get(method, (1e-9, 1e-11))
        return dict(rtol=rtol, atol=atol, method=method)
    multistep = {"max_order": 4} if "max_order" in METHODS[method].options else {}
    return dict(method=method, options=dict(step_size=FIXED_STEP, **multistep))


FIXED = [m for m, cls in METHODS.items() if "step_size" in cls.options]
TORCHDIFFEQ_METHODS = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS
GRADCHECKED = FIXED + [m for m in sorted(ADAPTIVE) if METHODS[m].tableau.order >= 5]  # type: ignore[union-attr]
"""Low-order adaptive methods' steps move with t by O(rtol) (no solver differentiates its step sizes), which
gradcheck's numerical Jacobian sees; their t-gradients are checked against torchdiffeq's below. (scipy_solver
gives no gradients, as torchdiffeq's.)"""


@pytest.mark.parametrize("method", GRADCHECKED)
def test_gradcheck_with_respect_to_t_by_backprop(method: str) -> None:
    field = Field()
    y0 = torch.randn(1, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.45, 1.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: odeint(field, y0, t, **_kwargs(method)), (t,), atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("method", [m for m in [*FIXED, *sorted(ADAPTIVE)] if m in TORCHDIFFEQ_METHODS])
def test_time_gradients_by_backprop_equal_torchdiffeqs(method: str) -> None:
    field = Field()
    y0 = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    grads = []
    for solve in (odeint, torchdiffeq.odeint):
        t = torch.tensor([1.0, 0.55, 0.0], dtype=F64, requires_grad=True)
        solve(field, y0, t, **_kwargs(method)).square().sum().backward()
        grads.append(t.grad)
    # (rtol: torchdiffeq also differentiates its first step size, which reads f(t0, y0); O(rtol) in dL/dt0)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("t_requires_grad", [False, True])
@pytest.mark.parametrize("times", [[0.0, 0.5, 1.0], [1.0, 0.2]])
@pytest.mark.parametrize("method", sorted(m for m in ADAPTIVE if m in TORCHDIFFEQ_METHODS))
def test_adjoint_time_term_matches_torchdiffeq(
    method: str, times: list[float], t_requires_grad: bool, dtype: torch.dtype
) -> None:
    """Gradients (y0, parameters, t) and backward NFE equal torchdiffeq's to the last bit: its time term is in
    the adjoint state and its error norm even when t needs no gradient, and the forward solution and the
    adjoint's arithmetic are torchdiffeq's (in float32 too, where the backward error estimate is mostly
    rounding)."""
    field = Field().to(dtype)
    order = METHODS[method].tableau.order  # type: ignore[union-attr]
    tolerances = dict(rtol=1e-6, atol=1e-8) if order >= 3 else dict(rtol=1e-4, atol=1e-6)  # (order 2: short)
    results = []
    for solve in (odeint_adjoint, torchdiffeq.odeint_adjoint):
        t = torch.tensor(times, dtype=dtype, requires_grad=t_requires_grad)
        y0 = torch.randn(2, 3, dtype=dtype, generator=torch.Generator().manual_seed(1), requires_grad=True)
        calls = {"n": 0}

        def counted(t, y):
            calls["n"] += 1
            return field(t, y)

        out = solve(counted, y0, t, **tolerances, method=method, adjoint_params=tuple(field.parameters()))
        calls["n"] = 0
        out.square().sum().backward()
        results.append((y0.grad, t.grad, field.lin.weight.grad.clone(), calls["n"]))
        field.zero_grad()
    (y_ours, t_ours, w_ours, n_ours), (y_ref, t_ref, w_ref, n_ref) = results
    assert n_ours == n_ref
    tol = dict(rtol=0.0, atol=0.0)  # bitwise
    torch.testing.assert_close(y_ours, y_ref, **tol)
    torch.testing.assert_close(w_ours, w_ref, **tol)
    if t_requires_grad:
        torch.testing.assert_close(t_ours, t_ref, **tol)


@pytest.mark.parametrize("method", [m for m in GRADCHECKED if m in ADAPTIVE])
def test_gradcheck_with_respect_to_t_by_the_adjoint(method: str) -> None:
    field = Field()
    y0 = torch.randn(1, 3, dtype=F64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    t = torch.tensor([0.0, 0.45, 1.0], dtype=F64, requires_grad=True)
    params = tuple(field.parameters())

    def solve(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return odeint_adjoint(field, y, t, **_kwargs(method), adjoint_params=params)

    assert torch.autograd.gradcheck(solve, (t, y0), atol=1e-5, rtol=1e-3)


def test_a_field_of_t_alone_with_no_parameters() -> None:
    """torchdiffeq returns these gradients; monode used to raise in backward."""
    grads = []
    for solve in (odeint_adjoint, torchdiffeq.odeint_adjoint):
        t = torch.tensor([0.0, 1.0], dtype=F64, requires_grad=True)
        y0 = torch.ones(2, dtype=F64, requires_grad=True)
        solve(lambda t, y: torch.sin(t) * torch.ones(2, dtype=F64), y0, t, adjoint_params=()).sum().backward()
        grads.append((y0.grad, t.grad))
    torch.testing.assert_close(grads[0], grads[1])


def test_adjoint_user_norm_receives_torchdiffeqs_tuple() -> None:
    """(time term, y parts..., adjoint parts..., parameter gradients...) for a tuple state, as torchdiffeq."""
    seen: dict[str, list] = {"ours": [], "ref": []}
    field = Field()

    def func(t, state):
        h, m = state
        return m, field(t, h) - m

    def norm_for(key: str):
        def norm(parts):
            seen[key].append([tuple(p.shape) for p in parts])
            return max(p.abs().max() if p.numel() else torch.zeros((), dtype=F64) for p in parts)

        return norm

    for key, solve in (("ours", odeint_adjoint), ("ref", torchdiffeq.odeint_adjoint)):
        y0 = (torch.ones(2, 3, dtype=F64, requires_grad=True), torch.zeros(2, 3, dtype=F64))
        t = torch.tensor([0.0, 0.5], dtype=F64)
        out = solve(func, y0, t, adjoint_params=tuple(field.parameters()), adjoint_options=dict(norm=norm_for(key)))
        out[0].sum().backward()
    assert seen["ours"][0] == seen["ref"][0] == [(), (2, 3), (2, 3), (2, 3), (2, 3), (3, 3), (3,)]
    assert len(seen["ours"]) == len(seen["ref"])


def test_adjoint_callbacks_are_called_during_the_backward_solve() -> None:
    class Logged(Field):
        def __init__(self) -> None:
            super().__init__()
            self.forward_steps = self.backward_steps = 0

        def callback_step(self, t0, y0, dt) -> None:
            self.forward_steps += 1

        def callback_step_adjoint(self, t0, y0, dt) -> None:
            self.backward_steps += 1

    field = Logged()
    y0 = torch.ones(2, 3, dtype=F64, requires_grad=True)
    with record_stats() as stats:
        odeint_adjoint(field, y0, torch.tensor([0.0, 1.0], dtype=F64), rtol=1e-5, atol=1e-7).sum().backward()
    assert field.forward_steps == stats.forward_steps + stats.forward_rejected
    assert field.backward_steps == stats.backward_steps + stats.backward_rejected > 0
