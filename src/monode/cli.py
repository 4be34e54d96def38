"""`monode` command line: train one model on a task, compare several, list tasks and models."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import __version__

if TYPE_CHECKING:  # the commands import torch when they run, so that --help and --version stay instant
    from .tasks import BenchmarkTask, RunOptions, RunResult


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("solver")
    g.add_argument(
        "--method",
        help="ODE solver: a torchdiffeq method name (dopri5, dopri8, bosh3, rk4, ...), tsit5, rk4_classic or nag "
        "(default: task preset)",
    )
    g.add_argument("--rtol", type=float, help="relative tolerance of adaptive solvers (default: task preset)")
    g.add_argument("--atol", type=float, help="absolute tolerance of adaptive solvers (default: task preset)")
    g.add_argument("--step-size", type=float, help="step of fixed-step solvers (default: task preset)")
    g.add_argument(
        "--adjoint",
        dest="adjoint",
        action="store_true",
        default=None,
        help="gradients by the adjoint method (the papers' setting)",
    )
    g.add_argument("--no-adjoint", dest="adjoint", action="store_false", help="backpropagate through the solver")
    g.add_argument(
        "--compile",
        dest="compile",
        action="store_true",
        default=None,
        help="torch.compile each solver step (one-time warm-up of seconds per model and shape, then "
        "several times faster for small states; default: task preset)",
    )
    g.add_argument("--no-compile", dest="compile", action="store_false", help="solve eagerly")
    g = p.add_argument_group("training")
    g.add_argument(
        "--preset",
        default="quick",
        help="'quick' (minutes on a CPU) or 'paper' (the papers' full protocol); default quick",
    )
    g.add_argument("--epochs", type=int, help="number of epochs (default: task preset)")
    g.add_argument("--batch-size", type=int, help="batch size (default: task preset)")
    g.add_argument("--lr", type=float, help="Adam learning rate (default: task preset)")
    g.add_argument("--max-batches", type=int, help="cap on batches per epoch (quick checks)")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a task setting of the preset, e.g. --set dataset=physionet (repeatable; "
        "`monode tasks` lists each task's settings)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    g.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g.add_argument(
        "--log",
        action="append",
        default=[],
        choices=["tensorboard"],
        help="also log to TensorBoard (<out>/tensorboard; pip install 'monode[tensorboard]')",
    )
    g = p.add_argument_group("data and output")
    g.add_argument(
        "--data-dir", help="dataset folder (default: $MONODE_DATA_DIR, ../shared/data, ~/.cache/monode/data)"
    )
    g.add_argument("--subset", type=int, help="use only the first N training examples")
    g.add_argument("--out", type=Path, help="output folder (default runs/<task>/<model>)")


def _options(args: argparse.Namespace, model: str, seed: int | None = None) -> RunOptions:
    from .tasks import RunOptions, parse_override

    return RunOptions(
        model=model,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        step_size=args.step_size,
        adjoint=args.adjoint,
        compile=args.compile,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        data_dir=args.data_dir,
        subset=args.subset,
        preset=args.preset,
        seed=args.seed if seed is None else seed,
        device=args.device,
        resume=args.resume,
        progress=args.progress,
        max_batches=args.max_batches,
        log=tuple(args.log),
        overrides=dict(parse_override(text) for text in args.overrides),
    )


def _task(name: str) -> BenchmarkTask:
    from .tasks import TASKS

    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)} (see `monode tasks`)")
    return TASKS[name]


def cmd_tasks(args: argparse.Namespace) -> None:
    from .tasks import TASKS, RunOptions

    for name, task in TASKS.items():
        print(
            f"{name:16s} {task.summary}\n{'':16s} models: {', '.join(task.models)}; presets: {', '.join(task.presets)}"
        )
        generic = {f.name for f in dataclasses.fields(RunOptions)}
        own = sorted({k for preset in task.presets.values() for k in preset} - generic)
        if own:
            print(f"{'':16s} settings (--set KEY=VALUE): {', '.join(own)}")


def cmd_models(args: argparse.Namespace) -> None:
    from .dynamics import MODELS
    from .layers import ResNetBlock
    from .tasks import TASKS

    for name, spec in MODELS.items():
        doc = (getattr(spec, "summary", None) or (spec.__doc__ or "")).strip().splitlines()
        print(f"{name:14s} {doc[0] if doc else ''}")
    baselines = {"resnet": ResNetBlock}  # models of some tasks that are not vector fields
    for name, layer in baselines.items():
        where = [task.name for task in TASKS.values() if name in task.models]
        summary = " ".join(line.strip() for line in (layer.__doc__ or "").strip().splitlines()[:2]).split(": ")[0]
        print(f"{name:14s} {summary} (a baseline, not an ODE model; tasks: {', '.join(where)})")


def cmd_train(args: argparse.Namespace) -> int | None:
    task = _task(args.task)
    out = args.out or Path("runs") / args.task / args.model
    if args.nproc < 1:
        raise ValueError(f"--nproc {args.nproc} must be >= 1")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        task.settings(_options(args, args.model))  # a user error is one line here, not one per process
        return _launch(args.nproc, args.argv)
    from ._distributed import replicas

    rows = task.run(_options(args, args.model), out).rows
    if not replicas().main:
        return None
    if rows:
        last = rows[-1]
        print(
            f"done: {args.task} / {args.model}: "
            + ", ".join(f"{k}={v:.4g}" for k, v in last.items() if isinstance(v, float) and k != "lr")
        )
    print(f"outputs in {out}")
    return None


def _launch(nproc: int, argv: list[str]) -> int:
    """This `monode train` command again under torchrun with `nproc` processes (without --nproc)."""
    import subprocess

    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run([*command, "-m", "monode", *rest]).returncode


def cmd_compare(args: argparse.Namespace) -> None:
    from ._run_lock import locked_run_dir
    from .report import write_comparison

    task = _task(args.task)
    if not task.trains:
        raise ValueError(
            f"task {args.task!r} is a study without training, so there is nothing to compare per epoch: "
            f"run `monode train {args.task} --model a,b,c` (it plots all the models together)"
        )
    models = [m.strip() for m in args.models.split(",")] if args.models else list(task.models)
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs} must be >= 1")
    if args.seeds < 1:
        raise ValueError(f"--seeds {args.seeds} must be >= 1")
    out = args.out or Path("runs") / args.task / "compare"
    seeds = [args.seed + k for k in range(args.seeds)]
    for model in models:
        task.settings(_options(args, model))  # fail fast on a bad model/preset before training anything

    def name(model: str, seed: int) -> str:  # one folder per run: <model>, or <model>/seed-<s> for several seeds
        return model if len(seeds) == 1 else f"{model}/seed-{seed}"

    runs = [(name(m, seed), _options(args, m, seed), out / name(m, seed)) for m in models for seed in seeds]
    done: dict[str, RunResult] = {}
    with locked_run_dir(out):
        if args.jobs > 1:
            from ._jobs import run_parallel

            print(f"== {args.task}: {len(runs)} runs, {args.jobs} at a time (logs in {out}/<run>.log)")
            report = lambda run, result: print(f"== {args.task}: {run} done", flush=True)  # noqa: E731
            done = run_parallel(args.task, runs, args.jobs, report)
        else:
            for run, opts, folder in runs:
                print(f"== {args.task}: {run}", flush=True)
                done[run] = task.run(opts, folder)
        results = {m: [done[name(m, seed)].rows for seed in seeds] for m in models}
        params = {m: done[name(m, seeds[0])].parameters for m in models}
        table = write_comparison(
            out,
            results,
            task.metric,
            task.higher_is_better,
            params,
            title=f"{args.task} ({args.preset})",
            seeds=seeds,
        )
    print(table.read_text())
    print(f"outputs in {out}: table.md, metrics.csv, figures (.svg and .png) and one folder per run")


def cmd_eval(args: argparse.Namespace) -> None:
    import json

    from .tasks import load_run
    from .train import evaluate

    run = load_run(args.run_dir, data_dir=args.data_dir, device=args.device)
    if run.task.eval_data is None:
        raise ValueError(f"{args.run_dir}: task {run.settings.task!r} has no evaluation data")
    max_batches = run.settings.get("max_batches") if args.max_batches is None else args.max_batches
    metrics = evaluate(
        run.task, run.task.eval_data, run.settings["batch_size"], run.settings.device, max_batches or None
    )
    recorded = next((row for row in reversed(run.rows) if any(k.startswith("eval_") for k in row)), None)
    if args.json:
        print(json.dumps({"run": str(args.run_dir), "metrics": metrics, "recorded": recorded}, indent=1))
        return
    epoch = len(run.rows) - 1
    print(f"{run.settings.task} / {run.settings.model} after epoch {epoch} ({args.run_dir}):")
    for key, value in metrics.items():
        before = (
            ""
            if recorded is None or key not in recorded
            else f"   (recorded at epoch {recorded['epoch']:.0f}: {recorded[key]:.6g})"
        )
        print(f"  {key:24s} {value:.6g}{before}")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `monode: error: ...` and exit status 2, no usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"monode: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="monode",
        description="Momentum-accelerated neural ODEs: train and compare "
        "the models of the HBNODE, AdamNODE and NesterovNODE papers and the NAG solver.",
    )
    parser.add_argument("--version", action="version", version=f"monode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks", help="list the benchmark tasks").set_defaults(func=cmd_tasks)
    sub.add_parser("models", help="list the models").set_defaults(func=cmd_models)
    p = sub.add_parser("train", help="train one model on a task")
    p.add_argument("task", help="task name (see `monode tasks`)")
    p.add_argument("--model", required=True, help="model name (see `monode models`)")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes: relaunch under torchrun with this many (gloo on CPU, nccl on CUDA)",
    )
    _add_run_flags(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("compare", help="train several models on a task; write table.md, metrics.csv and plots")
    p.add_argument("task", help="task name (see `monode tasks`)")
    p.add_argument("--models", help="comma-separated model names (default: every model of the task)")
    p.add_argument("--jobs", type=int, default=1, help="train this many runs at once, one process each (default 1)")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="runs per model with seeds --seed, --seed+1, ...: the table gives mean ± std, the figures a band",
    )
    _add_run_flags(p)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("eval", help="re-evaluate a finished run from its folder (config.json and checkpoint)")
    p.add_argument("run_dir", type=Path, help="the run's output folder")
    p.add_argument("--data-dir", help="dataset folder (default: the run's own)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--max-batches", type=int, help="cap on evaluation batches (default: the run's own; 0 for all batches)"
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed
        return e.code if isinstance(e.code, int) else 2
    args.argv = argv
    from ._run_lock import RunLockedError
    from .data import DataIntegrityError, DataNotFoundError
    from .solvers import ODEInputError, ODESolverError
    from .train import CheckpointError, TrainingDivergedError

    try:
        code = args.func(args)
    except (
        DataNotFoundError,
        DataIntegrityError,
        CheckpointError,
        RunLockedError,
        TrainingDivergedError,
        ODESolverError,
        ODEInputError,
        ValueError,
        FileExistsError,
    ) as exc:
        print(f"monode: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("monode: interrupted; rerun with --resume to continue from the last checkpoint", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
