"""2-D toy densities for normalising flows, generated locally and seeded (FFJORD's toy benchmarks).

    x = sample_toy2d("8gaussians", 1000, seed=0)     # [1000, 2], reproducible
    TOY2D["pinwheel"](500, torch.Generator().manual_seed(1))

Every sampler draws all its randomness from the `torch.Generator` it is given and puts its mass
roughly inside [-4, 4]^2 (the plots' window), in the default float dtype:

    8gaussians    equal mixture of N(c_k, 0.35^2 I), c_k on the circle of radius 2 sqrt(2) at angles k pi/4
    2moons        two interleaved half circles of radius 1 (sklearn's make_moons), centred, scaled by 2,
                  then N(0, 0.2^2 I) noise
    checkerboard  uniform on the 8 dark squares of a 4 x 4 board of side-2 squares covering [-4, 4]^2
    pinwheel      5 arms: radius r = 1 + 0.3 e1, point (r, 0.1 e2) rotated by 2 pi k / 5 + 0.25 exp(r), scaled by 2
    rings         4 circles of radius 0.75, 1.5, 2.25, 3 (ring chosen with probability ~ radius, so the mass
                  is uniform along the arcs), radial N(0, 0.08^2) noise
    2spirals      two interleaved Archimedean spirals r = theta / 3, theta in [0, 3 pi] (density ~ sqrt),
                  N(0, 0.1^2 I) noise
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["TOY2D", "sample_toy2d"]

Sampler = Callable[[int, torch.Generator], Tensor]


def _on_circle(angle: Tensor, radius: Tensor | float) -> Tensor:
    return torch.stack([torch.cos(angle), torch.sin(angle)], 1) * (
        radius if isinstance(radius, float) else radius.unsqueeze(1)
    )


def eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    k = torch.randint(0, 8, (n,), generator=g)
    return _on_circle(k * (math.pi / 4), 2 * math.sqrt(2)) + 0.35 * torch.randn(n, 2, generator=g)


def two_moons(n: int, g: torch.Generator) -> Tensor:
    theta = math.pi * torch.rand(n, generator=g)
    upper = torch.rand(n, generator=g) < 0.5
    moon = torch.where(
        upper.unsqueeze(1), _on_circle(theta, 1.0), torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], 1)
    )
    return 2 * (moon - torch.tensor([0.5, 0.25])) + 0.2 * torch.randn(n, 2, generator=g)


def checkerboard(n: int, g: torch.Generator) -> Tensor:
    col = torch.randint(0, 4, (n,), generator=g)
    row = 2 * torch.randint(0, 2, (n,), generator=g) + col % 2  # dark squares: row + col even
    cell = torch.stack([col, row], 1).to(torch.get_default_dtype())
    return 2 * (cell + torch.rand(n, 2, generator=g)) - 4


def pinwheel(
    n: int, g: torch.Generator, arms: int = 5, radial_std: float = 0.3, tangential_std: float = 0.1, rate: float = 0.25
) -> Tensor:
    r = 1 + radial_std * torch.randn(n, generator=g)
    tangential = tangential_std * torch.randn(n, generator=g)
    angle = 2 * math.pi * torch.randint(0, arms, (n,), generator=g) / arms + rate * torch.exp(r)
    c, s = torch.cos(angle), torch.sin(angle)
    return 2 * torch.stack([c * r - s * tangential, s * r + c * tangential], 1)


def rings(n: int, g: torch.Generator) -> Tensor:
    radii = torch.tensor([0.75, 1.5, 2.25, 3.0])
    ring = torch.multinomial(radii / radii.sum(), n, replacement=True, generator=g)
    radius = radii[ring] + 0.08 * torch.randn(n, generator=g)
    return _on_circle(2 * math.pi * torch.rand(n, generator=g), radius)


def two_spirals(n: int, g: torch.Generator) -> Tensor:
    theta = 3 * math.pi * torch.sqrt(torch.rand(n, generator=g))
    sign = 2 * (torch.rand(n, generator=g) < 0.5).to(theta.dtype) - 1  # the second spiral is the first rotated by pi
    return sign.unsqueeze(1) * _on_circle(theta, theta / 3) + 0.1 * torch.randn(n, 2, generator=g)


TOY2D: dict[str, Sampler] = {
    "8gaussians": eight_gaussians,
    "2moons": two_moons,
    "checkerboard": checkerboard,
    "pinwheel": pinwheel,
    "rings": rings,
    "2spirals": two_spirals,
}


def sample_toy2d(name: str, n: int, *, seed: int = 0, generator: torch.Generator | None = None) -> Tensor:
    """n samples [n, 2] of toy density `name` (a key of TOY2D), from `generator` or else a fresh one seeded `seed`."""
    if name not in TOY2D:
        raise ValueError(f"unknown 2-D toy dataset {name!r}; choose one of {sorted(TOY2D)}")
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"the number of samples n must be an int >= 1, got {n!r}")
    g = torch.Generator().manual_seed(seed) if generator is None else generator
    return TOY2D[name](n, g).to(torch.get_default_dtype())
