"""options['compile']: one torch.compile per solver method, shared by every solve, with one fallback.

`call(solver, "step", *args)` runs `solver.step(*args)` (any method name) through torch.compile. The
compiled function is one per (method name, compile options, device type), shared by every solver
instance of every class: a new solve of the same structure (the next ODE-RNN gap, the next batch, a new
solver object) reuses its graph, since dynamo guards on types, shapes and the constants a step reads,
not on object identity. compile=True means static shapes and, on CPU, inductor's C++ wrapper; a dict is
passed to torch.compile as is. The recompile limit is raised so that several models, shapes and the
adjoint's dynamics in one process each keep a graph.

If compiling fails (e.g. no C++ compiler), `call` warns once per compile options and returns None; the
solver then runs the same method eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from ._errors import ODEInputError

_COMPILED: dict[tuple[str, str, str], Callable[..., Any]] = {}
FAILED: set[str] = set()
"""The repr of every compile option that failed in this process (solves with it run eagerly)."""


def _traced(method: str) -> Callable[..., Any]:
    def run(solver: Any, *args: Any) -> Any:
        return getattr(solver, method)(*args)

    run.__name__ = f"monode_{method}"
    return run


def _compiled(method: str, options: bool | dict, device: torch.device) -> Callable[..., Any] | None:
    key = (method, repr(options), device.type)
    if key[1] in FAILED:
        return None
    if key not in _COMPILED:
        import torch._dynamo

        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        if isinstance(options, dict):
            kwargs = options
        else:
            kwargs = dict(dynamic=False, options=dict(cpp_wrapper=True) if device.type == "cpu" else None)
        _COMPILED[key] = torch.compile(_traced(method), **kwargs)
    return _COMPILED[key]


def call(solver: Any, method: str, device: torch.device, *args: Any) -> Any:
    """`solver.<method>(*args)` compiled with `solver.compile`, or None when compilation is unavailable."""
    compiled = _compiled(method, solver.compile, device)
    if compiled is None:
        return None
    try:
        return compiled(solver, *args)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager method gives the same result
        FAILED.add(repr(solver.compile))
        warnings.warn(
            f"{solver.name}: options['compile'] failed ({type(exc).__name__}: {exc}); solving without compilation",
            RuntimeWarning,
            stacklevel=4,
        )
        return None


def check_option(method: str, value: Any) -> bool | dict:
    """options['compile'] validated: a bool, or a dict of torch.compile keyword arguments."""
    if not isinstance(value, (bool, dict)):
        raise ODEInputError(
            f"{method}: options['compile'] must be a bool or a dict of torch.compile keyword arguments, got {value!r}"
        )
    return value
