"""The solver engine: accuracy, order, torchdiffeq parity, gradients, statistics, errors, compile."""

from __future__ import annotations

import math

import pytest
import torch

from monode import (
    METHODS,
    MaxStepsExceededError,
    NonFiniteStateError,
    ODEInputError,
    StepSizeUnderflowError,
    odeint,
    odeint_adjoint,
    record_stats,
)
from monode.dynamics import build_model
from monode.layers import ODERNN
from monode.solvers import ADAPTIVE as ADAPTIVE_METHODS
from monode.solvers._nonfinite import MAX_NONFINITE_TRIALS
from problems import ExpSin, HarmonicOscillator, LinearSystem

torchdiffeq = pytest.importorskip("torchdiffeq")


def _alias(cls: type) -> bool:
    """A registered method that is another one under a second name (fixed_adams): tested as that one."""
    own = set(vars(cls)) - {"name", "__module__", "__doc__", "__qualname__", "__firstlineno__", "__static_attributes__"}
    return not own and cls.__bases__[0] in METHODS.values()


FIXED = {name: cls.nfe_per_step for name, cls in METHODS.items() if "step_size" in cls.options and not _alias(cls)}
ADAPTIVE = sorted(ADAPTIVE_METHODS)
MULTISTEP = {name: dict(max_order=4) for name, cls in METHODS.items() if getattr(cls, "tolerances", False)}
"""The Adams methods at max_order 4 (the default 12 is unstable on oscillatory problems, as torchdiffeq's):
Adams-Bashforth of 3 steps (order 3), the predictor-corrector of order 4."""
ORDER = {
    name: (3 + getattr(cls, "implicit", 0)) if name in MULTISTEP else cls.order if name in FIXED else cls.tableau.order  # type: ignore[union-attr]
    for name, cls in METHODS.items()
}
F64 = torch.float64
STEP = {1: 1e-4, 2: 1e-3, 3: 1e-2, 4: 1e-2}  # fixed-step size per order for ~1e-5 accuracy
TOL = {1: 4e-3, 2: 1e-5, 3: 2e-5, 4: 1e-7}


ADAPTIVE_TOLERANCES = {2: (1e-6, 1e-8, 5e-4), 3: (1e-9, 1e-11, 2e-6), 5: (1e-10, 1e-12, 1e-6), 8: (1e-8, 1e-10, 5e-5)}
"""(rtol, atol, accuracy of outputs) per adaptive order, in a few thousand steps at most. Outputs between steps
come from the quartic dense output, whose error dominates for high orders; fehlberg2's order-1 estimate
understates its error (dopri8: its error estimate is also
rounding below rtol ~1e-9, so a tighter rtol makes step sizes jump under a perturbation)."""


def _tolerances(method: str) -> dict[str, float]:
    rtol, atol, _ = ADAPTIVE_TOLERANCES[ORDER[method]] if method in ADAPTIVE else (1e-10, 1e-12, 0.0)
    return dict(rtol=rtol, atol=atol)


def _step(method: str) -> float:
    return STEP[ORDER[method]] if method in FIXED else 0.0


def _tol(method: str) -> float:
    return TOL[ORDER[method]] if method in FIXED else ADAPTIVE_TOLERANCES[ORDER[method]][2]


def _opts(method: str, step: float) -> dict | None:
    return dict(step_size=step, **MULTISTEP.get(method, {})) if method in FIXED else None


@pytest.mark.parametrize("method", ADAPTIVE + list(FIXED))
def test_linear_system_matches_matrix_exponential(method: str) -> None:
    f = LinearSystem()
    y0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=F64)
    t = torch.linspace(0, 2, 5, dtype=F64)
    opts = (
        dict(step_size=_step(method), max_num_steps=100_000, **MULTISTEP.get(method, {})) if method in FIXED else None
    )
    with torch.no_grad():
        y = odeint(f, y0, t, **_tolerances(method), method=method, options=opts)
    tol = _tol(method)
    torch.testing.assert_close(y, f.exact(y0, t), rtol=0, atol=tol)


@pytest.mark.parametrize("method", ADAPTIVE + list(FIXED))
def test_harmonic_oscillator_tuple_state_forward_and_backward_in_time(method: str) -> None:
    f = HarmonicOscillator()
    x0, v0 = torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    t = torch.linspace(0, 3, 4, dtype=F64)
    opts = (
        dict(step_size=_step(method), max_num_steps=100_000, **MULTISTEP.get(method, {})) if method in FIXED else None
    )
    tol = _tol(method) * 1.5
    x, v = odeint(f, (x0, v0), t, **_tolerances(method), method=method, options=opts)
    xe, ve = f.exact(x0, v0, t)
    assert isinstance(x, torch.Tensor) and x.shape == (4, 2)
    torch.testing.assert_close(x, xe, rtol=0, atol=tol)
    torch.testing.assert_close(v, ve, rtol=0, atol=tol)
    # integrate back from t=3 to t=0: recovers the initial state
    xb, vb = odeint(f, (x[-1], v[-1]), t.flip(0), **_tolerances(method), method=method, options=opts)
    torch.testing.assert_close(xb[-1], x0, rtol=0, atol=2 * tol)
    torch.testing.assert_close(vb[-1], v0, rtol=0, atol=2 * tol)


@pytest.mark.parametrize("method", list(FIXED))
def test_empirical_convergence_order(method: str) -> None:
    order = ORDER[method]
    f, y0 = ExpSin(), torch.tensor([1.0], dtype=F64)
    t = torch.tensor([0.0, 2.0], dtype=F64)
    exact = ExpSin.exact(y0, 0.0, 2.0)
    steps = [0.0625, 0.03125, 0.015625] if order == 3 else [0.125, 0.0625, 0.03125]  # (uniform grids on [0, 2])
    options = [dict(step_size=h, **MULTISTEP.get(method, {})) for h in steps]
    errors = [(odeint(f, y0, t, method=method, options=o)[-1] - exact).abs().item() for o in options]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    slack = 0.5 if method in MULTISTEP else 0.3  # (multistep: an rk4 start, so rates approach from above)
    assert all(abs(r - order) < slack for r in rates), (errors, rates)


def test_tuple_state_uses_torchdiffeq_mixed_norm() -> None:
    f = HarmonicOscillator(omega=3.0)
    x0, v0 = torch.ones(5, dtype=F64), torch.full((5,), 0.01, dtype=F64)
    t = torch.linspace(0, 4, 3, dtype=F64)
    with record_stats() as stats:
        ours = odeint(f, (x0, v0), t, rtol=1e-5, atol=1e-7)
    n = {"k": 0}

    def counted(t, s):
        n["k"] += 1
        return f(t, s)

    ref = torchdiffeq.odeint(counted, (x0, v0), t, rtol=1e-5, atol=1e-7)
    assert stats.forward_nfe == n["k"]
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=1e-8)


def test_rms_norm_on_a_tuple_state_matches_torchdiffeq_on_the_stacked_state() -> None:
    """norm="rms": one RMS over (x, v), what torchdiffeq does for the state stacked into one tensor
    (the official ODE-RNNs' [B, 2, H]): the same steps, so the same NFE."""
    f = HarmonicOscillator(omega=3.0)
    x0, v0 = torch.ones(5, dtype=F64), torch.full((5,), 0.01, dtype=F64)
    t = torch.linspace(0, 4, 3, dtype=F64)
    n = {"k": 0}

    def stacked(t, s):
        n["k"] += 1
        return torch.stack(f(t, tuple(s.unbind(0))))

    with record_stats() as stats:
        ours = odeint(f, (x0, v0), t, rtol=1e-5, atol=1e-7, options=dict(norm="rms"))
    ref = torchdiffeq.odeint(stacked, torch.stack([x0, v0]), t, rtol=1e-5, atol=1e-7)
    assert stats.forward_nfe == n["k"]
    torch.testing.assert_close(ours[0], ref[:, 0], rtol=0, atol=1e-10)
    with record_stats() as mixed:
        odeint(f, (x0, v0), t, rtol=1e-5, atol=1e-7)
    assert mixed.forward_nfe != stats.forward_nfe  # the mixed norm is a different (stricter) control here


def test_callable_norm_on_a_tuple_state_receives_the_tuple() -> None:
    seen = []

    def norm(parts):
        seen.append(type(parts))
        return max(p.abs().max() for p in parts)

    f = HarmonicOscillator()
    odeint(
        f,
        (torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64)),
        torch.tensor([0.0, 1.0], dtype=F64),
        options=dict(norm=norm),
    )
    assert seen and set(seen) == {tuple}


# -- gradients -------------------------------------------------------------------------------


def _grad_problem():
    torch.manual_seed(1)
    lin = torch.nn.Linear(2, 2).double()

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, t, state):
            h, m = state
            return m, torch.tanh(self.lin(h)) - 0.3 * m + 0.1 * t

    return Field()


GRADCHECK_TOLERANCES = {
    "dopri8": dict(rtol=1e-6, atol=1e-8),
    **{m: dict(rtol=1e-5, atol=1e-7) for m in ADAPTIVE if ORDER[m] == 2},
}
"""dopri8 at tighter tolerances takes a different number of steps under gradcheck's perturbations; the order-2
methods would take thousands (their gradients are checked to the matching atol below)."""


@pytest.mark.parametrize(
    "method,adjoint",
    [(m, False) for m in ADAPTIVE + list(FIXED)] + [(m, True) for m in ADAPTIVE + ["euler", "nag", "midpoint", "rk4"]],
)  # (the adjoint's gradient depends on a fixed-grid method only through its steps: four orders cover it)
def test_gradcheck(method: str, adjoint: bool) -> None:
    field = _grad_problem()
    t = torch.tensor([0.0, 0.3, 0.6], dtype=F64)
    # the continuous adjoint of a fixed-step method matches the discrete gradient only to O(h^order)
    step = {"euler": 1e-3, "nag": 1e-3, "midpoint": 0.01}.get(method, 0.05) if adjoint else 0.05
    opts = _opts(method, step)
    w, b = field.lin.weight, field.lin.bias

    def run_direct(h0, m0, w_, b_):
        def f(tt, s):
            h, m = s
            return m, torch.tanh(h @ w_.T + b_) - 0.3 * m + 0.1 * tt

        solve = odeint_adjoint if adjoint else odeint
        kw = dict(adjoint_params=(w_, b_)) if adjoint else {}
        h, m = solve(f, (h0, m0), t, **GRADCHECK_TOLERANCES.get(method, _tolerances(method)), method=method,
                     options=opts, **kw)  # fmt: skip
        return h[1:].sum(-1), m[-1]

    inputs = (
        torch.tensor([0.3, -0.2], dtype=F64, requires_grad=True),
        torch.tensor([0.1, 0.4], dtype=F64, requires_grad=True),
        w.detach().clone().requires_grad_(True),
        b.detach().clone().requires_grad_(True),
    )
    atol = 2e-3 if (adjoint and method in ("euler", "nag")) else (2e-5 if adjoint else 1e-6)
    if method in ADAPTIVE and ORDER[method] in (2, 8):  # the steps' dependence on the inputs, O(rtol)
        atol = 2e-3 if ORDER[method] == 2 else 5e-4
    assert torch.autograd.gradcheck(run_direct, inputs, atol=atol, rtol=1e-3)


def test_adjoint_gradient_agrees_with_backprop_and_seminorm_saves_steps() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).double()
    field = lambda t, y: net(y)  # noqa: E731
    y0 = torch.randn(8, 4, dtype=F64, requires_grad=True)
    t = torch.linspace(0, 1, 3, dtype=F64)
    grads, nfes = [], []
    for solve, kw in [
        (odeint, {}),
        (odeint_adjoint, dict(adjoint_params=tuple(net.parameters()))),
        (odeint_adjoint, dict(adjoint_params=tuple(net.parameters()), adjoint_options=dict(norm="seminorm"))),
    ]:
        with record_stats() as stats:
            y = solve(field, y0, t, rtol=1e-8, atol=1e-10, **kw)
            g = torch.autograd.grad((y**2).sum(), (y0, *net.parameters()))
        grads.append(g)
        nfes.append(stats.backward_nfe)
    for g in grads[1:]:
        for a, b in zip(grads[0], g):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert nfes[0] > 0 and 0 < nfes[2] <= nfes[1]


@pytest.mark.parametrize("method", ["euler", "nag"])
def test_first_order_adjoint_converges_to_backprop_gradient(method: str) -> None:
    f = LinearSystem()
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    gaps = []
    for h in (0.02, 0.01):
        g_bp = torch.autograd.grad(odeint(f, y0, t, method=method, options=dict(step_size=h))[-1].sum(), f.a)[0]
        y = odeint_adjoint(f, y0, t, method=method, options=dict(step_size=h))
        g_adj = torch.autograd.grad(y[-1].sum(), f.a)[0]
        gaps.append((g_bp - g_adj).abs().max().item())
    assert gaps[1] < 0.6 * gaps[0], gaps  # O(h): halving h about halves the gap


def test_adjoint_needs_params_for_plain_functions() -> None:
    with pytest.raises(ODEInputError, match="adjoint_params"):
        odeint_adjoint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]))


# -- statistics --------------------------------------------------------------------------------


def test_stats_fixed_step_counts_and_backward_recorded_when_backward_runs() -> None:
    f = LinearSystem()
    y0 = torch.ones(3, 2, dtype=F64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    with record_stats() as s:
        y = odeint(f, y0, t, method="rk4", options=dict(step_size=0.1))
        assert (s.forward_nfe, s.forward_steps, s.backward_nfe) == (40, 10, 0)
        y.sum().backward()
    assert s.backward_nfe == 40
    with record_stats() as s:
        y = odeint_adjoint(f, y0, t, method="dopri5")
        fwd = s.forward_nfe
        assert s.backward_nfe == 0 and fwd > 0
    y.sum().backward()  # outside the block: still credited to the recorder active at forward time
    assert s.backward_nfe > 0 and s.forward_nfe == fwd and s.solves == 1


def test_stats_nest() -> None:
    with record_stats() as outer:
        odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), method="euler", options=dict(step_size=0.25))
        with record_stats() as inner:
            odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), method="midpoint")
    assert (inner.forward_nfe, outer.forward_nfe, outer.solves) == (2, 6, 2)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t,match",
    [
        (torch.tensor([0.0, 1.0, 0.5]), "strictly increasing or strictly decreasing"),
        (torch.tensor([0.0, 0.0]), "strictly"),
        (torch.zeros(2, 2), "1-D"),
        (torch.tensor([0, 1]), "floating"),
        (torch.tensor([0.0, float("nan")]), "finite"),
    ],
)
def test_bad_times(t: torch.Tensor, match: str) -> None:
    with pytest.raises(ODEInputError, match=match):
        odeint(lambda t, y: -y, torch.ones(2), t)


def test_bad_state_and_output_structure() -> None:
    t = torch.tensor([0.0, 1.0])
    with pytest.raises(ODEInputError, match="NaN or Inf"):
        odeint(lambda t, y: -y, torch.tensor([1.0, float("nan")]), t)
    with pytest.raises(ODEInputError, match=r"func output has shape \(3,\), but the state y0 has shape \(2,\)"):
        odeint(lambda t, y: torch.ones(3), torch.ones(2), t)
    with pytest.raises(ODEInputError, match="tuple of 2 tensors"):
        odeint(lambda t, s: s[0], (torch.ones(2), torch.ones(2)), t)
    with pytest.raises(ODEInputError, match=r"output\[1\] has shape \(3,\)"):
        odeint(lambda t, s: (s[0], torch.ones(3)), (torch.ones(2), torch.ones(2)), t)
    with pytest.raises(ODEInputError, match="'rk5' is not a monode solver"):
        odeint(lambda t, y: -y, torch.ones(2), t, method="rk5")
    with pytest.raises(ODEInputError, match=r"does not take option\(s\) \['step_size'\]"):
        odeint(lambda t, y: -y, torch.ones(2), t, options=dict(step_size=0.1))
    with pytest.raises(ODEInputError, match="y0 must have a floating or complex dtype, got torch.int64"):
        odeint(lambda t, y: -y, torch.ones(2, dtype=torch.int64), t)
    with pytest.raises(ODEInputError, match="rtol must be a finite float >= 0, got -1"):
        odeint(lambda t, y: -y, torch.ones(2), t, rtol=-1)
    with pytest.raises(ODEInputError, match=r"\|momentum\| < 1"):
        odeint(lambda t, y: -y, torch.ones(2), t, method="nag", options=dict(momentum=1.0))


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_nan_during_solve_is_reported(method: str) -> None:
    def f(t, y):
        return torch.where(t > 0.5, torch.full_like(y, float("nan")), -y)

    with pytest.raises(NonFiniteStateError, match="NaN"):
        odeint(f, torch.ones(2), torch.tensor([0.0, 1.0]), method=method, options=_opts(method, 0.1))


def test_step_budget_and_underflow_raise_instead_of_hanging() -> None:
    blowup = lambda t, y: y**2  # noqa: E731  y = 1/(1 - t): singular at t = 1
    t = torch.tensor([0.0, 2.0], dtype=F64)
    with pytest.raises(MaxStepsExceededError, match=r"max_num_steps'\]=50"):
        odeint(blowup, torch.ones(1, dtype=F64), t, options=dict(max_num_steps=50))
    with pytest.raises((StepSizeUnderflowError, NonFiniteStateError), match="t=1|t=0.99"):
        odeint(blowup, torch.ones(1, dtype=F64), t, options=dict(max_num_steps=10**6))
    with pytest.raises(MaxStepsExceededError, match="max_num_steps"):
        odeint(blowup, torch.ones(1), torch.tensor([0.0, 0.5]), method="euler", options=dict(step_size=1e-6))


# -- NAG -----------------------------------------------------------------------------------------


def _nag_step_matrix(mu: float, w: float) -> torch.Tensor:
    """The solver's own step on x' = lambda x (h lambda = w, h = 1) as the linear map (x, v) -> (x', v')."""
    solver = METHODS["nag"](momentum=mu)
    columns = []
    for x, v in ((1.0, 0.0), (0.0, 1.0)):
        y, carry = torch.tensor([x], dtype=F64), torch.tensor([v], dtype=F64)
        times = torch.tensor([0.0, mu], dtype=F64).unbind()
        y1, v1, _ = solver.step(lambda t, y: w * y, times, 1.0, y, carry)
        columns.append(torch.cat([y1, v1]))
    return torch.stack(columns, 1)


@pytest.mark.parametrize("mu", [0.0, 0.25, 0.5, 0.9])
def test_nag_step_has_the_characteristic_roots_of_its_analysis(mu: float) -> None:
    """Zero-stability (w = 0: roots 1 and mu, the root condition) and, for w != 0, the stability polynomial
    z^2 - (1 + (1 - mu) w)(1 + mu) z + (1 + (1 - mu) w) mu of the module docstring, read off the solver's step."""
    for w in (0.0, -0.7, -2.5):
        roots = torch.linalg.eigvals(_nag_step_matrix(mu, w))
        a = 1 + (1 - mu) * w
        expected = torch.linalg.eigvals(torch.tensor([[a * (1 + mu), -a * mu], [1.0, 0.0]], dtype=F64))
        key = lambda z: (z.real.item(), z.imag.item())  # noqa: E731
        for r, e in zip(sorted(roots, key=key), sorted(expected, key=key)):
            assert abs(r - e) < 1e-12, (mu, w, roots, expected)
    assert sorted(torch.linalg.eigvals(_nag_step_matrix(mu, 0.0)).real.tolist()) == pytest.approx(sorted([mu, 1.0]))


def test_nag_is_consistent_and_first_order() -> None:
    """Consistency: x' = 1 is integrated exactly (a scheme with the optimiser's step c = 1 would give
    x = t / (1 - mu)). Convergence of order 1: halving h halves the global error on x' = -x."""
    t = torch.tensor([0.0, 1.0], dtype=F64)
    ramp = odeint(lambda t, y: torch.ones_like(y), torch.zeros(1, dtype=F64), t, method="nag",
                  options=dict(step_size=0.1))  # fmt: skip
    assert abs(ramp[-1].item() - 1.0) < 1e-12

    def error(h: float) -> float:
        x = odeint(lambda t, y: -y, torch.ones(1, dtype=F64), t, method="nag", options=dict(step_size=h))
        return abs(x[-1].item() - math.exp(-1.0))

    errors = [error(h) for h in (0.01, 0.005, 0.0025)]
    for coarse, fine in zip(errors, errors[1:]):
        assert 1.8 < coarse / fine < 2.2


def test_nag_default_momentum_is_more_stable_than_euler_on_the_real_axis() -> None:
    # stable interval of NAG(mu=1/2) is [-3, 0]; Euler's is [-2, 0]
    lam, h = -2.8, 1.0
    t = torch.tensor([0.0, 60.0], dtype=F64)
    y_nag = odeint(lambda t, y: lam * y, torch.ones(1, dtype=F64), t, method="nag", options=dict(step_size=h))
    y_eul = odeint(lambda t, y: lam * y, torch.ones(1, dtype=F64), t, method="euler", options=dict(step_size=h))
    assert y_nag[-1].abs().item() < 1e-2 and y_eul[-1].abs().item() > 1e10


# -- torch.compile ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rk4", "nag"])
def test_compiled_fixed_step_does_not_recompile_per_call(method: str) -> None:
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    net = torch.nn.Linear(3, 3)
    f = lambda t, y: torch.tanh(net(y)) * t  # noqa: E731
    opts = dict(step_size=0.1, compile=dict(backend=counter))
    y0 = torch.randn(4, 3)
    first = odeint(f, y0, torch.tensor([0.0, 0.55]), method=method, options=opts)
    # warm-up: t and dt are tensors, so one graph serves every step size; after the warm-up no call may
    # compile anything
    odeint(f, y0, torch.tensor([0.0, 0.37]), method=method, options=opts)
    frames = counter.frame_count
    assert 1 <= frames <= 6
    for t0, t1 in ((0.1, 0.9), (0.2, 1.23), (-0.5, 0.77)):
        y = odeint(f, torch.randn(4, 3), torch.tensor([t0, t1]), method=method, options=opts)
        assert torch.isfinite(y).all()
    assert counter.frame_count == frames
    eager = odeint(f, y0, torch.tensor([0.0, 0.55]), method=method, options=dict(step_size=0.1))
    torch.testing.assert_close(first, eager)


# -- non-finite trial steps ----------------------------------------------------------------------


@pytest.mark.parametrize("method", [m for m in ADAPTIVE if ORDER[m] >= 3])  # (order 2: steps too short to get there)
@pytest.mark.parametrize("t0,t1", [(2.0, 1.0), (1.0, 2.0)])
def test_step_past_the_end_into_nan_is_rejected_not_fatal(method: str, t0: float, t1: float) -> None:
    """y' = 0.1 y, but the field is NaN outside [0.5, 2.5]. Smooth enough that the step grows past the
    end into the NaN region (which used to raise NonFiniteStateError): now a rejected step, retried
    shorter, and the solution is exact to tolerance."""
    visited = []

    def f(t, y):
        visited.append(float(t))
        return torch.where((t < 0.5) | (t > 2.5), torch.full_like(y, math.nan), 0.1 * y)

    y0 = torch.tensor([1.0, -2.0], dtype=F64)
    t = torch.tensor([t0, (t0 + t1) / 2, t1], dtype=F64)
    with record_stats() as stats:
        y = odeint(f, y0, t, rtol=1e-3, atol=1e-5, method=method)
    assert min(visited) < 0.5 or max(visited) > 2.5  # the NaN region was really hit ...
    assert stats.forward_rejected >= 1  # ... and counted as a rejected step
    torch.testing.assert_close(y, y0 * torch.exp(0.1 * (t - t0)).unsqueeze(-1), rtol=0, atol=5e-6)


def test_nesterov_adjoint_steps_past_t0_without_nan() -> None:
    """NesterovNODE's k(t) = t^-1.5 e^(t/2) is NaN/Inf for t <= 0. An ODE-RNN gap of 0.01 scales the field by
    0.01, so the adjoint's steps from t = 2 back to 1 grow past t = 0 (this used to raise
    NonFiniteStateError): the adjoint gradient must now match backprop through the solver."""
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(0)
        field = build_model("nesterovnode", dim=4, hidden=8).double()
        rnn = ODERNN(field, lambda v, x: (v[0] + x, v[1]), hidden_size=4, adjoint=adjoint, rtol=1e-7, atol=1e-7)
        x, gap = torch.randn(1, 3, 4, dtype=F64), torch.full((1, 3), 0.01, dtype=F64)
        out = rnn(x, gap)
        out.evolved[0].square().sum().backward()
        grads.append([p.grad for p in field.parameters()])
        if adjoint:
            assert rnn.last_stats.backward_rejected >= 1
    for bp, adj in zip(*grads):
        torch.testing.assert_close(adj, bp, rtol=1e-4, atol=1e-8)


def test_nan_everywhere_raises_promptly() -> None:
    calls = {"n": 0}

    def nan_field(t, y):
        calls["n"] += 1
        return torch.full_like(y, math.nan)

    def nan_after_t0(t, y):  # finite at the initial point only: every trial step fails
        calls["n"] += 1
        return torch.where(t > 0, torch.full_like(y, math.nan), -y)

    y0, t = torch.ones(3, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    for field, options, match, max_nfe in [
        (nan_field, None, "field returned NaN/Inf at t=0", 2),  # seen by the initial step selection
        (nan_field, dict(first_step=0.1), "field returned NaN/Inf at t=0", 1 + 6),  # by the first trial step
        (
            nan_after_t0,
            None,
            f"NaN/Inf .* in {MAX_NONFINITE_TRIALS} trial steps without getting past them, the last from t=0 ",
            2 + 6 * MAX_NONFINITE_TRIALS,
        ),
    ]:
        calls["n"] = 0
        with pytest.raises(NonFiniteStateError, match=match):
            odeint(field, y0, t, options=options)
        assert calls["n"] <= max_nfe, (match, calls["n"])


def test_nan_error_norm_with_atol_zero_is_named() -> None:
    f = lambda t, y: torch.stack([-y[0], 0 * y[1]])  # noqa: E731  the second component stays exactly 0
    with pytest.raises(NonFiniteStateError, match="atol=0"):
        odeint(f, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), atol=0.0)


def test_tolerances_below_the_dtype_resolution_are_refused() -> None:
    """bfloat16/float16 at the default tolerances would return a wrong number silently (bfloat16: y(1) = 0.94
    for y' = -y); float32 at the papers' 1e-7 is fine."""
    t = torch.tensor([0.0, 1.0])
    for dtype in (torch.bfloat16, torch.float16):
        with pytest.raises(ODEInputError, match=rf"rtol=1e-07 and atol=1e-09 are below what {dtype} resolves"):
            odeint(lambda t, y: -y, torch.ones(2, dtype=dtype), t.to(dtype))
        with pytest.raises(ODEInputError, match="below what"):
            odeint_adjoint(lambda t, y: -y, torch.ones(2, dtype=dtype), t.to(dtype), adjoint_params=())
        y = odeint(lambda t, y: -y, torch.ones(2, dtype=dtype), t.to(dtype), rtol=1e-2, atol=1e-3)
        assert abs(float(y[-1, 0]) - math.exp(-1.0)) < 2e-2
    y = odeint(lambda t, y: -y, torch.ones(2), t, rtol=1e-7, atol=1e-7)
    assert abs(float(y[-1, 0]) - math.exp(-1.0)) < 1e-6


def test_field_output_dtype_must_match_the_state() -> None:
    with pytest.raises(ODEInputError, match=r"func output has dtype torch.float64, but the state y0 has dtype"):
        odeint(lambda t, y: (-y).double(), torch.ones(2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ODEInputError, match=r"output\[1\] has dtype torch.float64"):
        odeint(lambda t, s: (s[0], s[1].double()), (torch.ones(2), torch.ones(2)), torch.tensor([0.0, 1.0]))


def test_tiny_fixed_step_is_refused_before_building_the_grid() -> None:
    """Counting comes first: 10^9 steps are refused without making a point of the grid."""
    with pytest.raises(MaxStepsExceededError, match="the grid needs 1000000000 steps"):
        odeint(lambda t, y: -y, torch.ones(3), torch.tensor([0.0, 1.0]), method="rk4", options=dict(step_size=1e-9))


@pytest.mark.parametrize("name,value", [("safety", 0.0), ("ifactor", "x"), ("dfactor", 2.0), ("first_step", -1.0)])
def test_adaptive_step_control_options_are_validated(name: str, value: object) -> None:
    with pytest.raises(ODEInputError, match=name):
        odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), options={name: value})


def test_options_of_the_wrong_type_and_a_bad_adjoint_norm_fail_at_the_call() -> None:
    t = torch.tensor([0.0, 1.0])
    with pytest.raises(ODEInputError, match="options must be a dict or None, got list"):
        odeint(lambda t, y: -y, torch.ones(2), t, options=[("step_size", 0.1)])  # type: ignore[arg-type]
    with pytest.raises(ODEInputError, match=r"adjoint_options\['norm'\] must be 'seminorm', 'mixed' or callable"):
        odeint_adjoint(lambda t, y: -y, torch.ones(2), t, adjoint_params=(), adjoint_options=dict(norm="bogus"))


def test_nan_error_norm_on_a_finite_trial_step_names_atol() -> None:
    """A norm that turns NaN on finite values (after the start's three calls) is reported with the atol in use."""
    calls = []

    def norm(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x.abs().max() if len(calls) <= 3 else torch.tensor(float("nan"))

    with pytest.raises(NonFiniteStateError, match=r"error norm is not finite at t=0 .* atol=1e-09\)"):
        odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), options=dict(norm=norm))


def test_overflow_is_reported_as_overflow() -> None:
    """y' = 100 y outgrows float16 (max 65504) near t = 0.11: named as an overflow of that dtype, not as a
    NaN or a zero component; a slope whose scaled square overflows the norm is named as such too."""
    t = torch.tensor([0.0, 1.0])
    half = torch.ones(3, dtype=torch.float16)
    dtype_overflow = r"overflowed torch.float16 \(largest finite value 6.55e\+04"
    with pytest.raises(NonFiniteStateError, match=rf"dopri5: the trial steps from t=0.06.* {dtype_overflow}"):
        odeint(lambda t, y: 100 * y, half, t, rtol=1e-2, atol=1e-2)
    with pytest.raises(NonFiniteStateError, match=rf"euler: between t=0.0 and t=1.0 the state {dtype_overflow}"):
        odeint(lambda t, y: 100 * y, half, t, method="euler", options=dict(step_size=0.01))
    with pytest.raises(NonFiniteStateError, match=r"state or slope up to 1e\+30.*overflow torch.float32 when squared"):
        odeint(lambda t, y: torch.full_like(y, 1e30), torch.zeros(2), t)
    with pytest.raises(NonFiniteStateError, match=r"the state became NaN; reduce options\['step_size'\]"):
        odeint(lambda t, y: y * float("nan"), torch.ones(2), t, method="rk4", options=dict(step_size=0.1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_runge_kutta_sums_add_in_the_order_of_torch_sum(dtype: torch.dtype) -> None:
    """The stages' weighted sums are added term by term in torch.sum's order: bitwise torch.sum over the
    stacked products (torchdiffeq's formula) for every length a tableau has, with and without zero weights."""
    from monode.solvers._rk import coefficients, weighted_sum

    torch.manual_seed(1)
    for n in range(1, 17):
        ks = [torch.randn(37, 5, dtype=dtype) * torch.exp(3 * torch.randn(37, 5, dtype=dtype)) for _ in range(n)]
        for weights in [tuple(float(w) for w in torch.randn(n)), tuple(0.0 if j % 3 == 1 else 0.7 for j in range(n))]:
            dt = 0.37
            reference = (torch.stack(ks, dim=-1) * (torch.tensor(weights, dtype=dtype) * dt)).sum(dim=-1)
            summed = weighted_sum(ks, weights, coefficients((0.5, *weights), dt, ks[0]), offset=1)
            assert torch.equal(summed, reference), (n, weights)


def test_a_first_solve_under_inference_mode_leaves_later_solves_working() -> None:
    """Solvers cache small tensors across solves (weights, constants, step scratch). In a fresh process whose first
    solves run under torch.inference_mode, later solves without autograd and with backprop (which saves those
    tensors) still run and give the same values, for every method (with gradients where it gives them)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import torch
        from monode import METHODS, odeint
        lin = torch.nn.Linear(3, 3).double()
        y0, t = torch.randn(2, 3, dtype=torch.float64), torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
        for method in sorted(METHODS):
            options = dict(step_size=0.1) if "step_size" in METHODS[method].options else None
            solve = lambda: odeint(lambda t, y: lin(y), y0, t, rtol=1e-4, atol=1e-6, method=method, options=options)
            with torch.inference_mode():
                first = solve()
            with torch.no_grad():
                assert torch.equal(solve(), first), method
            ys = solve()
            assert torch.equal(ys.detach(), first), method
            if method == "scipy_solver":  # (no gradients, as torchdiffeq's)
                continue
            ys.square().sum().backward()
            assert lin.weight.grad is not None and bool(torch.isfinite(lin.weight.grad).all()), method
            lin.zero_grad()
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
