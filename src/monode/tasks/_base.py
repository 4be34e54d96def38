"""What every benchmark task shares: run options from the CLI, presets, and the train-or-study entry."""
from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Any, Callable, ClassVar, NamedTuple

from torch import Tensor, nn

from ..train import Task, TrainConfig, fit, seed_everything


@dataclasses.dataclass
class RunOptions:
    """Everything `monode train` / `monode compare` can set for one run; None means the task's default."""

    model: str
    method: str | None = None
    rtol: float | None = None
    atol: float | None = None
    step_size: float | None = None
    adjoint: bool | None = None
    compile: bool | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    data_dir: str | None = None
    subset: int | None = None
    preset: str = "quick"
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    progress: bool = True
    max_batches: int | None = None
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # task-specific preset keys (--set)

    def solver_options(self, settings: dict[str, Any]) -> dict | None:
        """Solver options from --step-size and --compile; `compile` defaults to the task settings' (`settings`,
        from `BenchmarkTask.settings`, already hold --compile when it was given)."""
        options: dict[str, Any] = {}
        if self.step_size is not None:
            options["step_size"] = self.step_size
        if settings.get("compile", self.compile):
            options["compile"] = True
        return options or None


def parse_override(text: str) -> tuple[str, Any]:
    """`--set key=value`: value as a Python literal (number, bool, tuple, ...) or else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        parsed = value.strip()
    return key.strip().replace("-", "_"), parsed


class RunResult(NamedTuple):
    """What one training run returns: the per-epoch metric rows and the model's trainable parameters."""

    rows: list[dict[str, float]]
    parameters: int


class BenchmarkTask:
    """A benchmark: its presets (data size, schedule, solver settings) and how it builds a trainable task.

    Subclasses set `name`, `summary`, `models`, `metric` and `presets` (name -> dict of defaults for the
    RunOptions/TrainConfig fields, plus task-specific keys), and implement `build`. A study that does
    not train (e.g. Silverbox initialisation) overrides `run` instead.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    models: ClassVar[tuple[str, ...]]
    metric: ClassVar[str] = "accuracy"  # the headline eval metric column, "eval_<metric>"
    higher_is_better: ClassVar[bool] = True
    trains: ClassVar[bool] = True  # False for a study (`run` overridden) that `monode compare` cannot tabulate
    presets: ClassVar[dict[str, dict[str, Any]]]

    def settings(self, opts: RunOptions) -> dict[str, Any]:
        """The preset's defaults overridden by every option the user set."""
        if opts.preset not in self.presets:
            raise ValueError(f"--preset {opts.preset!r} is not defined for task {self.name!r}; "
                             f"choose one of {sorted(self.presets)}")
        if opts.model not in self.models:
            raise ValueError(f"--model {opts.model!r} is not available for task {self.name!r}; "
                             f"choose one of {list(self.models)}")
        merged = dict(self.presets[opts.preset])
        unknown = sorted(set(opts.overrides) - set(merged))
        if unknown:
            raise ValueError(f"--set {unknown[0]}=... is not a setting of task {self.name!r} (preset "
                             f"{opts.preset!r}); its settings are {sorted(merged)}")
        merged.update({k: v for k, v in dataclasses.asdict(opts).items() if v is not None and k != "overrides"})
        merged.update(opts.overrides)
        return merged

    def build(self, opts: RunOptions, settings: dict[str, Any]) -> Task:
        """The trainable task (model built after seeding, data) for `opts.model` with `settings`."""
        raise NotImplementedError

    def run(self, opts: RunOptions, out: Path) -> RunResult:
        """Train `opts.model` on this task into `out`; returns the per-epoch rows and the parameter count."""
        settings = self.settings(opts)
        seed_everything(opts.seed)
        task = self.build(opts, settings)
        config = TrainConfig(
            epochs=settings["epochs"], lr=settings["lr"], batch_size=settings["batch_size"], out=Path(out),
            grad_clip=settings.get("grad_clip"), lr_milestones=settings.get("lr_milestones"),
            lr_step=settings.get("lr_step"), weight_decay=settings.get("weight_decay", 0.0), seed=opts.seed,
            resume=opts.resume, device=opts.device, progress=opts.progress,
            max_batches_per_epoch=settings.get("max_batches"), eval_every=settings.get("eval_every", 1))
        task.model.to(opts.device)
        rows = fit(task, config)
        self.after_training(task, opts, settings, Path(out), rows)
        return RunResult(rows, count_parameters(task.model))

    def after_training(self, task: Task, opts: RunOptions, settings: dict[str, Any], out: Path,
                       rows: list[dict[str, float]]) -> None:
        """Write task-specific outputs (plots) from the trained `task.model`; nothing by default."""


Metrics = dict[str, "float | Tensor"]
Score = Callable[[nn.Module, tuple[Tensor, ...]], tuple[Tensor, Metrics]]


class ScoredTask:
    """A `Task` from one scoring function: score(model, batch) -> (loss, metrics) serves training as it
    is and evaluation as {"loss": float(loss), **metrics} (run by the trainer under no_grad)."""

    def __init__(self, model: nn.Module, train: tuple[Tensor, ...], evaluation: tuple[Tensor, ...] | None,
                 score: Score) -> None:
        self.model, self.train_data, self.eval_data, self._score = model, train, evaluation, score

    def loss(self, model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[Tensor, Metrics]:
        return self._score(model, batch)

    def evaluate(self, model: nn.Module, batch: tuple[Tensor, ...]) -> Metrics:
        loss, metrics = self._score(model, batch)
        return {"loss": float(loss), **metrics}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
