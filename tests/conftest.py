"""Shared fixtures: the data marker, a toy model registered for the duration of a test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

import pytest
import torch
from torch import nn

from monode.data import resolve_data_dir
from monode.dynamics import MODELS, ModelSpec, VectorField, ZeroAugment, register_model

if os.environ.get("PYTEST_XDIST_WORKER"):  # `dev.sh test` runs two workers on two cores: one thread each
    torch.set_num_threads(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "data(*names): needs these ../shared/data folders; skipped without them")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("data"):
        for name in marker.args:
            folder = resolve_data_dir(name)
            if not folder.is_dir():
                pytest.skip(
                    f"needs the {name!r} data set, not found at {folder} (set MONODE_DATA_DIR or put "
                    f"../shared/data beside the repository)"
                )


class ToyCoefficients(NamedTuple):
    decay: torch.Tensor


class ToyField(VectorField):
    """h' = w * f(t, h) - decay h, with w = own parameter read directly in `rhs` (not through the
    coefficients) and decay = softplus(decay~) through them: both must get their gradients by the adjoint."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__(net)
        self.w = nn.Parameter(torch.tensor(0.8))
        self.decay_logit = nn.Parameter(torch.tensor(-1.0))

    def coefficients(self) -> ToyCoefficients:
        return ToyCoefficients(nn.functional.softplus(self.decay_logit))

    def rhs(self, t: torch.Tensor, h: torch.Tensor, coef: ToyCoefficients) -> torch.Tensor:
        return self.w * self.net(t, h) - coef.decay * h


TOY_SPEC = ModelSpec("toy", ToyField, ZeroAugment, "h' = w f(t, h) - decay h (a test model)")


@pytest.fixture
def toy_model() -> Iterator[str]:
    """The name of `ToyField`'s model, registered in `MODELS` for the test."""
    register_model(TOY_SPEC)
    try:
        yield TOY_SPEC.name
    finally:
        MODELS.pop(TOY_SPEC.name)
