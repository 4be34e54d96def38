"""The one trainer every task uses: batching, Adam, learning-rate schedule, progress, metrics, checkpoints.

A task is any object with these members (the `Task` protocol):

    model       nn.Module                     the network to train (build it after `seed_everything`)
    train_data  tuple of tensors (x, y, ...)  equal first dimension; a Tensor or TensorDataset works too
    eval_data   tuple of tensors, or None     None skips evaluation
    loss(model, batch) -> (loss, metrics)     loss: a scalar tensor; metrics: {name: float | tensor}
    evaluate(model, batch) -> metrics         called under torch.no_grad() with model.eval()

A `batch` is the tuple of tensors indexed with one batch of rows and moved to `config.device`. Training
batches follow a permutation seeded by (seed, epoch) alone, so a resumed run sees the batches of an
uninterrupted one; evaluation batches are in order. Metrics are averaged over batches weighted by batch
size; the NFE columns (from `record_stats`) are means per batch.

    rows = fit(task, TrainConfig(epochs=100, lr=1e-3, batch_size=64, out="runs/x"))

After every epoch `<out>/` receives, each written atomically: metrics.csv and metrics.json (one row per epoch:
epoch, lr, train_*, eval_*, train_seconds (the training batches), seconds (the whole epoch)) and checkpoint.pt,
which carries its own sha256 (a torch.save archive with one more record, so a kill at any instant leaves a
checkpoint that loads or the previous one). `resume=True` continues after the last checkpointed epoch and
reproduces the uninterrupted run exactly on CPU (every column but the two times). A run holds the lock of
`<out>` (`.monode.lock`) throughout, so a second run into the same folder is refused."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import random
import sys
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ._atomic import atomic_write, remove_leftovers
from ._distributed import Replicas, replicas
from ._loggers import check_loggers, epoch_line, open_loggers
from ._run_lock import locked_run_dir
from .solvers import ODESolverError, record_stats

__all__ = [
    "Task",
    "TrainConfig",
    "fit",
    "evaluate",
    "load_checkpoint",
    "seed_everything",
    "check_device",
    "CheckpointError",
    "TrainingDivergedError",
]

CHECKPOINT = "checkpoint.pt"
# Settings that change the training trajectory: a resumed run must keep the checkpoint's values.
_TRAJECTORY_FIELDS = (
    "lr",
    "batch_size",
    "weight_decay",
    "grad_clip",
    "lr_milestones",
    "lr_step",
    "seed",
    "max_batches_per_epoch",
)


class CheckpointError(RuntimeError):
    """A checkpoint lacks its sha256 sidecar, does not match it, or cannot be loaded."""


class TrainingDivergedError(RuntimeError):
    """Training went astray: the loss became NaN or infinite, or the ODE solver failed on a batch after
    the first. Names where (`epoch`, `batch`, `lr`) and the last good `checkpoint` (None before the first)."""

    def __init__(self, message: str, *, epoch: int, batch: int, lr: float, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.epoch, self.batch, self.lr, self.checkpoint = epoch, batch, lr, checkpoint

    def __reduce__(self) -> tuple:  # picklable (errors cross process boundaries in `compare --jobs`)
        return _diverged, (str(self), self.epoch, self.batch, self.lr, self.checkpoint)


def _diverged(message: str, epoch: int, batch: int, lr: float, checkpoint: Path | None) -> TrainingDivergedError:
    return TrainingDivergedError(message, epoch=epoch, batch=batch, lr=lr, checkpoint=checkpoint)


class Task(Protocol):
    """What `fit` needs from a benchmark; see the module docstring."""

    @property
    def model(self) -> nn.Module: ...

    @property
    def train_data(self) -> Sequence[Tensor]: ...

    @property
    def eval_data(self) -> Sequence[Tensor] | None: ...

    def loss(self, model: Any, batch: tuple[Tensor, ...]) -> tuple[Tensor, Mapping[str, float | Tensor]]: ...

    def evaluate(self, model: Any, batch: tuple[Tensor, ...]) -> Mapping[str, float | Tensor]: ...


@dataclass
class TrainConfig:
    """How to train: Adam, its learning-rate schedule, batching, the output folder and resuming.

    At most one schedule changes `lr`: `lr_milestones` maps an epoch (counted from 0) to the rate used
    from that epoch on, as in `{0: 1e-3, 50: 1e-4}`; `lr_step=(every, gamma)` multiplies the rate by
    `gamma` after every `every` optimizer steps (StepLR on iterations). `max_batches_per_epoch` caps the
    train and the eval batches of every epoch, for quick runs. Evaluation runs every `eval_every`
    epochs and after the last one.
    """

    epochs: int
    lr: float
    batch_size: int
    out: Path
    weight_decay: float = 0.0
    grad_clip: float | None = None
    lr_milestones: dict[int, float] | None = None
    lr_step: tuple[int, float] | None = None
    seed: int = 0
    resume: bool = False
    device: str = "cpu"
    eval_every: int = 1
    max_batches_per_epoch: int | None = None
    progress: bool = True
    log: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.log = tuple(self.log)
        if self.lr_milestones is not None:  # int keys also when the config comes from JSON
            self.lr_milestones = {int(epoch): float(lr) for epoch, lr in self.lr_milestones.items()}
        if self.lr_step is not None:
            self.lr_step = (int(self.lr_step[0]), float(self.lr_step[1]))

        def require(ok: bool, name: str, what: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {what}, got {getattr(self, name)!r}")

        require(self.epochs >= 1, "epochs", ">= 1")
        require(math.isfinite(self.lr) and self.lr > 0, "lr", "finite and > 0")
        require(self.batch_size >= 1, "batch_size", ">= 1")
        require(self.weight_decay >= 0, "weight_decay", ">= 0")
        require(
            self.grad_clip is None or (math.isfinite(self.grad_clip) and self.grad_clip > 0),
            "grad_clip",
            "None or finite and > 0",
        )
        require(math.isfinite(self.weight_decay), "weight_decay", "finite")
        require(self.eval_every >= 1, "eval_every", ">= 1")
        require(
            self.max_batches_per_epoch is None or self.max_batches_per_epoch >= 1,
            "max_batches_per_epoch",
            "None or >= 1",
        )
        require(
            not self.lr_milestones or all(e >= 0 and lr > 0 for e, lr in self.lr_milestones.items()),
            "lr_milestones",
            "a dict {epoch >= 0: lr > 0}",
        )
        require(
            self.lr_step is None or (self.lr_step[0] >= 1 and self.lr_step[1] > 0),
            "lr_step",
            "None or (every >= 1, gamma > 0)",
        )
        require(not (self.lr_milestones and self.lr_step), "lr_step", "None when lr_milestones is set")
        check_device(self.device)
        check_loggers(self.log)

    def lr_at(self, epoch: int, step: int) -> float:
        """The learning rate of optimizer step `step` (counted from 0 over the run), taken in `epoch`."""
        if self.lr_milestones:
            return next(
                (lr for start, lr in sorted(self.lr_milestones.items(), reverse=True) if epoch >= start), self.lr
            )
        if self.lr_step:
            every, gamma = self.lr_step
            return self.lr * gamma ** (step // every)
        return self.lr

    def as_dict(self) -> dict:
        """Plain values only (str, numbers, lists, dicts), as stored in checkpoints."""
        d = dataclasses.asdict(self)
        d["out"] = str(self.out)
        d["lr_step"] = None if self.lr_step is None else list(self.lr_step)
        d["log"] = list(self.log)
        return d


def check_device(device: str | torch.device) -> torch.device:
    """`device` as a torch.device that this torch build can use; ValueError naming it otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device {device!r} is not a torch device: use cpu, cuda, cuda:N or mps") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device!r}: this torch build or machine has no CUDA device "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device!r}: MPS is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {device!r}: monode runs on cpu, cuda or mps")
    return dev


def seed_everything(seed: int) -> None:
    """Seed python `random`, numpy and torch (CPU and CUDA). Tasks call it before building their model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fit(task: Task, config: TrainConfig) -> list[dict[str, float]]:
    """Train `task.model` with Adam as `config` says; return the metrics rows, one per epoch.

    Holds the lock of `config.out` for the run (RunLockedError if another live process holds it). Raises
    FileExistsError if `config.out` holds a checkpoint and `config.resume` is False, CheckpointError if
    the checkpoint to resume fails its check or does not fit the model, ValueError if it was written
    with other trajectory settings (lr, batch_size, seed, ...), and TrainingDivergedError on a NaN or
    infinite loss or a solver failure during training.
    """
    r = replicas(config.device)
    with locked_run_dir(config.out) if r.main else contextlib.nullcontext():
        return _fit(task, config, r)


class _Loss(nn.Module):
    """The task's loss as a module, so DistributedDataParallel can wrap it whatever model methods the task
    calls; `weight` scales the loss that is differentiated (a rank's share of the global batch)."""

    def __init__(self, task: Task, model: nn.Module) -> None:
        super().__init__()
        self.model, self.task = model, task

    def forward(self, batch: tuple[Tensor, ...], weight: float) -> tuple[Tensor, Tensor, Mapping[str, float | Tensor]]:
        loss, metrics = self.task.loss(self.model, batch)
        return (loss if weight == 1.0 else loss * weight), loss, metrics


def _fit(task: Task, config: TrainConfig, r: Replicas) -> list[dict[str, float]]:
    out, device = config.out, torch.device(r.device(config.device))
    ckpt_path = out / CHECKPOINT
    refuse_overwrite(out, config.resume)
    if r.main:
        remove_leftovers(out)
    train_data = _as_tensors(task.train_data, "task.train_data")
    eval_data = None if task.eval_data is None else _as_tensors(task.eval_data, "task.eval_data")
    model = task.model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    seed_everything(config.seed + 7919 * r.rank)
    say = print if r.main else (lambda *a, **k: None)

    rows: list[dict[str, float]] = []
    start, step = 0, 0  # first epoch to run; optimizer steps taken so far
    if config.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        _check_same_trajectory(config, ckpt["config"])
        if ckpt.get("world_size", 1) != r.world:
            raise ValueError(
                f"{ckpt_path} was written by {ckpt.get('world_size', 1)} process(es), this run has {r.world}: "
                f"resume with as many, or choose another --out"
            )
        _load_state(model, optimizer, ckpt, ckpt_path)
        _set_rng_state(ckpt["rng_ranks"][r.rank] if r.parallel else ckpt["rng"])
        rows, start, step = ckpt["rows"], ckpt["epoch"] + 1, ckpt["step"]
        say(f"resuming {ckpt_path} after epoch {ckpt['epoch']}")
    elif config.resume:
        say(f"no checkpoint in {out}: starting a fresh run")
    saved_epoch = start - 1  # the epoch of the checkpoint on disk (-1: none yet)
    show_bar = config.progress and sys.stderr.isatty() and r.main
    loss_module = r.wrap(_Loss(task, model))
    loggers = open_loggers(config.log, out, purge_step=step if start else None) if r.main else []

    def diverged(epoch: int, batch: int, lr: float, what: str) -> TrainingDivergedError:
        kept = (
            f"the last good checkpoint (epoch {saved_epoch}) is kept at {ckpt_path}"
            if saved_epoch >= 0
            else "no checkpoint was written yet"
        )
        return TrainingDivergedError(
            f"{what} at epoch {epoch}, batch {batch} (lr {lr:.4g}); {kept}",
            epoch=epoch,
            batch=batch,
            lr=lr,
            checkpoint=ckpt_path if saved_epoch >= 0 else None,
        )

    with _deterministic_algorithms():
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(
                len(train_data[0]), generator=torch.Generator().manual_seed(config.seed * 1000003 + epoch)
            )
            batches = order.split(config.batch_size)[: config.max_batches_per_epoch]
            train = _Means()
            with tqdm(batches, desc=f"epoch {epoch}", disable=not show_bar, leave=False) as bar:
                for i, global_idx in enumerate(bar):
                    idx = r.shard(global_idx)
                    share = len(idx) * r.world / len(global_idx)  # this rank's loss weight (1 in one process)
                    if len(idx) == 0:  # fewer examples than ranks: join the collectives with zero weight
                        idx = global_idx[:1]
                    batch = tuple(t[idx].to(device) for t in train_data)
                    lr = config.lr_at(epoch, step)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    with record_stats() as stats:
                        try:
                            weighted, loss, metrics = loss_module(batch, share)
                            loss_value = loss.item()  # one sync per batch, to stop at the first bad loss
                            if not math.isfinite(loss_value):
                                raise diverged(epoch, i, lr, f"loss is {loss_value}")
                            optimizer.zero_grad(set_to_none=True)
                            weighted.backward()
                        except ODESolverError as e:
                            if saved_epoch < 0 and i == 0:
                                raise  # the very first solve: the settings, not the training, are at fault
                            raise diverged(epoch, i, lr, f"the ODE solver failed ({e})") from e
                    if config.grad_clip is not None:
                        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    optimizer.step()
                    step += 1
                    train.add({"loss": loss_value, **metrics}, weight=share * len(global_idx) / r.world)
                    nfe = {"forward_nfe": stats.forward_nfe, "backward_nfe": stats.backward_nfe}
                    train.add(nfe, weight=1 if share else 0)
                    bar.set_postfix(loss=f"{loss_value:.4g}", refresh=False)
                    for logger in loggers:
                        logger.batch(step, {"loss": loss_value, "lr": lr, **nfe})

            train_seconds = time.perf_counter() - t0
            row: dict[str, float] = {"epoch": epoch, "lr": lr, **train.means("train_", r)}
            if eval_data is not None and ((epoch + 1) % config.eval_every == 0 or epoch == config.epochs - 1):
                row.update(
                    evaluate(task, eval_data, config.batch_size, device, config.max_batches_per_epoch, r, show_bar)
                )
            row["train_seconds"] = train_seconds
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            rng = r.gather(_rng_state())
            if r.main:
                tqdm.write(epoch_line(epoch, config.epochs, row))
                for logger in loggers:
                    logger.epoch(epoch, row)
                _write_metrics(out, rows)
                payload = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "step": step,
                    "rng": rng[0],
                    "rows": rows,
                    "config": config.as_dict(),
                }
                if r.parallel:
                    payload.update(world_size=r.world, rng_ranks=rng)
                _save_checkpoint(ckpt_path, payload)
            saved_epoch = epoch
    for logger in loggers:
        logger.close()
    return rows


def refuse_overwrite(out: Path, resume: bool) -> None:
    """FileExistsError if `out` holds a checkpoint that a fresh run (`resume` False) would overwrite."""
    if (out / CHECKPOINT).exists() and not resume:
        raise FileExistsError(
            f"{out / CHECKPOINT} already exists: pass --resume (TrainConfig.resume=True) to "
            f"continue that run, or choose another --out"
        )


def evaluate(
    task: Task,
    data: Sequence[Tensor],
    batch_size: int,
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    ranks: Replicas | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """`task.evaluate` over `data` in order, under no_grad with the model in eval mode: the eval_*
    metrics averaged over examples and eval_forward_nfe (mean per batch). With `ranks` (data-parallel
    processes), each rank evaluates its part of every batch and the means are all-reduced."""
    r = ranks or Replicas()
    model = task.model
    model.eval()
    means = _Means()
    tensors = _as_tensors(data, "eval data")
    with torch.no_grad():
        batches = torch.arange(len(tensors[0])).split(batch_size)[:max_batches]
        for global_idx in tqdm(batches, desc="evaluating", disable=not progress, leave=False):
            idx = r.shard(global_idx)
            if len(idx) == 0:
                continue
            batch = tuple(t[idx].to(device) for t in tensors)
            with record_stats() as stats:
                metrics = task.evaluate(model, batch)
            means.add(metrics, weight=len(idx))
            means.add({"forward_nfe": stats.forward_nfe}, weight=1)
    return means.means("eval_", r)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `fit`, after checking its embedded sha256; tensors load on the CPU.

    Keys: model, optimizer (state dicts), epoch (last finished, from 0), step, rng, rows, config.
    Raises CheckpointError if the file is damaged or half-written (its digest or a record's CRC does not
    match), has no digest, or does not load with `torch.load(weights_only=True)`. A checkpoint of
    monode 0.1.0 (digest in a `.sha256` sidecar file) is checked against its sidecar.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    expected, actual = _digests(data, path)
    if expected != actual:
        raise CheckpointError(
            f"checkpoint {path} is damaged or half-written: its sha256 is {actual}, its digest expects {expected}"
        )
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, RuntimeError, EOFError, ... all mean "not a checkpoint"
        raise CheckpointError(
            f"checkpoint {path} matches its sha256 but does not load with "
            f"torch.load(weights_only=True): {type(e).__name__}: {e}"
        ) from e
    missing = {"model", "optimizer", "epoch", "step", "rng", "rows", "config"} - set(
        ckpt if isinstance(ckpt, dict) else ()
    )
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {sorted(missing)}: not written by monode.train.fit")
    return ckpt


class _Means:
    """Weighted running means of metrics (floats or scalar tensors)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, metrics: Mapping[str, float | Tensor], weight: float) -> None:
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value) * weight
            self.weights[name] = self.weights.get(name, 0.0) + weight

    def means(self, prefix: str, ranks: Replicas | None = None) -> dict[str, float]:
        """The means, over the ranks' sums too when `ranks` is given (every rank gets them)."""
        sums, weights = self.sums, self.weights
        if ranks is not None and ranks.parallel:
            both = ranks.sum({**{"s:" + k: v for k, v in sums.items()}, **{"w:" + k: v for k, v in weights.items()}})
            sums = {k: both["s:" + k] for k in sums}
            weights = {k: both["w:" + k] for k in weights}
        return {prefix + name: total / weights[name] for name, total in sums.items() if weights[name]}


def _as_tensors(data: Tensor | Sequence[Tensor], name: str) -> tuple[Tensor, ...]:
    """`data` as a non-empty tuple of tensors with one common, non-zero first dimension."""
    data = getattr(data, "tensors", data)  # TensorDataset
    tensors = (data,) if isinstance(data, Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, Tensor) and t.dim() >= 1 for t in tensors):
        raise ValueError(f"{name} must be a tensor or a tuple of tensors, got {type(data).__name__}")
    sizes = {len(t) for t in tensors}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            f"{name} must hold tensors with one common non-zero first dimension, got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    return tensors


def _load_state(model: nn.Module, optimizer: torch.optim.Optimizer, ckpt: dict, path: Path) -> None:
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} does not fit this model ({first}): it was written by another model or "
            f"settings; resume with those or choose another --out"
        ) from e


def _check_same_trajectory(config: TrainConfig, saved: dict) -> None:
    """Refuse to resume a checkpoint written with other settings that shape the training trajectory."""
    new = config.as_dict()
    for name in _TRAJECTORY_FIELDS:
        if new[name] != saved.get(name):
            raise ValueError(
                f"TrainConfig.{name}={new[name]!r} differs from {saved.get(name)!r} in the "
                f"checkpoint being resumed: resume with the same settings or choose another --out"
            )


@contextlib.contextmanager
def _deterministic_algorithms() -> Iterator[None]:
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _rng_state() -> dict:
    """Python, numpy and torch RNG states as tensors and numbers, so checkpoints load with weights_only."""
    version, mt, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "python": [version, torch.tensor(mt, dtype=torch.int64), gauss_next],
        "numpy": [torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, cached_gaussian],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    version, mt, gauss_next = state["python"]
    random.setstate((version, tuple(mt.tolist()), gauss_next))
    keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_metrics(out: Path, rows: list[dict[str, float]]) -> None:
    """Rewrite metrics.csv and metrics.json from all rows (columns: every key in order of appearance,
    the times last; a cell is empty where a row lacks the key, as train-only epochs lack eval_*)."""
    times = ["train_seconds", "seconds"]
    columns = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in times] + times
    text = io.StringIO()
    writer = csv.DictWriter(text, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "metrics.csv", text.getvalue().encode())
    atomic_write(out / "metrics.json", json.dumps(rows, indent=1).encode())


_DIGEST = "monode.sha256"  # the zip record that holds the sha256 of all the others


def _content_digest(archive: zipfile.ZipFile) -> str:
    """sha256 over every record of a torch.save archive but the digest, in order (name, size, bytes).
    Reading a record checks its CRC-32 too (zipfile.BadZipFile when it fails)."""
    h = hashlib.sha256()
    for info in archive.infolist():
        if info.filename.rsplit("/", 1)[-1] != _DIGEST:
            record = archive.read(info)
            h.update(info.filename.encode() + b"\0" + len(record).to_bytes(8, "little") + record)
    return h.hexdigest()


def _legacy_sidecar(path: Path) -> Path:
    """Where monode 0.1.0 kept a checkpoint's sha256."""
    return path.with_name(path.name + ".sha256")


def _digests(data: bytes, path: Path) -> tuple[str, str]:
    """(expected, actual) sha256 of a checkpoint's bytes: the embedded digest against its records, or
    for a legacy checkpoint its `.sha256` sidecar against the whole file."""
    sidecar = _legacy_sidecar(path)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            digest = [i for i in archive.infolist() if i.filename.rsplit("/", 1)[-1] == _DIGEST]
            if digest:
                return archive.read(digest[0]).decode().strip(), _content_digest(archive)
    except (zipfile.BadZipFile, EOFError, ValueError) as e:
        if not sidecar.exists():
            raise CheckpointError(f"checkpoint {path} is damaged or half-written: {e}") from e
    try:
        expected = sidecar.read_text().split()[0]
    except (OSError, IndexError) as e:
        raise CheckpointError(f"checkpoint {path} has no sha256 digest and no readable sidecar {sidecar}") from e
    return expected, hashlib.sha256(data).hexdigest()


def _save_checkpoint(path: Path, payload: dict) -> None:
    """Write `path` atomically, its sha256 embedded as one more zip record of the torch.save archive.

    One file and one rename: a kill at any instant leaves the previous checkpoint or the new one, each
    with its digest, and `torch.load(path, weights_only=True)` reads it as any torch checkpoint.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with zipfile.ZipFile(buffer, "a") as archive:
        prefix = archive.namelist()[0].split("/", 1)[0]
        archive.writestr(f"{prefix}/{_DIGEST}", _content_digest(archive))
    atomic_write(path, buffer.getvalue())
    _legacy_sidecar(path).unlink(missing_ok=True)  # a legacy sidecar describes an older file
