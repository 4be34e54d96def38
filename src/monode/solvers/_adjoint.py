"""`odeint_adjoint`: gradients by solving the adjoint ODE backwards in time (constant memory in the steps).

The backward pass integrates z = [y, a, g] from t[-1] to t[0] with

    y' = f(t, y),   a' = -a df/dy,   g' = -a df/dparams,

resetting y to the stored forward value and adding the incoming gradient to a at every output time.
As torchdiffeq's, z also carries the time term tau (tau' = -a df/dt; when t requires grad it is lowered
by f(t_i, y_i) . dL/dy_i at each output time, and dL/dt_i = f(t_i, y_i) . dL/dy_i for i >= 1, dL/dt_0 =
tau at t_0). tau is part of the error norm (as |tau|) even when t needs no gradient, so for a field that
reads t the backward steps and NFE are torchdiffeq's. The vector-Jacobian products come from autograd,
or in closed form from a `ClosedFormField` (whose adjoint then carries no time term unless t requires grad).
Reference: Chen, Rubanova, Bettencourt, Duvenaud (2018), arXiv:1806.07366; the seminorm option:
Kidger, Chen, Lyons (2021), "Hey, that's not an ODE", arXiv:2009.09457.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ._adaptive import AdaptiveRungeKutta
from ._callbacks import NONE, Callbacks
from ._errors import ODEInputError
from ._inputs import Func, Problem, check_options, check_tolerance, prepare, segment_rms_max
from ._integrate import check_event_times, find_event, make_solver, record_forward, setup, state_norm, tolerances
from ._interface import Solver
from ._stats import active_recorders, report
from .fields import ClosedFormField, ParametrizedField

__all__ = ["odeint_adjoint"]


@dataclasses.dataclass(frozen=True)
class _ClosedForm:
    """The field's closed-form VJP, and where each differentiated tensor sits among its `adjoint_params()`."""

    vjp: Callable[[torch.Tensor, Any, Any], tuple[Any, Any, tuple[torch.Tensor, ...]]]
    positions: list[int]


@dataclasses.dataclass(frozen=True)
class AdjointSpec:
    """Everything the backward pass needs, fixed when the forward solve starts."""

    problem: Problem
    solver: Solver
    method: str | None
    options: dict
    rtol: float
    atol: float
    norm: Any  # "mixed", "seminorm" or a callable on (y, a, *param_grads)
    joint_norm: bool  # the forward norm was "rms": y and a are one segment each
    closed_form: _ClosedForm | None
    gradient_scales: Callable[[], list[float]] | None
    callbacks: Callbacks = NONE
    adjoint_callbacks: Callbacks = NONE
    event_fn: Any = None  # solve until it changes sign (located to within event_tol) instead of to t[-1]
    event_tol: float = 0.0

    def backward_solver(self, n: int, shapes: list[torch.Size], like: torch.Tensor, timed: bool) -> Solver:
        """The adjoint solve's solver on the flat z = [(tau,) y, a, g] (g: gradients of parameters shaped
        `shapes`); `timed`: z starts with the time term (torchdiffeq's order, so float32 rounds alike)."""
        k = 1 if timed else 0
        numels = [math.prod(shape) for shape in shapes]
        y_segments = [(0, n)] if self.joint_norm else self.problem.segments or [(0, n)]
        ya_segments = y_segments + [(a + n, b + n) for a, b in y_segments]  # within z[k : k + 2n]
        end = k + 2 * n + sum(numels)
        norm: Callable[[torch.Tensor], torch.Tensor]
        if self.norm == "mixed":
            segments = [(0, 1)] if timed else []
            segments += [(a + k, b + k) for a, b in ya_segments]
            offset = k + 2 * n
            for numel in numels:
                segments.append((offset, offset + numel))
                offset += numel
            norm = lambda z: segment_rms_max(z, segments)  # noqa: E731
        elif self.norm == "seminorm":

            def norm(z: torch.Tensor) -> torch.Tensor:
                semi = segment_rms_max(z[k : k + 2 * n], ya_segments)
                return torch.maximum(semi, z[0].abs()) if timed else semi
        else:
            user, prob = self.norm, self.problem

            def norm(z: torch.Tensor) -> torch.Tensor:
                tau = z[0] if timed else torch.zeros((), dtype=z.dtype, device=z.device)
                ys, adj = prob.split(z[k : k + n]), prob.split(z[k + n : k + 2 * n])
                grads = [g.view(shape) for g, shape in zip(z[k + 2 * n : end].split(numels), shapes)]
                return torch.as_tensor(user((tau, *ys, *adj, *grads)))

        solver = make_solver(self.method, self.options, self.rtol, self.atol, norm, what="adjoint_method")
        if self.gradient_scales is not None and isinstance(solver, AdaptiveRungeKutta):
            solver.atol_per_component = _scaled_atol(self.atol, n, numels, self.gradient_scales(), like, k)
        return solver


def _scaled_atol(
    atol: float, n: int, numels: list[int], scales: list[float], like: torch.Tensor, lead: int = 0
) -> torch.Tensor | None:
    """Per-component atol of [(tau,) y, a, g] (`lead` leading time-term entries): atol / scale on a parameter
    gradient whose values are `scale` times the raw parameter's (so err / (atol / s + rtol |g|) is the raw
    gradient's error ratio); None when all are 1."""
    if all(s == 1.0 for s in scales):
        return None
    out = torch.full((lead + 2 * n + sum(numels),), atol, dtype=like.dtype, device=like.device)
    offset = lead + 2 * n
    for k, s in zip(numels, scales):
        if s != 1.0:
            out[offset : offset + k] = atol / s if s > 0 else math.inf
        offset += k
    return out


def _autograd_dynamics(prob: Problem, params: list[torch.Tensor], n: int, timed: bool) -> Func:
    """d/dt [(tau,) y, a, g] = [(-a df/dt,) f, -a df/dy, -a df/dparams] by autograd, f on the user's structure."""
    k = 1 if timed else 0
    zeros: dict[tuple[int, torch.dtype], torch.Tensor] = {}  # the VJP of an input f does not read (e.g. t)

    def flat(v: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
        if v is None:  # (cached by size and dtype: cat copies it)
            key = (x.numel(), x.dtype)
            return zeros[key] if key in zeros else zeros.setdefault(key, x.new_zeros(x.numel()))
        return v if v.dim() == 1 else v.reshape(-1)

    def augmented(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        graph = torch.is_grad_enabled()  # (a backward with create_graph): keep z's and f's graphs out
        z = z.detach() if graph else z
        with torch.enable_grad():
            t_in = t.detach().requires_grad_(True) if timed else t.detach()
            y = z[k : k + n].requires_grad_(True)  # flat: its VJP comes flat; f gets views in its structure
            fs = prob.call_structured(t_in, prob.split(y))
            inputs = (*((t_in,) if timed else ()), y, *params)
            grads: tuple[torch.Tensor | None, ...] = (None,) * len(inputs)
            read = [i for i, f in enumerate(fs) if f.requires_grad]  # parts of f that read t, y or the parameters
            if read:  # (none when f reads none of them, e.g. t alone with no parameters)
                outs, cotangents = fs, prob.split(-z[k + n : k + 2 * n])
                if len(read) < len(fs):  # (a constant part, e.g. zeros_like(y_i))
                    outs, cotangents = tuple(fs[i] for i in read), tuple(cotangents[i] for i in read)
                grads = torch.autograd.grad(outs, inputs, cotangents, allow_unused=True)
        vjps = [flat(v, x) for v, x in zip(grads, inputs)]
        return torch.cat(vjps[:k] + [(f.detach() if graph else f).reshape(-1) for f in fs] + vjps[k:])

    return augmented


def _closed_form_dynamics(prob: Problem, closed_form: _ClosedForm, n: int) -> Func:
    """The same dynamics from the field's closed-form VJP (no autograd), taken with the cotangent -a so that
    its products are the derivatives -a df/dy, -a df/dp themselves."""
    structured = prob.layout is not None
    vjp, selected = closed_form.vjp, closed_form.positions

    def augmented(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        ys, adj = prob.split(z[:n]), prob.split(z[n : 2 * n].neg())
        if structured:
            fs, grad_y, grads = vjp(t, ys, adj)
        else:
            f, g, grads = vjp(t, ys[0], adj[0])
            fs, grad_y = (f,), (g,)
        return torch.cat([prob.join(fs), prob.join(grad_y), *(grads[i].reshape(-1) for i in selected)])

    return augmented


class _AdjointSolve(torch.autograd.Function):
    """Solve without building a graph; the backward pass solves the adjoint ODE backwards in time."""

    @staticmethod
    def forward(ctx: Any, spec: AdjointSpec, y0: torch.Tensor, t: torch.Tensor, *params: torch.Tensor) -> Any:
        """The solution at t, or with an event_fn (solution at [t0, event time], event time): then the backward
        pass integrates back from the event time, which itself gets no gradient (as torchdiffeq; `odeint_event`
        adds it by the implicit function theorem)."""
        prob = spec.problem
        if spec.event_fn is None:
            sol, stats = spec.solver.integrate(prob.func, y0.detach(), prob.times, None, spec.callbacks)
            ctx.times = prob.times
        else:
            t_event, y_event, stats = find_event(spec.solver, prob, y0.detach(), spec.event_fn, spec.callbacks,
                                                 spec.event_tol)  # fmt: skip
            sol = torch.stack([y0.detach(), y_event])
            ctx.times = [prob.times[0], t_event]
        ctx.spec, ctx.recorders, ctx.timed = spec, active_recorders(), t.requires_grad
        record_forward(stats, sol, backprop=False)
        ctx.save_for_backward(sol, t, *params)
        if spec.event_fn is None:
            return sol
        # as torchdiffeq's, an output of the graph whose gradient backward ignores (so `event_t.backward()` runs)
        return sol, torch.tensor(ctx.times[1], dtype=t.dtype, device=t.device)

    @staticmethod
    def backward(ctx: Any, grad_sol: torch.Tensor, *_event_t: Any) -> tuple[Any, ...]:
        sol, t, *params = ctx.saved_tensors
        spec: AdjointSpec = ctx.spec
        prob = spec.problem
        times, shape = ctx.times, sol.shape[1:]
        n = sol[0].numel()
        numels = [p.numel() for p in params]
        # the time term: as torchdiffeq, always with autograd VJPs (it is then part of the error norm even when t
        # needs no gradient); with a closed-form VJP only when t requires grad
        timed = spec.closed_form is None or ctx.timed
        if timed:
            augmented = _autograd_dynamics(prob, params, n, timed)
        else:
            assert spec.closed_form is not None
            augmented = _closed_form_dynamics(prob, spec.closed_form, n)
        solver = spec.backward_solver(n, [p.shape for p in params], sol, timed)
        adj = grad_sol[-1].reshape(-1)
        grads = torch.zeros(sum(numels), dtype=sol.dtype, device=sol.device)
        k = 1 if timed else 0
        tau = torch.zeros(k, dtype=sol.dtype, device=sol.device)
        time_grads = torch.zeros(len(times), dtype=sol.dtype, device=sol.device) if ctx.timed else None
        nfe = steps = rejected = 0
        for i in range(len(times) - 1, 0, -1):
            if time_grads is not None:
                with torch.no_grad():
                    f_i = prob.func(sol.new_tensor(times[i]), sol[i])
                    time_grads[i] = f_i.reshape(-1).dot(grad_sol[i].reshape(-1))
                tau = tau - time_grads[i]
            z0 = torch.cat([tau, sol[i].reshape(-1), adj, grads])
            # a grid_constructor gets what torchdiffeq hands it: the adjoint dynamics, the flat state, [t_i, t_i-1]
            solver.user = (augmented, z0, torch.tensor([times[i], times[i - 1]], dtype=t.dtype, device=t.device))
            zs, stats = solver.integrate(augmented, z0, [times[i], times[i - 1]], None, spec.adjoint_callbacks)
            tau, adj, grads = zs[-1, :k], zs[-1, k + n : k + 2 * n], zs[-1, k + 2 * n :]
            adj = adj + grad_sol[i - 1].reshape(-1)
            nfe, steps, rejected = (
                nfe + stats.forward_nfe,
                steps + stats.forward_steps,
                rejected + stats.forward_rejected,
            )
        report(ctx.recorders, backward=True, nfe=nfe, steps=steps, rejected=rejected)
        param_grads = [g.view_as(p) for g, p in zip(grads.split(numels), params)]
        t_grad = None
        if time_grads is not None:
            time_grads[0] = tau[0]
            if spec.event_fn is not None:  # t[1] only gave the direction
                time_grads[1:] = 0
            t_grad = time_grads.to(t.dtype)
        return (None, adj.view(shape), t_grad, *param_grads)


def _positions(func: ParametrizedField, params: tuple[torch.Tensor, ...]) -> list[int] | None:
    """The index of each differentiated tensor among func.adjoint_params(), or None if one is not there."""
    index = {id(p): i for i, p in enumerate(func.adjoint_params())}
    positions = [index.get(id(p)) for p in params]
    return None if None in positions else positions  # type: ignore[return-value]


def odeint_adjoint(
    func: Func,
    y0: Any,
    t: Any,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str | None = None,
    options: dict | None = None,
    event_fn: Callable[[torch.Tensor, Any], torch.Tensor] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict | None = None,
    adjoint_params: Any = None,
) -> Any:
    """`odeint` with gradients from the backsolve adjoint (constant memory in the number of steps).

    Same arguments as `odeint` (with event_fn: returns (event time, solution at [t0, event time]), and the
    gradients are those of a solve to the event time held fixed, as torchdiffeq's; `odeint_event` with
    `odeint_interface=odeint_adjoint` also differentiates the event time), plus:

    Args:
        adjoint_rtol: the backward solve's rtol (default: the forward's; a number, needed when rtol or atol is
            per component).
        adjoint_atol: the backward solve's atol (default: the forward's).
        adjoint_method: the backward solve's method (default: the forward's).
        adjoint_options: options of the backward solve (default: the forward options without norm;
            a forward norm="rms" makes y and a one segment each in the backward mixed norm).
            norm="seminorm" measures the error on (y, a) only and ignores the parameter-gradient
            part (Kidger et al. 2021): fewer backward steps, same gradients to tolerance. The default
            ("mixed") is torchdiffeq's mixed norm over y, a and each parameter (and the time term when t
            requires grad). A callable norm receives torchdiffeq's tuple (t_term, y, a, *param_grads), y and a
            unpacked into their parts for a tuple state.
        adjoint_params: the tensors to differentiate. Default: `func.adjoint_params()` for a
            `monode.solvers.ParametrizedField` (e.g. a bound `monode.dynamics` field), else
            `func.parameters()` (func must then be an nn.Module). Tensors not requiring grad are skipped.

    A `t` that requires grad gets dL/dt as torchdiffeq computes it (see the module docstring).
    """
    options = check_options(options)
    if adjoint_params is None:
        if isinstance(func, ParametrizedField):
            adjoint_params = func.adjoint_params()
        elif isinstance(func, nn.Module):
            adjoint_params = tuple(func.parameters())
        else:
            raise ODEInputError(
                "odeint_adjoint: func is not an nn.Module, so pass adjoint_params=(...) "
                "(the tensors to differentiate; () if there are none)"
            )
    params = tuple(p for p in adjoint_params if p.requires_grad)
    prob = prepare(func, y0, t)
    rtol, atol, per_component = tolerances(prob, rtol, atol)
    if per_component is not None and (adjoint_rtol is None or adjoint_atol is None):
        raise ODEInputError(
            "odeint_adjoint: with per-component rtol/atol pass adjoint_rtol and adjoint_atol as numbers (the backward "
            "state [t, y, a, parameter gradients] has other components)"
        )
    adjoint_rtol = rtol if adjoint_rtol is None else check_tolerance("adjoint_rtol", adjoint_rtol)
    adjoint_atol = atol if adjoint_atol is None else check_tolerance("adjoint_atol", adjoint_atol)
    if adjoint_method is None:
        adjoint_method = method
    elif adjoint_method != method and options and adjoint_options is None:
        raise ODEInputError(
            f"odeint_adjoint: adjoint_method={adjoint_method!r} differs from method={method!r}, "
            "so the forward options cannot be reused: pass adjoint_options too"
        )
    if adjoint_options is None:
        adjoint_options = {k: v for k, v in options.items() if k != "norm"}
    adjoint_options = dict(check_options(adjoint_options, "adjoint_options"))
    adjoint_norm = adjoint_options.pop("norm", "mixed")
    if not (adjoint_norm in ("mixed", "seminorm") or callable(adjoint_norm)):
        raise ODEInputError(f"adjoint_options['norm'] must be 'seminorm', 'mixed' or callable, got {adjoint_norm!r}")

    if event_fn is not None:
        check_event_times(prob, "odeint_adjoint")
    solver = make_solver(method, options, rtol, atol, state_norm(prob, options.get("norm")), dtype=prob.y0.dtype)
    if per_component is not None:
        per_component(solver)
    _, callbacks, adjoint_callbacks = setup(solver, prob, method)
    # the backward configuration is validated now, not at backward time
    make_solver(adjoint_method, adjoint_options, adjoint_rtol, adjoint_atol, lambda z: segment_rms_max(z, None),
                what="adjoint_method", dtype=prob.y0.dtype)  # fmt: skip

    closed_form = scales = None
    if isinstance(func, ParametrizedField):
        positions = _positions(func, params)
        if positions is not None:
            if isinstance(func, ClosedFormField):
                closed_form = _ClosedForm(func.vjp, positions)
            if isinstance(adjoint_norm, str):

                def scales() -> list[float]:
                    all_scales = func.gradient_scales()
                    return [all_scales[i] for i in positions]

    spec = AdjointSpec(
        prob,
        solver,
        adjoint_method,
        adjoint_options,
        adjoint_rtol,
        adjoint_atol,
        adjoint_norm,
        options.get("norm") == "rms",
        closed_form,
        scales,
        callbacks,
        adjoint_callbacks,
        event_fn,
        atol,
    )
    if event_fn is None:
        return prob.unflatten(_AdjointSolve.apply(spec, prob.y0, prob.t, *params))
    sol, event_t = _AdjointSolve.apply(spec, prob.y0, prob.t, *params)
    return event_t, prob.unflatten(sol)
