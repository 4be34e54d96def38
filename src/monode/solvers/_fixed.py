"""The loop shared by every fixed-step method: the grid, stepping, outputs, checks.

A fixed-step method defines `step(func, t, dt, y, carry) -> (y_next, carry)`: `t` is a 0-d tensor, `dt`
a Python float (a 0-d tensor under options['compile'], so one graph serves every step size) and `carry`
whatever the method keeps between steps (None for one-step methods; the NAG solver's velocity). The grid
contains every output time, so outputs are exact grid values (no interpolation): each interval
[t_i, t_i+1] is cut into ceil(|t_i+1 - t_i| / step_size) equal steps. The number of steps is counted
before anything is allocated, and grid points are produced one at a time, so memory is bounded by the
state, not by the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch

from . import _compile
from ._errors import MaxStepsExceededError, NonFiniteStateError, ODEInputError
from ._inputs import check_max_num_steps, check_positive, time_tensor
from ._nonfinite import overflow
from ._rk import rk_step, stage_times
from ._stats import SolverStats
from ._tableau import ButcherTableau

DEFAULT_MAX_NUM_STEPS = 10_000


class FixedStepSolver:
    """Base class: owns the grid and the loop. Subclasses set `name`, `order`, `nfe_per_step` and `step`."""

    name: ClassVar[str]
    order: ClassVar[int]
    nfe_per_step: ClassVar[int]
    options: ClassVar[tuple[str, ...]] = ("step_size", "grid", "compile", "max_num_steps")

    def __init__(
        self,
        step_size: float | None = None,
        grid: Any = None,
        compile: bool | dict = False,
        max_num_steps: int = DEFAULT_MAX_NUM_STEPS,
    ) -> None:
        if step_size is not None and grid is not None:
            raise ODEInputError(f"{self.name}: pass options step_size or grid, not both")
        self.step_size = None if step_size is None else check_positive(self.name, "step_size", step_size)
        self.grid = None if grid is None else [float(v) for v in torch.as_tensor(grid).reshape(-1).tolist()]
        self.compile = _compile.check_option(self.name, compile)
        self.max_num_steps = check_max_num_steps(self.name, max_num_steps)

    @property
    def nodes(self) -> tuple[float, ...]:
        """The c of every time t + c dt a step evaluates the field at (`step` gets them as `times`)."""
        raise NotImplementedError

    def step(
        self, func: Callable, times: Sequence[torch.Tensor], dt: Any, y: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def _steps_per_interval(self, times: list[float]) -> list[int]:
        if self.step_size is None:
            return [1] * (len(times) - 1)
        return [max(1, math.ceil(abs(b - a) / self.step_size - 1e-9)) for a, b in zip(times, times[1:])]

    def _grid_points(self, times: list[float]) -> tuple[int, Iterator[float]]:
        """(the number of steps, the grid points after times[0]) from times[0] to times[-1], every output
        time included; the count is checked against max_num_steps before any point is made."""
        if self.grid is not None:
            lo, hi = min(times[0], times[-1]), max(times[0], times[-1])
            if min(self.grid) > lo or max(self.grid) < hi:
                raise ODEInputError(
                    f"{self.name}: options['grid'] must cover t from {times[0]} to {times[-1]}, "
                    f"got [{min(self.grid)}, {max(self.grid)}]"
                )
            points = sorted(set(g for g in self.grid if lo < g < hi) | set(times), reverse=times[-1] < times[0])
            count, iterator = len(points) - 1, iter(points[1:])
        else:
            per_interval = self._steps_per_interval(times)
            count = sum(per_interval)
            iterator = (
                a + (b - a) * (i / n) if i < n else b
                for a, b, n in zip(times, times[1:], per_interval)
                for i in range(1, n + 1)
            )
        if count > self.max_num_steps:
            raise MaxStepsExceededError(
                f"{self.name}: the grid needs {count} steps, more than options['max_num_steps']="
                f"{self.max_num_steps}; raise max_num_steps or increase step_size (got {self.step_size})"
            )
        return count, iterator

    def _step(self, func: Callable, t: float, dt: float, y: torch.Tensor, carry: Any) -> tuple[torch.Tensor, Any]:
        """`step` from the float time t, compiled when options['compile'] is set."""
        times = stage_times(t, dt, self.nodes, y)
        if self.compile:
            out = _compile.call(self, "step", y.device, func, times, time_tensor([dt], y)[0], y, carry)
            if out is not None:
                return out
        return self.step(func, times.unbind(), dt, y, carry)

    def integrate(self, func: Callable, y0: torch.Tensor, times: list[float]) -> tuple[torch.Tensor, SolverStats]:
        """Solve from times[0]; return the states at `times` stacked on dim 0, and the counts."""
        n_steps, points = self._grid_points(times)
        outputs, out_index = [y0], 1
        t, y, carry = times[0], y0, None
        for t_next in points:
            y, carry = self._step(func, t, t_next - t, y, carry)
            t = t_next
            if out_index < len(times) and t == times[out_index]:
                if not bool(torch.isfinite(y).all()):
                    how = overflow(y)
                    raise NonFiniteStateError(
                        f"{self.name}: between t={times[out_index - 1]} and t={times[out_index]} the state "
                        + (how if how else f"became NaN; reduce options['step_size'] (got {self.step_size})")
                        + " or check the vector field"
                    )
                outputs.append(y)
                out_index += 1
        return torch.stack(outputs), SolverStats(forward_nfe=self.nfe_per_step * n_steps, forward_steps=n_steps)


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
    ) -> tuple[torch.Tensor, Any]:
        return rk_step(func, self.tableau, times, dt, y, func(times[0], y))[0], None
