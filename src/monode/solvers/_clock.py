"""The times a solve hands to `func` and uses for its outputs, as tensors.

The solver loops keep time as Python floats (step control needs them on the host). A `Clock` turns them
into the tensors `func` receives. When the user's `t` requires grad, those tensors are built from it, so
that gradients with respect to t flow through the field's time inputs and the output interpolation (as
they do through torchdiffeq's tensor arithmetic): an interior time s is `t[0] + (s - t[0])` (gradient 1
with respect to t[0]: the grid moves with the start), an output time is `t[i]` itself.

`options['dtype']` (torchdiffeq's time dtype, default float64; as there, promoted with the state's dtype, so a
float64 state keeps float64 time): time bookkeeping in float32 rounds every time, step and step-size factor to
float32, as torchdiffeq's float32 time tensors do.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import torch

from ._errors import ODEInputError

_FLOAT32 = struct.Struct("f")


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of time for a state of `dtype`: its own, or for a complex state its real part's (torchdiffeq's
    `y.abs().dtype`)."""
    return _REAL.get(dtype, dtype)


_REAL = {torch.complex64: torch.float32, torch.complex128: torch.float64, torch.complex32: torch.float16}


def to_float32(value: float) -> float:
    """`value` rounded to the nearest float32."""
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


def nudge(value: float, toward: float, dtype: torch.dtype) -> float:
    """The number next to `value` (rounded to `dtype`) in the direction of `toward`, in `dtype`'s precision:
    torchdiffeq's `Perturb` (a field is evaluated one ulp inside a step, so a jump at a grid time is seen
    from the step's side)."""
    if dtype == torch.float64:
        return math.nextafter(value, toward)
    if dtype == torch.float32:
        v = to_float32(value)
        bits = struct.unpack("I", struct.pack("f", v))[0]
        up = (toward > v) == (v >= 0)
        if v == 0.0:
            return math.copysign(struct.unpack("f", struct.pack("I", 1))[0], toward - v)
        return struct.unpack("f", struct.pack("I", bits + (1 if up else -1)))[0]
    here, there = torch.tensor(value, dtype=dtype), torch.tensor(toward, dtype=dtype)
    return float(torch.nextafter(here, there))


def check_time_dtype(method: str, value: object) -> bool:
    """options['dtype'] validated; True when it asks for float32 time (a float32 state then keeps it)."""
    if value not in (torch.float64, torch.float32):
        raise ODEInputError(
            f"{method}: options['dtype'] (the dtype of time) must be torch.float64 or torch.float32, got {value!r}"
        )
    return value == torch.float32


class Clock:
    """Time tensors of one solve: plain (the state's dtype, no graph) or differentiable in the user's t."""

    def __init__(self, t: torch.Tensor | None = None) -> None:
        self.t = t if t is not None and t.requires_grad else None
        self.start = float(self.t.detach()[0]) if self.t is not None else 0.0

    @property
    def differentiable(self) -> bool:
        return self.t is not None

    def values(self, values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
        """The times `values` as one tensor of the state's dtype."""
        dtype = real_dtype(like.dtype)
        if self.t is None:
            return torch.tensor(values, dtype=dtype, device=like.device)
        offsets = torch.tensor([v - self.start for v in values], dtype=dtype, device=like.device)
        return self.t[0].to(dtype) + offsets

    def at(self, t: float, like: torch.Tensor) -> torch.Tensor:
        """The 0-d time tensor of t."""
        return self.values([t], like)[0]

    def output(self, i: int, t: float, like: torch.Tensor) -> torch.Tensor:
        """Output time i (float t) as a 0-d tensor: t[i] itself when differentiable."""
        if self.t is None:
            return torch.tensor(t, dtype=real_dtype(like.dtype), device=like.device)
        return self.t[i].to(real_dtype(like.dtype))
