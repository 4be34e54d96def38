"""`odeint`: integrate with gradients by backpropagating through the solver; the solver factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import _callbacks
from ._adaptive import AdaptiveRungeKutta
from ._clock import Clock, real_dtype
from ._errors import ODEInputError
from ._events import combine
from ._inputs import (
    Func,
    Problem,
    check_options,
    check_resolvable,
    per_component_tolerance,
    prepare,
    segment_rms_max,
)
from ._interface import EventSolver, Solver
from ._registry import METHODS
from ._stats import SolverStats, active_recorders, report

__all__ = [
    "odeint",
    "make_solver",
    "state_norm",
    "record_forward",
    "setup",
    "check_event_times",
    "find_event",
    "tolerances",
]

Norm = Callable[[torch.Tensor], torch.Tensor]


def make_solver(
    method: str | None,
    options: dict | None,
    rtol: float,
    atol: float,
    norm: Norm,
    what: str = "method",
    dtype: torch.dtype | None = None,
) -> Solver:
    """The solver object of `method` with `options` (each validated; `norm` already resolved on the flat state;
    an adaptive method's tolerances checked against the state's `dtype` when given)."""
    method = "dopri5" if method is None else method
    if not isinstance(method, str) or method not in METHODS:
        raise ODEInputError(f"{what}={method!r} is not a monode solver; choose one of {sorted(METHODS)}")
    cls = METHODS[method]
    options = dict(check_options(options, "adjoint_options" if what == "adjoint_method" else "options"))
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        raise ODEInputError(f"{what}={method!r} does not take option(s) {unknown}; valid options: {list(cls.options)}")
    if issubclass(cls, AdaptiveRungeKutta):
        if dtype is not None:
            check_resolvable(f"{what}={method!r}", rtol, atol, dtype)
        options["norm"] = norm
        return cls(rtol=rtol, atol=atol, **options)
    options.pop("norm", None)
    if getattr(cls, "tolerances", False):  # the Adams corrector's convergence test, scipy's solve_ivp
        options.update(rtol=rtol, atol=atol)
    return cls(**options)


def tolerances(prob: Problem, rtol: Any, atol: Any) -> tuple[float, float, Callable[[Solver], None] | None]:
    """rtol and atol checked (numbers, or per component as torchdiffeq takes them), as (smallest rtol, smallest
    atol, None for numbers or else a function that gives a solver the per-component ones). The adaptive
    Runge-Kutta methods read them per component; fixed-grid methods read no tolerance (as torchdiffeq's), the
    Adams corrector and scipy take numbers only."""
    rtol, rtol_parts = per_component_tolerance("rtol", rtol, prob)
    atol, atol_parts = per_component_tolerance("atol", atol, prob)
    if rtol_parts is None and atol_parts is None:
        return rtol, atol, None

    def give(solver: Solver) -> None:
        if isinstance(solver, AdaptiveRungeKutta):
            if solver.compile:
                raise ODEInputError(
                    f"{solver.name}: options['compile'] takes rtol and atol as numbers, not per component"
                )
            # in torchdiffeq's time dtype (float64, or options['dtype'], promoted with the state's); a number
            # beside a per-component tolerance becomes a 0-d tensor of it
            like = prob.y0
            time = torch.float32 if solver.float32_time else torch.float64
            dtype = torch.promote_types(time, real_dtype(like.dtype))
            solver.rtol_per_component, solver.atol_per_component = (
                torch.as_tensor(number if parts is None else parts, dtype=dtype, device=like.device)
                for number, parts in ((rtol, rtol_parts), (atol, atol_parts))
            )
        elif getattr(solver, "tolerances", False):
            raise ODEInputError(
                f"{solver.name}: rtol and atol must be numbers (per-component tolerances are read by the adaptive "
                "Runge-Kutta methods)"
            )

    return rtol, atol, give


def setup(
    solver: Solver, prob: Problem, method: str | None
) -> tuple[Clock, _callbacks.Callbacks, _callbacks.Callbacks]:
    """What a solve of `prob` needs besides the solver: its clock (differentiable when t requires grad), its
    forward and adjoint callbacks found on the user's func; hands a grid_constructor the user's arguments."""
    solver.user = (prob.inner, prob.user_y0, prob.t)
    forward, adjoint = _callbacks.find(
        getattr(prob.inner, "func", prob.inner), method or "dopri5", solver.callbacks, lambda y: _structured(prob, y)
    )
    return Clock(prob.t), forward, adjoint


def _structured(prob: Problem, flat: torch.Tensor) -> Any:
    parts = prob.split(flat)
    return parts if prob.layout is not None else parts[0]


def state_norm(prob: Problem, user_norm: Any) -> Norm:
    """The error norm on the flat state: torchdiffeq's mixed RMS norm, "rms" over the whole state, or the
    user's callable applied to the user's structure."""
    if user_norm is None:
        return lambda x: segment_rms_max(x, prob.segments)
    if user_norm == "rms":
        return lambda x: segment_rms_max(x, None)
    if not callable(user_norm):
        raise ODEInputError(f"options['norm'] must be None, 'rms' or callable, got {user_norm!r}")
    if prob.layout is None:
        return user_norm
    return lambda x: torch.as_tensor(user_norm(prob.split(x)))


def record_forward(stats: SolverStats, sol: torch.Tensor, backprop: bool) -> None:
    """Report a forward solve to the active recorders; with backprop, one VJP per evaluation when backward runs."""
    recorders = active_recorders()
    if not recorders:
        return
    report(recorders, backward=False, nfe=stats.forward_nfe, steps=stats.forward_steps, rejected=stats.forward_rejected)
    if backprop and sol.requires_grad:
        sol.register_hook(
            lambda grad: report(
                recorders,
                backward=True,
                nfe=stats.forward_nfe,
                steps=stats.forward_steps,
                rejected=stats.forward_rejected,
            )
        )


def check_event_times(prob: Problem, what: str) -> None:
    """With event_fn, t is [t0, t1], t1 giving only the direction (torchdiffeq's convention)."""
    if len(prob.times) != 2:
        raise ODEInputError(
            f"{what}: with event_fn, t must be [t0, t1] (t1 only gives the direction), got {len(prob.times)} times"
        )


def find_event(
    solver: Solver,
    prob: Problem,
    y0: torch.Tensor,
    event_fn: Any,
    callbacks: _callbacks.Callbacks,
    atol: float,
    clock: Clock | None = None,
) -> tuple[float, torch.Tensor, SolverStats]:
    """Solve from (t0, y0) until event_fn changes sign, located to within atol: (event time, state, counts)."""
    if not isinstance(solver, EventSolver):
        raise ODEInputError(f"{type(solver).__name__} does not support event_fn")
    direction = 1.0 if prob.times[1] > prob.times[0] else -1.0
    event = combine(event_fn, prob)
    return solver.integrate_until_event(prob.func, y0, prob.times[0], direction, event, atol, callbacks, clock)


def _until_event(
    solver: Solver, prob: Problem, event_fn: Any, callbacks: Any, atol: float, clock: Clock
) -> tuple[torch.Tensor, Any]:
    """odeint with event_fn: (event time, solution at [t0, event time]) as torchdiffeq returns them; the state
    at the event depends on t0 through `clock` when t requires grad, the event time itself has no graph (as
    torchdiffeq's: `odeint_event` adds its gradient)."""
    t_event, y_event, stats = find_event(solver, prob, prob.y0, event_fn, callbacks, atol, clock)
    sol = torch.stack([prob.y0, y_event])
    record_forward(stats, sol, backprop=True)
    return torch.tensor(t_event, dtype=prob.t.dtype, device=prob.t.device), prob.unflatten(sol)


def odeint(
    func: Func,
    y0: Any,
    t: Any,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict | None = None,
    event_fn: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
) -> Any:
    """Integrate dy/dt = func(t, y) from y(t[0]) = y0 and return y at every time in t.

    Drop-in for `torchdiffeq.odeint`; gradients come from backpropagating through the solver (also with
    respect to `t` when it requires grad). Callbacks `func.callback_step` etc. are called as torchdiffeq does.

    Args:
        func: callable `func(t, y)`; `t` is a 0-d tensor of the state's dtype, `y` has the structure
            of `y0` and the return value must too.
        y0: initial state, a tensor or a tuple of tensors (e.g. momentum states (h, m) or (h, m, v)); real or
            complex (time is then in the real dtype, as torchdiffeq).
        t: 1-D strictly increasing or strictly decreasing times (decreasing integrates backwards).
        rtol: relative tolerance of adaptive methods (the error is scaled by atol + rtol * max(|y0|, |y1|)); a
            number, or per component as torchdiffeq takes it: one entry per part of a tuple state (a number or a
            tensor of the part's size), or a tensor broadcasting to a tensor state.
        atol: absolute tolerance of adaptive methods; the same forms.
        method: a name in `METHODS`: torchdiffeq's (adaptive "dopri8", "dopri5" (default), "bosh3",
            "fehlberg2", "adaptive_heun"; fixed-grid "euler", "midpoint", "heun2", "heun3", "rk4" (3/8 rule),
            "explicit_adams", "implicit_adams"/"fixed_adams"; "scipy_solver"), and "tsit5", "rk4_classic", "nag".
        options: method options, with torchdiffeq's meaning. Adaptive: first_step, min_step, max_step, step_t,
            jump_t, dtype (of time; promoted with the state's, as torchdiffeq), safety, ifactor, dfactor,
            max_num_steps (default 10000), norm (default: torchdiffeq's mixed norm, the max over tuple
            components of each one's RMS; "rms": one RMS over the whole state; or a callable on the state's
            structure), compile (True or torch.compile keyword
            arguments: each step and the solve's start become compiled graphs). Fixed grid: step_size or
            grid_constructor, interp ("linear", "cubic"), perturb, exact_times (steps end on every output time,
            no interpolation), compile, max_num_steps; Adams: max_order, max_iters; nag: momentum;
            scipy_solver: solver, min_step, max_step.
        event_fn: optional `event_fn(t, y) -> tensor`: solve from t[0] (t = [t0, t1], t1 giving the direction) until
            it changes sign, and return (event time, solution at [t0, event time]); see `odeint_event`.

    Returns:
        Tensor [len(t), *y0.shape], or a tuple of such tensors for a tuple `y0`.

    Raises:
        ODEInputError: on bad arguments.
        NonFiniteStateError: the state or the field became NaN/Inf (or overflowed) during the solve.
        StepSizeUnderflowError: the adaptive step shrank below what the time's dtype resolves.
        MaxStepsExceededError: more than options['max_num_steps'] steps.

    Counts are recorded by `record_stats`.
    """
    prob = prepare(func, y0, t)
    rtol, atol, per_component = tolerances(prob, rtol, atol)
    norm = state_norm(prob, check_options(options).get("norm"))
    solver = make_solver(method, options, rtol, atol, norm, dtype=prob.y0.dtype)
    if per_component is not None:
        per_component(solver)
    clock, callbacks, _ = setup(solver, prob, method)
    if event_fn is not None:
        check_event_times(prob, "odeint")
        return _until_event(solver, prob, event_fn, callbacks, atol, clock)
    sol, stats = solver.integrate(prob.func, prob.y0, prob.times, clock, callbacks)
    record_forward(stats, sol, backprop=True)
    return prob.unflatten(sol)
