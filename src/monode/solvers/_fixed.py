"""The loop shared by every fixed-step method: grid construction, stepping, outputs, checks.

A fixed-step method only defines `step(func, t, dt, y, carry) -> (y_next, carry)`: `t` is a 0-d
tensor (so a compiled step is not re-specialised on every time value), `dt` a Python float and
`carry` whatever the method keeps between steps (None for one-step methods; the momentum of the
NAG solver). The grid contains every output time, so outputs are exact grid values (no
interpolation): each interval [t_i, t_i+1] is cut into ceil(|t_i+1 - t_i| / step_size) equal steps.
"""
from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import torch

from ._errors import MaxStepsExceededError, NonFiniteStateError, ODEInputError
from ._stats import SolverStats
from ._tableau import ButcherTableau

DEFAULT_MAX_NUM_STEPS = 10_000


class FixedStepSolver:
    """Base class: owns the grid and the loop. Subclasses set `order`, `nfe_per_step` and `step`."""

    name: ClassVar[str]
    order: ClassVar[int]
    nfe_per_step: ClassVar[int]
    options: ClassVar[tuple[str, ...]] = ("step_size", "grid", "compile", "max_num_steps")
    _compiled: ClassVar[dict[tuple, Callable[..., Any]]] = {}

    def __init__(self, step_size: float | None = None, grid: Any = None, compile: bool | dict = False,
                 max_num_steps: int = DEFAULT_MAX_NUM_STEPS) -> None:
        if step_size is not None and grid is not None:
            raise ODEInputError(f"{self.name}: pass options step_size or grid, not both")
        if step_size is not None and not (isinstance(step_size, (int, float)) and step_size > 0):
            raise ODEInputError(f"{self.name}: options['step_size'] must be a float > 0, got {step_size!r}")
        if not (isinstance(max_num_steps, int) and max_num_steps > 0):
            raise ODEInputError(f"{self.name}: options['max_num_steps'] must be an int > 0, got {max_num_steps!r}")
        self.step_size = step_size
        self.grid = None if grid is None else [float(v) for v in torch.as_tensor(grid).reshape(-1).tolist()]
        self.compile = compile
        self.max_num_steps = max_num_steps

    def step(self, func: Callable, t: torch.Tensor, dt: float, y: torch.Tensor, carry: Any
             ) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def _grid_points(self, times: list[float]) -> list[float]:
        """All grid points from times[0] to times[-1], every output time included."""
        if self.grid is not None:
            lo, hi = min(times[0], times[-1]), max(times[0], times[-1])
            if min(self.grid) > lo or max(self.grid) < hi:
                raise ODEInputError(f"{self.name}: options['grid'] must cover t from {times[0]} to {times[-1]}, "
                                    f"got [{min(self.grid)}, {max(self.grid)}]")
            inner = [g for g in self.grid if lo < g < hi]
            return sorted(set(inner) | set(times), reverse=times[-1] < times[0])
        points = [times[0]]
        for a, b in zip(times, times[1:]):
            n = 1 if self.step_size is None else max(1, math.ceil(abs(b - a) / self.step_size - 1e-9))
            points.extend(a + (b - a) * (i / n) for i in range(1, n))
            points.append(b)
        return points

    def compile_key(self) -> tuple:
        """The hyperparameters `step` reads from self (a compiled step is shared per method and key)."""
        return ()

    def _step_fn(self) -> Callable[..., Any]:
        if not self.compile:
            return self.step
        key = (type(self), self.compile_key(), repr(self.compile))
        if key not in FixedStepSolver._compiled:  # compiled once, bound to this first instance, reused by every call
            kwargs = self.compile if isinstance(self.compile, dict) else {}
            FixedStepSolver._compiled[key] = torch.compile(self.step, **kwargs)
        return FixedStepSolver._compiled[key]

    def integrate(self, func: Callable, y0: torch.Tensor, times: list[float]) -> tuple[torch.Tensor, SolverStats]:
        """Solve from times[0]; return the states at `times` stacked on dim 0, and the counts."""
        points = self._grid_points(times)
        n_steps = len(points) - 1
        if n_steps > self.max_num_steps:
            raise MaxStepsExceededError(
                f"{self.name}: the grid needs {n_steps} steps, more than options['max_num_steps']="
                f"{self.max_num_steps}; raise max_num_steps or increase step_size")
        ts = torch.tensor(points, dtype=y0.dtype, device=y0.device)
        step = self._step_fn()
        outputs, out_index = [y0], 1
        y, carry = y0, None
        for i in range(n_steps):
            y, carry = step(func, ts[i], points[i + 1] - points[i], y, carry)
            if out_index < len(times) and points[i + 1] == times[out_index]:
                if not bool(torch.isfinite(y).all()):
                    raise NonFiniteStateError(f"{self.name}: the state became NaN/Inf between t={times[out_index - 1]} "
                                              f"and t={times[out_index]}; reduce options['step_size'] "
                                              f"(got {self.step_size}) or check the vector field")
                outputs.append(y)
                out_index += 1
        stats = SolverStats(forward_nfe=self.nfe_per_step * n_steps, forward_steps=n_steps)
        return torch.stack(outputs), stats


class ExplicitRungeKutta(FixedStepSolver):
    """A fixed-step explicit Runge-Kutta method given by its `tableau`."""

    tableau: ClassVar[ButcherTableau]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if hasattr(cls, "tableau"):
            cls.order = cls.tableau.order
            cls.nfe_per_step = cls.tableau.stages

    def step(self, func: Callable, t: torch.Tensor, dt: float, y: torch.Tensor, carry: Any
             ) -> tuple[torch.Tensor, Any]:
        tab = self.tableau
        ks: list[torch.Tensor] = []
        for c_j, a_j in zip(tab.c, tab.a):
            y_j = y
            for a_ji, k_i in zip(a_j, ks):
                if a_ji != 0.0:
                    y_j = torch.add(y_j, k_i, alpha=a_ji * dt)
            ks.append(func(t + c_j * dt if c_j != 0.0 else t, y_j))
        y_next = y
        for b_j, k_j in zip(tab.b, ks):
            if b_j != 0.0:
                y_next = torch.add(y_next, k_j, alpha=b_j * dt)
        return y_next, None
