"""What an adaptive solve does with a trial step that produced NaN/Inf values.

Stepping past the final time (as torchdiffeq does) can evaluate the field where it is undefined
(NesterovNODE's k(t) = t^-1.5 e^(t/2) at t <= 0 when the adjoint runs from t = 2 down to 1 with a
step grown tenfold). A trial step whose error ratio is NaN (a NaN/Inf stage makes it NaN) is rejected
like one with an infinite ratio: shrunk by dfactor, counted as rejected, and retried no further than
the final time. `NonFiniteStateError` is raised only when the state or slope already reached is
non-finite, or after `MAX_NONFINITE_TRIALS` such trials that the solve does not get past. Ordinary
problems never take this path, so their steps (and NFE) stay torchdiffeq's. (A norm that skips
components, e.g. the adjoint's seminorm, cannot see NaN there.)
"""

from __future__ import annotations

import math

import torch

from ._errors import NonFiniteStateError

MAX_NONFINITE_TRIALS = 15
"""A solve raises after this many trial steps with NaN/Inf values that it cannot get past (in a row: the
step shrinks by dfactor each time, 0.2^14 = 6e-10; or interleaved with accepted steps that stop short of
where those trials ended)."""


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


class NonFiniteTrials:
    """The count of trial steps with NaN/Inf values since the solve last got past `blocked`, the nearest
    end of those trials (accepted steps that stop short of it, creeping up to where the field is NaN,
    keep the count)."""

    def __init__(self, method: str, direction: float, atol: float) -> None:
        self.method, self.direction, self.atol = method, direction, atol
        self.count = 0
        self.blocked: float | None = None

    def accepted(self, t: float) -> None:
        """The solve reached t."""
        if self.blocked is not None and (t - self.blocked) * self.direction >= 0:
            self.count, self.blocked = 0, None

    def retry(
        self,
        t: float,
        dt: float,
        y: torch.Tensor,
        f: torch.Tensor,
        y1: torch.Tensor,
        ks: list[torch.Tensor],
        shrunk: float,
        t_end: float,
    ) -> float:
        """The step to retry with after the trial step (t, dt) had a NaN error ratio (rare path: syncs freely):
        `shrunk` (the step after an infinite error ratio), never past t_end."""
        self.count += 1
        if self.blocked is None or (t + dt - self.blocked) * self.direction < 0:
            self.blocked = t + dt
        if (_finite(y1) and all(_finite(k) for k in ks)) or not (_finite(y) and _finite(f)):
            raise self.error_at(t, y, f)
        if self.count >= MAX_NONFINITE_TRIALS:
            raise self.stuck(t, dt)
        return math.copysign(min(abs(shrunk), abs(t_end - t)), dt)

    def error_at(self, t: float, y: torch.Tensor, f: torch.Tensor) -> NonFiniteStateError:
        """NaN/Inf at a point the solve has reached (state y, slope f at t): no smaller step can help."""
        if not _finite(y):
            return NonFiniteStateError(f"{self.method}: the state at t={t:.6g} contains NaN/Inf values")
        if not _finite(f):
            return NonFiniteStateError(
                f"{self.method}: the vector field returned NaN/Inf at t={t:.6g} on a finite "
                f"state the solve has reached, so no smaller step can help; check the field"
            )
        return NonFiniteStateError(
            f"{self.method}: the error norm is NaN at t={t:.6g} although the state and the "
            f"field are finite: atol={self.atol:g} with a state component that is exactly 0 gives "
            f"0/0, or options['norm'] returned NaN; use atol > 0"
        )

    def stuck(self, t: float, dt: float) -> NonFiniteStateError:
        return NonFiniteStateError(
            f"{self.method}: the vector field returned NaN/Inf (or the state overflowed) in {self.count} trial steps "
            f"without getting past them, the last from t={t:.6g} with dt={dt:.3g}; the field may be undefined just "
            f"beyond t={t:.6g}, or the solution blows up there"
        )
