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


def overflow(reached: torch.Tensor, *trial: torch.Tensor) -> str | None:
    """How the values overflowed, if they did: `trial` (values computed from the state `reached`) or
    `reached` hold +-Inf (a NaN can follow from it, as Inf - Inf), or `reached` comes within 1e-3 of the
    dtype's largest value. None for a plain NaN."""
    if not reached.is_floating_point():
        return None
    big = torch.finfo(reached.dtype).max
    finite = reached[torch.isfinite(reached)]
    peak = float(finite.abs().max()) if finite.numel() else 0.0
    if any(bool(torch.isinf(x).any()) for x in (reached, *trial)) or peak > 1e-3 * big:
        seen = f"; its finite values reach {peak:.4g}" if peak else ""
        return (
            f"overflowed {reached.dtype} (largest finite value {big:.4g}{seen}): the solution outgrows the "
            f"dtype, so use a wider one or rescale the problem"
        )
    return None


class NonFiniteTrials:
    """The count of trial steps with NaN/Inf values since the solve last got past `blocked`, the nearest
    end of those trials (accepted steps that stop short of it, creeping up to where the field is NaN,
    keep the count)."""

    def __init__(self, method: str, direction: float, atol: float) -> None:
        self.method, self.direction, self.atol = method, direction, atol
        self.count = 0
        self.blocked: float | None = None
        self.overflow: str | None = None  # how the last trial step overflowed, if it did

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
        self.overflow = overflow(y, y1, *ks)
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
            how = overflow(y)
            what = f"the state {how}" if how else "the state contains NaN/Inf values"
            return NonFiniteStateError(f"{self.method}: at t={t:.6g} {what}")
        if not _finite(f):
            return NonFiniteStateError(
                f"{self.method}: the vector field returned NaN/Inf at t={t:.6g} on a finite "
                f"state the solve has reached, so no smaller step can help; check the field"
            )
        if self.atol == 0 and bool((y == 0).any()):
            return NonFiniteStateError(
                f"{self.method}: the error norm is NaN at t={t:.6g} although the state and the field are "
                f"finite: atol=0 with a state component that is exactly 0 gives 0/0; use atol > 0"
            )
        peak = max(float(y.abs().max()), float(f.abs().max())) if y.numel() else 0.0
        return NonFiniteStateError(
            f"{self.method}: the error norm is not finite at t={t:.6g} although the state and the field are: "
            f"the tolerance-scaled values (state or slope up to {peak:.4g}, atol={self.atol:g}) overflow "
            f"{y.dtype} when squared, or options['norm'] returned NaN/Inf; the solution (or a model's "
            f"parameters) has grown too large for the dtype"
        )

    def stuck(self, t: float, dt: float) -> NonFiniteStateError:
        if self.overflow:
            return NonFiniteStateError(
                f"{self.method}: the trial steps from t={t:.6g} {self.overflow} ({self.count} trials, the last "
                f"with dt={dt:.3g})"
            )
        return NonFiniteStateError(
            f"{self.method}: the vector field returned NaN/Inf (or the state overflowed) in {self.count} trial steps "
            f"without getting past them, the last from t={t:.6g} with dt={dt:.3g}; the field may be undefined just "
            f"beyond t={t:.6g}, or the solution blows up there"
        )
