"""torchdiffeq 0.2.5 as the oracle: every method it shares with monode gives the same solution and NFE, with
its options, callbacks and grids. Driven by the method registry: a new method with a torchdiffeq twin is
tested here without edits."""

from __future__ import annotations

import concurrent.futures
import functools
import importlib
import math
import warnings

import pytest
import torch

import monode
from monode import METHODS, ODEInputError, odeint, record_stats
from problems import HarmonicOscillator

torchdiffeq = pytest.importorskip("torchdiffeq")
SHARED = [name for name in METHODS if name in importlib.import_module("torchdiffeq._impl.odeint").SOLVERS]
FIXED = [name for name in SHARED if "step_size" in METHODS[name].options]
OPTIONS = {"scipy_solver": dict(solver="RK45")}
"""scipy_solver: torchdiffeq's wrapper hands func the time as torch.tensor(t), which for LSODA's Python-float t is a
float32 tensor: it rounds the time (monode does not), so the shared comparison uses RK45 and LSODA is checked
below against the exact solution and, with that rounding put into the field, bit for bit."""
TIMES = {
    "forward": [0.0, 0.3, 0.7, 1.0],
    "reversed": [2.0, 0.5, 0.0],
}


class Net(torch.nn.Module):
    """A small non-autonomous field that counts its evaluations."""

    def __init__(self, dtype: torch.dtype, dim: int = 6) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(dim, dim).to(dtype)
        self.calls = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.tanh(self.lin(y)) * (1 + 0.5 * torch.sin(3 * t))


def _both(method: str, y0, t, dtype: torch.dtype, **kwargs):
    """(monode's solution, its NFE, torchdiffeq's solution, its NFE) for the same call."""
    ours_f, ref_f = Net(dtype), Net(dtype)
    with torch.no_grad(), record_stats() as stats:
        ours = odeint(ours_f, y0, t, method=method, **kwargs)
        ref = torchdiffeq.odeint(ref_f, y0, t, method=method, **kwargs)
    return ours, stats.forward_nfe, ref, ref_f.calls


@pytest.mark.parametrize("direction", list(TIMES))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("method", SHARED)
def test_solution_and_nfe_equal_torchdiffeq(method: str, dtype: torch.dtype, direction: str) -> None:
    """NFE equal; adaptive methods' solutions bitwise equal in float64 and float32 (the same arithmetic in steps,
    error norm and dense output); fixed-grid methods' to rounding."""
    t = torch.tensor(TIMES[direction], dtype=dtype)
    y0 = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=dtype)
    options = dict(step_size=0.25) if method in FIXED else OPTIONS.get(method)
    for rtol in (1e-3, 1e-5):
        ours, nfe, ref, ref_nfe = _both(method, y0, t, dtype, rtol=rtol, atol=rtol * 1e-2, options=options)
        assert nfe == ref_nfe, (rtol, nfe, ref_nfe)
        atol = 0.0 if method not in FIXED else 1e-12 if dtype == torch.float64 else 5e-6
        torch.testing.assert_close(ours, ref, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", sorted(set(SHARED) - set(FIXED) - {"scipy_solver"}))
def test_first_step_equals_torchdiffeqs_bit_for_bit(method: str, dtype: torch.dtype) -> None:
    """The initial step (Hairer-Norsett-Wanner) decides every later step: over fields and states of many scales, it
    is torchdiffeq's to the bit (its `0.01 / x` is reciprocal(x) * 0.01, which rounds differently from a division)."""
    from torchdiffeq._impl.misc import _rms_norm, _select_initial_step

    order = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS[method].order
    solver = METHODS[method](rtol=1e-5, atol=1e-7, norm=_rms_norm)
    generator = torch.Generator().manual_seed(3)
    for _ in range(60):
        scale, speed = torch.exp(4 * torch.randn(2, generator=generator, dtype=torch.float64)).tolist()
        y0 = (scale * torch.randn(4, 5, generator=generator, dtype=torch.float64)).to(dtype)
        weight = (speed * torch.randn(5, 5, generator=generator, dtype=torch.float64)).to(dtype)

        def f(t: torch.Tensor, y: torch.Tensor, weight: torch.Tensor = weight) -> torch.Tensor:
            return torch.tanh(y @ weight) * (1 + t)

        t0 = torch.tensor(0.0, dtype=dtype)
        with torch.no_grad():
            f0, ours = solver.start(f, t0, y0, 1.0, 1e-7)
            ref = _select_initial_step(f, t0, y0, order - 1, 1e-5, 1e-7, _rms_norm, f0=f0)
        assert float(ours[0]) == float(ref), (scale, speed)


@pytest.mark.parametrize("method", sorted(set(SHARED) - set(FIXED) - {"scipy_solver"}))
def test_solves_nested_in_func_and_in_threads_equal_torchdiffeq(method: str) -> None:
    """A step's scratch (the tableau's weights times dt, reused between steps without autograd) is never shared:
    a field that itself solves with the same method, and solves running in several threads at once, give
    torchdiffeq's bits."""
    inner_f, span = Net(torch.float32), torch.tensor([0.0, 0.2])
    net = Net(torch.float32)  # (built here, not in the threads: Net seeds the global generator)
    t = torch.tensor([0.0, 0.4, 1.0])

    def nested(lib):
        def f(t, y):  # y' = z(0.2) - y, z solving z' = g(z) from z(0) = y
            return lib.odeint(inner_f, y, span, rtol=1e-4, atol=1e-6, method=method)[-1] - y

        return f

    def solve(lib, seed: int) -> torch.Tensor:
        with torch.no_grad():
            y = torch.randn(64, 6, generator=torch.Generator().manual_seed(seed))
            return lib.odeint(net, y, t, rtol=1e-4, atol=1e-6, method=method)

    y0 = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = odeint(nested(monode), y0, t[:2], rtol=1e-4, atol=1e-6, method=method)
        ref = torchdiffeq.odeint(nested(torchdiffeq), y0, t[:2], rtol=1e-4, atol=1e-6, method=method)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(functools.partial(solve, monode), range(4)))
    for seed, ours in enumerate(threaded):
        torch.testing.assert_close(ours, solve(torchdiffeq, seed), rtol=0, atol=0)


@pytest.mark.parametrize("method", SHARED)
def test_tuple_state_equals_torchdiffeq(method: str) -> None:
    f = HarmonicOscillator(omega=3.0)
    y0 = (torch.ones(4, dtype=torch.float64), torch.linspace(-1, 1, 4, dtype=torch.float64))
    t = torch.tensor([0.0, 0.45, 1.0], dtype=torch.float64)
    options = dict(step_size=0.1) if method in FIXED else None
    ours = odeint(f, y0, t, rtol=1e-5, atol=1e-7, method=method, options=options)
    ref = torchdiffeq.odeint(f, y0, t, rtol=1e-5, atol=1e-7, method=method, options=options)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "options",
    [
        dict(step_size=0.3),
        dict(step_size=0.3, interp="cubic"),
        dict(step_size=0.25, perturb=True),
        dict(grid_constructor=lambda f, y0, t: torch.tensor([0.0, 0.1, 0.45, 0.8, 1.0], dtype=t.dtype)),
        {},
    ],
    ids=["step", "cubic", "perturb", "grid_constructor", "t-grid"],
)
@pytest.mark.parametrize("method", FIXED)
def test_fixed_grid_options_equal_torchdiffeq(method: str, options: dict) -> None:
    """torchdiffeq's grid (uniform steps from t[0], the last one shortened) and interpolation between its points;
    with perturb, a field that jumps at a grid time is evaluated on each step's side."""
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    y0 = torch.randn(3, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ours, nfe, ref, ref_nfe = _both(method, y0, t, torch.float64, options=options)
    assert nfe == ref_nfe
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    if options.get("perturb"):
        jump = lambda t, y: torch.where(t > 0.5, 1.0, -1.0) * torch.ones_like(y) if t != 0.5 else y * math.nan  # noqa: E731
        ours = odeint(jump, y0, t, method=method, options=options)
        torch.testing.assert_close(
            ours, torchdiffeq.odeint(jump, y0, t, method=method, options=options), rtol=0, atol=1e-12
        )


def test_a_grid_constructor_under_the_adjoint_gets_what_torchdiffeqs_gets() -> None:
    """odeint_adjoint with a grid_constructor: the backward solve of each interval calls it with the adjoint
    dynamics, the flat adjoint state and [t_i, t_i-1], as torchdiffeq does (it failed in backward), and the
    gradients equal torchdiffeq's."""
    from monode import odeint_adjoint

    results = []
    for solve in (odeint_adjoint, torchdiffeq.odeint_adjoint):
        seen = []

        def grid(func, y0, t, _seen=seen):
            _seen.append((t.tolist(), tuple(y0.shape), tuple(func(t[0], y0).shape)))
            return torch.linspace(float(t[0]), float(t[-1]), 11, dtype=t.dtype)

        x0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
        t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
        xs = solve(lambda t, x: -x * t, x0, t, method="rk4", options=dict(grid_constructor=grid), adjoint_params=())
        xs[1:].sum().backward()
        results.append((seen, x0.grad))
    (ours, grad), (ref, ref_grad) = results
    assert ours == ref == [([0.0, 0.5, 1.0], (2,), (2,)), ([1.0, 0.5], (5,), (5,)), ([0.5, 0.0], (5,), (5,))]
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-15)


def test_the_adjoints_event_time_is_an_output_whose_gradient_is_ignored() -> None:
    """As torchdiffeq's: `event_t.backward()` runs (and adds nothing); odeint_event gives it a gradient."""
    from monode import odeint_adjoint

    g = torch.tensor(9.8, dtype=torch.float64, requires_grad=True)
    h0 = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    event_t, (h, v) = odeint_adjoint(_ball(g), (h0, torch.zeros(1, dtype=torch.float64)), t,
                                     event_fn=lambda t, s: s[0], adjoint_params=(g,))  # fmt: skip
    event_t.backward(retain_graph=True)
    assert h0.grad is not None and g.grad is not None
    assert h0.grad.abs().max().item() == 0.0 and g.grad.item() == 0.0
    assert event_t.item() == pytest.approx((2 * 10 / 9.8) ** 0.5, rel=1e-6)


def test_exact_times_keeps_monodes_grid() -> None:
    """exact_times=True: every output time is a grid point (euler, step 0.25, t = [0, .3, .7, 1]: 6 evaluations
    on steps [0, .15, .3], [.3, .5, .7], [.7, 1]) instead of torchdiffeq's 4 and interpolation."""
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    f = lambda t, y: -y  # noqa: E731
    with record_stats() as default:
        odeint(f, torch.ones(1, dtype=torch.float64), t, method="euler", options=dict(step_size=0.25))
    with record_stats() as exact:
        y = odeint(
            f, torch.ones(1, dtype=torch.float64), t, method="euler", options=dict(step_size=0.25, exact_times=True)
        )
    assert (default.forward_nfe, exact.forward_nfe) == (4, 6)
    assert y[1].item() == pytest.approx(0.85**2)


ADAPTIVE_OPTIONS = {
    "step_t": dict(step_t=[0.33, 0.5]),
    "jump_t": dict(jump_t=[0.5]),
    "min_step": dict(min_step=0.05),
    "max_step": dict(max_step=0.1, first_step=0.01),
    "time-float32": dict(dtype=torch.float32),
    "time-float32-step_t": dict(dtype=torch.float32, step_t=[0.33, 0.5]),
    "time-float32-jump_t": dict(dtype=torch.float32, jump_t=[0.5], max_step=0.1),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", list(ADAPTIVE_OPTIONS.values()), ids=list(ADAPTIVE_OPTIONS))
@pytest.mark.parametrize("method", sorted(set(SHARED) - set(FIXED) - {"scipy_solver"}))
def test_adaptive_options_equal_torchdiffeq(method: str, options: dict, dtype: torch.dtype) -> None:
    """Every step-control option gives torchdiffeq's NFE and bits. Time is float32 with options['dtype'] only
    for a float32 state (torchdiffeq's time dtype is promote_types(options['dtype'], state dtype)); then the
    stops, steps, step-size control and dense-output position are float32 arithmetic."""
    t = torch.tensor([0.0, 0.4, 1.0], dtype=dtype)
    y0 = torch.randn(3, 6, generator=torch.Generator().manual_seed(3), dtype=dtype)
    tensors = {k: torch.tensor(v, dtype=torch.float64) if k.endswith("_t") else v for k, v in options.items()}
    rtol = 1e-6 if method != "adaptive_heun" else 1e-4  # (a first-order estimate: thousands of steps at 1e-6)
    ours, nfe, ref, ref_nfe = _both(method, y0, t, dtype, rtol=rtol, atol=rtol * 1e-2, options=tensors)
    assert nfe == ref_nfe
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


class Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.counts = {"step": 0, "accept": 0, "reject": 0}

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -3 * y * torch.cos(5 * t)

    def callback_step(self, t0, y0, dt) -> None:
        assert isinstance(y0, torch.Tensor) and y0.shape == (2,) and float(dt) > 0
        self.counts["step"] += 1

    def callback_accept_step(self, t0, y0, dt) -> None:
        self.counts["accept"] += 1

    def callback_reject_step(self, t0, y0, dt) -> None:
        self.counts["reject"] += 1


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
@pytest.mark.parametrize("method", sorted(set(SHARED) - {"scipy_solver"}))
def test_complex_states_equal_torchdiffeq(method: str, dtype: torch.dtype) -> None:
    """A complex state, as torchdiffeq integrates it (time in the state's real dtype, norms of magnitudes): NFE
    equal, adaptive solutions bitwise, fixed-grid ones to rounding (as for real states)."""
    w = 0.5 * torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=dtype)
    y0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    options = dict(step_size=0.1, **({"max_order": 4} if "max_order" in METHODS[method].options else {}))
    results = []
    for solve in (odeint, torchdiffeq.odeint):
        calls = [0]

        def field(t, y, _calls=calls):
            assert not t.is_complex()
            _calls[0] += 1
            return 1j * torch.tanh(y @ w) * (1 + t)

        opts = options if method in FIXED else None
        results.append((solve(field, y0, t, method=method, options=opts, rtol=1e-5, atol=1e-7), calls[0]))
    (ours, nfe), (ref, ref_nfe) = results
    assert nfe == ref_nfe and ours.dtype == dtype
    atol = 0.0 if method not in FIXED else 1e-11 if dtype == torch.complex128 else 5e-6
    torch.testing.assert_close(ours, ref, rtol=0, atol=atol)


@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.1))])
def test_complex_gradients_by_backprop_and_the_adjoint(method: str, options: dict | None) -> None:
    """gradcheck through a complex solve; the adjoint's gradients torchdiffeq's (bitwise for the adaptive method,
    to rounding on the fixed grid, whose step arithmetic is torchdiffeq's only to rounding)."""
    from monode import odeint_adjoint

    dtype = torch.complex128
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    w = (0.5 * torch.randn(2, 2, generator=torch.Generator().manual_seed(2), dtype=dtype)).requires_grad_(True)
    y0 = torch.randn(2, generator=torch.Generator().manual_seed(3), dtype=dtype).requires_grad_(True)

    def solve(y0, w):
        return odeint(lambda t, y: torch.tanh(w @ y) * (1 + t), y0, t, method=method, options=options,
                      rtol=1e-10, atol=1e-12)  # fmt: skip

    assert torch.autograd.gradcheck(solve, (y0, w), atol=1e-5)
    grads = []
    for adjoint in (odeint_adjoint, torchdiffeq.odeint_adjoint):
        w_, y_ = w.detach().clone().requires_grad_(True), y0.detach().clone().requires_grad_(True)
        out = adjoint(lambda t, y: torch.tanh(w_ @ y) * (1 + t), y_, t, method=method, options=options,
                      adjoint_params=(w_,))  # fmt: skip
        out.abs().pow(2).sum().backward()
        grads.append((y_.grad, w_.grad))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=0, atol=0 if options is None else 1e-14)


PER_COMPONENT = {
    "tuples": dict(rtol=(1e-3, 1e-5), atol=(1e-5, 1e-7)),
    "list-rtol": dict(rtol=[1e-3, 1e-5], atol=1e-7),
    "tensor-part": dict(rtol=1e-4, atol=(1e-6, torch.full((8,), 1e-7))),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tolerances", list(PER_COMPONENT.values()), ids=list(PER_COMPONENT))
@pytest.mark.parametrize("method", sorted(set(SHARED) - set(FIXED) - {"scipy_solver"}))
def test_per_component_tolerances_equal_torchdiffeq(method: str, tolerances: dict, dtype: torch.dtype) -> None:
    """rtol/atol with one entry per part of a tuple state (numbers or tensors of the part's size), or anything that
    broadcasts to a tensor state: NFE and solutions bitwise torchdiffeq's, also in float32, where torchdiffeq's
    per-component tolerances are float64 tensors that make the error ratio float64."""
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)
    y0 = tuple(torch.randn(2, 4, generator=torch.Generator().manual_seed(k), dtype=dtype) for k in (1, 2))
    t = torch.tensor([0.0, 0.7, 1.5], dtype=dtype)
    results = []
    for solve in (odeint, torchdiffeq.odeint):
        calls = [0]

        def field(t, s, _calls=calls):
            _calls[0] += 1
            return torch.tanh(s[1] @ w) * (1 + t), -0.5 * s[0]

        results.append((solve(field, y0, t, method=method, **tolerances), calls[0]))
    (ours, nfe), (ref, ref_nfe) = results
    assert nfe == ref_nfe
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    rtol = torch.tensor([1e-3, 1e-5, 1e-4, 1e-5])  # a tensor state: broadcast over its last dimension
    y = torch.randn(3, 4, generator=torch.Generator().manual_seed(3), dtype=dtype)
    ours, ref = (solve(lambda t, y: -torch.tanh(y) * (1 + t), y, t, method=method, rtol=rtol, atol=1e-7)
                 for solve in (odeint, torchdiffeq.odeint))  # fmt: skip
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_per_component_tolerances_on_a_complex_state_equal_torchdiffeq(dtype: torch.dtype) -> None:
    """Per-component tolerances are real (in the state's real time dtype), beside a complex state too: bitwise
    torchdiffeq's (complex128 failed: a complex tolerance tensor in the real tolerance arithmetic)."""
    y0 = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    rtol = torch.tensor([1e-3, 1e-5, 1e-4, 1e-5])
    ours, ref = (solve(lambda t, y: 1j * torch.tanh(y) * (1 + t), y0, t, rtol=rtol, atol=1e-7)
                 for solve in (odeint, torchdiffeq.odeint))  # fmt: skip
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_per_component_tolerance_errors() -> None:
    from monode import odeint_adjoint

    f = lambda t, s: (s[1], -s[0])  # noqa: E731
    y0, t = (torch.ones(3), torch.zeros(3)), torch.tensor([0.0, 1.0])
    with pytest.raises(ODEInputError, match=r"rtol has 3 entries, but the state y0 is a tuple of 2"):
        odeint(f, y0, t, rtol=(1e-3, 1e-4, 1e-5))
    with pytest.raises(ODEInputError, match=r"atol must be finite and >= 0 in every component"):
        odeint(f, y0, t, atol=(1e-3, -1.0))
    with pytest.raises(ODEInputError, match=r"rtol=.* does not match the state y0"):
        odeint(lambda t, y: -y, torch.ones(2, 3), t, rtol=torch.tensor([1e-3, 1e-4]))
    with pytest.raises(ODEInputError, match=r"rtol cannot require gradient"):
        odeint(f, y0, t, rtol=torch.full((2,), 1e-3, requires_grad=True))
    with pytest.raises(ODEInputError, match=r"implicit_adams: rtol and atol must be numbers"):
        odeint(f, y0, t, rtol=(1e-3, 1e-4), method="implicit_adams", options=dict(step_size=0.1))
    with pytest.raises(ODEInputError, match=r"options\['compile'\] takes rtol and atol as numbers"):
        odeint(f, y0, t, rtol=(1e-3, 1e-4), options=dict(compile=True))
    net = torch.nn.Linear(3, 3)
    with pytest.raises(ODEInputError, match=r"per-component rtol/atol pass adjoint_rtol and adjoint_atol as numbers"):
        odeint_adjoint(lambda t, s: (s[1], net(s[0])), y0, t, rtol=(1e-3, 1e-4), adjoint_params=tuple(net.parameters()))
    # fixed-grid methods read no tolerance, as torchdiffeq's
    rk4 = dict(method="rk4", options=dict(step_size=0.1))
    ignored = odeint(f, y0, t, rtol=(1e-3, 1e-4), **rk4)[0]
    torch.testing.assert_close(ignored, odeint(f, y0, t, **rk4)[0], rtol=0, atol=0)


@pytest.mark.parametrize("method", ["dopri5", "euler"])
def test_callbacks_are_called_as_torchdiffeq_calls_them(method: str) -> None:
    t = torch.tensor([1.0, 0.0], dtype=torch.float64)
    options = dict(step_size=0.1) if method == "euler" else None
    ours, ref = Counting(), Counting()
    with warnings.catch_warnings(record=True) as ours_warned:
        warnings.simplefilter("always")
        odeint(ours, torch.ones(2, dtype=torch.float64), t, rtol=1e-3, atol=1e-6, method=method, options=options)
    with warnings.catch_warnings(record=True) as ref_warned:
        warnings.simplefilter("always")
        torchdiffeq.odeint(
            ref, torch.ones(2, dtype=torch.float64), t, rtol=1e-3, atol=1e-6, method=method, options=options
        )
    assert ours.counts == ref.counts and ours.counts["step"] > 0
    assert [str(w.message) for w in ours_warned] == [str(w.message) for w in ref_warned]  # fixed grid: unsupported
    if method == "dopri5":
        assert ours.counts["reject"] > 0


def test_a_misspelled_callback_is_warned_about() -> None:
    class Field(torch.nn.Module):
        def forward(self, t, y):
            return -y

        def callback_stp(self, t0, y0, dt):
            raise AssertionError("never called")

    with pytest.warns(UserWarning, match="func.callback_stp is not a solver callback.*'callback_step'"):
        odeint(Field(), torch.ones(2), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(
    "method,options,match",
    [
        ("euler", dict(step_size=0.1, grid_constructor=lambda f, y, t: t), "mutually exclusive"),
        ("euler", dict(interp="quadratic"), r"options\['interp'\] must be one of \('linear', 'cubic'\), got 'quad"),
        ("rk4", dict(perturb="yes"), r"options\['perturb'\] must be True or False, got 'yes'"),
        ("euler", dict(grid_constructor=lambda f, y, t: torch.tensor([0.0, 0.5])), r"end at t\[-1\]=1.0"),
        ("euler", dict(grid_constructor=3), r"options\['grid_constructor'\] must be callable"),
        ("dopri5", dict(min_step=-1.0), r"options\['min_step'\] must be a float in \[0, max_step\], got -1.0"),
        ("dopri5", dict(step_t=[0.5], jump_t=[0.5]), r"share the time\(s\) \[0.5\]"),
        ("dopri5", dict(jump_t=["a"]), r"options\['jump_t'\] must be a 1-D tensor of times"),
        ("dopri5", dict(dtype=torch.int32), r"options\['dtype'\] \(the dtype of time\) must be torch.float64 or"),
        ("dopri5", dict(step_size=0.1), r"does not take option\(s\) \['step_size'\]"),
    ],
)  # fmt: skip
def test_option_errors_name_the_option_and_value(method: str, options: dict, match: str) -> None:
    with pytest.raises(ODEInputError, match=match):
        odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), method=method, options=options)


def test_rk4_is_the_three_eighths_rule_and_rk4_classic_the_classical_method() -> None:
    """One step of y' = t^3 from 0 to 1: both are exact for cubics; on y' = exp(t) they differ as their
    error constants (the 3/8 rule's is smaller)."""
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    y0 = torch.zeros(1, dtype=torch.float64)
    for method in ("rk4", "rk4_classic"):
        assert odeint(lambda t, y: t**3 * torch.ones_like(y), y0, t, method=method)[-1].item() == pytest.approx(0.25)
    errors = {m: abs(odeint(lambda t, y: torch.exp(t) * torch.ones_like(y), y0, t, method=m)[-1].item() - (math.e - 1))
              for m in ("rk4", "rk4_classic")}  # fmt: skip
    assert errors["rk4"] < errors["rk4_classic"]
    assert odeint(lambda t, y: torch.exp(t) * torch.ones_like(y), y0, t, method="rk4")[-1].item() == pytest.approx(
        torchdiffeq.odeint(lambda t, y: torch.exp(t) * torch.ones_like(y), y0, t, method="rk4")[-1].item(), abs=1e-15
    )


def _ball(g: torch.Tensor):
    def field(t, state):
        h, v = state
        return v, -g * torch.ones_like(h)

    return field


@pytest.mark.parametrize("reverse_time", [False, True])
@pytest.mark.parametrize(
    "method,options", [("dopri5", None), ("bosh3", None), ("euler", dict(step_size=0.01)),
                       ("rk4", dict(step_size=0.05, interp="cubic"))],
)  # fmt: skip
def test_events_and_their_gradients_equal_torchdiffeqs(method: str, options: dict | None, reverse_time: bool) -> None:
    """A falling ball hits the ground (h = 0) at sqrt(2 h0 / g): event times, states and the event time's
    gradients (implicit function theorem) with respect to h0 and g equal torchdiffeq's."""
    from monode import odeint_event

    results = []
    for solve in (odeint_event, torchdiffeq.odeint_event):
        g = torch.tensor(9.8, dtype=torch.float64, requires_grad=True)
        h0 = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)
        v0 = torch.tensor([0.0], dtype=torch.float64)
        t0 = torch.tensor(0.0, dtype=torch.float64)
        kwargs = dict(reverse_time=reverse_time, method=method, options=options, rtol=1e-8, atol=1e-8)
        t_event, (h, v) = solve(_ball(g), (h0, v0), t0, event_fn=lambda t, s: s[0], **kwargs)
        (t_event + v[-1].sum()).backward()
        results.append((t_event.detach(), h.detach(), h0.grad, g.grad))
    for k, (ours, ref) in enumerate(zip(*results)):
        # torchdiffeq also differentiates its first step size (which reads f(t0, y0), so g): where the dense output
        # is not exact (bosh3's crude mid-point on this quadratic), its g-gradient carries that term too
        loose = k == 3 and method == "bosh3"
        torch.testing.assert_close(ours, ref, rtol=1e-3 if loose else 1e-9, atol=1e-10)
    if not reverse_time and method in ("dopri5", "rk4"):  # (bosh3's dense output is crude, as torchdiffeq's)
        assert results[0][0].item() == pytest.approx((2 * 10 / 9.8) ** 0.5, rel=1e-6)


@pytest.mark.parametrize("reverse_time", [False, True])
@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.05))])
def test_events_through_the_adjoint_equal_torchdiffeqs(method: str, options: dict | None, reverse_time: bool) -> None:
    """odeint_adjoint(event_fn=): the solve to the event and the adjoint from it, alone (the event time held
    fixed) and under odeint_event (its gradient by the implicit function theorem), gradients w.r.t. h0, g and
    t0 as torchdiffeq's."""
    from monode import odeint_adjoint, odeint_event

    results = []
    for event, adjoint in ((odeint_event, odeint_adjoint), (torchdiffeq.odeint_event, torchdiffeq.odeint_adjoint)):
        runs = []
        for through_event_time in (False, True):
            g = torch.tensor(9.8, dtype=torch.float64, requires_grad=True)
            h0 = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)
            v0 = torch.tensor([0.0], dtype=torch.float64)
            t0 = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
            kwargs = dict(method=method, options=options, rtol=1e-8, atol=1e-8, adjoint_params=(g,))
            if through_event_time:
                t_event, (h, v) = event(_ball(g), (h0, v0), t0, event_fn=lambda t, s: s[0], reverse_time=reverse_time,
                                        odeint_interface=adjoint, **kwargs)  # fmt: skip
                (t_event + v[-1].sum()).backward()
            else:
                t = torch.stack([t0, t0.detach() + (-1.0 if reverse_time else 1.0)])
                t_event, (h, v) = adjoint(_ball(g), (h0, v0), t, event_fn=lambda t, s: s[0], **kwargs)
                (v[-1].sum() + 2 * h[-1].sum()).backward()
            runs.append((t_event.detach(), h.detach(), h0.grad, g.grad, t0.grad))
        results.append(runs)
    for ours, ref in zip(*results):
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


class _BouncingBall(torch.nn.Module):
    """torchdiffeq's bouncing-ball example: state (height, velocity, log radius), the last part constant (its
    derivative a zeros_like, which reads nothing), the start time a [1]-shaped parameter; each bounce starts at
    the previous event time, so gradients reach t0, g and the radius only through the chain of event times."""

    def __init__(self) -> None:
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor([9.8], dtype=torch.float64))
        self.log_radius = torch.nn.Parameter(torch.tensor([0.2], dtype=torch.float64).log())
        self.t0 = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
        self.h0 = torch.nn.Parameter(torch.tensor([10.0], dtype=torch.float64))
        self.v0 = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
        self.absorption = torch.nn.Parameter(torch.tensor([0.2], dtype=torch.float64))

    def forward(self, t, state):
        h, v, log_radius = state
        return v, -self.g, torch.zeros_like(log_radius)

    def last_bounce(self, event, interface, bounces: int, **kwargs) -> torch.Tensor:
        t0, state = self.t0, (self.h0, self.v0, self.log_radius)
        for _ in range(bounces):
            t0, solution = event(self, state, t0, event_fn=lambda t, s: s[0] - s[2].exp(),
                                 odeint_interface=interface, **kwargs)  # fmt: skip
            h, v, log_radius = (part[-1] for part in solution)
            state = (h + 1e-7, -v * (1 - self.absorption), log_radius)
        return t0


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.01))])
def test_bounces_chained_through_event_times_have_torchdiffeqs_gradients(
    method: str, options: dict | None, adjoint: bool
) -> None:
    """The time of the third bounce and its gradients as torchdiffeq's, by backprop and by the adjoint; d/dt0 is 1
    (the system is autonomous; to O(step) on a fixed grid). Regression: the start time's gradient was lost in
    backprop (the state at an event did not depend on t0), and the adjoint failed on the constant part."""
    from monode import odeint_adjoint, odeint_event

    grads = []
    libraries = [(odeint_event, odeint_adjoint if adjoint else odeint)]
    libraries.append((torchdiffeq.odeint_event, torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint))
    for event, interface in libraries:
        ball = _BouncingBall()
        ball.last_bounce(event, interface, 3, method=method, options=options, rtol=1e-8, atol=1e-8).sum().backward()
        grads.append({name: p.grad for name, p in ball.named_parameters()})
    ours, ref = grads
    for name in ref:
        torch.testing.assert_close(ours[name], ref[name], rtol=1e-7, atol=1e-9, msg=name)
    # (a fixed grid's linear interpolant moves the state at the event by its secant, not f: 1 + O(step))
    shift = 1e-6 if options is None else 2 * options["step_size"]
    torch.testing.assert_close(ours["t0"], torch.ones(1, dtype=torch.float64), rtol=shift, atol=0)


def test_event_errors() -> None:
    f = lambda t, y: -y  # noqa: E731
    with pytest.raises(ODEInputError, match=r"with event_fn, t must be \[t0, t1\].*got 3 times"):
        odeint(f, torch.ones(1), torch.tensor([0.0, 1.0, 2.0]), event_fn=lambda t, y: y)
    with pytest.raises(ODEInputError, match=r"events with a fixed-step method need options\['step_size'\]"):
        odeint(f, torch.ones(1), torch.tensor([0.0, 1.0]), method="euler", event_fn=lambda t, y: y - 0.5)


@pytest.mark.parametrize("method,options", [("dopri5", None), ("rk4", dict(step_size=0.1))])
def test_an_event_with_atol_zero_is_located_to_a_millionth_of_a_millionth_of_the_step(method, options) -> None:
    """atol = 0 is no bisection tolerance: the event is located to 1e-12 of its step (the interpolant crosses
    there), both kinds of method; the time is then as accurate as the interpolant (rk4's is linear)."""
    y0, t = torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 5.0], dtype=torch.float64)
    t_event, ys = odeint(lambda t, y: -y, y0, t, rtol=1e-10, atol=0.0, method=method, options=options,
                         event_fn=lambda t, y: y - 0.5)  # fmt: skip
    assert float(ys[-1]) == pytest.approx(0.5, abs=1e-11)
    assert float(t_event) == pytest.approx(math.log(2.0), abs=1e-9 if options is None else 1e-3)


def test_scipy_solver_lsoda_differs_from_torchdiffeqs_only_by_its_float32_time() -> None:
    t = torch.tensor(TIMES["forward"], dtype=torch.float64)
    y0 = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f = Net(torch.float64)
    ours = odeint(lambda s, y: f(s.float().double(), y), y0, t, method="scipy_solver", rtol=1e-5, atol=1e-7)
    assert torch.equal(ours, torchdiffeq.odeint(f, y0, t, method="scipy_solver", rtol=1e-5, atol=1e-7))


def test_scipy_solver_lsoda_is_accurate_and_gives_no_gradient() -> None:
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    y0 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    y = odeint(lambda t, y: -y * torch.cos(t), y0, t, method="scipy_solver", rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(y, torch.exp(-torch.sin(t))[:, None].expand(5, 3), rtol=1e-6, atol=1e-7)
    assert not y.requires_grad  # as torchdiffeq's wrapper: use odeint_adjoint for gradients
    with pytest.raises(ODEInputError, match="scipy_solver: .*"):
        odeint(lambda t, y: -y, y0, t, method="scipy_solver", options=dict(solver="NotAMethod"))
