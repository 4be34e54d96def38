"""The loop shared by every fixed-step method: the grid, stepping, outputs, checks.

A fixed-step method defines `step(func, times, dt, y, carry) -> (y_next, carry, f0)`: `times` are the stage
times, `dt` a Python float (a 0-d tensor under options['compile'], or when gradients with respect to t are
taken), `carry` whatever the method keeps between steps (None for one-step methods; the NAG solver's
velocity) and f0 the slope at the step's start when the step computed it (else None).

The grid is torchdiffeq's: with `step_size` h, the points t[0] + k h up to and including the first one at or
past t[-1], which is replaced by t[-1]; with `grid_constructor(func, y0, t)`, its points; otherwise t itself.
An output time inside a step is interpolated (`interp="linear"`, or `"cubic"`: Hermite with one more
evaluation per output time). `perturb=True` evaluates the field one ulp inside each step at its ends, so a
jump at a grid time is seen from the step's side. monode's own grid, `exact_times=True`, contains every
output time (each interval [t_i, t_i+1] cut into ceil(|t_i+1 - t_i| / h) equal steps), so outputs need no
interpolation. The number of steps is counted before anything is allocated, and grid points are produced one
at a time, so memory is bounded by the state, not by the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch

from . import _compile
from ._callbacks import NONE, Callbacks
from ._clock import Clock, nudge, real_dtype
from ._errors import MaxStepsExceededError, NonFiniteStateError, ODEInputError
from ._events import locate_event
from ._inputs import check_max_num_steps, check_positive, time_tensor
from ._interpolation import hermite, linear
from ._nonfinite import overflow
from ._rk import Scalar, rk_step
from ._stats import SolverStats
from ._tableau import ButcherTableau

DEFAULT_MAX_NUM_STEPS = 10_000
INTERPOLATIONS = ("linear", "cubic")


class FixedStepSolver:
    """Base class: owns the grid and the loop. Subclasses set `name`, `order`, `nfe_per_step` and `step`."""

    name: ClassVar[str]
    order: ClassVar[int]
    nfe_per_step: ClassVar[int]
    options: ClassVar[tuple[str, ...]] = (
        "step_size",
        "grid_constructor",
        "interp",
        "perturb",
        "exact_times",
        "compile",
        "max_num_steps",
    )
    callbacks: ClassVar[tuple[str, ...]] = ("callback_step",)
    tolerances: ClassVar[bool] = False  # True: the constructor takes odeint's rtol and atol
    extra_nfe = 0  # evaluations a step made beyond nfe_per_step (the Adams methods' start and corrector)

    def __init__(
        self,
        step_size: float | None = None,
        grid_constructor: Callable | None = None,
        interp: str = "linear",
        perturb: bool = False,
        exact_times: bool = False,
        compile: bool | dict = False,
        max_num_steps: int = DEFAULT_MAX_NUM_STEPS,
    ) -> None:
        name = self.name
        if step_size is not None and grid_constructor is not None:
            raise ODEInputError(f"{name}: options step_size and grid_constructor are mutually exclusive; pass one")
        if grid_constructor is not None and not callable(grid_constructor):
            raise ODEInputError(
                f"{name}: options['grid_constructor'] must be callable as (func, y0, t) -> grid, "
                f"got {grid_constructor!r}"
            )
        if interp not in INTERPOLATIONS:
            raise ODEInputError(f"{name}: options['interp'] must be one of {INTERPOLATIONS}, got {interp!r}")
        for option, value in (("perturb", perturb), ("exact_times", exact_times)):
            if not isinstance(value, bool):
                raise ODEInputError(f"{name}: options[{option!r}] must be True or False, got {value!r}")
        if exact_times and grid_constructor is not None:
            raise ODEInputError(f"{name}: options exact_times and grid_constructor are mutually exclusive")
        self.step_size = None if step_size is None else check_positive(name, "step_size", step_size)
        self.grid_constructor = grid_constructor
        self.interp, self.perturb, self.exact_times = interp, perturb, exact_times
        self.compile = _compile.check_option(name, compile)
        self.max_num_steps = check_max_num_steps(name, max_num_steps)
        self.user: tuple[Callable, Any, torch.Tensor] | None = None  # (func, y0, t) for grid_constructor

    @property
    def nodes(self) -> tuple[float, ...]:
        """The c of every time t + c dt a step evaluates the field at (`step` gets them as `times`)."""
        raise NotImplementedError

    def step(
        self, func: Callable, times: Sequence[torch.Tensor], dt: Any, y: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        raise NotImplementedError

    # -- the grid --------------------------------------------------------------------------------------
    def _check_count(self, count: int) -> None:
        if count > self.max_num_steps:
            raise MaxStepsExceededError(
                f"{self.name}: the grid needs {count} steps, more than options['max_num_steps']="
                f"{self.max_num_steps}; raise max_num_steps or increase step_size (got {self.step_size})"
            )

    def _grid(self, times: list[float], clock: Clock, like: torch.Tensor) -> tuple[int, Iterator[tuple[float, Any]]]:
        """(the number of steps, the grid points after times[0] as (float, tensor or None) pairs); the tensor
        is the point's differentiable time when `clock` is differentiable."""
        t0, t_end = times[0], times[-1]
        direction = 1.0 if t_end >= t0 else -1.0
        if self.grid_constructor is not None:
            assert self.user is not None
            grid = self.grid_constructor(*self.user)
            if not isinstance(grid, torch.Tensor) or grid.ndim != 1 or len(grid) < 2:
                raise ODEInputError(
                    f"{self.name}: grid_constructor must return a 1-D tensor of >= 2 times, got {grid!r}"
                )
            values = grid.tolist()
            if values[0] != t0 or values[-1] != t_end:
                raise ODEInputError(
                    f"{self.name}: the grid from grid_constructor must start at t[0]={t0} and end at t[-1]={t_end}, "
                    f"got {values[0]} ... {values[-1]}"
                )
            if not all((b - a) * direction > 0 for a, b in zip(values, values[1:])):
                raise ODEInputError(f"{self.name}: the grid from grid_constructor must be strictly monotonic like t")
            self._check_count(len(values) - 1)
            tensors = grid.to(like.dtype).unbind() if clock.differentiable else [None] * len(values)
            return len(values) - 1, iter(list(zip(values, tensors))[1:])
        if self.exact_times:
            return self._exact_grid(times, clock, like)
        if self.step_size is None:
            self._check_count(len(times) - 1)
            return len(times) - 1, ((v, clock.output(i, v, like) if clock.differentiable else None)
                                    for i, v in enumerate(times[1:], start=1))  # fmt: skip
        h = self.step_size
        n = math.ceil(abs(t_end - t0) / h + 1)  # points, as torchdiffeq's grid_constructor_from_step_size
        self._check_count(n - 1)

        def points() -> Iterator[tuple[float, Any]]:
            for k in range(1, n):
                if k == n - 1:
                    yield t_end, clock.output(len(times) - 1, t_end, like) if clock.differentiable else None
                else:
                    v = t0 + direction * (k * h)
                    yield v, clock.at(v, like) if clock.differentiable else None

        return n - 1, points()

    def _exact_grid(
        self, times: list[float], clock: Clock, like: torch.Tensor
    ) -> tuple[int, Iterator[tuple[float, Any]]]:
        per_interval = (
            [1] * (len(times) - 1)
            if self.step_size is None
            else [max(1, math.ceil(abs(b - a) / self.step_size - 1e-9)) for a, b in zip(times, times[1:])]
        )
        self._check_count(sum(per_interval))

        def points() -> Iterator[tuple[float, Any]]:
            for i, (a, b, n) in enumerate(zip(times, times[1:], per_interval), start=1):
                for k in range(1, n + 1):
                    if not clock.differentiable:
                        yield (a + (b - a) * (k / n) if k < n else b), None
                    elif k < n:  # between the differentiable output times a and b
                        ta, tb = clock.output(i - 1, a, like), clock.output(i, b, like)
                        yield a + (b - a) * (k / n), ta + (tb - ta) * (k / n)
                    else:
                        yield b, clock.output(i, b, like)

        return sum(per_interval), points()

    # -- the loop --------------------------------------------------------------------------------------
    def _step(
        self, func: Callable, clock: Clock, t: float, t1: float, start: Any, end: Any, y: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        """`step` from t to t1 (their differentiable tensors `start`, `end`, or None), compiled when
        options['compile'] is set."""
        dt: Scalar = t1 - t
        nominal = [t + c * (t1 - t) if c != 1.0 else t1 for c in self.nodes]
        values = nominal
        if self.perturb:
            real = real_dtype(y.dtype)
            values = [nudge(v, t1, real) if c == 0.0 else nudge(v, t, real) if c == 1.0 else v
                      for v, c in zip(nominal, self.nodes)]  # fmt: skip
        if start is not None:  # differentiable: t_c = start + c (end - start), nudges kept as constant shifts
            dt = (end - start).to(y.dtype)
            shifts = time_tensor([v - n for v, n in zip(values, nominal)], y)
            times = start.to(y.dtype) + dt * time_tensor(list(self.nodes), y) + shifts
        else:
            times = clock.values(values, y)
        if self.compile and start is None:
            out = _compile.call(self, "step", y.device, func, times, time_tensor([t1 - t], y)[0], y, carry)
            if out is not None:
                return out
        return self.step(func, times.unbind(), dt, y, carry)

    def integrate(
        self,
        func: Callable,
        y0: torch.Tensor,
        times: list[float],
        clock: Clock | None = None,
        callbacks: Callbacks = NONE,
    ) -> tuple[torch.Tensor, SolverStats]:
        """Solve from times[0]; return the states at `times` stacked on dim 0, and the counts."""
        clock = Clock() if clock is None else clock
        self.extra_nfe = 0
        n_steps, points = self._grid(times, clock, y0)
        direction = 1.0 if times[-1] >= times[0] else -1.0
        outputs, out_index, extra_nfe = [y0], 1, 0
        t, start, y, carry = times[0], (clock.output(0, times[0], y0) if clock.differentiable else None), y0, None
        for t1, end in points:
            if callbacks.step is not None:
                callbacks.step(clock.at(t, y), y, time_tensor([abs(t1 - t)], y)[0])
            y1, carry, f0 = self._step(func, clock, t, t1, start, end, y, carry)
            while out_index < len(times) and (t1 - times[out_index]) * direction >= 0:
                t_out = times[out_index]
                if start is not None:
                    x: Scalar = (clock.output(out_index, t_out, y) - start) / (end - start)
                else:
                    x = (t_out - t) / (t1 - t)
                if self.interp == "linear":
                    out = linear(x, y, y1)
                else:
                    if f0 is None:
                        f0, extra_nfe = func(clock.at(t, y), y), extra_nfe + 1
                    f1 = func(end if end is not None else clock.at(t1, y), y1)
                    extra_nfe += 1
                    out = hermite(x, (end - start) if start is not None else t1 - t, y, f0, y1, f1)
                if not bool(torch.isfinite(out).all()):
                    how = overflow(out) or overflow(y, out)
                    raise NonFiniteStateError(
                        f"{self.name}: between t={times[out_index - 1]} and t={t_out} the state "
                        + (how if how else f"became NaN; reduce options['step_size'] (got {self.step_size})")
                        + " or check the vector field"
                    )
                outputs.append(out)
                out_index += 1
            t, start, y = t1, end, y1
        stats = SolverStats(forward_nfe=self.nfe_per_step * n_steps + extra_nfe + self.extra_nfe, forward_steps=n_steps)
        return torch.stack(outputs), stats

    def integrate_until_event(
        self, func: Callable, y0: torch.Tensor, t0: float, direction: float, event_fn: Callable, tol: float,
        callbacks: Callbacks = NONE, clock: Clock | None = None,
    ) -> tuple[float, torch.Tensor, SolverStats]:  # fmt: skip
        """Step by step_size from t0 in `direction` until event_fn(t, y) changes sign, then locate the change by
        bisection on the step's interpolant to within `tol` (torchdiffeq: its atol): (event time, state, counts).
        With a differentiable `clock` the state depends on t0 (the steps move with it, the event time does not)."""
        if self.step_size is None:
            raise ODEInputError(f"{self.name}: events with a fixed-step method need options['step_size']")
        clock, h = Clock() if clock is None else clock, direction * self.step_size
        t, y, carry, nfe, steps = t0, y0, None, 0, 0
        self.extra_nfe = 0
        sign0 = torch.sign(event_fn(clock.at(t0, y0), y0))
        while True:
            if steps >= self.max_num_steps:
                raise MaxStepsExceededError(
                    f"{self.name}: no event within options['max_num_steps']={self.max_num_steps} steps of "
                    f"{self.step_size} from t={t0}"
                )
            if callbacks.step is not None:
                callbacks.step(clock.at(t, y), y, time_tensor([self.step_size], y)[0])
            t1 = t + h
            y1, carry, f0 = self._step(func, clock, t, t1, None, None, y, carry)
            steps, nfe = steps + 1, nfe + self.nfe_per_step
            if bool(torch.sign(event_fn(clock.at(t1, y1), y1)) != sign0):
                break
            t, y = t1, y1
        f1 = None
        if self.interp == "cubic":
            if f0 is None:
                f0, nfe = func(clock.at(t, y), y), nfe + 1
            f1, nfe = func(clock.at(t1, y1), y1), nfe + 1

        def at(s: float, differentiable: bool = False) -> torch.Tensor:
            x: Scalar = (s - t) / h
            if differentiable:  # the position moves with t0 through the step's start
                x = (torch.tensor(s, dtype=real_dtype(y.dtype), device=y.device) - clock.at(t, y)) / h
            return linear(x, y, y1) if f1 is None or f0 is None else hermite(x, h, y, f0, y1, f1)

        t_event = locate_event(t, t1, tol, lambda s: bool(torch.sign(event_fn(clock.at(s, y), at(s))) == sign0))
        state = at(t_event, clock.differentiable)
        return t_event, state, SolverStats(forward_nfe=nfe + self.extra_nfe, forward_steps=steps)


class ExplicitRungeKutta(FixedStepSolver):
    """A fixed-step explicit Runge-Kutta method given by its `tableau`."""

    tableau: ClassVar[ButcherTableau]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if hasattr(cls, "tableau"):
            cls.order = cls.tableau.order
            cls.nfe_per_step = cls.tableau.stages

    @property
    def nodes(self) -> tuple[float, ...]:
        return self.tableau.c

    def step(
        self, func: Callable, times: Sequence[torch.Tensor], dt: Any, y: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any, torch.Tensor | None]:
        f0 = func(times[0], y)
        return rk_step(func, self.tableau, times, dt, y, f0)[0], None, f0
