"""`scipy_solver`: `scipy.integrate.solve_ivp` behind monode's interface, as torchdiffeq's wrapper.

options: `solver` (a solve_ivp method: "LSODA" (default), "RK45", "DOP853", "Radau", "BDF", ...), `min_step`,
`max_step`. Use it for stiff problems (LSODA, Radau, BDF) or to compare against a reference integrator. The
state is copied to a float64 NumPy array and every evaluation of `func` runs without autograd, so the
solution carries no gradient (use `odeint_adjoint`, whose backward solve evaluates its own vector-Jacobian
products, for gradients). Needs scipy: `pip install 'monode[scipy]'`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from ._callbacks import NONE, Callbacks
from ._clock import Clock
from ._errors import ODEInputError, ODESolverError
from ._stats import SolverStats


class ScipySolver:
    """solve_ivp with odeint's rtol and atol and the options above."""

    name: ClassVar[str] = "scipy_solver"
    options: ClassVar[tuple[str, ...]] = ("solver", "min_step", "max_step")
    callbacks: ClassVar[tuple[str, ...]] = ()
    tolerances: ClassVar[bool] = True

    def __init__(
        self, rtol: float, atol: float, solver: str = "LSODA", min_step: float = 0.0, max_step: float = math.inf
    ) -> None:
        try:
            from scipy.integrate import solve_ivp
        except ImportError as exc:
            raise ODEInputError("method='scipy_solver' needs scipy: pip install 'monode[scipy]'") from exc
        if not isinstance(solver, str):
            raise ODEInputError(f"scipy_solver: options['solver'] must be a solve_ivp method name, got {solver!r}")
        self.solve_ivp: Callable[..., Any] = solve_ivp
        self.rtol, self.atol, self.solver = rtol, atol, solver
        self.min_step, self.max_step = float(min_step), float(max_step)
        self.user: Any = None

    def integrate(
        self,
        func: Callable,
        y0: torch.Tensor,
        times: list[float],
        clock: Clock | None = None,
        callbacks: Callbacks = NONE,
    ) -> tuple[torch.Tensor, SolverStats]:
        if len(times) == 1:
            return y0[None], SolverStats()
        import numpy as np

        calls = 0

        def np_func(t: float, y: Any) -> Any:
            nonlocal calls
            calls += 1
            with torch.no_grad():
                t_ = torch.tensor(t, dtype=y0.dtype, device=y0.device)
                f = func(t_, torch.tensor(y, device=y0.device).to(y0.dtype).reshape(y0.shape))
            return f.detach().cpu().double().numpy().reshape(-1)

        extra = {"min_step": self.min_step} if self.solver == "LSODA" else {}
        try:
            sol = self.solve_ivp(
                np_func,
                t_span=[times[0], times[-1]],
                y0=y0.detach().cpu().double().numpy().reshape(-1),
                t_eval=np.asarray(times),
                method=self.solver,
                rtol=self.rtol,
                atol=self.atol,
                max_step=self.max_step,
                **extra,
            )
        except ValueError as exc:  # an unknown method or option: the user's mistake
            raise ODEInputError(f"scipy_solver: {exc}") from exc
        if not sol.success:
            raise ODESolverError(f"scipy_solver ({self.solver}): {sol.message}")
        out = torch.as_tensor(sol.y.T, device=y0.device).to(y0.dtype).reshape(len(times), *y0.shape)
        return out, SolverStats(forward_nfe=calls, forward_steps=int(sol.t.size))
