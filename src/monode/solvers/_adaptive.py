"""The loop shared by adaptive embedded Runge-Kutta methods (dopri5, dopri8, bosh3, fehlberg2, adaptive_heun).

Step control is torchdiffeq's RK solvers', so steps and NFE match torchdiffeq's:
Hairer-Norsett-Wanner initial step selection; error ratio = norm(err / (atol + rtol max(|y0|, |y1|)))
with the RMS (or max-over-components RMS) norm; accept iff ratio <= 1 (or dt <= min_step); next step
dt * min(ifactor, max(safety / ratio^(1/order), dfactor)) with no shrinking after an accepted step, clamped
to [min_step, max_step]; steps end on `step_t` and `jump_t` times (after a jump the slope is re-evaluated just
past it); stages at the step's end are evaluated one ulp before it, as torchdiffeq does (so a field with a
jump there is seen from the step's side); integration runs past output times and interpolates
(`_interpolation.quartic`). Trial steps with NaN/Inf values are retried smaller (`_nonfinite`).

One step (`step`: the RK stages of `_rk`, the error estimate and its norm) and one start (`start`: f0
and the initial step, its branches as torch.where) serve both modes. With options['compile'] each is
one torch.compile graph (`_compile`), shared by every solve of the same structure; eagerly they run as
written. Time bookkeeping is plain Python floats (one host sync per step, for the error ratio), dense
output is fitted only for steps that contain an output time, error estimation runs without autograd,
and decreasing time is integrated natively (no reversed-function wrapper).
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from . import _compile
from ._callbacks import NONE, Callbacks
from ._clock import Clock, check_time_dtype, nudge, real_dtype, to_float32
from ._errors import MaxStepsExceededError, ODEInputError, StepSizeUnderflowError
from ._events import locate_event
from ._fixed import DEFAULT_MAX_NUM_STEPS
from ._inputs import check_max_num_steps, check_positive, time_tensor
from ._interpolation import polynomial, quartic_fit
from ._nonfinite import NonFiniteTrials
from ._rk import Scalar, rk_step, scalar
from ._stats import SolverStats
from ._tableau import ButcherTableau

Norm = Callable[[torch.Tensor], torch.Tensor]


def _check_times_option(method: str, name: str, value: Any) -> list[float]:
    """options['step_t'] / ['jump_t']: finite times, as floats."""
    try:
        values = [float(v) for v in torch.as_tensor(value).reshape(-1).tolist()]
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ODEInputError(f"{method}: options[{name!r}] must be a 1-D tensor of times, got {value!r}") from exc
    if not all(math.isfinite(v) for v in values):
        raise ODEInputError(f"{method}: options[{name!r}] must be finite, got {values}")
    return values


@functools.lru_cache(maxsize=32)
def _nodes32(tab: ButcherTableau) -> tuple[float, ...]:
    """The nodes c rounded to float32 (torchdiffeq's alpha in a float32 state's dtype)."""
    return tuple(to_float32(c) for c in tab.c)


class _Stops:
    """The `step_t` / `jump_t` times still ahead, in the direction of integration (torchdiffeq's indices: the
    next one after t0, staying on the last one once passed)."""

    def __init__(self, values: list[float], t0: float, direction: float) -> None:
        ahead = sorted(direction * v for v in values if direction * v >= direction * t0)
        self.values = [direction * v for v in ahead]
        self.direction = direction
        self.index = min(bisect.bisect(ahead, direction * t0), len(ahead) - 1) if ahead else 0

    def inside(self, t: float, t1: float) -> float | None:
        """The next stop strictly inside (t, t1), if any."""
        if not self.values:
            return None
        v, d = self.values[self.index], self.direction
        return v if d * t < d * v < d * t1 else None

    def passed(self) -> None:
        self.index = min(self.index + 1, len(self.values) - 1)


class AdaptiveRungeKutta:
    """Base class of embedded adaptive RK methods; subclasses give `name` and `tableau`."""

    name: ClassVar[str]
    tableau: ClassVar[ButcherTableau]
    options: ClassVar[tuple[str, ...]] = (
        "first_step",
        "safety",
        "ifactor",
        "dfactor",
        "min_step",
        "max_step",
        "step_t",
        "jump_t",
        "dtype",
        "max_num_steps",
        "norm",
        "compile",
    )
    callbacks: ClassVar[tuple[str, ...]] = ("callback_step", "callback_accept_step", "callback_reject_step")

    def __init__(
        self,
        rtol: float,
        atol: float,
        norm: Norm,
        first_step: float | None = None,
        safety: float = 0.9,
        ifactor: float = 10.0,
        dfactor: float = 0.2,
        min_step: float = 0.0,
        max_step: float = math.inf,
        step_t: Any = None,
        jump_t: Any = None,
        dtype: torch.dtype = torch.float64,
        max_num_steps: int = DEFAULT_MAX_NUM_STEPS,
        compile: bool | dict = False,
    ) -> None:
        name = self.name
        self.first_step = None if first_step is None else check_positive(name, "first_step", first_step)
        self.safety = check_positive(name, "safety", safety)
        self.ifactor = check_positive(name, "ifactor", ifactor)
        self.dfactor = check_positive(name, "dfactor", dfactor)
        if not self.dfactor <= 1.0 <= self.ifactor:
            raise ODEInputError(
                f"{name}: options need dfactor <= 1 <= ifactor, got dfactor={dfactor!r}, ifactor={ifactor!r}"
            )
        self.max_step = check_positive(name, "max_step", max_step, allow_inf=True)
        if isinstance(min_step, bool) or not (isinstance(min_step, (int, float)) and 0 <= min_step <= self.max_step):
            raise ODEInputError(f"{name}: options['min_step'] must be a float in [0, max_step], got {min_step!r}")
        self.min_step = float(min_step)
        self.float32_time = check_time_dtype(name, dtype)
        self.time32 = False  # float32 time in the solve under way (`_begin`)
        self.step_t = [] if step_t is None else _check_times_option(name, "step_t", step_t)
        self.jump_t = [] if jump_t is None else _check_times_option(name, "jump_t", jump_t)
        if set(self.step_t) & set(self.jump_t):
            raise ODEInputError(
                f"{name}: options 'step_t' and 'jump_t' share the time(s) {sorted(set(self.step_t) & set(self.jump_t))}"
            )
        self.max_num_steps = check_max_num_steps(name, max_num_steps)
        self.compile = _compile.check_option(name, compile)
        self.rtol, self.atol, self.norm = rtol, atol, norm
        # per-component tolerances on the solver's state (the user's, or the adjoint's scaled gradient parts);
        # rtol and atol are then their smallest values, for checks and messages
        self.rtol_per_component: torch.Tensor | None = None
        self.atol_per_component: torch.Tensor | None = None
        self.user: Any = None  # (the `Solver` interface; adaptive methods do not read it)

    def _rtol(self) -> torch.Tensor | float:
        return self.rtol if self.rtol_per_component is None else self.rtol_per_component

    def _atol(self) -> torch.Tensor | float:
        return self.atol if self.atol_per_component is None else self.atol_per_component

    def _wide_tolerances(self, like: torch.Tensor) -> bool:
        """The user's per-component tolerances are in a wider dtype than the state's time dtype (torchdiffeq's
        float64 tolerance tensors beside a float32 state): tolerance arithmetic then runs promoted, out of place."""
        rtol = self.rtol_per_component
        return rtol is not None and rtol.dtype != real_dtype(like.dtype)

    def _time(self, value: float) -> float:
        return to_float32(value) if self.time32 else value

    def _begin_solve(self, y0: torch.Tensor) -> None:
        """Time is float32 when options['dtype'] is and the state's dtype does not promote it (torchdiffeq's time
        dtype is promote_types(options['dtype'], state dtype): a float64 state keeps float64 time)."""
        self.time32 = self.float32_time and torch.promote_types(torch.float32, real_dtype(y0.dtype)) == torch.float32

    def _clamp(self, dt: float) -> float:
        return min(max(dt, self.min_step), self.max_step)

    def _next_step(self, dt: float, ratio: float) -> float:
        if self.time32:  # torchdiffeq's float32 tensors: every operation rounded to float32 (powf)
            f32 = np.float32
            if ratio == 0.0:
                return float(f32(dt) * f32(self.ifactor))
            dfactor32 = f32(1.0) if ratio < 1.0 else f32(self.dfactor)
            power = f32(ratio) ** (f32(1.0) / f32(self.tableau.order))
            return float(f32(dt) * min(f32(self.ifactor), max(f32(self.safety) / power, dfactor32)))
        if ratio == 0.0:
            return dt * self.ifactor
        dfactor = 1.0 if ratio < 1.0 else self.dfactor
        factor = min(self.ifactor, max(self.safety / ratio ** (1.0 / self.tableau.order), dfactor))
        return dt * factor

    # -- the step and the start, eager or compiled -----------------------------------------------------
    def step(
        self,
        func: Callable,
        times: Sequence[torch.Tensor],
        dt: Scalar,
        y: torch.Tensor,
        f0: torch.Tensor,
        atol: torch.Tensor | float,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """(y1, stages, error ratio as a 0-d tensor) of the trial step dt from y at times[0], with stage times
        `times` and f0 = func(times[0], y). The ratio is NaN if any stage is NaN/Inf (the tolerance holds |y1|)."""
        y1, ks, err = rk_step(func, self.tableau, times, dt, y, f0, error=True)
        assert err is not None
        with torch.no_grad():
            rtol = self._rtol()
            if self._wide_tolerances(y):
                ratio = self.norm(err / (atol + rtol * torch.maximum(y.abs(), y1.abs())))
            else:
                tol = torch.maximum(y.abs(), y1.abs()).mul_(scalar(rtol, y)).add_(scalar(atol, y))
                ratio = self.norm(err.div_(tol))
        return y1, ks, ratio

    def start(
        self, func: Callable, t0: torch.Tensor, y0: torch.Tensor, direction: float, atol: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(t0, y0), [first step, d0, d1]) by Hairer, Norsett & Wanner, Solving ODEs I, II.4, as torchdiffeq
        (one more evaluation); d0, d1 are the scaled norms of y0 and f0."""
        f0 = func(t0, y0)
        with torch.no_grad():
            c = functools.partial(scalar, like=y0)  # constants as cached tensors (the same arithmetic)
            rtol = self._rtol()
            if self._wide_tolerances(y0):
                scale = atol + y0.abs() * rtol  # (promoted: so are the norms below)
            else:
                scale = (y0.abs() * c(rtol)).add_(c(atol))
            d0, d1 = self.norm(y0 / scale), self.norm(f0 / scale)
            k = functools.partial(scalar, like=d0)  # constants the norms meet, in their dtype
            h0 = torch.where(torch.minimum(d0, d1) < k(1e-5), c(1e-6), k(0.01) * d0 / d1)  # (NaN in d0, d1: raised)
            step = c(direction) * h0
            f1 = func((t0 + step).to(t0.dtype), y0 + step * f0)
            d2 = self.norm((f1 - f0) / scale) / h0
            d2 = torch.nan_to_num(
                d2, nan=0.0, posinf=0.0, neginf=0.0
            )  # NaN/Inf just after t0: the loop shrinks the step
            d12 = torch.maximum(d1, d2)
            h1 = torch.where(
                d12 <= k(1e-15),
                torch.clamp(h0 * k(1e-3), min=1e-6),
                (d12.reciprocal() * k(0.01)) ** (1.0 / self.tableau.order),  # torchdiffeq's 0.01 / max(d1, d2)
            )
            return f0, torch.stack([torch.minimum(k(100.0) * h0, h1), d0, d1])

    def _trial(
        self, func: Callable, clock: Clock, t: float, dt: float, t1: float, y: torch.Tensor, f: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], float]:
        """The trial step dt (signed) from t to t1: stage times as torchdiffeq forms them (in float32
        arithmetic for a float32 state; a stage at the step's end one ulp before t1)."""
        if real_dtype(y.dtype) == torch.float32:
            t32, dt32 = to_float32(t), to_float32(dt)
            values = [to_float32(t32 + to_float32(c * dt32)) for c in _nodes32(self.tableau)]
        else:
            values = [t + c * dt for c in self.tableau.c]
        values = [nudge(t1, t, real_dtype(y.dtype)) if c == 1.0 else v for v, c in zip(values, self.tableau.c)]
        times = clock.values(values, y)
        if self.compile:
            out = _compile.call(self, "step", y.device, func, times, time_tensor([dt], y)[0], y, f, self._atol())
            if out is not None:
                return out[0], out[1], float(out[2])
        y1, ks, ratio = self.step(func, times.unbind(), dt, y, f, self._atol())
        return y1, ks, float(ratio)

    def _begin(
        self, func: Callable, clock: Clock, t0: float, y0: torch.Tensor, direction: float, trials: NonFiniteTrials
    ) -> tuple[torch.Tensor, float]:
        t0_tensor = clock.at(t0, y0)
        if self.first_step is not None:
            return func(t0_tensor, y0), self.first_step
        out = None
        if self.compile:
            out = _compile.call(self, "start", y0.device, func, t0_tensor, y0, direction, self._atol())
        f0, estimates = out if out is not None else self.start(func, t0_tensor, y0, direction, self._atol())
        dt, d0, d1 = estimates.tolist()
        if not (math.isfinite(d0) and math.isfinite(d1)):
            raise trials.error_at(t0, y0, f0)
        return f0, dt

    # -- the loop ------------------------------------------------------------------------------------
    def integrate(
        self,
        func: Callable,
        y0: torch.Tensor,
        times: list[float],
        clock: Clock | None = None,
        callbacks: Callbacks = NONE,
    ) -> tuple[torch.Tensor, SolverStats]:
        """Solve from times[0]; return the states at `times` stacked on dim 0, and the counts. `clock` makes the
        time tensors (differentiable in the user's t when it requires grad); `callbacks` are called per step."""
        clock = Clock() if clock is None else clock
        outputs = [y0]
        if len(times) == 1:
            return torch.stack(outputs), SolverStats()
        self._begin_solve(y0)
        times = [self._time(v) for v in times]  # (in the time dtype, as torchdiffeq converts t)
        direction = 1.0 if times[-1] > times[0] else -1.0
        walk = _Walk(self, func, y0, times[0], direction, times[-1], clock, callbacks)
        for i, t_out in enumerate(times[1:], start=1):
            while (t_out - walk.t) * direction > 0:
                walk.advance()
            if clock.differentiable:
                outputs.append(walk.dense((clock.output(i, t_out, y0) - clock.at(walk.last.t0, y0)) / walk.last.dt))
            else:  # (also at a step's end, as torchdiffeq: x = 1)
                outputs.append(walk.dense(walk.last.position(t_out)))
        return torch.stack(outputs), walk.stats()

    def integrate_until_event(
        self, func: Callable, y0: torch.Tensor, t0: float, direction: float, event_fn: Callable, tol: float,
        callbacks: Callbacks = NONE, clock: Clock | None = None,
    ) -> tuple[float, torch.Tensor, SolverStats]:  # fmt: skip
        """Step from t0 in `direction` until event_fn(t, y) (a 0-d tensor, > 0 at the start) changes sign, then
        locate the change by bisection on the last step's dense output to within `tol` (torchdiffeq: atol):
        (event time, state there, counts). With a differentiable `clock` the state depends on t0 as
        torchdiffeq's does: the steps move with t0, the located event time does not."""
        clock = Clock() if clock is None else clock
        self._begin_solve(y0)
        walk = _Walk(self, func, y0, self._time(t0), direction, direction * math.inf, clock, callbacks)
        first = event_fn(clock.at(t0, y0), y0)
        if bool(first == 0):
            return t0, y0, walk.stats()
        sign0 = torch.sign(first)
        while True:
            accepted = walk.accepted
            walk.advance()
            if walk.accepted > accepted and bool(torch.sign(event_fn(clock.at(walk.t, y0), walk.y)) != sign0):
                break
        step = walk.last

        def before(t: float) -> bool:
            return bool(torch.sign(event_fn(clock.at(t, y0), walk.dense(step.position(t)))) == sign0)

        t_event = locate_event(step.t0, step.t1, tol, before)
        if clock.differentiable:
            fixed = torch.tensor(t_event, dtype=real_dtype(y0.dtype), device=y0.device)
            return t_event, walk.dense((fixed - clock.at(step.t0, y0)) / step.dt), walk.stats()
        return t_event, walk.dense(step.position(t_event)), walk.stats()


class _Step:
    """The last accepted step, for dense output: from t0 to t1 by dt (signed), y0 -> y1 with stages ks; time
    arithmetic in float32 when `float32` (options['dtype'])."""

    def __init__(self, tab: ButcherTableau, t0: float, t1: float, dt: float, y0: torch.Tensor, y1: torch.Tensor,
                 ks: list[torch.Tensor], float32: bool) -> None:  # fmt: skip
        self.tab, self.t0, self.t1, self.dt, self.y0, self.y1, self.ks = tab, t0, t1, dt, y0, y1, ks
        self.float32 = float32

    @functools.cached_property
    def coefficients(self) -> list[torch.Tensor]:
        return quartic_fit(self.tab, self.dt, self.y0, self.y1, self.ks)

    def position(self, t: float) -> float:
        """(t - t0) / (t1 - t0), as torchdiffeq's time arithmetic (float64, or float32) forms it."""
        if self.float32:
            return to_float32(to_float32(t - self.t0) / to_float32(self.t1 - self.t0))
        return (t - self.t0) / (self.t1 - self.t0)


class _Walk:
    """One adaptive solve in progress: the state reached (t, y, f), the next step size, the last accepted step,
    the counts. `advance` takes one trial step (accepted or rejected) with torchdiffeq's step control."""

    def __init__(
        self,
        solver: AdaptiveRungeKutta,
        func: Callable,
        y0: torch.Tensor,
        t0: float,
        direction: float,
        t_end: float,
        clock: Clock,
        callbacks: Callbacks,
    ) -> None:
        self.solver, self.func, self.direction, self.t_end = solver, func, direction, t_end
        self.clock, self.callbacks = clock, callbacks
        self.trials = NonFiniteTrials(solver.name, direction, solver.atol)
        self.t, self.y = t0, y0
        self.f, dt = solver._begin(func, clock, t0, y0, direction, self.trials)
        self.nfe = 1 if solver.first_step is not None else 2
        self.dt = solver._time(solver._clamp(dt) if math.isfinite(dt) else solver.min_step)
        step_t, jump_t = ([solver._time(v) for v in stops] for stops in (solver.step_t, solver.jump_t))
        self.step_stops, self.jump_stops = _Stops(step_t, t0, direction), _Stops(jump_t, t0, direction)
        tab = solver.tableau
        self.new_nfe = tab.stages - 1 if tab.fsal else tab.stages
        self.attempts = self.rejected = 0
        self._last: _Step | None = None

    @property
    def accepted(self) -> int:
        return self.attempts - self.rejected

    @property
    def last(self) -> _Step:
        assert self._last is not None, "no step accepted yet"
        return self._last

    def stats(self) -> SolverStats:
        return SolverStats(forward_nfe=self.nfe, forward_steps=self.accepted, forward_rejected=self.rejected)

    def dense(self, x: Scalar) -> torch.Tensor:
        """The last accepted step's dense output at the position x in [0, 1]."""
        return polynomial(self.last.coefficients, x)

    def advance(self) -> None:
        solver, func, clock, callbacks, direction = self.solver, self.func, self.clock, self.callbacks, self.direction
        t, y, f, dt = self.t, self.y, self.f, self.dt
        if self.attempts >= solver.max_num_steps:
            raise MaxStepsExceededError(
                f"{solver.name}: exceeded options['max_num_steps']={solver.max_num_steps} at t={t:.6g} while "
                f"integrating to t={self.t_end:.6g}; the problem may be stiff or rtol={solver.rtol:g}, "
                f"atol={solver.atol:g} too tight: raise max_num_steps or loosen the tolerances"
            )
        if t + direction * dt == t:
            if self.trials.count:
                raise self.trials.stuck(t, direction * dt)
            raise StepSizeUnderflowError(
                f"{solver.name}: step size underflow at t={t:.6g} (dt={direction * dt:.3g}) with "
                f"rtol={solver.rtol:g}, atol={solver.atol:g}; the field may be non-smooth or stiff: loosen the "
                f"tolerances or use a fixed-step method"
            )
        if callbacks.step is not None:
            callbacks.step(clock.at(t, y), y, time_tensor([dt], y)[0])
        t1 = solver._time(t + direction * dt)
        stop_step, stop_jump = self.step_stops.inside(t, t1), self.jump_stops.inside(t, t1)
        if stop_jump is not None:
            t1, stop_step = stop_jump, None
        elif stop_step is not None:
            t1 = stop_step
        step = dt if stop_step is None and stop_jump is None else solver._time(abs(t1 - t))
        y1, ks, ratio = solver._trial(func, clock, t, direction * step, t1, y, f)
        self.attempts += 1
        self.nfe += self.new_nfe
        if ratio <= 1.0 or step <= solver.min_step:
            if callbacks.accept is not None:
                callbacks.accept(clock.at(t, y), y, time_tensor([step], y)[0])
            fsal = solver.tableau.fsal
            f1 = ks[-1] if fsal else func(clock.at(t1, y), y1)
            self.nfe += 0 if fsal else 1
            if stop_step is not None:
                self.step_stops.passed()
            if stop_jump is not None:
                self.jump_stops.passed()
                f1 = func(clock.at(nudge(t1, t1 + direction, real_dtype(y.dtype)), y), y1)  # the slope past the jump
                self.nfe += 1
            self._last = _Step(solver.tableau, t, t1, direction * step, y, y1, ks, solver.time32)
            self.t, self.y, self.f = t1, y1, f1
            self.trials.accepted(t1)
        else:
            if callbacks.reject is not None:
                callbacks.reject(clock.at(t, y), y, time_tensor([step], y)[0])
            self.rejected += 1
        if math.isnan(ratio):  # never accepted; retried smaller
            shrunk = solver._clamp(abs(solver._next_step(step, math.inf)))
            self.dt = abs(self.trials.retry(self.t, direction * step, self.y, self.f, y1, ks, shrunk, self.t_end))
        else:
            self.dt = solver._time(solver._clamp(solver._next_step(step, ratio)))
