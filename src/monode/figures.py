"""Paper-grade figures: every plot is saved as SVG (vector) beside a 200-dpi PNG, with its legend outside the axes.

    fig, ax = figure()
    ax.plot(...)
    save(fig, out / "training")          # training.svg and training.png

`training_curves` is the figure every training run writes (loss, the task's metric and the forward/backward
NFE per epoch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # matplotlib loads when a figure is made, not when a task module is imported (~1 s)
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["DPI", "FORMATS", "figure", "legend_outside", "save", "training_curves"]

DPI = 200
FORMATS = ("svg", "png")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(rows: int = 1, cols: int = 1, width: float = 6.4, height: float = 4.0) -> tuple[Figure, Any]:
    """A figure of rows x cols axes of the given size (inches) each; the axes array squeezed as pyplot does."""
    return _pyplot().subplots(rows, cols, figsize=(width * cols, height * rows))


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """The legend to the right of the axes, so it never covers data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def save(fig: Figure, stem: Path) -> list[Path]:
    """Write `stem`.svg and `stem`.png (200 dpi), tight around the legends; close the figure."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(f"{stem.name}.{fmt}") for fmt in FORMATS]
    for path in paths:
        fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Date": None} if path.suffix == ".svg" else None)
    _pyplot().close(fig)
    return paths


def training_curves(rows: Sequence[Mapping[str, Any]], metric: str, stem: Path, title: str) -> list[Path]:
    """Loss (train and eval), the metric (eval, else train) and forward/backward NFE per batch against epoch."""
    fig, axes = figure(3, 1, width=6.4, height=2.3)
    epochs = [int(r["epoch"]) for r in rows]

    def curve(ax: Axes, key: str, label: str) -> None:
        points = [(e, float(r[key])) for e, r in zip(epochs, rows) if key in r and math.isfinite(float(r[key]))]
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=label)

    curve(axes[0], "train_loss", "train")
    curve(axes[0], "eval_loss", "eval")
    axes[0].set_ylabel("loss")
    curve(axes[1], f"eval_{metric}", "eval")
    if not any(f"eval_{metric}" in r for r in rows):
        curve(axes[1], f"train_{metric}", "train")
    axes[1].set_ylabel(metric)
    curve(axes[2], "train_forward_nfe", "forward")
    curve(axes[2], "train_backward_nfe", "backward")
    curve(axes[2], "eval_forward_nfe", "eval forward")
    axes[2].set_ylabel("NFE per batch")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        legend_outside(ax, fontsize=8)
    axes[-1].set_xlabel("epoch")
    axes[0].set_title(title)
    fig.tight_layout()
    return save(fig, stem)
