"""Comparison reports: one metrics.csv, a markdown table and PNG plots against epoch for several models."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

PLOTS = {  # file stem -> (column, y label)
    "nfe_forward": ("train_forward_nfe", "forward NFE per batch"),
    "nfe_backward": ("train_backward_nfe", "backward NFE per batch"),
    "loss": ("train_loss", "training loss"),
}


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(values) / len(values) if values else float("nan")


def _column(rows: list[dict], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) not in (None, "")]


def summary_rows(
    results: dict[str, list[dict]], metric: str, higher_is_better: bool, params: dict[str, int] | None = None
) -> list[dict]:
    """Per model: final and best eval metric, mean forward/backward NFE, seconds per epoch, parameters."""
    out = []
    for model, rows in results.items():
        evals = _column(rows, f"eval_{metric}")
        best = (max if higher_is_better else min)(evals) if evals else float("nan")
        out.append(
            {
                "model": model,
                "params": (params or {}).get(model, ""),
                f"final {metric}": evals[-1] if evals else float("nan"),
                f"best {metric}": best,
                "fwd NFE": _mean(_column(rows, "train_forward_nfe")),
                "bwd NFE": _mean(_column(rows, "train_backward_nfe")),
                "eval fwd NFE": _mean(_column(rows, "eval_forward_nfe")),
                "s/epoch": _mean(_column(rows, "seconds")),
                "final train loss": _column(rows, "train_loss")[-1] if rows else float("nan"),
            }
        )
    return out


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    headers = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(r[h]) for h in headers) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_comparison(
    out: Path,
    results: dict[str, list[dict]],
    metric: str,
    higher_is_better: bool,
    params: dict[str, int] | None = None,
    title: str = "",
) -> Path:
    """Write out/metrics.csv (all models), out/table.md and one PNG per plotted column; returns table.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys: list[str] = ["model"]
    for rows in results.values():
        for row in rows:
            keys += [k for k in row if k not in keys]
    with open(out / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for model, rows in results.items():
            for row in rows:
                writer.writerow({"model": model, **row})
    table = markdown_table(summary_rows(results, metric, higher_is_better, params))
    (out / "table.md").write_text((f"# {title}\n\n" if title else "") + table)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = dict(PLOTS)
    plots[metric] = (f"eval_{metric}", f"test {metric}")
    for stem, (column, label) in plots.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for model, rows in results.items():
            pts = [(float(r["epoch"]) + 1, float(r[column])) for r in rows if r.get(column) not in (None, "")]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=model)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if column == "train_loss" and all(v > 0 for rows in results.values() for v in _column(rows, column)):
            ax.set_yscale("log")
        ax.set_title(title or stem)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.savefig(out / f"{stem}.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
    return out / "table.md"
