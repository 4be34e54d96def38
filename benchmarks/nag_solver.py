"""The NAG solver's claim (Akhtar 2023): a NODE trained with the first-order NAG solver trains faster than
with Euler, midpoint or RK4 at the same step size, and than a ResNet, at comparable accuracy.

Per task, one run per solver with the same model (NODE), number of steps over the integration span,
data, seed and epochs, plus the ResNet baseline where a task has one (`--model resnet`: the Euler
discretisation with untied weights, one block per step). Gradients by backprop through the solver.
The table gives, per method: the final metric (evaluated after every epoch; density: held-out NLL
under a reference dopri5 solve, whatever the training solver), forward + backward NFE per training
batch, training time (evaluation excluded), and the training time until the run first reached RK4's
final metric ("-" if never), each time also as a ratio to RK4's, the named peer of this run.

    python benchmarks/nag_solver.py [--tasks mnist,density,timeseries] [--steps 4] [--epochs ...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from _timing import print_table
from monode.tasks import TASKS, RunOptions

METHODS = ("euler", "midpoint", "rk4", "nag")
# Per task: the integration span, epochs, RunOptions fields and --set overrides of its "quick" preset
# that keep a run to minutes.
TASK_SETTINGS: dict[str, dict[str, Any]] = {
    "mnist": dict(span=1.0, epochs=3, subset=512, batch_size=64, lr=1e-3, overrides={"test_subset": 1000}),
    "density": dict(span=0.5, epochs=10, overrides={"n_train": 2000, "n_eval": 1000, "dataset": "8gaussians"}),
    "timeseries": dict(span=1.0, epochs=8, overrides={"dataset": "spirals"}),
}


def _run(task_name: str, model: str, method: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    task = TASKS[task_name]
    settings = dict(TASK_SETTINGS.get(task_name, {}))
    overrides, span = settings.pop("overrides", {}), settings.pop("span", 1.0)
    settings["epochs"] = args.epochs or settings.get("epochs", 3)
    if model == "resnet":
        overrides = {**overrides, "resnet_depth": args.steps}
    opts = RunOptions(
        model=model,
        method=method,
        step_size=span / args.steps,
        adjoint=False,
        seed=args.seed,
        progress=False,
        overrides=overrides,
        **settings,
    )
    rows, params = task.run(opts, out)
    key = f"eval_{task.metric}"
    elapsed, curve = 0.0, []
    for row in rows:
        elapsed += row["train_seconds"]
        if key in row:
            curve.append((elapsed, row[key]))
    nfe = [r["train_forward_nfe"] + r["train_backward_nfe"] for r in rows]
    return dict(params=params, final=curve[-1][1], curve=curve, seconds=elapsed, nfe=sum(nfe) / len(nfe))


def plot(task_name: str, metric: str, results: dict[str, dict[str, Any]], stem: Path) -> None:
    """The eval metric after every epoch against cumulative training time, one line per method (SVG and PNG)."""
    from monode.figures import figure, legend_outside, save

    fig, ax = figure(width=6.0, height=4.0)
    for label, r in results.items():
        name = "ResNet (untied Euler blocks)" if label == "resnet" else f"NODE, {label}"
        ax.plot(*zip(*r["curve"]), marker="o", ms=3, label=f"{name}: {r['nfe']:.0f} fwd+bwd NFE per batch")
    ax.set_xlabel("training seconds (evaluation excluded)")
    ax.set_ylabel(f"test {metric}")
    baseline = " and a ResNet" if "resnet" in results else ""
    ax.set_title(f"{task_name}: NODE with fixed-step solvers{baseline}", fontsize=10)
    ax.grid(alpha=0.3)
    legend_outside(ax, fontsize=8)
    save(fig, stem)


def _time_to_reach(curve: list[tuple[float, float]], target: float, higher_is_better: bool) -> float | None:
    for seconds, value in curve:
        if (value >= target) if higher_is_better else (value <= target):
            return seconds
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="mnist,density,timeseries")
    p.add_argument("--epochs", type=int, help="epochs per run (default: per task, see TASK_SETTINGS)")
    p.add_argument("--steps", type=int, default=4, help="fixed steps over the span (the ResNet's blocks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plots", type=Path, default=Path("docs"), help="folder of the nag_solver_<task> figures")
    args = p.parse_args()
    for task_name in [t.strip() for t in args.tasks.split(",")]:
        task = TASKS[task_name]
        runs = [(method, "node") for method in METHODS]
        if "resnet" in task.models:
            runs.append(("resnet", "resnet"))
        results: dict[str, dict[str, Any]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for label, model in runs:
                print(f"== {task_name}: {label}", flush=True)
                results[label] = _run(
                    task_name, model, "euler" if model == "resnet" else label, args, Path(tmp) / label
                )
        ref = results["rk4"]
        table = []
        for label, r in results.items():
            reach = _time_to_reach(r["curve"], ref["final"], task.higher_is_better)
            table.append(
                [
                    label,
                    r["params"],
                    r["final"],
                    r["nfe"],
                    r["seconds"],
                    r["seconds"] / ref["seconds"],
                    "-" if reach is None else reach,
                    "-" if reach is None else reach / ref["seconds"],
                ]
            )
        print(f"\n{task_name}: NODE, {args.steps} steps, backprop; peer: RK4 (final {task.metric} {ref['final']:.4g})")
        print_table(
            [
                "method",
                "params",
                f"final {task.metric}",
                "NFE/batch (f+b)",
                "train s",
                "time/RK4",
                "train s to RK4's final",
                "that /RK4 time",
            ],
            table,
        )
        args.plots.mkdir(parents=True, exist_ok=True)
        plot(task_name, task.metric, results, args.plots / f"nag_solver_{task_name}")


if __name__ == "__main__":
    main()
