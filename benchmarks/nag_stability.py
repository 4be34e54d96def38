"""Absolute-stability regions of the NAG solver (several momenta) against forward Euler.

For x' = lambda x and w = h lambda the NAG step has characteristic equation
z^2 = (1 + (1 - mu) w) ((1 + mu) z - mu); w is in the region when both roots satisfy |z| <= 1.
Prints, per momentum, the region's area, its real-axis interval and the error constant, and writes
the plot to docs/nag_stability.png (the basis of the default mu = 1/2, see monode/solvers/nag.py).

    python benchmarks/nag_stability.py [--out docs/nag_stability]   (writes .svg and .png)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _timing import print_table


def spectral_radius(w: np.ndarray, mu: float) -> np.ndarray:
    a = 1 + (1 - mu) * w
    b, c = -a * (1 + mu), a * mu
    disc = np.sqrt(b * b - 4 * c + 0j)
    return np.maximum(np.abs((-b + disc) / 2), np.abs((-b - disc) / 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "nag_stability")
    args = parser.parse_args()
    xs, ys = np.linspace(-7, 1, 801), np.linspace(-4, 4, 801)
    grid = xs[None, :] + 1j * ys[:, None]
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    momenta = [0.0, 0.25, 0.5, 0.7]
    rows = []
    for mu in momenta:
        stable = spectral_radius(grid, mu) <= 1 + 1e-9
        real = xs[stable[len(ys) // 2]]
        rows.append(
            [
                mu if mu else "0 (Euler)",
                float(stable.sum() * cell),
                float(real.min()),
                -(2 + 2 * mu) / ((1 + 2 * mu) * (1 - mu)),
                (1 - mu + 2 * mu * mu) / (2 * (1 - mu)),
            ]
        )
    print_table(["momentum", "region area", "real-axis min (grid)", "real-axis min (formula)", "error constant"], rows)

    from monode.figures import figure, legend_outside, save

    fig, ax = figure(width=6.5, height=5.0)
    for mu, color in zip(momenta, ["black", "tab:blue", "tab:red", "tab:green"]):
        label = "Euler (mu=0)" if mu == 0 else f"NAG mu={mu}" + (" (default)" if mu == 0.5 else "")
        ax.contour(xs, ys, spectral_radius(grid, mu), levels=[1.0], colors=color)
        ax.plot([], [], color=color, label=label)
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("Re(h lambda)")
    ax.set_ylabel("Im(h lambda)")
    ax.set_title("Absolute stability regions (inside each curve)")
    ax.set_aspect("equal")
    legend_outside(ax)
    paths = save(fig, args.out.with_suffix("") if args.out.suffix else args.out)
    print("wrote", ", ".join(map(str, paths)))


if __name__ == "__main__":
    main()
