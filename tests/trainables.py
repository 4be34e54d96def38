"""A tiny trainable task for the trainer's tests: two Gaussian blobs, and a variant that fails on cue."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from monode.train import TrainConfig


class Blobs:
    """Two Gaussian blobs in 2-D; a small MLP with dropout (so resuming must restore the torch RNG)."""

    def __init__(self, init_seed: int = 0, n: int = 192):
        g = torch.Generator().manual_seed(123)
        y = torch.arange(n) % 2
        x = torch.randn(n, 2, generator=g) + 2.0 * (2 * y[:, None] - 1)
        self.train_data = (x[: n * 3 // 4], y[: n * 3 // 4])
        self.eval_data = (x[n * 3 // 4 :], y[n * 3 // 4 :])
        torch.manual_seed(init_seed)
        self.model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 2))
        self.calls = 0

    def loss(self, model, batch):
        self.calls += 1
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits, y), {"accuracy": (logits.argmax(1) == y).float().mean()}

    def evaluate(self, model, batch):
        x, y = batch
        logits = model(x)
        return {"loss": F.cross_entropy(logits, y), "accuracy": (logits.argmax(1) == y).float().mean()}


class FailsAt(Blobs):
    """Blobs whose `loss` misbehaves at its `at`-th call (counted from 0): NaN loss or a kill."""

    def __init__(self, at: int, error: type[BaseException] | None = None, **kw):
        super().__init__(**kw)
        self.at, self.error = at, error

    def loss(self, model, batch):
        loss, metrics = super().loss(model, batch)
        if self.calls - 1 == self.at:
            if self.error is not None:
                raise self.error()
            loss = loss * float("nan")
        return loss, metrics


def config(out, **kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "lr": 0.05, "batch_size": 32, "out": out, "progress": False, **kw})


BATCHES = 5  # ceil(144 / 32) training batches per epoch


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k not in ("train_seconds", "seconds")} for row in rows]
