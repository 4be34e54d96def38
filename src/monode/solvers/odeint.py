"""The public entry points: `odeint` (backprop through the solver) and `odeint_adjoint`."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ._adaptive import AdaptiveRungeKutta
from ._errors import ODEInputError
from ._inputs import Func, Problem, check_tolerance, prepare, segment_rms_max
from ._registry import METHODS
from ._stats import SolverStats, active_recorders, report

__all__ = ["odeint", "odeint_adjoint"]


def _make_solver(method: str | None, options: dict | None, rtol: float, atol: float,
                 norm: Callable[[torch.Tensor], torch.Tensor], what: str = "method"):
    method = "dopri5" if method is None else method
    if method not in METHODS:
        raise ODEInputError(f"{what}={method!r} is not a monode solver; choose one of {sorted(METHODS)}")
    cls = METHODS[method]
    options = dict(options or {})
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        raise ODEInputError(f"{what}={method!r} does not take option(s) {unknown}; valid options: {list(cls.options)}")
    if issubclass(cls, AdaptiveRungeKutta):
        options["norm"] = norm  # the options' own norm, already resolved to one on the flat state
        return cls(rtol=rtol, atol=atol, **options)
    options.pop("norm", None)
    return cls(**options)


def _state_norm(prob: Problem, user_norm: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The error norm on the flat state: torchdiffeq's mixed RMS norm, or the user's on the user's structure."""
    if user_norm is None:
        return lambda x: segment_rms_max(x, prob.segments)
    if user_norm == "rms":
        return lambda x: segment_rms_max(x, None)
    if not callable(user_norm):
        raise ODEInputError(f"options['norm'] must be callable, got {user_norm!r}")
    if prob.shapes is None:
        return user_norm
    numels = [s.numel() for s in prob.shapes]
    return lambda x: torch.as_tensor(user_norm(tuple(p.view(s) for p, s in zip(x.split(numels), prob.shapes))))


def _record_forward(stats: SolverStats, sol: torch.Tensor, backprop: bool) -> None:
    recorders = active_recorders()
    if not recorders:
        return
    report(recorders, backward=False, nfe=stats.forward_nfe, steps=stats.forward_steps,
           rejected=stats.forward_rejected)
    if backprop and sol.requires_grad:  # one VJP of the field per forward evaluation, counted when it runs
        sol.register_hook(lambda grad: report(recorders, backward=True, nfe=stats.forward_nfe,
                                              steps=stats.forward_steps, rejected=stats.forward_rejected))


def _positions(func: Any, params: tuple[torch.Tensor, ...]) -> list[int | None] | None:
    """The index of each differentiated tensor among func.adjoint_params() (None: not there), or None when
    func has no adjoint_params."""
    if not callable(getattr(func, "adjoint_params", None)):
        return None
    index = {id(p): i for i, p in enumerate(func.adjoint_params())}
    return [index.get(id(p)) for p in params]


def _closed_form_vjp(func: Any, positions: list[int | None] | None) -> tuple[Callable, list[int]] | None:
    """(func.vjp, `positions`) when func computes its VJP in closed form (`BoundField.vjp`,
    `TimeScaledField.vjp`) for every differentiated tensor; else None."""
    supported = getattr(func, "vjp_supported", None)
    if positions is None or None in positions or not (callable(supported) and supported()):
        return None
    return func.vjp, positions  # type: ignore[return-value]


def _gradient_scales(func: Any, positions: list[int | None] | None) -> Callable[[], list[float]] | None:
    """A lazy `func.gradient_scales()` restricted to the differentiated tensors, or None if func has none."""
    scales_of = getattr(func, "gradient_scales", None)
    if positions is None or not callable(scales_of):
        return None

    def restricted() -> list[float]:
        scales = scales_of()
        return [1.0 if i is None else scales[i] for i in positions]
    return restricted


def _adjoint_atol(atol: float, n: int, numels: list[int], scales: list[float], like: torch.Tensor
                  ) -> torch.Tensor | None:
    """Per-component atol of the adjoint state [y, a, g]: atol / scale on a parameter gradient whose values
    are `scale` times the raw parameter's (so err / (atol / s + rtol |g|) = the raw gradient's error ratio);
    None when every scale is 1."""
    if all(s == 1.0 for s in scales):
        return None
    out = torch.full((2 * n + sum(numels),), atol, dtype=like.dtype, device=like.device)
    offset = 2 * n
    for k, s in zip(numels, scales):
        if s != 1.0:
            out[offset:offset + k] = atol / s if s > 0 else math.inf
        offset += k
    return out


def odeint(func: Func, y0: Any, t: Any, *, rtol: float = 1e-7, atol: float = 1e-9,
           method: str | None = None, options: dict | None = None) -> Any:
    """Integrate dy/dt = func(t, y) from y(t[0]) = y0 and return y at every time in t.

    Drop-in for `torchdiffeq.odeint`; gradients come from backpropagating through the solver.

    Args:
        func: callable `func(t, y)`; `t` is a 0-d tensor of the state's dtype, `y` has the structure
            of `y0` and the return value must too.
        y0: initial state, a tensor or a tuple of tensors (e.g. momentum states (h, m) or (h, m, v)).
        t: 1-D strictly increasing or strictly decreasing times (decreasing integrates backwards).
        rtol, atol: tolerances of adaptive methods (error ratio uses atol + rtol * max(|y0|, |y1|)).
        method: "dopri5" (default), "bosh3", "euler", "midpoint", "rk4" or "nag" (see `METHODS`).
        options: method options. Adaptive: first_step, safety, ifactor, dfactor, max_step,
            max_num_steps (default 10000), norm (default: torchdiffeq's mixed norm, the max over
            tuple components of each one's RMS; "rms": one RMS over the whole state, as for a
            single stacked tensor; or a callable on the state's structure), compile (True or torch.compile
            keyword arguments: each step and the solve's start become compiled graphs, shared by later
            solves of the same structure). Fixed-step: step_size or grid (default: one step
            per output interval), compile (torch.compile the step), max_num_steps; nag also momentum.

    Returns:
        Tensor [len(t), *y0.shape], or a tuple of such tensors for a tuple `y0`.

    Raises:
        ODEInputError on bad arguments; NonFiniteStateError, StepSizeUnderflowError,
        MaxStepsExceededError during the solve. Counts are recorded by `record_stats`.
    """
    rtol, atol = check_tolerance("rtol", rtol), check_tolerance("atol", atol)
    prob = prepare(func, y0, t)
    solver = _make_solver(method, options, rtol, atol, _state_norm(prob, (options or {}).get("norm")))
    sol, stats = solver.integrate(prob.func, prob.y0, prob.times)
    _record_forward(stats, sol, backprop=True)
    return prob.unflatten(sol)


def _autograd_dynamics(prob: Problem, params: list[torch.Tensor], n: int) -> Func:
    """d/dt [y, a, g] = [f, -a df/dy, -a df/dparams] by autograd: f evaluated on the user's structure
    (no flatten/unflatten in the differentiated graph), everything joined by one cat."""
    def augmented(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            ys = tuple(y.detach().requires_grad_(True) for y in prob.split(z[:n]))
            fs = prob.call_structured(t, ys)
            vjps = torch.autograd.grad(fs, (*ys, *params), prob.split(-z[n:2 * n]), allow_unused=True)
        vjps = [torch.zeros_like(x) if v is None else v for v, x in zip(vjps, (*ys, *params))]
        return torch.cat([f.detach().reshape(-1) for f in fs] + [v.reshape(-1) for v in vjps])
    return augmented


def _closed_form_dynamics(prob: Problem, vjp: Callable, selected: list[int], n: int) -> Func:
    """The same dynamics from the field's closed-form `vjp` (no autograd): [f, a df/dy, a df/dp] joined,
    then the adjoint parts negated in place; `selected` picks the differentiated tensors' parts."""
    structured = prob.shapes is not None

    def augmented(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ys, adj = prob.split(z[:n]), prob.split(z[n:2 * n])
        if structured:
            fs, grad_y, grads = vjp(t, ys, adj)
        else:
            f, g, grads = vjp(t, ys[0], adj[0])
            fs, grad_y = (f,), (g,)
        out = torch.cat([f.reshape(-1) for f in fs] + [g.reshape(-1) for g in grad_y]
                        + [grads[i].reshape(-1) for i in selected])
        out[n:].neg_()
        return out
    return augmented


class _AdjointSolve(torch.autograd.Function):
    """Solve without building a graph; the backward pass solves the adjoint ODE backwards in time."""

    @staticmethod
    def forward(ctx: Any, spec: dict, y0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        prob = spec["problem"]
        sol, stats = spec["solver"].integrate(prob.func, y0.detach(), prob.times)  # (one compiled graph either way)
        ctx.spec, ctx.recorders = spec, active_recorders()
        _record_forward(stats, sol, backprop=False)
        ctx.save_for_backward(sol, *params)
        return sol

    @staticmethod
    def backward(ctx: Any, grad_sol: torch.Tensor) -> tuple[Any, ...]:
        sol, *params = ctx.saved_tensors
        spec = ctx.spec
        prob = spec["problem"]
        times, shape = prob.times, sol.shape[1:]
        n = sol[0].numel()
        numels = [p.numel() for p in params]

        closed_form = spec["vjp"]
        if closed_form is None:
            augmented = _autograd_dynamics(prob, params, n)
        else:
            augmented = _closed_form_dynamics(prob, *closed_form, n)
        solver = spec["adjoint_solver"](n, numels)
        if spec["gradient_scales"] is not None and isinstance(solver, AdaptiveRungeKutta):
            solver.atol_per_component = _adjoint_atol(solver.atol, n, numels, spec["gradient_scales"](), sol)
        adj = grad_sol[-1].reshape(-1)
        grads = torch.zeros(sum(numels), dtype=sol.dtype, device=sol.device)
        nfe = steps = rejected = 0
        for i in range(len(times) - 1, 0, -1):
            z0 = torch.cat([sol[i].reshape(-1), adj, grads])
            zs, stats = solver.integrate(augmented, z0, [times[i], times[i - 1]])
            adj = zs[-1, n:2 * n] + grad_sol[i - 1].reshape(-1)
            grads = zs[-1, 2 * n:]
            nfe, steps, rejected = nfe + stats.forward_nfe, steps + stats.forward_steps, rejected + stats.forward_rejected
        report(ctx.recorders, backward=True, nfe=nfe, steps=steps, rejected=rejected)
        param_grads = [g.view_as(p) for g, p in zip(grads.split(numels), params)]
        return (None, adj.view(shape), *param_grads)


def odeint_adjoint(func: Func, y0: Any, t: Any, *, rtol: float = 1e-7, atol: float = 1e-9,
                   method: str | None = None, options: dict | None = None,
                   adjoint_rtol: float | None = None, adjoint_atol: float | None = None,
                   adjoint_method: str | None = None, adjoint_options: dict | None = None,
                   adjoint_params: Any = None) -> Any:
    """`odeint` with gradients from the backsolve adjoint (constant memory in the number of steps).

    The backward pass integrates [y, a, g] from t[-1] to t[0] with a' = -a df/dy and
    g' = -a df/dparams, resetting y to the stored forward value and adding the incoming gradient
    at every output time. Same arguments as `odeint`, plus:

    Args:
        adjoint_rtol, adjoint_atol, adjoint_method: the backward solve's (default: the forward's).
        adjoint_options: options of the backward solve (default: the forward options without norm;
            a forward norm="rms" makes y and a one segment each in the backward mixed norm).
            norm="seminorm" measures the error on (y, a) only and ignores the parameter-gradient
            part (Kidger et al. 2021): fewer backward steps, same gradients to tolerance. The default
            is torchdiffeq's mixed norm over y, a and each parameter. A callable norm receives
            the flat tuple (y, a, *param_grads).
        adjoint_params: the tensors to differentiate (default: func.parameters(); func must then be
            an nn.Module). Tensors not requiring grad are skipped.

    Gradients with respect to `t` are not computed (pass a t that does not require grad).
    """
    rtol, atol = check_tolerance("rtol", rtol), check_tolerance("atol", atol)
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise ODEInputError("odeint_adjoint: func is not an nn.Module, so pass adjoint_params=(...) "
                                "(the tensors to differentiate; () if there are none)")
        adjoint_params = tuple(func.parameters())
    params = tuple(p for p in adjoint_params if p.requires_grad)
    adjoint_rtol = rtol if adjoint_rtol is None else check_tolerance("adjoint_rtol", adjoint_rtol)
    adjoint_atol = atol if adjoint_atol is None else check_tolerance("adjoint_atol", adjoint_atol)
    if adjoint_method is None:
        adjoint_method = method
    elif adjoint_method != method and options is not None and adjoint_options is None:
        raise ODEInputError(f"odeint_adjoint: adjoint_method={adjoint_method!r} differs from method={method!r}, "
                            "so the forward options cannot be reused: pass adjoint_options too")
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in (options or {}).items() if k != "norm"}
    adjoint_options = dict(adjoint_options)
    adjoint_norm = adjoint_options.pop("norm", "mixed")

    prob = prepare(func, y0, t)
    solver = _make_solver(method, options, rtol, atol, _state_norm(prob, (options or {}).get("norm")))
    joint_norm = (options or {}).get("norm") == "rms"
    _make_solver(adjoint_method, adjoint_options, adjoint_rtol, adjoint_atol, segment_rms_max,
                 what="adjoint_method")  # validate the backward configuration now, not at backward time

    def adjoint_solver(n: int, numels: list[int]):
        y_segments = [(0, n)] if joint_norm else prob.segments or [(0, n)]
        segments = y_segments + [(a + n, b + n) for a, b in y_segments]
        if adjoint_norm == "mixed":
            offset = 2 * n
            for k in numels:
                segments.append((offset, offset + k))
                offset += k
            norm = lambda z: segment_rms_max(z, segments)  # noqa: E731
        elif adjoint_norm == "seminorm":
            norm = lambda z: segment_rms_max(z[: 2 * n], segments)  # noqa: E731
        elif callable(adjoint_norm):
            norm = lambda z: torch.as_tensor(adjoint_norm((z[:n], z[n:2 * n], *z[2 * n:].split(numels))))  # noqa: E731
        else:
            raise ODEInputError(f"adjoint_options['norm'] must be 'seminorm', 'mixed' or callable, got {adjoint_norm!r}")
        return _make_solver(adjoint_method, adjoint_options, adjoint_rtol, adjoint_atol, norm, what="adjoint_method")

    positions = _positions(func, params)
    spec = dict(solver=solver, problem=prob, adjoint_solver=adjoint_solver, vjp=_closed_form_vjp(func, positions),
                gradient_scales=_gradient_scales(func, positions) if isinstance(adjoint_norm, str) else None)
    sol = _AdjointSolve.apply(spec, prob.y0, *params)
    return prob.unflatten(sol)
