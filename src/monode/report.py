"""Comparison reports: one metrics.csv, a markdown table and figures against epoch for several models.

With several seeds per model the table gives mean +- standard deviation over seeds and the figures the
mean with a band from the lowest to the highest seed.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PLOTS = {  # file stem -> (column, y label)
    "nfe_forward": ("train_forward_nfe", "forward NFE per batch"),
    "nfe_backward": ("train_backward_nfe", "backward NFE per batch"),
    "loss": ("train_loss", "training loss"),
}

Runs = Sequence[Sequence[Mapping[str, Any]]]  # one list of epoch rows per seed


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def _one_run(rows: Sequence[Mapping[str, Any]], metric: str, higher_is_better: bool) -> dict[str, float]:
    evals = _column(rows, f"eval_{metric}")
    losses = _column(rows, "train_loss")
    return {
        f"final {metric}": evals[-1] if evals else float("nan"),
        f"best {metric}": ((max if higher_is_better else min)(evals)) if evals else float("nan"),
        "fwd NFE": _mean(_column(rows, "train_forward_nfe")),
        "bwd NFE": _mean(_column(rows, "train_backward_nfe")),
        "eval fwd NFE": _mean(_column(rows, "eval_forward_nfe")),
        "s/epoch": _mean(_column(rows, "seconds")),
        "final train loss": losses[-1] if losses else float("nan"),
    }


def summary_rows(
    results: Mapping[str, Runs], metric: str, higher_is_better: bool, params: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """Per model: final and best eval metric, mean forward/backward NFE, seconds per epoch, parameters; with
    several seeds, 'mean ± std' over the seeds."""
    out = []
    for model, runs in results.items():
        per_seed = [_one_run(rows, metric, higher_is_better) for rows in runs]
        row: dict[str, Any] = {"model": model, "params": (params or {}).get(model, "")}
        if len(runs) > 1:
            row["seeds"] = len(runs)
        for key in per_seed[0]:
            values = [s[key] for s in per_seed]
            if len(values) == 1:
                row[key] = values[0]
            else:
                row[key] = f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"
        out.append(row)
    return out


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(r[h]) for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_comparison(
    out: Path,
    results: Mapping[str, Runs],
    metric: str,
    higher_is_better: bool,
    params: Mapping[str, int] | None = None,
    title: str = "",
    seeds: Sequence[int] | None = None,
) -> Path:
    """Write out/metrics.csv (every model and seed), out/table.md and one figure per plotted column (SVG and
    PNG); `results` maps a model to one list of epoch rows per seed (`seeds`, default 0, 1, ...)."""
    from .figures import figure, legend_outside, save

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys: list[str] = ["model", "seed"]
    for runs in results.values():
        for rows in runs:
            for row in rows:
                keys += [k for k in row if k not in keys]
    with open(out / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for model, runs in results.items():
            for i, rows in enumerate(runs):
                for row in rows:
                    writer.writerow({"model": model, "seed": seeds[i] if seeds else i, **row})
    table = markdown_table(summary_rows(results, metric, higher_is_better, params))
    (out / "table.md").write_text((f"# {title}\n\n" if title else "") + table)

    plots = dict(PLOTS)
    plots[metric] = (f"eval_{metric}", f"test {metric}")
    for stem, (column, label) in plots.items():
        fig, ax = figure(width=6.0, height=4.0)
        for model, runs in results.items():
            by_epoch: dict[float, list[float]] = {}
            for rows in runs:
                for r in rows:
                    if r.get(column) not in (None, ""):
                        by_epoch.setdefault(float(r["epoch"]) + 1, []).append(float(r[column]))
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            (line,) = ax.plot(epochs, [statistics.fmean(by_epoch[e]) for e in epochs], marker="o", ms=3, label=model)
            if len(runs) > 1:
                low, high = [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs]
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        values = [v for runs in results.values() for rows in runs for v in _column(rows, column)]
        if column == "train_loss" and values and all(v > 0 for v in values):
            ax.set_yscale("log")
        n_seeds = max(len(runs) for runs in results.values())
        band = f" (mean of {n_seeds} seeds, band: min to max)" if n_seeds > 1 else ""
        ax.set_title((title or stem) + band, fontsize=10)
        ax.grid(alpha=0.3)
        legend_outside(ax, fontsize=8)
        save(fig, out / stem)
    return out / "table.md"
