"""Solver statistics: NFE and step counts for forward and backward solves.

Counts are kept by the Python driver loop of each solver (never inside a traced or compiled step),
and added to every `SolverStats` that is being recorded when the solve runs. For a backward pass the
counts are added when the backward actually runs, to the recorders that were active at forward time.

    with monode.record_stats() as stats:
        y = monode.odeint(f, y0, t)
        y[-1].sum().backward()
    stats.forward_nfe, stats.backward_nfe
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator

__all__ = ["SolverStats", "record_stats"]


@dataclasses.dataclass
class SolverStats:
    """Function evaluations and steps of the solves recorded into it.

    `forward_*` count the solves of `odeint` / the forward pass of `odeint_adjoint`; `backward_*`
    count the adjoint solves (odeint_adjoint) or, for backprop through the solver, one
    vector-Jacobian product per forward evaluation (so `backward_nfe == forward_nfe` there).
    """

    forward_nfe: int = 0
    backward_nfe: int = 0
    forward_steps: int = 0
    backward_steps: int = 0
    forward_rejected: int = 0
    backward_rejected: int = 0
    solves: int = 0

    def reset(self) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, 0)

    def add(self, other: SolverStats) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


_RECORDERS: contextvars.ContextVar[tuple[SolverStats, ...]] = contextvars.ContextVar(
    "monode_stats_recorders", default=()
)


@contextlib.contextmanager
def record_stats(stats: SolverStats | None = None) -> Iterator[SolverStats]:
    """Record the statistics of every solve (and of its backward pass) started inside the block."""
    stats = SolverStats() if stats is None else stats
    token = _RECORDERS.set(_RECORDERS.get() + (stats,))
    try:
        yield stats
    finally:
        _RECORDERS.reset(token)


def active_recorders() -> tuple[SolverStats, ...]:
    """The recorders a solve started now reports to."""
    return _RECORDERS.get()


def report(recorders: tuple[SolverStats, ...], *, backward: bool, nfe: int, steps: int, rejected: int = 0) -> None:
    """Add one solve's counts to `recorders` (forward or backward side)."""
    side = "backward" if backward else "forward"
    for rec in recorders:
        setattr(rec, f"{side}_nfe", getattr(rec, f"{side}_nfe") + nfe)
        setattr(rec, f"{side}_steps", getattr(rec, f"{side}_steps") + steps)
        setattr(rec, f"{side}_rejected", getattr(rec, f"{side}_rejected") + rejected)
        if not backward:
            rec.solves += 1
