"""Benchmark tasks by name: each file is one benchmark (its data, networks and metrics)."""
from ._base import BenchmarkTask, RunOptions
from .density import TASK as _density
from .images import CIFAR10 as _cifar10, MNIST as _mnist
from .point_cloud import TASK as _point_cloud
from .timeseries import TASK as _timeseries

TASKS: dict[str, BenchmarkTask] = {t.name: t for t in (_point_cloud, _mnist, _cifar10, _density, _timeseries)}

__all__ = ["TASKS", "BenchmarkTask", "RunOptions"]
