"""Benchmark tasks by name: each file is one benchmark (its data, networks and metrics)."""
from ._base import BenchmarkTask, RunOptions
from .images import CIFAR10 as _cifar10, MNIST as _mnist
from .point_cloud import TASK as _point_cloud

TASKS: dict[str, BenchmarkTask] = {t.name: t for t in (_point_cloud, _mnist, _cifar10)}

__all__ = ["TASKS", "BenchmarkTask", "RunOptions"]
