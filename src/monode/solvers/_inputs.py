"""Input normalisation for odeint/odeint_adjoint: one place that checks and flattens the problem.

A tuple state (h, m, ...) is flattened into one 1-D tensor so every solver sees a single tensor;
`func` is wrapped to split and re-join it. A single-tensor state keeps its shape (no copies).
The error norm is the max over "segments" of the RMS of the scaled error: one segment per tuple
component (torchdiffeq's mixed norm), or the whole tensor.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._clock import real_dtype
from ._errors import ODEInputError

Func = Callable[[torch.Tensor, Any], Any]


class _Layout:
    """Where the parts (y1, y2, ...) of a tuple state sit in one flat tensor: shapes, sizes, segments.

    When the parts have equal shapes (every momentum model) a split is one view and an unbind, and a join
    one stack; otherwise `split_with_sizes` and a concatenation."""

    def __init__(self, shapes: Sequence[torch.Size]) -> None:
        self.shapes = list(shapes)
        self.numels = [math.prod(s) for s in self.shapes]
        self.uniform = all(s == self.shapes[0] for s in self.shapes)
        bounds = [0]
        for n in self.numels:
            bounds.append(bounds[-1] + n)
        self.segments = list(zip(bounds[:-1], bounds[1:]))

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A flat state [N] as views (y1, y2, ...)."""
        if self.uniform:
            return flat.view(len(self.shapes), *self.shapes[0]).unbind(0)
        return tuple(p.view(s) for p, s in zip(flat.split_with_sizes(self.numels), self.shapes))

    def join(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """(y1, y2, ...) shaped as `shapes` as one flat tensor, the inverse of `split`."""
        if self.uniform:
            return torch.stack(tuple(parts)).view(-1)
        return torch.cat([p.reshape(-1) for p in parts])


class _TupleFunc:
    """func(t, (y1, y2, ...)) -> (dy1, dy2, ...) seen as a function of one flat tensor."""

    def __init__(self, func: Func, layout: _Layout) -> None:
        self.func, self.layout = func, layout

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.layout.join(self.func(t, self.layout.split(y)))


class _CheckedFunc:
    """Checks the structure of func's output on the first call, then gets out of the way."""

    def __init__(self, func: Func, y0: Any) -> None:
        self.func, self.checked = func, False
        self.y0 = tuple(p.detach() for p in y0) if isinstance(y0, tuple) else y0.detach()  # only its structure

    def __call__(self, t: torch.Tensor, y: Any) -> Any:
        out = self.func(t, y)
        if not self.checked:
            check_output_structure(out, self.y0)
            self.checked = True
        return out


def check_output_structure(out: Any, y0: Any) -> None:
    """Raise ODEInputError unless `out` has the structure, shapes and dtype of the state `y0`."""
    if isinstance(y0, tuple):
        if not isinstance(out, (tuple, list)) or len(out) != len(y0):
            got = f"a {type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
            raise ODEInputError(f"func must return a tuple of {len(y0)} tensors like y0, got {got}")
        for i, (o, y) in enumerate(zip(out, y0)):
            if not isinstance(o, torch.Tensor) or o.shape != y.shape:
                shape = tuple(o.shape) if isinstance(o, torch.Tensor) else type(o).__name__
                raise ODEInputError(f"func output[{i}] has shape {shape}, but state y0[{i}] has shape {tuple(y.shape)}")
            if o.dtype != y.dtype:
                raise ODEInputError(f"func output[{i}] has dtype {o.dtype}, but state y0[{i}] has dtype {y.dtype}")
    elif not isinstance(out, torch.Tensor) or out.shape != y0.shape:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ODEInputError(f"func output has shape {shape}, but the state y0 has shape {tuple(y0.shape)}")
    elif out.dtype != y0.dtype:
        raise ODEInputError(f"func output has dtype {out.dtype}, but the state y0 has dtype {y0.dtype}")


@dataclasses.dataclass
class Problem:
    """A checked ODE problem in the form the solvers integrate."""

    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # on the flat state
    inner: Func  # the user's func, on the user's structure (output checked on its first call)
    y0: torch.Tensor
    times: list[float]
    t: torch.Tensor
    layout: _Layout | None  # None for a single-tensor state
    user_y0: Any = None  # y0 as the user passed it (for grid_constructor)

    def __post_init__(self) -> None:
        self.shape = self.y0.shape  # (a traced `split` then depends on the shape only, not on y0 itself)

    @property
    def segments(self) -> list[tuple[int, int]] | None:
        """The tuple parts' (start, end) in the flat state; None: one segment covering it."""
        return None if self.layout is None else self.layout.segments

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A flat state [N] as views in the user's structure: (y,) or (y1, y2, ...)."""
        return (flat.view(self.shape),) if self.layout is None else self.layout.split(flat)

    def join(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """The user's structure (y,) or (y1, y2, ...) as one flat tensor (the inverse of `split`)."""
        return parts[0].reshape(-1) if self.layout is None else self.layout.join(parts)

    def call_structured(self, t: torch.Tensor, parts: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """func on the user's structure, returning a tuple of derivative parts (no flattening)."""
        if self.layout is None:
            return (self.func(t, parts[0]),)
        return tuple(self.inner(t, parts))

    def unflatten(self, sol: torch.Tensor) -> Any:
        """[T, N] flat solution -> tensor [T, *shape] or tuple of such tensors."""
        if self.layout is None:
            return sol
        parts = sol.split(self.layout.numels, dim=1)
        return tuple(p.view(len(self.times), *s) for p, s in zip(parts, self.layout.shapes))


def check_times(t: Any) -> tuple[torch.Tensor, list[float]]:
    """t must be a strictly monotonic, finite, 1-D float sequence of length >= 1."""
    if not isinstance(t, torch.Tensor):
        try:
            t = torch.as_tensor(t, dtype=torch.get_default_dtype())
        except (TypeError, ValueError) as exc:
            raise ODEInputError(f"t must be a 1-D tensor of times, got {type(t).__name__}") from exc
    if t.ndim != 1 or t.numel() < 1:
        raise ODEInputError(f"t must be a non-empty 1-D tensor, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ODEInputError(f"t must have a floating dtype, got {t.dtype}")
    times = t.detach().tolist()
    if not all(math.isfinite(v) for v in times):
        raise ODEInputError(f"t must be finite, got {times}")
    if len(times) > 1:
        diffs = [b - a for a, b in zip(times, times[1:])]
        if not (all(d > 0 for d in diffs) or all(d < 0 for d in diffs)):
            i = next(i for i, d in enumerate(diffs) if (d <= 0) != (diffs[0] <= 0) or d == 0)
            raise ODEInputError(
                f"t must be strictly increasing or strictly decreasing, but t[{i}]={times[i]} "
                f"and t[{i + 1}]={times[i + 1]}"
            )
    return t, times


def check_positive(method: str, name: str, value: Any, allow_inf: bool = False) -> float:
    """options[name] of `method` validated as a (finite, unless allow_inf) float > 0."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and value > 0
        and (allow_inf or math.isfinite(value))
    )
    if not ok:
        raise ODEInputError(
            f"{method}: options['{name}'] must be a {'' if allow_inf else 'finite '}float > 0, got {value!r}"
        )
    return float(value)


def check_max_num_steps(method: str, value: Any) -> int:
    """options['max_num_steps'] of `method` validated as an int > 0."""
    if isinstance(value, bool) or not (isinstance(value, int) and value > 0):
        raise ODEInputError(f"{method}: options['max_num_steps'] must be an int > 0, got {value!r}")
    return value


def check_tolerance(name: str, value: Any) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
        raise ODEInputError(f"{name} must be a finite float >= 0, got {value!r}")
    return float(value)


def per_component_tolerance(name: str, value: Any, prob: Problem) -> tuple[float, torch.Tensor | None]:
    """rtol or atol as torchdiffeq takes them: a number (or a one-element tensor), or one value per component:
    for a tuple state a sequence with one entry per part (a number, or a tensor of the part's size), for a tensor
    state anything that broadcasts to it. Returns (the smallest value, the tolerance on the solver's state or None
    for a number); per-part numbers become default-dtype tensors first, as in torchdiffeq."""
    if isinstance(value, torch.Tensor) and value.requires_grad:
        raise ODEInputError(f"{name} cannot require gradient")
    if not isinstance(value, (tuple, list, torch.Tensor)) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return check_tolerance(name, value), None
    like = prob.y0
    try:
        if prob.layout is None:
            tol = torch.as_tensor(value, dtype=torch.float64, device=like.device).expand(prob.shape)
        else:
            parts = tuple(value)
            if len(parts) != len(prob.layout.shapes):
                raise ODEInputError(
                    f"{name} has {len(parts)} entries, but the state y0 is a tuple of {len(prob.layout.shapes)}"
                )
            tol = torch.cat([torch.as_tensor(v).expand(n) for v, n in zip(parts, prob.layout.numels)])
            tol = tol.to(device=like.device)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ODEInputError(f"{name}={value!r} does not match the state y0 ({error})") from None
    if tol.numel() == 0 or not bool((torch.isfinite(tol) & (tol >= 0)).all()):
        raise ODEInputError(f"{name} must be finite and >= 0 in every component, got {value!r}")
    return float(tol.min()), tol


def prepare(func: Func, y0: Any, t: Any) -> Problem:
    """Validate (func, y0, t) and return the flat problem."""
    if not callable(func):
        raise ODEInputError(f"func must be callable as func(t, y), got {type(func).__name__}")
    t, times = check_times(t)
    if isinstance(y0, list):
        y0 = tuple(y0)
    parts = y0 if isinstance(y0, tuple) else (y0,)
    if len(parts) == 0:
        raise ODEInputError("y0 must be a tensor or a non-empty tuple of tensors, got an empty tuple")
    for i, p in enumerate(parts):
        name = f"y0[{i}]" if isinstance(y0, tuple) else "y0"
        if not isinstance(p, torch.Tensor):
            raise ODEInputError(f"{name} must be a tensor, got {type(p).__name__}")
        if not (p.is_floating_point() or p.is_complex()):
            raise ODEInputError(f"{name} must have a floating or complex dtype, got {p.dtype}")
        if p.dtype != parts[0].dtype or p.device != parts[0].device:
            raise ODEInputError(
                f"all state tensors must share dtype and device: {name} is {p.dtype} on "
                f"{p.device}, y0[0] is {parts[0].dtype} on {parts[0].device}"
            )
    flat = torch.cat([p.reshape(-1) for p in parts]) if isinstance(y0, tuple) else y0
    if not bool(torch.isfinite(flat).all()):  # one check (one host sync) for the whole state
        i = next(i for i, p in enumerate(parts) if not bool(torch.isfinite(p).all()))
        raise ODEInputError(f"{f'y0[{i}]' if isinstance(y0, tuple) else 'y0'} contains NaN or Inf values")
    checked = _CheckedFunc(func, y0)
    if isinstance(y0, tuple):
        layout = _Layout([p.shape for p in y0])
        return Problem(_TupleFunc(checked, layout), checked, flat, times, t, layout, y0)
    return Problem(checked, checked, y0, times, t, None, y0)


_NARROW = (torch.float16, torch.bfloat16)


def _squares(x: torch.Tensor) -> torch.Tensor:
    """x^2 (torchdiffeq's |x|^2, the same to the bit), in float32 for half-precision states, whose squares
    overflow above 256."""
    x = x.abs() if x.is_complex() else x  # (|x|^2 of a complex state, as torchdiffeq's)
    return (x.float() if x.dtype in _NARROW else x).pow(2)


def _rms(x: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's RMS norm, in its arithmetic (the error ratio decides steps, so rounding matters)."""
    return _squares(x).mean().sqrt()


def segment_rms_max(x: torch.Tensor, segments: Sequence[tuple[int, int]] | None) -> torch.Tensor:
    """max over segments of RMS(x[segment]) as a 0-d tensor (RMS of all of x if segments is None):
    torchdiffeq's mixed norm, in its arithmetic. The squares are formed once for all of x, then each segment's
    mean (the same sums as one reduction per segment); equal segments that tile x (every momentum state) are
    averaged in one call, row by row."""
    if segments is None or len(segments) == 1:
        return _rms(x)
    squares = _squares(x)
    sizes = [b - a for a, b in segments]
    tiled = (
        segments[0][0] == 0
        and segments[-1][1] == x.numel()
        and all(a == b for (_, b), (a, _) in zip(segments, segments[1:]))
    )
    if tiled and min(sizes) > 0 and len(set(sizes)) == 1 and not torch.compiler.is_compiling():
        means = squares.view(len(segments), sizes[0]).mean(dim=1)
    else:
        means = torch.stack([squares[a:b].mean() for a, b in segments])
    return means.sqrt().max()


def time_tensor(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    """The times handed to func: a tensor of the state's (real) dtype on its device."""
    return torch.tensor(values, dtype=real_dtype(like.dtype), device=like.device)


def check_options(options: Any, name: str = "options") -> dict:
    """`options` as a dict ({} for None); anything else is an error naming the argument."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise ODEInputError(f"{name} must be a dict or None, got {type(options).__name__}: {options!r}")
    return options


def check_resolvable(method: str, rtol: float, atol: float, dtype: torch.dtype) -> None:
    """An adaptive method's tolerances must be within what the state's dtype resolves: with both rtol and atol
    below a tenth of its machine epsilon the error estimate is rounding noise, and the solve would either
    stall or stop anywhere (bfloat16 at the default tolerances returns y(1) = 0.94 for y' = -y)."""
    eps = torch.finfo(dtype).eps
    if rtol < eps / 10 and atol < eps / 10:
        raise ODEInputError(
            f"{method}: rtol={rtol:g} and atol={atol:g} are below what {dtype} resolves (machine epsilon {eps:.3g}): "
            f"use tolerances >= {eps:.1g}, a fixed-step method, or a wider dtype"
        )
