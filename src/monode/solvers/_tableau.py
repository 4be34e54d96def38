"""Explicit Runge-Kutta methods as data: the Butcher tableau every RK solver file declares."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge-Kutta method with `s` stages.

    Stage j is evaluated at `t + c[j] dt` on `y + dt * sum_i a[j][i] k_i` (a[j] has j entries);
    the step returns `y + dt * sum_j b[j] k_j`. Adaptive methods add `b_error` (weights of the
    embedded error estimate, b - b_hat), `c_mid` (the weights of y(t + dt/2) of their quartic dense
    output) and may reuse the last stage as the next step's first (`fsal`): for a first-same-as-last
    pair it is f(t + dt, y_next); for fehlberg2 and adaptive_heun it is torchdiffeq's reuse of the slope
    at the embedded solution. `last_is_solution` (derived): the last stage's input is the solution
    (first-same-as-last), so a step needs no extra sum for it. `rows` (derived): a[0], ..., a[s-1], b and
    b_error; `weights` (derived): the same in one tuple, row j starting at `offsets[j]` (b at s, b_error at
    s + 1), so that a step multiplies them all by dt at once; `read` (derived): the positions in `weights` a
    step reads (the nonzero ones, b's only when the solution is not the last stage's input).
    """

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_error: tuple[float, ...] | None = None
    c_mid: tuple[float, ...] | None = None
    fsal: bool = False
    last_is_solution: bool = dataclasses.field(init=False, repr=False, compare=False)
    rows: tuple[tuple[float, ...], ...] = dataclasses.field(init=False, repr=False, compare=False)
    weights: tuple[float, ...] = dataclasses.field(init=False, repr=False, compare=False)
    offsets: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)
    read: tuple[int, ...] = dataclasses.field(init=False, repr=False, compare=False)
    _hash: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.a) != s or any(len(row) != j for j, row in enumerate(self.a)) or len(self.b) != s:
            raise ValueError(f"inconsistent Butcher tableau with {s} stages")
        if self.b_error is not None and len(self.b_error) != s:
            raise ValueError("b_error must have one weight per stage")
        for j, row in enumerate(self.a):  # row sums must equal the nodes (internal consistency)
            if abs(sum(row) - self.c[j]) > 1e-12:
                raise ValueError(f"row {j} of a sums to {sum(row)}, but c[{j}] = {self.c[j]}")
        object.__setattr__(self, "last_is_solution", self.fsal and self.a[-1] == self.b[: len(self.a[-1])])
        rows = (*self.a, self.b, *([self.b_error] if self.b_error is not None else []))
        offsets = [sum(len(row) for row in rows[:j]) for j in range(len(rows))]
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "weights", tuple(w for row in rows for w in row))
        object.__setattr__(self, "offsets", tuple(offsets))
        b_row = range(offsets[s], offsets[s] + s) if self.last_is_solution else range(0)
        read = tuple(i for i, w in enumerate(self.weights) if w != 0.0 and i not in b_row)
        object.__setattr__(self, "read", read)
        key = (self.c, self.a, self.b, self.order, self.b_error, self.c_mid, self.fsal)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:  # once: the generated hash would re-hash every coefficient at each lookup
        return self._hash

    @property
    def stages(self) -> int:
        return len(self.c)
