"""What a solver object offers the drivers (`odeint`, `odeint_adjoint`, `odeint_event`): every method's class
builds one from its validated options for one solve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from ._callbacks import Callbacks
from ._clock import Clock
from ._stats import SolverStats

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Solver(Protocol):
    """A method's solver: `integrate` the flat state from times[0] through every time in `times`."""

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]]  # the option names it takes
    callbacks: ClassVar[tuple[str, ...]]  # the torchdiffeq callbacks it calls
    user: Any  # (func, y0, t) as the user passed them (a grid_constructor gets them); set by the driver

    def integrate(
        self, func: Field, y0: torch.Tensor, times: list[float], clock: Clock | None = None, callbacks: Callbacks = ...
    ) -> tuple[torch.Tensor, SolverStats]:
        """The states at `times` stacked on dim 0, and the counts."""
        ...


@runtime_checkable
class EventSolver(Solver, Protocol):
    """A solver that can also stop where an event function changes sign."""

    def integrate_until_event(
        self,
        func: Field,
        y0: torch.Tensor,
        t0: float,
        direction: float,
        event_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        tol: float,
        callbacks: Callbacks = ...,
        clock: Clock | None = None,
    ) -> tuple[float, torch.Tensor, SolverStats]:
        """(event time located to within `tol`, state there, counts); the state differentiable in the start time
        through a differentiable `clock`."""
        ...
