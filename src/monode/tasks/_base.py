"""What every benchmark task shares: presets, settings resolution, and the train-or-study entry."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from torch import Tensor, nn

from .._distributed import replicas
from .._run_lock import locked_run_dir
from ..figures import training_curves
from ..train import CHECKPOINT, Task, check_device, fit, refuse_overwrite, seed_everything
from ._record import check_resumable, write_config
from ._settings import RunOptions, RunSettings, coerce_setting


class RunResult(NamedTuple):
    """What one training run returns: the per-epoch metric rows and the model's trainable parameters."""

    rows: list[dict[str, Any]]
    parameters: int


class BenchmarkTask:
    """A benchmark: its presets (data size, schedule, solver settings) and how it builds a trainable task.

    Subclasses set `name`, `summary`, `models`, `metric` and `presets` (name -> dict of defaults for the
    RunOptions fields, plus task-specific keys), and implement `build`. A study that does not train
    (e.g. Silverbox initialisation) overrides `run` instead.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    models: ClassVar[tuple[str, ...]]
    metric: ClassVar[str] = "accuracy"  # the headline eval metric column, "eval_<metric>"
    higher_is_better: ClassVar[bool] = True
    trains: ClassVar[bool] = True  # False for a study (`run` overridden) that `monode compare` cannot tabulate
    figures: ClassVar[tuple[str, ...]] = ("training",)  # the figures a run writes (each as .svg and .png)
    presets: ClassVar[dict[str, dict[str, Any]]]

    def check_model(self, model: str) -> None:
        if model not in self.models:
            raise ValueError(
                f"--model {model!r} is not available for task {self.name!r}; choose one of {list(self.models)}"
            )

    def settings(self, opts: RunOptions) -> RunSettings:
        """The preset's values overridden by every option the user set, resolved and checked once."""
        if opts.preset not in self.presets:
            raise ValueError(
                f"--preset {opts.preset!r} is not defined for task {self.name!r}; choose one of {sorted(self.presets)}"
            )
        self.check_model(opts.model)
        values = dict(self.presets[opts.preset])
        unknown = sorted(set(opts.overrides) - set(values))
        if unknown:
            raise ValueError(
                f"--set {unknown[0]}=... is not a setting of task {self.name!r} (preset "
                f"{opts.preset!r}); its settings are {sorted(values)}"
            )
        given = {k: v for k, v in dataclasses.asdict(opts).items() if v is not None and k not in RunOptions.GENERIC}
        values.update(given)
        for key, value in opts.overrides.items():
            values[key] = coerce_setting(key, value, [p.get(key) for p in self.presets.values()])
        check_values(values)
        return RunSettings(
            task=self.name,
            model=opts.model,
            preset=opts.preset,
            seed=opts.seed,
            device=str(check_device(opts.device)),
            data_dir=opts.data_dir,
            resume=opts.resume,
            progress=opts.progress,
            log=tuple(opts.log),
            values=values,
            user_set=frozenset(given) | frozenset(opts.overrides),
        )

    def build(self, s: RunSettings) -> Task:
        """The trainable task (model built after seeding, data) for the run's settings."""
        raise NotImplementedError

    def run(self, opts: RunOptions, out: Path) -> RunResult:
        """Train `opts.model` on this task into `out`; returns the per-epoch rows and the parameter count.

        Every setting, the output folder (created, locked, `config.json` written or, on resume, compared)
        and the solver settings are checked before any data is loaded."""
        s = self.settings(opts)
        config = s.train_config(out)
        s.solver()
        with self.run_folder(s, out):
            seed_everything(s.seed)
            task = self.build(s)
            r = replicas(s.device)
            task.model.to(r.device(s.device))
            rows = fit(task, config)
            if r.main:
                title = f"{self.name}: {s.model} ({s.preset})"
                training_curves(rows, self.metric, Path(out) / "training", title)
                self.after_training(task, s, Path(out), rows)
        return RunResult(rows, count_parameters(task.model))

    @contextlib.contextmanager
    def run_folder(self, s: RunSettings, out: Path) -> Iterator[Path]:
        """`out` created and locked for the run, with the run's `config.json`; a fresh run refuses a folder
        that holds a checkpoint, a resumed one refuses other settings than its `config.json`'s."""
        out = Path(out)
        main = replicas(s.device).main  # under torchrun, rank 0 alone locks and writes
        with locked_run_dir(out) if main else contextlib.nullcontext():
            refuse_overwrite(out, s.resume)
            if s.resume and (out / CHECKPOINT).exists():
                check_resumable(out, s)
            if main:
                write_config(out, s)
            yield out

    def after_training(self, task: Task, s: RunSettings, out: Path, rows: list[dict[str, float]]) -> None:
        """Write task-specific figures from the trained `task.model` (every run also gets `training.svg/png`,
        its loss, metric and NFE per epoch); nothing more by default."""


def check_values(values: Mapping[str, Any]) -> None:
    """The generic settings' ranges (a task checks its own): ValueError naming the option and value."""
    for key in ("lr", "rtol", "atol", "step_size", "grad_clip"):
        value = values.get(key)
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"--{key.replace('_', '-')} {value!r} must be a finite number > 0")
    for key in ("epochs", "batch_size", "subset", "max_batches", "eval_every"):
        value = values.get(key)
        if value is not None and not (type(value) is int and value >= 1):
            raise ValueError(f"--{key.replace('_', '-')} {value!r} must be an integer >= 1")


Metrics = Mapping[str, "float | Tensor"]
Score = Callable[[Any, tuple[Tensor, ...]], tuple[Tensor, Metrics]]


class ScoredTask:
    """A `Task` from one scoring function: score(model, batch) -> (loss, metrics) serves training as it
    is and evaluation as {"loss": float(loss), **metrics} (run by the trainer under no_grad)."""

    def __init__(
        self, model: nn.Module, train: tuple[Tensor, ...], evaluation: tuple[Tensor, ...] | None, score: Score
    ) -> None:
        self.model, self.train_data, self.eval_data, self._score = model, train, evaluation, score

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[Tensor, Metrics]:
        return self._score(model, batch)

    def evaluate(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Metrics:
        loss, metrics = self._score(model, batch)
        return {"loss": float(loss), **metrics}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
