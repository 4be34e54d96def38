"""Where training reports go besides metrics.csv/json: the console line and optional loggers (`--log`).

`epoch_line` is the short aligned console line of an epoch. `open_loggers` builds the loggers named in
`TrainConfig.log`: "tensorboard" writes per-batch scalars (train/loss, train/forward_nfe,
train/backward_nfe, train/lr, at the optimizer step) and per-epoch scalars (every metrics column under
epoch/, at the epoch index) into `<out>/tensorboard`. A resumed run purges the events written after its
checkpoint, so the curves match an uninterrupted run.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

__all__ = ["LOGGERS", "Logger", "check_loggers", "epoch_line", "open_loggers"]


class Logger(Protocol):
    def batch(self, step: int, values: Mapping[str, float]) -> None: ...

    def epoch(self, epoch: int, row: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoardLogger:
    """Scalars for TensorBoard (`tensorboard --logdir <out>/tensorboard`)."""

    def __init__(self, out: Path, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(out / "tensorboard"), purge_step=purge_step)

    def batch(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"train/{name}", value, step)

    def epoch(self, epoch: int, row: Mapping[str, float]) -> None:
        for name, value in row.items():
            if name != "epoch":
                self.writer.add_scalar(f"epoch/{name}", value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


LOGGERS = {"tensorboard": ("tensorboard", "monode[tensorboard]")}  # name -> (module it needs, pip extra)


def check_loggers(names: Sequence[str]) -> None:
    """ValueError for an unknown logger or one whose package is missing (before any data is loaded)."""
    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"--log {name!r} is not a logger; choose from {sorted(LOGGERS)}")
        module, extra = LOGGERS[name]
        if importlib.util.find_spec(module) is None:
            raise ValueError(f"--log {name} needs the {module} package: pip install '{extra}'")


def open_loggers(names: Sequence[str], out: Path, purge_step: int | None = None) -> list[Logger]:
    """The loggers `names` (already checked by `TrainConfig`) writing into `out`."""
    return [TensorBoardLogger(out, purge_step) for name in names if name == "tensorboard"]


def epoch_line(epoch: int, epochs: int, row: Mapping[str, float]) -> str:
    """`[ 4/60] train loss 0.2345 accuracy 0.912 | eval loss ... | NFE fwd 26 bwd 32 eval 26 | 1.2 s`
    (epochs counted from 1 here; the metrics files count from 0)."""

    def metrics(prefix: str) -> str:
        items = [
            (k[len(prefix) :], v)
            for k, v in row.items()
            if k.startswith(prefix) and "nfe" not in k and k != "train_seconds"
        ]
        return " ".join(f"{name} {value:<9.4g}" for name, value in items).rstrip()

    width = len(str(epochs))
    parts = [f"[{epoch + 1:>{width}}/{epochs}] train {metrics('train_')}"]
    if any(k.startswith("eval_") for k in row):
        parts.append(f"eval {metrics('eval_')}")
    columns = (("fwd", "train_forward_nfe"), ("bwd", "train_backward_nfe"), ("eval", "eval_forward_nfe"))
    nfe = [f"{label} {row[key]:<5.0f}" for label, key in columns if key in row]
    if nfe:
        parts.append("NFE " + " ".join(nfe).rstrip())
    parts.append(f"{row.get('seconds', 0.0):.1f} s")
    return " | ".join(parts)
