"""options['compile'] of the adaptive solvers: one torch.compile per traced method, shared by all solves.

`call(solver, "step" | "start", *args)` runs `solver._tensor_step(*args)` / `solver._tensor_start(*args)`
through torch.compile. The compiled function is one per (method, options, device type), shared by every
solver instance: a new solve of the same structure (the next ODE-RNN gap, the next batch, a new solver
object) reuses its graph, since dynamo's guards check types, shapes and constants, not object identity.
compile=True means static shapes and, on CPU, inductor's C++ wrapper (the Python wrapper's per-call
cost is a large part of a small step); a dict is passed to torch.compile as is. The recompile limit is
raised so that several models, shapes and the adjoint's dynamics in one process each keep a graph.

If compiling fails (e.g. no C++ compiler), `call` warns once per options and returns None, and the
solver runs its eager code, which computes the same step.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch


def _step(solver: Any, *args: Any) -> Any:
    return solver._tensor_step(*args)


def _start(solver: Any, *args: Any) -> Any:
    return solver._tensor_start(*args)


_TRACED = {"step": _step, "start": _start}
_COMPILED: dict[tuple[str, str, str], Callable] = {}
FAILED: set[str] = set()
"""The repr of every compile option that failed in this process (solves with it run eagerly)."""


def _compiled(kind: str, options: bool | dict, device: torch.device) -> Callable | None:
    key = (kind, repr(options), device.type)
    if key[1] in FAILED:
        return None
    if key not in _COMPILED:
        import torch._dynamo
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        if isinstance(options, dict):
            kwargs = options
        else:
            kwargs = dict(dynamic=False, options=dict(cpp_wrapper=True) if device.type == "cpu" else None)
        _COMPILED[key] = torch.compile(_TRACED[kind], **kwargs)
    return _COMPILED[key]


def call(solver: Any, kind: str, func: Callable, y: torch.Tensor, *args: Any) -> Any:
    """The compiled `kind` ("step", "start") of `solver` on (func, y, *args), or None when compilation
    with `solver.compile` is unavailable."""
    compiled = _compiled(kind, solver.compile, y.device)
    if compiled is None:
        return None
    try:
        return compiled(solver, func, y, *args)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager step gives the same result
        FAILED.add(repr(solver.compile))
        warnings.warn(f"{solver.name}: options['compile'] failed ({type(exc).__name__}: {exc}); "
                      f"solving without compilation", RuntimeWarning, stacklevel=4)
        return None
