"""Every Butcher tableau has its declared order, checked by the rooted-tree order conditions (Butcher 1963):
sum_j b_j Phi_j(tau) = theta^|tau| / gamma(tau) for every rooted tree tau with up to p nodes (theta = 1 for a
step's solution, 1/2 for the dense output's mid-point). Exact algebra on the coefficients, so a mistyped digit
fails here even where an adaptive solve would hide it behind its step control (tsit5 has no torchdiffeq peer)."""

from __future__ import annotations

import functools
import itertools
import math

import pytest
import torch

from monode import METHODS

TABLEAUS = {name: cls.tableau for name, cls in METHODS.items() if hasattr(cls, "tableau")}
F64 = torch.float64


def _partitions(n: int, largest: int) -> list[tuple[int, ...]]:
    """The partitions of n into parts of at most `largest`, largest part first."""
    if n == 0:
        return [()]
    return [(k, *rest) for k in range(min(n, largest), 0, -1) for rest in _partitions(n - k, k)]


@functools.cache
def _trees(nodes: int) -> tuple[tuple, ...]:
    """The rooted trees with `nodes` nodes, each the sorted tuple of its root's subtrees."""
    if nodes == 1:
        return ((),)
    found = {
        tuple(sorted(children))
        for parts in _partitions(nodes - 1, nodes - 1)
        for children in itertools.product(*(_trees(p) for p in parts))
    }
    return tuple(sorted(found))


def _size(tree: tuple) -> int:
    return 1 + sum(_size(child) for child in tree)


def _density(tree: tuple) -> int:
    """gamma(tau) = |tau| times the densities of the root's subtrees."""
    return _size(tree) * math.prod(_density(child) for child in tree)


def _stage_weights(a: torch.Tensor, tree: tuple) -> torch.Tensor:
    """Phi(tau) per stage: the product over the root's subtrees sigma of a @ Phi(sigma)."""
    out = torch.ones(a.shape[0], dtype=F64)
    for child in tree:
        out = out * (a @ _stage_weights(a, child))
    return out


def _order(a: torch.Tensor, weights: tuple[float, ...], theta: float = 1.0, most: int = 9) -> int:
    """The largest p <= most such that `weights` satisfy every order condition with up to p nodes."""
    b = torch.tensor(weights, dtype=F64)
    for p in range(1, most + 1):
        for tree in _trees(p):
            target = theta**p / _density(tree)
            if abs(float(b @ _stage_weights(a, tree)) - target) > 1e-12 * max(1.0, abs(target)):
                return p - 1
    return most


def _matrix(name: str) -> torch.Tensor:
    tab = TABLEAUS[name]
    a = torch.zeros(tab.stages, tab.stages, dtype=F64)
    for j, row in enumerate(tab.a):
        a[j, : len(row)] = torch.tensor(row, dtype=F64)
    return a


def test_the_trees_are_the_rooted_trees() -> None:
    assert [len(_trees(n)) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]  # OEIS A000081
    assert sorted(_density(t) for t in _trees(3)) == [3, 6]  # the bushy tree 1/3, the tall one 1/6


@pytest.mark.parametrize("name", sorted(TABLEAUS))
def test_the_solution_has_exactly_the_declared_order(name: str) -> None:
    tab = TABLEAUS[name]
    assert _order(_matrix(name), tab.b) == tab.order


@pytest.mark.parametrize("name", sorted(n for n, tab in TABLEAUS.items() if tab.b_error is not None))
def test_the_embedded_estimate_is_one_order_lower(name: str) -> None:
    """b - b_error is the embedded method; the step control's exponent 1/order assumes it has order - 1."""
    tab = TABLEAUS[name]
    assert tab.b_error is not None
    embedded = tuple(b - e for b, e in zip(tab.b, tab.b_error))
    assert _order(_matrix(name), embedded) == tab.order - 1


@pytest.mark.parametrize("name", sorted(n for n, tab in TABLEAUS.items() if tab.c_mid is not None))
def test_the_dense_output_mid_point_has_its_order(name: str) -> None:
    """y(t + dt/2) ~ y + dt sum_j c_mid_j k_j. Methods of order >= 5 need a mid-point of order >= 4 for their
    quartic dense output to be fourth order (dopri5 and tsit5: 4, dopri8: 5); torchdiffeq's low-order methods
    (bosh3, fehlberg2, adaptive_heun) carry a first-order one, which monode keeps for parity."""
    tab = TABLEAUS[name]
    assert tab.c_mid is not None
    assert _order(_matrix(name), tab.c_mid, theta=0.5) >= (4 if tab.order >= 5 else 1)


def test_the_conditions_catch_one_wrong_digit() -> None:
    """tsit5's b with one coefficient off in its eighth digit is no longer fifth order."""
    tab = TABLEAUS["tsit5"]
    wrong = (tab.b[0] + 1e-8, *tab.b[1:])
    assert _order(_matrix("tsit5"), wrong) < tab.order
