"""The loop shared by adaptive embedded Runge-Kutta methods (dopri5, bosh3).

Step control follows torchdiffeq's RK solvers, so NFE counts stay comparable with published ones:
Hairer-Norsett-Wanner initial step selection; error ratio = norm(err / (atol + rtol max(|y0|, |y1|)))
with the RMS (or max-over-components RMS) norm; accept iff ratio <= 1; next step
dt * min(ifactor, max(safety / ratio^(1/order), dfactor)) with no shrinking after an accepted step;
integration runs past output times and interpolates (`_interpolation`). Trial steps with NaN/Inf
values are retried smaller (`_nonfinite`).

One step (`step`: the RK stages of `_rk`, the error estimate and its norm) and one start (`start`: f0
and the initial step, its branches as torch.where) serve both modes. With options['compile'] each is
one torch.compile graph (`_compile`), shared by every solve of the same structure; eagerly they run as
written. Time bookkeeping is plain Python floats (one host sync per step, for the error ratio), dense
output is fitted only for steps that contain an output time, error estimation runs without autograd,
and decreasing time is integrated natively (no reversed-function wrapper).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch

from . import _compile
from ._errors import MaxStepsExceededError, ODEInputError, StepSizeUnderflowError
from ._fixed import DEFAULT_MAX_NUM_STEPS
from ._inputs import check_max_num_steps, check_positive, time_tensor
from ._interpolation import interpolate
from ._nonfinite import NonFiniteTrials
from ._rk import Scalar, rk_step, stage_times, weighted_sum
from ._stats import SolverStats
from ._tableau import ButcherTableau

Norm = Callable[[torch.Tensor], torch.Tensor]


class AdaptiveRungeKutta:
    """Base class of embedded adaptive RK methods; subclasses give `name` and `tableau`."""

    name: ClassVar[str]
    tableau: ClassVar[ButcherTableau]
    options: ClassVar[tuple[str, ...]] = (
        "first_step",
        "safety",
        "ifactor",
        "dfactor",
        "max_step",
        "max_num_steps",
        "norm",
        "compile",
    )

    def __init__(
        self,
        rtol: float,
        atol: float,
        norm: Norm,
        first_step: float | None = None,
        safety: float = 0.9,
        ifactor: float = 10.0,
        dfactor: float = 0.2,
        max_step: float = math.inf,
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
        self.max_num_steps = check_max_num_steps(name, max_num_steps)
        self.compile = _compile.check_option(name, compile)
        self.rtol, self.atol, self.norm = rtol, atol, norm
        self.atol_per_component: torch.Tensor | None = None  # set by the adjoint for scaled gradient parts

    def _atol(self) -> torch.Tensor | float:
        return self.atol if self.atol_per_component is None else self.atol_per_component

    def _next_step(self, dt: float, ratio: float) -> float:
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
        y1, ks = rk_step(func, self.tableau, times, dt, y, f0)
        with torch.no_grad():
            err = weighted_sum(ks, self.tableau.terms.error, dt)
            tol = torch.maximum(y.abs(), y1.abs()).mul_(self.rtol).add_(atol)
            ratio = self.norm(err.div_(tol))
        return y1, ks, ratio

    def start(
        self, func: Callable, t0: torch.Tensor, y0: torch.Tensor, direction: float, atol: torch.Tensor | float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(f(t0, y0), [first step, d0, d1]) by Hairer, Norsett & Wanner, Solving ODEs I, II.4, as torchdiffeq
        (one more evaluation); d0, d1 are the scaled norms of y0 and f0."""
        f0 = func(t0, y0)
        with torch.no_grad():
            scale = y0.abs() * self.rtol + atol
            d0, d1 = self.norm(y0 / scale), self.norm(f0 / scale)
            h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
            f1 = func(t0 + direction * h0, y0 + (direction * h0) * f0)
            d2 = self.norm((f1 - f0) / scale) / h0
            d2 = torch.where(torch.isfinite(d2), d2, 0.0)  # NaN/Inf just after t0: the loop shrinks the step
            h1 = torch.where(
                (d1 <= 1e-15) & (d2 <= 1e-15),
                torch.clamp(h0 * 1e-3, min=1e-6),
                (0.01 / torch.maximum(d1, d2)) ** (1.0 / self.tableau.order),
            )
            return f0, torch.stack([torch.minimum(100 * h0, h1), d0, d1])

    def _trial(
        self, func: Callable, t: float, dt: float, y: torch.Tensor, f: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], float]:
        times = stage_times(t, dt, self.tableau.c, y)
        if self.compile:
            out = _compile.call(self, "step", y.device, func, times, time_tensor([dt], y)[0], y, f, self._atol())
            if out is not None:
                return out[0], out[1], float(out[2])
        y1, ks, ratio = self.step(func, times.unbind(), dt, y, f, self._atol())
        return y1, ks, float(ratio)

    def _begin(
        self, func: Callable, t0: float, y0: torch.Tensor, direction: float, trials: NonFiniteTrials
    ) -> tuple[torch.Tensor, float]:
        t0_tensor = time_tensor([t0], y0)[0]
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
    def integrate(self, func: Callable, y0: torch.Tensor, times: list[float]) -> tuple[torch.Tensor, SolverStats]:
        """Solve from times[0]; return the states at `times` stacked on dim 0, and the counts."""
        stats = SolverStats()
        outputs = [y0]
        if len(times) == 1:
            return torch.stack(outputs), stats
        tab = self.tableau
        direction = 1.0 if times[-1] > times[0] else -1.0
        trials = NonFiniteTrials(self.name, direction, self.atol)
        t, y = times[0], y0
        f, dt = self._begin(func, t, y0, direction, trials)
        nfe = 1 if self.first_step is not None else 2
        dt = direction * min(dt, self.max_step)
        new_nfe = tab.stages - 1 if tab.fsal else tab.stages
        last: tuple[float, float, torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor] | None = None
        attempts = rejected = 0
        for t_out in times[1:]:
            while (t_out - t) * direction > 0:
                if attempts >= self.max_num_steps:
                    raise MaxStepsExceededError(
                        f"{self.name}: exceeded options['max_num_steps']={self.max_num_steps} at t={t:.6g} while "
                        f"integrating to t={times[-1]:.6g}; the problem may be stiff or rtol={self.rtol:g}, "
                        f"atol={self.atol:g} too tight: raise max_num_steps or loosen the tolerances"
                    )
                if t + dt == t:
                    if trials.count:
                        raise trials.stuck(t, dt)
                    raise StepSizeUnderflowError(
                        f"{self.name}: step size underflow at t={t:.6g} (dt={dt:.3g}) with rtol={self.rtol:g}, "
                        f"atol={self.atol:g}; the field may be non-smooth or stiff: loosen the tolerances or use "
                        f"a fixed-step method"
                    )
                y1, ks, ratio = self._trial(func, t, dt, y, f)
                attempts += 1
                nfe += new_nfe
                if ratio <= 1.0:
                    f1 = ks[-1] if tab.fsal else func(time_tensor([t + dt], y)[0], y1)
                    nfe += 0 if tab.fsal else 1
                    last = (t, dt, y, y1, ks, f1)
                    t, y, f = t + dt, y1, f1
                    trials.accepted(t)
                else:
                    rejected += 1
                if math.isnan(ratio):  # never accepted; retried smaller
                    shrunk = min(abs(self._next_step(dt, math.inf)), self.max_step)
                    dt = trials.retry(t, dt, y, f, y1, ks, shrunk, times[-1])
                else:
                    dt = math.copysign(min(abs(self._next_step(dt, ratio)), self.max_step), direction)
            if t_out == t:
                outputs.append(y)
            else:
                assert last is not None
                t0, dt0, ya, yb, ks, f1 = last
                outputs.append(interpolate(tab, t0, dt0, ya, yb, ks, f1, t_out))
        stats.forward_nfe, stats.forward_steps, stats.forward_rejected = nfe, attempts - rejected, rejected
        return torch.stack(outputs), stats
