"""A model's registry entry (`ModelSpec`): everything a task needs to build it by name."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from ._base import VectorField

__all__ = ["ModelSpec", "EXPERIMENTS"]

EXPERIMENTS = ("mnist", "cifar10", "plane-vibration", "walker2d", "point-cloud", "silverbox-init")
"""The benchmark tasks (by their `monode.tasks` names) whose papers' configurations models carry as presets."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    field: the `VectorField` class; initializer: the module class building the initial variables from an
    input, called as initializer(in_channels, dim, hidden, conv=...); options: the keyword arguments that
    make this name (e.g. GHBNODE's gate), defaulting to the paper's MNIST configuration; presets: per
    benchmark task (keyed by task name), the papers' field options plus "dim" and "hidden" sizes for the
    image tasks, data only; official_field: where the released code integrates another system than the
    paper's, the class that reproduces it (`build_model(name, official=True)`).
    """

    name: str
    field: type[VectorField]
    initializer: type[nn.Module]
    summary: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    official_field: type[VectorField] | None = None

    @property
    def state_size(self) -> int:
        return self.field.state_size

    @property
    def t_span(self) -> tuple[float, float]:
        return self.field.t_span

    def f_channels(self, dim: int) -> tuple[int, int]:
        return self.field.f_channels(dim)

    def preset(self, name: str | None) -> dict[str, Any]:
        """The preset's settings (a copy); {} for None or for an experiment the model has no options for."""
        if name is None:
            return {}
        if name not in EXPERIMENTS:
            raise ValueError(f"preset={name!r} is not one of the experiments {list(EXPERIMENTS)} (model {self.name!r})")
        return dict(self.presets.get(name, {}))
