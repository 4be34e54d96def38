"""The explicit Runge-Kutta step, written once: fixed-step and adaptive methods, eager and compiled.

Arithmetic is torchdiffeq's, operation for operation, so that values agree to the last bit where its
kernels allow and step control (which divides an error estimate that is a small difference of stages by
the tolerance) takes the same decisions, also in float32: a linear combination y + dt sum_j w_j k_j is
formed as the products k_j * (w_j dt) (coefficients rounded to the state's dtype first), added in the
order in which `torch.sum` over the stacked stages adds them, then added to y. Eagerly the products are
added one by one in that order (found by `_summation`), which needs no stacked copy of the stages; terms
with a zero weight are skipped. Without autograd a step's weights times dt are written into a spare buffer
of the tableau's (a pool: a solve nested in func, or in another thread, takes its own) whose 0-d views are
made once. Under torch.compile, or where that order is not known (it is probed on the
state's device), the products are stacked and summed by `torch.sum` itself.

`dt` is a Python float eagerly, or a 0-d tensor (under options['compile'], so a graph is not specialised
on its value, or when gradients with respect to t are taken); the same code serves both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Union

import torch

from ._tableau import ButcherTableau

Scalar = Union[float, torch.Tensor]
Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Tree = Union[int, tuple["Tree", "Tree"]]
"""An order of summation: a term's index, or the sum (left, right)."""
Buffer = tuple[torch.Tensor, list[Union[torch.Tensor, None]]]
"""A step's scratch: a tensor of the weights times dt, and its 0-d views at their positions in tab.weights."""


def axpy(base: torch.Tensor, k: torch.Tensor, a: Scalar) -> torch.Tensor:
    """base + a k as a new tensor (one fused op)."""
    if isinstance(a, torch.Tensor):
        return torch.addcmul(base, k, a)
    return torch.add(base, k, alpha=a)


def axpy_(out: torch.Tensor, k: torch.Tensor, a: Scalar) -> torch.Tensor:
    """out += a k, in place."""
    if isinstance(a, torch.Tensor):
        return out.addcmul_(k, a)
    return out.add_(k, alpha=a)


def _kept(data: float | Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A tensor cached across solves, made outside inference mode: one made inside it (a first solve under
    torch.inference_mode) could not be saved for backward, nor updated in place, by a later solve."""
    with torch.inference_mode(False):
        return torch.tensor(data, dtype=dtype, device=device)


@functools.lru_cache(maxsize=256)
def _weights(weights: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return _kept(weights, dtype, device)


@functools.lru_cache(maxsize=256)
def _nonzero(weights: tuple[float, ...]) -> tuple[int, ...]:
    return tuple(i for i, w in enumerate(weights) if w != 0.0)


@functools.lru_cache(maxsize=256)
def _constant(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return _kept(value, dtype, device)


def scalar(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    """A number `value` as a cached 0-d tensor of `like`'s dtype when that is float32 or float64 (eagerly, an op
    with a Python number first wraps it in a new tensor; the kernels convert it to that dtype either way, so
    the result is the same), else the number itself; a tensor `value` as it is."""
    if isinstance(value, torch.Tensor):
        return value
    if like.dtype in (torch.float32, torch.float64) and not torch.compiler.is_compiling():
        return _constant(value, like.dtype, like.device)
    return value


def _chain(trees: Sequence[Tree | None]) -> Tree | None:
    """((t0 + t1) + t2) + ..., absent trees left out."""
    out: Tree | None = None
    for tree in trees:
        out = tree if out is None else (out, tree) if tree is not None else out
    return out


def _interleaved(leaves: Sequence[Tree], ilp: int = 4) -> Tree | None:
    """ATen's row sum: `ilp` running sums over every ilp-th term, the remainder added to the first, then the
    running sums added in order."""
    full = len(leaves) // ilp * ilp
    partial = [_chain(leaves[k:full:ilp]) for k in range(ilp)]
    partial[0] = _chain([partial[0], *leaves[full:]])
    return _chain(partial)


def _candidates(n: int) -> list[Tree]:
    """Orders in which a CPU reduction may add n terms: sequential, ATen's scalar row sum, and its vectorised
    row sum with v lanes (rows of v terms summed lane-wise, the leftover terms, then the lanes)."""
    terms: list[Tree] = list(range(n))
    out = [_chain(terms), _interleaved(terms)]
    for lanes in (4, 8, 16, 32):
        rows = n // lanes
        if rows:
            per_lane = [_interleaved(terms[lane : rows * lanes : lanes]) for lane in range(lanes)]
            out.append(_chain([*terms[rows * lanes :], *per_lane]))
    return [tree for tree in out if tree is not None]


def _evaluate(tree: Tree, leaf: Callable[[int], torch.Tensor]) -> torch.Tensor:
    if isinstance(tree, int):
        return leaf(tree)
    return _evaluate(tree[0], leaf) + _evaluate(tree[1], leaf)


@functools.lru_cache(maxsize=64)
def _summation(n: int, dtype: torch.dtype, device: torch.device) -> Tree | None:
    """The order in which `torch.sum` adds n terms along a contiguous last dimension of `dtype` on `device`
    (it depends on the CPU's vector width), found by comparing candidate orders with torch.sum on random
    terms of spread magnitudes; None if none agrees to the last bit."""
    cpu = torch.device("cpu")  # (explicitly: not the default device, which a user may have set elsewhere)
    generator = torch.Generator(device=cpu).manual_seed(n)
    terms = torch.randn(4096, n, dtype=torch.float64, generator=generator, device=cpu)
    spread = torch.exp(3 * torch.randn(4096, n, dtype=torch.float64, generator=generator, device=cpu))
    terms = (terms * spread).to(dtype=dtype, device=device)
    reference = terms.sum(dim=-1)
    for tree in _candidates(n):
        if torch.equal(_evaluate(tree, lambda j: terms[:, j]), reference):
            return tree
    return None


def _postfix(tree: Tree | None, weights: tuple[float, ...]) -> list[int]:
    """`tree` without its terms of zero weight (adding an exact zero changes nothing), in postfix: a term's
    index, or -1 for "add the last two"."""
    if tree is None:
        return []
    if isinstance(tree, int):
        return [tree] if weights[tree] != 0.0 else []
    left, right = _postfix(tree[0], weights), _postfix(tree[1], weights)
    return left + right + [-1] if left and right else left or right


@functools.lru_cache(maxsize=256)
def _program(weights: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> tuple[int, ...] | None:
    """torch.sum's order of the nonzero terms of `weights` in postfix; None when that order is unknown."""
    tree = _summation(len(weights), dtype, device)
    return None if tree is None else tuple(_postfix(tree, weights))


def _scaled(size: int, read: tuple[int, ...], values: torch.Tensor) -> list[torch.Tensor | None]:
    """`values` (the weights at the positions `read`, times dt) as 0-d tensors at those positions of a list of
    `size`, None elsewhere."""
    out: list[torch.Tensor | None] = [None] * size
    for i, value in zip(read, values.unbind()):
        out[i] = value
    return out


def coefficients(weights: tuple[float, ...], dt: Scalar, like: torch.Tensor) -> list[torch.Tensor | None]:
    """w * dt (w rounded to the state's dtype first) as 0-d tensors, formed in one op, for the nonzero
    weights, None for the others: what a sum multiplies the stages by."""
    read = _nonzero(weights)
    used = tuple(weights[i] for i in read)
    if torch.compiler.is_compiling():  # a constant of the graph
        return _scaled(len(weights), read, torch.tensor(used, dtype=like.dtype, device=like.device) * dt)
    return _scaled(len(weights), read, _weights(used, like.dtype, like.device) * dt)


class _Plan:
    """What a step of one tableau needs for one dtype and device: the weights it reads as a tensor, the
    summation program of each of tab.rows (None: stacked), and spare buffers for those weights times dt."""

    def __init__(self, tab: ButcherTableau, weights: torch.Tensor, programs: tuple[tuple[int, ...] | None, ...]):
        self.tab, self.weights, self.programs = tab, weights, programs
        self._spare: list[Buffer] = []

    def scaled(self, dt: Scalar) -> tuple[list[torch.Tensor | None], Buffer | None]:
        """(the weights times dt as 0-d tensors at their positions in tab.weights, None for the unread ones;
        the buffer they live in, to `release` after the step, or None). Without autograd and for a float dt
        they are views of a buffer filled in one op; otherwise new tensors (autograd saves them)."""
        tab = self.tab
        if torch.is_grad_enabled() or isinstance(dt, torch.Tensor) or torch.compiler.is_compiling():
            return _scaled(len(tab.weights), tab.read, self.weights * dt), None
        try:
            buffer = self._spare.pop()  # (atomic: a solve in another thread, or nested in func, takes another)
        except IndexError:
            with torch.inference_mode(False):  # (as `_kept`)
                values = torch.empty_like(self.weights)
                buffer = (values, _scaled(len(tab.weights), tab.read, values))
        torch.mul(self.weights, dt, out=buffer[0])
        return buffer[1], buffer

    def release(self, buffer: Buffer | None) -> None:
        if buffer is not None:
            self._spare.append(buffer)


@functools.lru_cache(maxsize=64)
def _plan(tab: ButcherTableau, dtype: torch.dtype, device: torch.device) -> _Plan:
    weights = _kept([tab.weights[i] for i in tab.read], dtype, device)
    return _Plan(tab, weights, tuple(_program(row, dtype, device) for row in tab.rows))


def _step_plan(tab: ButcherTableau, like: torch.Tensor) -> _Plan:
    """`_plan` for a state like `like`; under torch.compile the weights are a constant of the graph and every
    sum is stacked."""
    if torch.compiler.is_compiling():
        weights = torch.tensor([tab.weights[i] for i in tab.read], dtype=like.dtype, device=like.device)
        return _Plan(tab, weights, (None,) * len(tab.rows))
    return _plan(tab, like.dtype, like.device)


def _sum(
    ks: Sequence[torch.Tensor],
    n: int,
    program: tuple[int, ...] | None,
    scaled: Sequence[torch.Tensor | None],
    offset: int,
) -> torch.Tensor:
    """sum_j ks[j] scaled[offset + j] over the first n stages, added in `program`'s order (torch.sum's) or, when
    that is unknown, as torch.sum over the stacked products. A new tensor."""
    like = ks[0]
    if program is None:
        zero = like.new_zeros(())
        factors = [zero if c is None else c for c in scaled[offset : offset + n]]
        return (torch.stack(list(ks[:n]), dim=-1) * torch.stack(factors)).sum(dim=-1)
    if not program:
        return torch.zeros_like(like)
    stack: list[torch.Tensor] = []
    for j in program:
        if j < 0:
            last = stack.pop()
            stack[-1].add_(last)  # every entry is a product made here (autograd saves none of them)
        else:
            stack.append(ks[j] * scaled[offset + j])  # type: ignore[operator]
    return stack[0]


def weighted_sum(
    ks: Sequence[torch.Tensor], weights: tuple[float, ...], scaled: Sequence[torch.Tensor | None], offset: int = 0
) -> torch.Tensor:
    """sum_j ks[j] scaled[offset + j] over the first len(weights) stages, where scaled[offset:] are `weights`
    times dt (`coefficients`; None for a zero weight): torch.sum of the products, as torchdiffeq forms it. A
    new tensor."""
    like = ks[0]
    program = None if torch.compiler.is_compiling() else _program(weights, like.dtype, like.device)
    return _sum(ks, len(weights), program, scaled, offset)


def combine(
    base: torch.Tensor,
    ks: Sequence[torch.Tensor],
    weights: tuple[float, ...],
    scaled: Sequence[torch.Tensor | None],
    offset: int = 0,
) -> torch.Tensor:
    """base + sum_j ks[j] scaled[offset + j] (torchdiffeq's `y0 + torch.sum(k * (w * dt), dim=-1)`)."""
    return weighted_sum(ks, weights, scaled, offset).add_(base)


def rk_step(
    func: Field,
    tab: ButcherTableau,
    times: Sequence[torch.Tensor],
    dt: Scalar,
    y: torch.Tensor,
    f0: torch.Tensor,
    error: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
    """One explicit RK step from (times[0], y) with f0 = func(times[0], y): (y1, the stages [f0, k1, ...], and
    with `error` the embedded error estimate dt sum_j b_error_j k_j, formed without autograd, else None)."""
    plan = _step_plan(tab, y)
    scaled, buffer = plan.scaled(dt)
    try:
        programs, offsets = plan.programs, tab.offsets
        ks = [f0]
        y1 = y
        for j in range(1, tab.stages):
            y1 = _sum(ks, j, programs[j], scaled, offsets[j]).add_(y)
            ks.append(func(times[j], y1))
        s = tab.stages
        if not tab.last_is_solution:
            y1 = _sum(ks, s, programs[s], scaled, offsets[s]).add_(y)
        if not error:
            return y1, ks, None
        with torch.no_grad():
            return y1, ks, _sum(ks, s, programs[s + 1], scaled, offsets[s + 1])
    finally:
        plan.release(buffer)
