"""Terminal events: solve until event_fn(t, y) = 0, as torchdiffeq's `odeint(..., event_fn=)` and `odeint_event`.

`event_fn(t, y)` returns a tensor (several event functions at once); the solve stops at the first time one of
them changes sign (they are combined as min(c * sign(c(t0, y0))), which starts positive), located by bisection
on the dense output to within atol. `odeint_event` makes the event time differentiable by the implicit function
theorem: with c(t*, y(t*)) = 0, dt*/dtheta = -(dc/dy dy/dtheta) / (dc/dt + dc/dy f), so the gradient reaching t*
is rerouted through the state at t* (Chen, Amos, Nickel 2021, "Learning neural event functions for ordinary
differential equations", arXiv:2011.03902).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.functional import vjp

from ._errors import ODEInputError
from ._inputs import Problem, prepare

EventFn = Callable[[torch.Tensor, Any], torch.Tensor]


def combine(event_fn: EventFn, prob: Problem) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """event_fn on the flat state, its components made positive at the start and reduced by min (one scalar)."""
    if not callable(event_fn):
        raise ODEInputError(f"event_fn must be callable as event_fn(t, y), got {event_fn!r}")

    def on_structure(t: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        parts = prob.split(flat)
        return torch.as_tensor(event_fn(t, parts if prob.layout is not None else parts[0]))

    with torch.no_grad():
        signs = torch.sign(on_structure(prob.t[0].detach().to(prob.y0.dtype), prob.y0))

    return lambda t, y: torch.min(on_structure(t, y) * signs)


def locate_event(lo: float, hi: float, tol: float, before: Callable[[float], bool]) -> float:
    """The event time in the step [lo, hi] whose end has passed it, as torchdiffeq locates it: halve the interval
    ceil(log2(|hi - lo| / tol)) times, keeping the sign change inside (`before(t)`: the event function at t still
    has its starting sign), and take the midpoint. tol <= 0 means 1e-12 of the step."""
    tol = tol if tol > 0 else abs(hi - lo) * 1e-12
    for _ in range(max(0, math.ceil(math.log(abs(hi - lo) / tol) / math.log(2.0)))):
        mid = (lo + hi) / 2.0
        if before(mid):
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


class _ImplicitEventGradient(torch.autograd.Function):
    """Identity on (event time, state there); backward reroutes the event time's gradient into the state."""

    @staticmethod
    def forward(ctx: Any, func: Callable, event_fn: Callable, event_t: torch.Tensor, state: torch.Tensor) -> Any:
        ctx.func, ctx.event_fn = func, event_fn
        ctx.save_for_backward(event_t, state)
        return event_t.detach(), state.detach()

    @staticmethod
    def backward(ctx: Any, grad_t: torch.Tensor, grad_state: torch.Tensor) -> Any:
        event_t, state = ctx.saved_tensors
        event_t = event_t.detach().clone().requires_grad_(True)
        state = state.detach().clone().requires_grad_(True)
        f = ctx.func(event_t, state)
        with torch.enable_grad():
            c, (dc_dt, dc_dy) = vjp(ctx.event_fn, (event_t, state))
        total_dc_dt = dc_dt + torch.sum(dc_dy * f)
        grad_t = grad_t + torch.sum(grad_state * f)
        rerouted = dc_dy * (-grad_t / (total_dc_dt + 1e-12)).reshape_as(c)
        return None, None, None, grad_state + rerouted


def odeint_event(
    func: Any,
    y0: Any,
    t0: Any,
    *,
    event_fn: EventFn,
    reverse_time: bool = False,
    odeint_interface: Callable | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """Solve from (t0, y0) until `event_fn(t, y)` crosses zero; return (event time, solution at [t0, event time]).

    torchdiffeq's signature and semantics: forward in time (backward with `reverse_time=True`), with
    `odeint_interface` (default `monode.odeint`) called with `event_fn`; `kwargs` are its arguments (rtol, atol,
    method, options). The event time is differentiable: its gradient flows through the state at the event.
    """
    if odeint_interface is None:
        from ._integrate import odeint

        odeint_interface = odeint
    t0 = torch.as_tensor(t0, dtype=torch.get_default_dtype()) if not isinstance(t0, torch.Tensor) else t0
    end = t0.reshape(-1).detach() + (-1.0 if reverse_time else 1.0)
    t = torch.cat([t0.reshape(-1), end])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    prob = prepare(func, y0, t)
    combined = combine(event_fn, prob)
    state = torch.cat([s[-1].reshape(-1) for s in solution]) if isinstance(solution, tuple) else solution[-1]
    event_t, state = _ImplicitEventGradient.apply(
        lambda s, y: prob.func(s.to(prob.y0.dtype), y.reshape(prob.y0.shape)).reshape(y.shape),
        lambda s, y: combined(s.to(prob.y0.dtype), y.reshape(prob.y0.shape)),
        event_t,
        state,
    )
    if isinstance(solution, tuple):
        parts = prob.split(state)
        solution = tuple(torch.cat([s[:-1], p[None]], dim=0) for s, p in zip(solution, parts))
    else:
        solution = torch.cat([solution[:-1], state[None]], dim=0)
    return event_t, solution
