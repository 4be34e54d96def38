"""The loop shared by adaptive embedded Runge-Kutta methods (dopri5, bosh3).

Step control follows torchdiffeq's RK solvers, so NFE counts stay comparable with published ones:
Hairer-Norsett-Wanner initial step selection; error ratio = norm(err / (atol + rtol max(|y0|, |y1|)))
with the RMS (or max-over-components RMS) norm; accept iff ratio <= 1; next step
dt * min(ifactor, max(safety / ratio^(1/order), dfactor)) with no shrinking after an accepted step;
integration runs past output times and interpolates (quartic dense output through y0, y(mid), y1,
f0, f1 when the tableau gives `c_mid`, cubic Hermite otherwise).

Non-finite trial steps. Stepping past the final time (as torchdiffeq does) can evaluate the field
where it is undefined (NesterovNODE's k(t) = t^-1.5 e^(t/2) at t <= 0 when the adjoint runs from
t = 2 down to 1 with a step grown tenfold). A trial step whose error ratio is NaN (a NaN/Inf stage
makes it NaN, at no extra cost) is rejected like one with an infinite ratio: shrunk by dfactor,
counted in `forward_rejected`, and retried no further than the final time. `NonFiniteStateError`
is raised only when the state or slope already reached is non-finite, or after
`MAX_NONFINITE_TRIALS` such trials that the solve does not get past. Ordinary problems never take
this path, so their steps (and NFE) stay torchdiffeq's. (A norm that skips components, e.g. the
adjoint's seminorm, cannot see NaN there.)

Unlike torchdiffeq, time bookkeeping is plain Python floats (one host sync per step, for the error
ratio), dense output is fitted only for steps that contain an output time, error estimation runs
without autograd, and decreasing time is integrated natively (no reversed-function wrapper).

options['compile']: `_tensor_step` (a step with t, dt as tensors: stages, field calls, error norm) and
`_tensor_start` (f0 and the initial step, its branches as torch.where) are traced by torch.compile into
one graph each, shared by every solve of the same structure (`_compile`). The eager step adds stages with scalar
`alpha`s (fewest ops); the traced one writes them as tensor expressions for the compiler to fuse, and
sums the error estimate in float64: in float32 at tight tolerances the eager sum's rounding is a
visible part of the estimate, so the compiled solve's steps (and NFE) may differ slightly from eager's.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, ClassVar

import torch

from . import _compile
from ._errors import MaxStepsExceededError, NonFiniteStateError, ODEInputError, StepSizeUnderflowError
from ._fixed import DEFAULT_MAX_NUM_STEPS
from ._inputs import time_tensor
from ._stats import SolverStats
from ._tableau import ButcherTableau

Norm = Callable[[torch.Tensor], torch.Tensor]

MAX_NONFINITE_TRIALS = 15
"""A solve raises after this many trial steps with NaN/Inf values that it cannot get past (in a row:
the step shrinks by dfactor each time, 0.2^14 = 6e-10; or interleaved with accepted steps that stop
short of where those trials ended)."""


def _terms(weights: tuple[float, ...] | None) -> tuple[tuple[int, float], ...]:
    """The (index, weight) pairs of the non-zero weights."""
    return tuple((j, w) for j, w in enumerate(weights or ()) if w != 0.0)


def _combine(base: torch.Tensor, ks: list[torch.Tensor], terms: tuple[tuple[int, float], ...], dt: float
             ) -> torch.Tensor:
    """base + dt * sum_j w_j ks[j] over `terms` (autograd-friendly: the first add makes a new tensor,
    the rest accumulate into it in place)."""
    if not terms:
        return base
    (j, w), *rest = terms
    out = torch.add(base, ks[j], alpha=w * dt)
    for j, w in rest:
        out.add_(ks[j], alpha=w * dt)
    return out


@functools.lru_cache(maxsize=None)
def _tableau_terms(tab: ButcherTableau) -> tuple:
    """What the step loops read from a tableau, computed once per tableau: whether the last stage is the
    solution, the non-zero (index, weight) terms of each stage, of b and of b_error, and whether the final
    slope f1 is the last stage (first-same-as-last with last node 1)."""
    last_is_solution = tab.fsal and tab.a[-1] == tab.b[: len(tab.a[-1])]
    return (last_is_solution, tuple(_terms(row) for row in tab.a), _terms(tab.b), _terms(tab.b_error),
            tab.fsal and tab.c[-1] == 1.0 and last_is_solution)


class AdaptiveRungeKutta:
    """Base class of embedded adaptive RK methods; subclasses give `name` and `tableau`."""

    name: ClassVar[str]
    tableau: ClassVar[ButcherTableau]
    options: ClassVar[tuple[str, ...]] = ("first_step", "safety", "ifactor", "dfactor", "max_step",
                                          "max_num_steps", "norm", "compile")

    def __init__(self, rtol: float, atol: float, norm: Norm, first_step: float | None = None,
                 safety: float = 0.9, ifactor: float = 10.0, dfactor: float = 0.2,
                 max_step: float = math.inf, max_num_steps: int = DEFAULT_MAX_NUM_STEPS,
                 compile: bool | dict = False) -> None:
        if first_step is not None and not (isinstance(first_step, (int, float)) and first_step > 0):
            raise ODEInputError(f"{self.name}: options['first_step'] must be a float > 0, got {first_step!r}")
        if not (isinstance(max_num_steps, int) and max_num_steps > 0):
            raise ODEInputError(f"{self.name}: options['max_num_steps'] must be an int > 0, got {max_num_steps!r}")
        if not max_step > 0:
            raise ODEInputError(f"{self.name}: options['max_step'] must be > 0, got {max_step!r}")
        self.rtol, self.atol, self.norm = rtol, atol, norm
        self.atol_per_component: torch.Tensor | None = None  # set by the adjoint (see `_adjoint_atol`)
        self.first_step, self.safety, self.ifactor, self.dfactor = first_step, safety, ifactor, dfactor
        self.max_step, self.max_num_steps = float(max_step), max_num_steps
        if not isinstance(compile, (bool, dict)):
            raise ODEInputError(f"{self.name}: options['compile'] must be a bool or a dict of torch.compile "
                                f"arguments, got {compile!r}")
        self.compile = compile
        (self._last_stage_is_solution, self._stage_terms, self._solution_terms, self._error_terms,
         self._f1_is_last_stage) = _tableau_terms(self.tableau)

    # -- step-size control -------------------------------------------------------------------
    def _initial_step(self, func: Callable, t0: float, y0: torch.Tensor, f0: torch.Tensor, direction: float) -> float:
        """Hairer, Norsett & Wanner, Solving ODEs I, II.4 (as torchdiffeq). Costs one evaluation."""
        with torch.no_grad():
            scale = torch.abs(y0).mul_(self.rtol).add_(self._atol())
            d0 = float(self.norm(y0 / scale))
            d1 = float(self.norm(f0 / scale))
        if not (math.isfinite(d0) and math.isfinite(d1)):
            raise self._error_at(t0, y0, f0)
        with torch.no_grad():
            h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
            y1 = torch.add(y0, f0, alpha=direction * h0)
        f1 = func(time_tensor([t0 + direction * h0], y0)[0], y1)
        with torch.no_grad():
            d2 = float(self.norm((f1 - f0) / scale)) / h0
        if not math.isfinite(d2):  # the field is NaN/Inf just after t0: no curvature estimate, the loop shrinks
            d2 = 0.0
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / self.tableau.order)
        return min(100 * h0, h1)

    def _atol(self) -> torch.Tensor | float:
        return self.atol if self.atol_per_component is None else self.atol_per_component

    def _next_step(self, dt: float, ratio: float) -> float:
        if ratio == 0.0:
            return dt * self.ifactor
        dfactor = 1.0 if ratio < 1.0 else self.dfactor
        factor = min(self.ifactor, max(self.safety / ratio ** (1.0 / self.tableau.order), dfactor))
        return dt * factor

    # -- one step ----------------------------------------------------------------------------
    def _rk_step(self, func: Callable, t: float, dt: float, y: torch.Tensor, f0: torch.Tensor
                 ) -> tuple[torch.Tensor, list[torch.Tensor], float]:
        tab = self.tableau
        times = time_tensor([t + c * dt for c in tab.c], y).unbind()  # one op for all stage times
        ks = [f0]
        y_stage = y
        for j in range(1, tab.stages):
            y_stage = _combine(y, ks, self._stage_terms[j], dt)
            ks.append(func(times[j], y_stage))
        y1 = y_stage if self._last_stage_is_solution else _combine(y, ks, self._solution_terms, dt)
        with torch.no_grad():
            (j, w), *rest = self._error_terms
            err = torch.mul(ks[j], w * dt)
            for j, w in rest:
                err.add_(ks[j], alpha=w * dt)
            tol = torch.maximum(y.abs(), y1.abs()).mul_(self.rtol).add_(self._atol())
            ratio = float(self.norm(err.div_(tol)))  # NaN if any stage is NaN/Inf (tol holds |y1|)
        return y1, ks, ratio

    def _tensor_step(self, func: Callable, y: torch.Tensor, f0: torch.Tensor, t: torch.Tensor, dt: torch.Tensor,
                     atol: torch.Tensor | float) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """`_rk_step` with t, dt as 0-d tensors and the ratio left on the device: what `compile` traces
        (one graph per step: every stage, the field calls and the error norm, fused by the compiler)."""
        tab = self.tableau
        ks = [f0]
        y_stage = y
        for j in range(1, tab.stages):
            y_stage = y
            for i, w in self._stage_terms[j]:
                y_stage = y_stage + (w * dt) * ks[i]
            ks.append(func(t + tab.c[j] * dt, y_stage))
        y1 = y_stage
        if not self._last_stage_is_solution:
            for i, w in self._solution_terms:
                y1 = y1 + (w * dt) * ks[i]
        wide = torch.float64 if y.device.type != "mps" else y.dtype  # the stages summed without rounding
        with torch.no_grad():
            err = sum((w * dt.to(wide)) * ks[i].to(wide) for i, w in self._error_terms)
            tol = torch.maximum(y.abs(), y1.abs()).to(wide) * self.rtol + atol
            ratio = self.norm(err / tol)
        return y1, ks, ratio

    def _tensor_start(self, func: Callable, y0: torch.Tensor, t0: torch.Tensor, direction: float,
                      atol: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """f(t0, y0) and `_initial_step`'s choice in tensors (branches as torch.where): what `compile` traces
        for the start of a solve. Returns (f0, [dt, d0, d1]) with the norms in float64."""
        wide = torch.float64 if y0.device.type != "mps" else y0.dtype
        f0 = func(t0, y0)
        with torch.no_grad():  # only f0 is part of the solution
            scale = y0.abs() * self.rtol + atol
            d0, d1 = self.norm(y0 / scale).to(wide), self.norm(f0 / scale).to(wide)
            h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
            f1 = func(t0 + direction * h0.to(t0.dtype), y0 + (direction * h0).to(y0.dtype) * f0)
            d2 = self.norm((f1 - f0) / scale).to(wide) / h0
            d2 = torch.where(torch.isfinite(d2), d2, 0.0)
            h1 = torch.where((d1 <= 1e-15) & (d2 <= 1e-15), torch.clamp(h0 * 1e-3, min=1e-6),
                             (0.01 / torch.maximum(d1, d2)) ** (1.0 / self.tableau.order))
            return f0, torch.stack([torch.minimum(100 * h0, h1), d0, d1])

    def _compiled_rk_step(self, func: Callable, t: float, dt: float, y: torch.Tensor, f0: torch.Tensor
                          ) -> tuple[torch.Tensor, list[torch.Tensor], float]:
        """`_rk_step` through the compiled `_tensor_step` (eager if compilation is unavailable)."""
        times = time_tensor([t, dt], y)
        out = _compile.call(self, "step", func, y, f0, times[0], times[1], self._atol())
        if out is None:
            return self._rk_step(func, t, dt, y, f0)
        y1, ks, ratio = out
        return y1, ks, float(ratio)

    def _start(self, func: Callable, t0: float, y0: torch.Tensor, direction: float) -> tuple[torch.Tensor, float]:
        """(f(t0, y0), the first step): `_tensor_start` compiled when `compile` is set, else eager."""
        if self.compile and self.first_step is None:
            out = _compile.call(self, "start", func, y0, time_tensor([t0], y0)[0], direction, self._atol())
            if out is not None:
                f0, (dt, d0, d1) = out[0], out[1].tolist()
                if not (math.isfinite(d0) and math.isfinite(d1)):
                    raise self._error_at(t0, y0, f0)
                return f0, dt
        f0 = func(time_tensor([t0], y0)[0], y0)
        if self.first_step is not None:
            return f0, self.first_step
        return f0, self._initial_step(func, t0, y0, f0, direction)

    # -- non-finite values -----------------------------------------------------------------------
    def _error_at(self, t: float, y: torch.Tensor, f: torch.Tensor) -> NonFiniteStateError:
        """NaN/Inf at a point the solve has reached (state y, slope f at t): no smaller step can help."""
        if not bool(torch.isfinite(y).all()):
            return NonFiniteStateError(f"{self.name}: the state at t={t:.6g} contains NaN/Inf values")
        if not bool(torch.isfinite(f).all()):
            return NonFiniteStateError(f"{self.name}: the vector field returned NaN/Inf at t={t:.6g} on a finite "
                                       f"state the solve has reached, so no smaller step can help; check the field")
        return NonFiniteStateError(f"{self.name}: the error norm is NaN at t={t:.6g} although the state and the field "
                                   f"are finite: atol={self.atol:g} with a state component that is exactly 0 gives "
                                   f"0/0, or options['norm'] returned NaN; use atol > 0")

    def _nonfinite_retry(self, t: float, dt: float, y: torch.Tensor, f: torch.Tensor, y1: torch.Tensor,
                         ks: list[torch.Tensor], trials: int, t_end: float) -> float:
        """The step to retry with after a trial step with NaN/Inf values (rare path: syncs freely).

        Shrunk by dfactor (as for an infinite error ratio) and never past t_end: stepping past the
        final time is what evaluates a field outside the interval it is defined on."""
        trial_finite = bool(torch.isfinite(y1).all()) and all(bool(torch.isfinite(k).all()) for k in ks)
        if trial_finite or not (bool(torch.isfinite(y).all()) and bool(torch.isfinite(f).all())):
            raise self._error_at(t, y, f)
        if trials >= MAX_NONFINITE_TRIALS:
            raise self._nonfinite_error(t, dt, trials)
        shrunk = abs(self._next_step(dt, math.inf))
        return math.copysign(min(shrunk, self.max_step, abs(t_end - t)), dt)

    def _nonfinite_error(self, t: float, dt: float, trials: int) -> NonFiniteStateError:
        return NonFiniteStateError(
            f"{self.name}: the vector field returned NaN/Inf (or the state overflowed) in {trials} trial steps "
            f"without getting past them, the last from t={t:.6g} with dt={dt:.3g}; the field may be undefined just "
            f"beyond t={t:.6g}, or the solution blows up there")

    def _dense(self, t0: float, dt: float, y0: torch.Tensor, y1: torch.Tensor, ks: list[torch.Tensor],
               f1: torch.Tensor, t: float) -> torch.Tensor:
        """The dense-output polynomial of the step [t0, t0 + dt] evaluated at t, as one linear combination
        of y0, y1 and the stages (a handful of fused ops instead of forming its coefficients)."""
        x = (t - t0) / dt
        x2, x3, x4 = x * x, x ** 3, x ** 4
        c_mid = self.tableau.c_mid
        if c_mid is not None:  # quartic through y0, y_mid = y0 + dt sum c_mid_j k_j, y1 with slopes f0, f1
            w_mid = 16 * x2 - 32 * x3 + 16 * x4
            w_y0 = 1 - 11 * x2 + 18 * x3 - 8 * x4 + w_mid
            w_y1 = -5 * x2 + 14 * x3 - 8 * x4
            w_f0, w_f1 = x - 4 * x2 + 5 * x3 - 2 * x4, x2 - 3 * x3 + 2 * x4
            weights = [w_mid * c for c in c_mid]
        else:  # cubic Hermite
            w_y0, w_y1 = 1 - 3 * x2 + 2 * x3, 3 * x2 - 2 * x3
            w_f0, w_f1 = x - 2 * x2 + x3, x3 - x2
            weights = [0.0] * len(ks)
        weights[0] += w_f0
        if self._f1_is_last_stage and f1 is ks[-1]:
            weights[-1] += w_f1
            w_f1 = 0.0
        out = torch.mul(y0, w_y0).add_(y1, alpha=w_y1)
        for k, w in zip(ks, weights):
            if w != 0.0:
                out.add_(k, alpha=w * dt)
        if w_f1 != 0.0:
            out.add_(f1, alpha=w_f1 * dt)
        return out

    # -- the loop ------------------------------------------------------------------------------
    def integrate(self, func: Callable, y0: torch.Tensor, times: list[float]) -> tuple[torch.Tensor, SolverStats]:
        """Solve from times[0]; return the states at `times` stacked on dim 0, and the counts."""
        stats = SolverStats()
        outputs = [y0]
        if len(times) == 1:
            return torch.stack(outputs), stats
        direction = 1.0 if times[-1] > times[0] else -1.0
        t, y = times[0], y0
        f, dt = self._start(func, t, y0, direction)
        nfe = 1 if self.first_step is not None else 2
        dt = direction * min(dt, self.max_step)
        new_nfe = self.tableau.stages - 1 if self.tableau.fsal else self.tableau.stages
        step = self._compiled_rk_step if self.compile else self._rk_step
        last: tuple[float, float, torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor] | None = None
        attempts = rejected = 0
        # trial steps with NaN/Inf values since the solve last got past `blocked`, the nearest end of those
        # trials: accepted steps that stop short of it (creeping up to where the field is NaN) keep the count
        nonfinite, blocked = 0, None
        for t_out in times[1:]:
            while (t_out - t) * direction > 0:
                if attempts >= self.max_num_steps:
                    raise MaxStepsExceededError(
                        f"{self.name}: exceeded options['max_num_steps']={self.max_num_steps} at t={t:.6g} while "
                        f"integrating to t={times[-1]:.6g}; the problem may be stiff or rtol={self.rtol:g}, "
                        f"atol={self.atol:g} too tight: raise max_num_steps or loosen the tolerances")
                if t + dt == t:
                    if nonfinite:
                        raise self._nonfinite_error(t, dt, nonfinite)
                    raise StepSizeUnderflowError(
                        f"{self.name}: step size underflow at t={t:.6g} (dt={dt:.3g}) with rtol={self.rtol:g}, "
                        f"atol={self.atol:g}; the field may be non-smooth or stiff: loosen the tolerances or use "
                        f"a fixed-step method")
                y1, ks, ratio = step(func, t, dt, y, f)
                attempts += 1
                nfe += new_nfe
                if ratio <= 1.0:
                    f1 = ks[-1] if self.tableau.fsal else func(time_tensor([t + dt], y)[0], y1)
                    nfe += 0 if self.tableau.fsal else 1
                    last = (t, dt, y, y1, ks, f1)
                    t, y, f = t + dt, y1, f1
                    if blocked is not None and (t - blocked) * direction >= 0:
                        nonfinite, blocked = 0, None
                else:
                    rejected += 1
                if math.isnan(ratio):  # never accepted; retried smaller, at most MAX_NONFINITE_TRIALS times
                    nonfinite += 1
                    if blocked is None or (t + dt - blocked) * direction < 0:
                        blocked = t + dt
                    dt = self._nonfinite_retry(t, dt, y, f, y1, ks, nonfinite, times[-1])
                else:
                    dt = math.copysign(min(abs(self._next_step(dt, ratio)), self.max_step), direction)
            if t_out == t:
                outputs.append(y)
            else:
                assert last is not None
                t0, dt0, ya, yb, ks, f1 = last
                outputs.append(self._dense(t0, dt0, ya, yb, ks, f1, t_out))
        stats.forward_nfe, stats.forward_steps, stats.forward_rejected = nfe, attempts - rejected, rejected
        return torch.stack(outputs), stats
