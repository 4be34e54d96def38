"""A run's settings: what the user asked for (`RunOptions`) and what a task reads (`RunSettings`).

The CLI fills a `RunOptions`; `BenchmarkTask.settings` resolves it once against the task's preset into a
`RunSettings`, the only object a task's `build` reads: generic fields (task, model, seed, ...), every
preset key (`s["lr"]`, `s["n_inner"]`), the solver keywords of the layers (`s.solver()`) and the
trainer's configuration (`s.train_config(out)`).
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..solvers import METHODS
from ..train import TrainConfig

__all__ = ["RunOptions", "RunSettings", "coerce_setting", "parse_override", "solver_keywords"]


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
    log: tuple[str, ...] = ()  # loggers besides metrics.csv/json (--log tensorboard)
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # task-specific preset keys (--set)

    GENERIC: ClassVar[tuple[str, ...]] = (
        "model",
        "preset",
        "seed",
        "device",
        "data_dir",
        "resume",
        "progress",
        "log",
        "overrides",
    )
    """Fields that are not preset keys: they become `RunSettings` attributes."""


def parse_override(text: str) -> tuple[str, str]:
    """`--set key=value` split into the key (dashes as underscores) and the value's text; the value is
    typed by `coerce_setting` against the task's presets."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set expects KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), value.strip()


# Settings whose presets may all be None, so their type cannot be read off a preset value.
_NULLABLE_TYPES: dict[str, type] = {
    "subset": int,
    "test_subset": int,
    "eval_size": int,
    "max_batches": int,
    "lr_milestones": dict,
    "lr_step": tuple,
    "grad_clip": float,
    "step_size": float,
}
_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a finite number",
    str: "a string",
    tuple: "a tuple such as (1000, 0.9)",
    list: "a list",
    dict: "a dict such as {0: 1e-3, 50: 1e-4}",
}


def coerce_setting(key: str, value: Any, presets: Sequence[Any]) -> Any:
    """`value` for setting `key` as the type of the setting's values in the task's `presets` (None
    allowed where a preset has None); text (from `--set`) is parsed as that type. ValueError naming
    `--set key=value` and the expected type otherwise (so `dim=True` and `n_inner=2.5` are refused)."""
    kinds = {type(v) for v in presets if v is not None}
    if not kinds:
        kinds = {_NULLABLE_TYPES[key]} if key in _NULLABLE_TYPES else set()
    if int in kinds and float in kinds:
        kinds.discard(int)
    nullable = any(v is None for v in presets)
    if len(kinds) != 1:  # no preset value to type it by: a Python literal, else the text
        return _literal(value) if isinstance(value, str) else value
    kind = kinds.pop()
    if isinstance(value, str) and kind is not str:
        value = None if nullable and value.lower() == "none" else _parse(value, kind)
    if value is None and nullable:
        return None
    if kind is float and type(value) is int:
        value = float(value)
    if kind is tuple and type(value) is list:
        value = tuple(value)
    if type(value) is not kind or (kind is float and not math.isfinite(value)):
        expected = _TYPE_NAMES.get(kind, kind.__name__) + (" or None" if nullable else "")
        shown = value if isinstance(value, str) else repr(value)
        raise ValueError(f"--set {key}={shown}: {key} must be {expected}")
    return value


def _parse(text: str, kind: type) -> Any:
    if kind is bool:
        return {"true": True, "false": False, "1": True, "0": False}.get(text.lower(), text)
    if kind is int:
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else text
    if kind is float:
        try:
            return float(text)
        except ValueError:
            return text
    return _literal(text)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def solver_keywords(
    method: str,
    rtol: float,
    atol: float,
    *,
    step_size: float | None = None,
    compile: bool = False,
    adjoint: bool | None = None,
) -> dict[str, Any]:
    """The keywords of `ODEBlock` / `ODERNN` / `CNF`: step_size goes to the options of fixed-step methods,
    compile to any method's; adjoint is included when given."""
    if method not in METHODS:
        raise ValueError(f"--method {method!r} is not a monode solver; choose one of {sorted(METHODS)}")
    options: dict[str, Any] = {}
    if step_size is not None and "step_size" in METHODS[method].options:
        options["step_size"] = step_size
    if compile:
        options["compile"] = True
    out: dict[str, Any] = dict(method=method, rtol=rtol, atol=atol, options=options or None)
    if adjoint is not None:
        out["adjoint"] = adjoint
    return out


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """One run's resolved settings: the task preset's values overridden by every option the user set."""

    task: str
    model: str
    preset: str
    seed: int
    device: str
    data_dir: str | None
    resume: bool
    progress: bool
    values: Mapping[str, Any]
    user_set: frozenset[str] = frozenset()
    log: tuple[str, ...] = ()

    def __getitem__(self, key: str) -> Any:
        if key not in self.values:
            raise KeyError(f"task {self.task!r} (preset {self.preset!r}) has no setting {key!r}")
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def solver(self) -> dict[str, Any]:
        """method, rtol, atol, options (step_size for fixed-step methods, compile) and adjoint."""
        method = self["method"]
        step_size = self.get("step_size")
        if "step_size" in self.user_set and method in METHODS and "step_size" not in METHODS[method].options:
            raise ValueError(f"--step-size {step_size} applies to fixed-step methods, not --method {method!r}")
        return solver_keywords(
            method,
            self["rtol"],
            self["atol"],
            step_size=step_size,
            compile=bool(self.get("compile")),
            adjoint=self.get("adjoint"),
        )

    def train_config(self, out: Path) -> TrainConfig:
        """The trainer's configuration of this run, writing into `out`."""
        return TrainConfig(
            epochs=self["epochs"],
            lr=self["lr"],
            batch_size=self["batch_size"],
            out=Path(out),
            grad_clip=self.get("grad_clip"),
            lr_milestones=self.get("lr_milestones"),
            lr_step=self.get("lr_step"),
            weight_decay=self.get("weight_decay", 0.0),
            seed=self.seed,
            resume=self.resume,
            device=self.device,
            progress=self.progress,
            log=self.log,
            max_batches_per_epoch=self.get("max_batches"),
            eval_every=self.get("eval_every", 1),
        )

    def replace(self, **values: Any) -> RunSettings:
        """A copy with some preset values changed (a task's derived defaults)."""
        return dataclasses.replace(self, values={**self.values, **values})
