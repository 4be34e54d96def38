"""Benchmark tasks by name: each file is one benchmark (its data, networks and metrics)."""

from ._base import BenchmarkTask, RunResult, ScoredTask, count_parameters
from ._record import LoadedRun, load_run
from ._settings import RunOptions, RunSettings, coerce_setting, parse_override, solver_keywords
from .density import TASK as _density
from .images import CIFAR10 as _cifar10
from .images import MNIST as _mnist
from .plane_vibration import TASK as _plane_vibration
from .point_cloud import TASK as _point_cloud
from .silverbox_init import TASK as _silverbox_init
from .timeseries import TASK as _timeseries
from .walker2d import TASK as _walker2d

TASKS: dict[str, BenchmarkTask] = {
    t.name: t
    for t in (_point_cloud, _mnist, _cifar10, _density, _plane_vibration, _walker2d, _silverbox_init, _timeseries)
}

__all__ = [
    "TASKS",
    "BenchmarkTask",
    "RunOptions",
    "RunSettings",
    "RunResult",
    "ScoredTask",
    "LoadedRun",
    "load_run",
    "count_parameters",
    "coerce_setting",
    "parse_override",
    "solver_keywords",
]
