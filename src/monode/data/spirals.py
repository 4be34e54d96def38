"""Noisy 2-D spirals observed at irregular times (the toy data of the latent ODE papers), generated locally."""

from __future__ import annotations

import math

import torch

__all__ = ["make_spirals"]


def make_spirals(
    n: int = 1000,
    *,
    n_grid: int = 100,
    n_observed: int = 40,
    t_end: float = 1.0,
    turns: float = 1.5,
    radius: tuple[float, float] = (0.5, 1.0),
    growth: float = 1.0,
    noise_std: float = 0.1,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """`n` Archimedean spirals, half clockwise, each observed at its own random times.

    Spiral i at time t in [0, t_end], with s = t / t_end:

        r(s) = r0_i + growth * s,   theta(s) = phi_i + d_i * 2 pi * turns * s,
        x(t) = r(s) (cos theta(s), sin theta(s)) + N(0, noise_std^2 I)

    with r0_i ~ U(radius), phi_i ~ U[0, 2 pi), direction d_i = +1 (counter-clockwise) or -1
    (clockwise) with probability 1/2. Each spiral is observed at `n_observed` distinct times drawn
    without replacement from the regular grid of `n_grid` points over [0, t_end], so times are
    irregular and differ per spiral while a batch's union of times stays at most `n_grid` points.

    Returns (all from one seeded generator): times float32 [n, n_observed] (increasing), values
    float32 [n, n_observed, 2], mask float32 [n, n_observed, 2] (all ones: every coordinate is
    observed), labels int64 [n] (1 = clockwise).
    """
    if n < 1 or n_grid < 2 or not 1 <= n_observed <= n_grid:
        raise ValueError(
            f"make_spirals needs n >= 1, n_grid >= 2 and 1 <= n_observed <= n_grid, got n={n}, "
            f"n_grid={n_grid}, n_observed={n_observed}"
        )
    if not (t_end > 0 and noise_std >= 0 and radius[0] <= radius[1]):
        raise ValueError(
            f"make_spirals needs t_end > 0, noise_std >= 0 and radius=(lo, hi) with lo <= hi, got "
            f"t_end={t_end}, noise_std={noise_std}, radius={radius}"
        )
    g = torch.Generator().manual_seed(seed)
    grid_index = torch.rand(n, n_grid, generator=g).argsort(1)[:, :n_observed].sort(1).values
    s = grid_index.double() / (n_grid - 1)
    r0 = radius[0] + (radius[1] - radius[0]) * torch.rand(n, 1, generator=g, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, 1, generator=g, dtype=torch.float64)
    clockwise = torch.rand(n, generator=g) < 0.5
    direction = 1.0 - 2.0 * clockwise.double().unsqueeze(1)
    r = r0 + growth * s
    theta = phase + direction * 2 * math.pi * turns * s
    values = torch.stack([r * theta.cos(), r * theta.sin()], -1)
    values = values + noise_std * torch.randn(values.shape, generator=g, dtype=torch.float64)
    return {
        "times": (s * t_end).float(),
        "values": values.float(),
        "mask": torch.ones(n, n_observed, 2),
        "labels": clockwise.long(),
    }
