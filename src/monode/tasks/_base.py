"""What every benchmark task shares: presets, settings resolution, and the train-or-study entry."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from torch import Tensor, nn

from ..train import Task, fit, seed_everything
from ._settings import RunOptions, RunSettings


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
    presets: ClassVar[dict[str, dict[str, Any]]]

    def check_model(self, model: str) -> None:
        if model not in self.models:
            raise ValueError(
                f"--model {model!r} is not available for task {self.name!r}; choose one of {list(self.models)}"
            )

    def settings(self, opts: RunOptions) -> RunSettings:
        """The preset's values overridden by every option the user set, resolved once."""
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
        values.update(opts.overrides)
        return RunSettings(
            task=self.name,
            model=opts.model,
            preset=opts.preset,
            seed=opts.seed,
            device=opts.device,
            data_dir=opts.data_dir,
            resume=opts.resume,
            progress=opts.progress,
            values=values,
            user_set=frozenset(given) | frozenset(opts.overrides),
        )

    def build(self, s: RunSettings) -> Task:
        """The trainable task (model built after seeding, data) for the run's settings."""
        raise NotImplementedError

    def run(self, opts: RunOptions, out: Path) -> RunResult:
        """Train `opts.model` on this task into `out`; returns the per-epoch rows and the parameter count."""
        s = self.settings(opts)
        config = s.train_config(out)
        s.solver()  # solver settings checked before data and model are built
        seed_everything(s.seed)
        task = self.build(s)
        task.model.to(s.device)
        rows = fit(task, config)
        self.after_training(task, s, Path(out), rows)
        return RunResult(rows, count_parameters(task.model))

    def after_training(self, task: Task, s: RunSettings, out: Path, rows: list[dict[str, float]]) -> None:
        """Write task-specific outputs (plots) from the trained `task.model`; nothing by default."""


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
