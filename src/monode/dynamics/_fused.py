"""Fused CPU ops for the elementwise tails of the vector fields (`_fused.cpp`).

A field call is its network plus a tail of elementwise terms. On a CPU each ATen op costs a few
microseconds of dispatch and autograd bookkeeping however small the tensor: AdamNODE's tail
(softplus, rsqrt, five products, eight backward nodes) costs about as much as its network at
Walker2D size. Here each tail is one differentiable op, forward and backward each one pass.

The C++ file is compiled at first use with `torch.utils.cpp_extension` (about 30 s, once; needs a
C++ compiler and ninja) into `$MONODE_CACHE_DIR` (default `~/.cache/monode`) as a small Python
module: its functions are called directly (pybind11), not through `torch.ops`, whose boxed dispatch
would cost more than the ATen ops an op replaces. Autograd still records them: each forward op
builds one plain backward `Node`, as ATen's generated ops do. On x86-64 Linux the loops call glibc's vector exp, log1p and tanh.
Every entry point returns None when the op does not apply, and the caller runs its ATen ops:
- off the CPU, for dtypes other than float32 and float64, or for gates the op does not know
  (operands must match f's shape and dtype; non-contiguous ones are copied);
- while torch.compile traces (inductor fuses the ATen ops itself);
- with `MONODE_FUSED=0` (or `ENABLED = False`), or when the build failed (a warning, once).
"""
from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ._derivatives import hardtanh_bounds

__all__ = ["ADAM_ACTIVATIONS", "available", "gate_code", "adam_tail", "adam_backward", "momentum_tail",
           "momentum_backward"]

_SOURCE = Path(__file__).with_name("_fused.cpp")
_DTYPES = (torch.float32, torch.float64)
ADAM_ACTIVATIONS = {None: 0, F.softplus: 1, torch.sigmoid: 2}
"""AdamNODE v-activations the op knows, with the code its C++ side switches on."""

_ops = None
_tried = False
ENABLED = os.environ.get("MONODE_FUSED", "1").strip().lower() not in ("0", "false", "no", "off")
"""False (`MONODE_FUSED=0` at import, or set here) keeps every field on its ATen ops."""


def _flag_sets() -> list[list[str]]:
    """C++ flags to try in order: the vector ISA and glibc's vector math first, then plain -O3."""
    base = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]  # OpenMP: at::parallel_for, simd loops
    sets = []
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
        isa = ["-mavx2", "-mfma"] if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else []
        sets.append(base + isa + ["-DMONODE_LIBMVEC"])
    sets.append(base)
    return sets


def _cache_dir() -> Path:
    root = os.environ.get("MONODE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "monode")
    return Path(root)


def _build(flags: list[str]):
    """Compile (or reuse the cached build of) `_fused.cpp` with `flags` and import it."""
    from torch.utils import cpp_extension

    key = hashlib.sha256(_SOURCE.read_bytes() + "\0".join([torch.__version__, *flags]).encode()).hexdigest()[:12]
    build_dir = _cache_dir() / f"fused-{key}"
    build_dir.mkdir(parents=True, exist_ok=True)
    if not any(build_dir.glob("*.so")):
        print(f"monode: building the fused CPU ops in {build_dir} (once, about 30 s)", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cpp_extension.load(f"monode_fused_{key}", sources=[str(_SOURCE)], extra_cflags=flags,
                                  extra_ldflags=["-fopenmp"], build_directory=str(build_dir), verbose=False)


def available() -> bool:
    """Whether the fused ops are loaded (building them on the first call); False if disabled or the build failed."""
    global _ops, _tried
    if _ops is None and not _tried and ENABLED:
        _tried = True
        errors = []
        for flags in _flag_sets():
            try:
                _ops = _build(flags)
                break
            except Exception as exc:  # a compiler, ninja or linker failure: try the next flags, then ATen
                errors.append(str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__)
        if _ops is None:
            warnings.warn(f"monode: the fused CPU ops could not be built ({errors[-1]}); the fields use ATen ops "
                          f"instead. Set MONODE_FUSED=0 to skip the build.", RuntimeWarning, stacklevel=3)
    return _ops is not None


def _applies(first: torch.Tensor) -> bool:
    """Whether the ops take tensors like `first` (the C++ side checks that the others match it)."""
    if not ENABLED or not first.is_cpu or first.dtype not in _DTYPES or torch.compiler.is_compiling():
        return False
    return _ops is not None or available()


def gate_code(fn: Optional[Callable]) -> Optional[tuple[int, float, float]]:
    """(code, lo, hi) of a momentum gate for `momentum_tail` (identity, tanh, sigmoid, hardtanh(lo, hi)), or None."""
    if fn is None:
        return 0, 0.0, 0.0
    if fn is torch.tanh:
        return 1, 0.0, 0.0
    if fn is torch.sigmoid:
        return 2, 0.0, 0.0
    bounds = hardtanh_bounds(fn)
    return None if bounds is None else (3, *bounds)


def adam_tail(f: torch.Tensor, h: torch.Tensor, m: torch.Tensor, v: torch.Tensor, beta1: torch.Tensor,
              neg_beta2: torch.Tensor, neg_xi: Optional[torch.Tensor], kind: int, eps_squared: float
              ) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """AdamNODE's (dh, dm, dv) as one differentiable op (sigma = identity), or None (use ATen ops)."""
    if not _applies(f):
        return None
    return _ops.adam_tail(f, h, m, v, beta1, neg_beta2, neg_xi, kind, eps_squared)


def adam_backward(f: torch.Tensor, h: torch.Tensor, m: torch.Tensor, v: torch.Tensor, c_h: torch.Tensor,
                  c_m: torch.Tensor, c_v: torch.Tensor, beta1: torch.Tensor, neg_beta2: torch.Tensor,
                  neg_xi: Optional[torch.Tensor], kind: int, eps_squared: float) -> Optional[tuple]:
    """AdamNODE's VJP for cotangents (c_h, c_m, c_v), or None (use ATen ops): (grad_f, grad_m, grad_v, then the
    gradients of beta1, -beta2, -xi: <c_m, f - m>, <c_v, v - f^2>, <c_m, h>, each None where that coefficient is
    absent or does not require grad). grad_f is what the network's VJP takes."""
    if not _applies(f):
        return None
    return _ops.adam_backward(f, h, m, v, c_h, c_m, c_v, beta1, neg_beta2, neg_xi, kind, eps_squared)


def momentum_tail(f: torch.Tensor, x: torch.Tensor, p: torch.Tensor, damp: Optional[torch.Tensor],
                  nxi: Optional[torch.Tensor], hs: float, r: float, dr: float, sign: int,
                  gate: tuple[int, float, float], f_gate: tuple[int, float, float]
                  ) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(sigma2(u), sign sigma3(f) + damp u + nxi h) with h = hs x, u = r p + dr h (damp None: -1), as one
    differentiable op, or None (use ATen ops). `gate`, `f_gate`: `gate_code`s of sigma2, sigma3."""
    if not _applies(f):
        return None
    return _ops.momentum_tail(f, x, p, damp, nxi, hs, r, dr, sign, *gate, *f_gate)


def momentum_backward(f: torch.Tensor, x: torch.Tensor, p: torch.Tensor, damp: Optional[torch.Tensor],
                      nxi: Optional[torch.Tensor], c_1: torch.Tensor, c_2: torch.Tensor, hs: float, r: float,
                      dr: float, sign: int, gate: tuple[int, float, float], f_gate: tuple[int, float, float]
                      ) -> Optional[tuple[torch.Tensor, ...]]:
    """`momentum_tail`'s VJP for cotangents (c_1, c_2), or None (use ATen ops): (grad_f, grad_x, grad_p, then the
    gradients of damp and nxi: <c_2, u>, hs <c_2, x>, each None where absent or not requiring grad)."""
    if not _applies(f):
        return None
    return _ops.momentum_backward(f, x, p, damp, nxi, c_1, c_2, hs, r, dr, sign, *gate, *f_gate)
