"""Step callbacks found as attributes of `func`, called as torchdiffeq calls them.

`func.callback_step(t0, y0, dt)` before every step, `func.callback_accept_step(t0, y0, dt)` and
`func.callback_reject_step(t0, y0, dt)` after an adaptive step's verdict; the `_adjoint` twins during the
backward solve of `odeint_adjoint`. t0 and dt are 0-d tensors (dt > 0 also when time decreases, as in
torchdiffeq), y0 has the state's structure. Fixed-grid methods call only `callback_step`; a callback a method
does not call is reported with torchdiffeq's warning, and an attribute that looks like a misspelled
callback (`callback_stp`) with a warning naming the nearest callback name.
"""

from __future__ import annotations

import dataclasses
import difflib
import warnings
from collections.abc import Callable
from typing import Any

import torch

NAMES = ("callback_step", "callback_accept_step", "callback_reject_step")
ALL_NAMES = NAMES + tuple(name + "_adjoint" for name in NAMES)

Callback = Callable[[torch.Tensor, Any, torch.Tensor], Any]


@dataclasses.dataclass(frozen=True)
class Callbacks:
    """The callbacks one solve calls (None: not given)."""

    step: Callback | None = None
    accept: Callback | None = None
    reject: Callback | None = None

    def __bool__(self) -> bool:
        return any(c is not None for c in (self.step, self.accept, self.reject))


NONE = Callbacks()


def _named(func: Any, suffix: str) -> list[Callback | None]:
    return [getattr(func, name + suffix, None) for name in NAMES]


def find(
    func: Any, method: str, supported: tuple[str, ...], split: Callable[[torch.Tensor], Any]
) -> tuple[Callbacks, Callbacks]:
    """(forward, adjoint) callbacks of `func` for `method`, which calls those in `supported`; each wrapped to
    receive the state in the user's structure (`split` of the flat state)."""
    _warn_misspelled(func)
    given = {name for name in NAMES if callable(getattr(func, name, None))}
    unsupported = given - set(supported)
    if unsupported:
        warnings.warn(f"Solver '{method}' does not support callbacks {unsupported}", stacklevel=4)

    def wrap(callback: Callback | None, name: str) -> Callback | None:
        if callback is None or not callable(callback) or name not in supported:
            return None
        return lambda t0, y0, dt: callback(t0, split(y0), dt)

    forward = Callbacks(*(wrap(c, n) for c, n in zip(_named(func, ""), NAMES)))
    adjoint = Callbacks(*(c if callable(c) else None for c in _named(func, "_adjoint")))
    return forward, adjoint


def _warn_misspelled(func: Any) -> None:
    names = [name for name in getattr(type(func), "__dict__", {}) if name.startswith("callback")]
    names += [name for name in getattr(func, "__dict__", {}) if name.startswith("callback")]
    for name in names:
        if name not in ALL_NAMES:
            close = difflib.get_close_matches(name, ALL_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; callbacks are {list(ALL_NAMES)}"
            warnings.warn(f"func.{name} is not a solver callback and is never called{hint}", stacklevel=4)
