"""monode.train: learning, exact resume, checkpoint integrity, divergence, schedules, NFE columns."""

import json

import pytest
import torch
from torch import nn

import monode
from monode.train import CheckpointError, TrainingDivergedError, fit, load_checkpoint
from trainables import BATCHES, Blobs, FailsAt, config, without_seconds


def test_loss_falls_and_accuracy_beats_chance(tmp_path):
    rows = fit(Blobs(), config(tmp_path))
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["eval_accuracy"] > 0.9
    assert json.loads((tmp_path / "metrics.json").read_text()) == rows
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[0].split(",")[:3] == ["epoch", "lr", "train_loss"]


@pytest.mark.parametrize("how", ["kill", "extend"])
def test_resume_equals_uninterrupted_run(tmp_path, how):
    a, b = tmp_path / "a", tmp_path / "b"
    settings = dict(lr_step=(7, 0.8), grad_clip=1.0, weight_decay=1e-3)
    task_a = Blobs()
    rows_a = fit(task_a, config(a, **settings))
    if how == "kill":  # killed in the third epoch (index 2), after the checkpoint of epoch 1
        with pytest.raises(KeyboardInterrupt):
            fit(FailsAt(2 * BATCHES + 1, KeyboardInterrupt), config(b, **settings))
    else:
        fit(Blobs(), config(b, epochs=2, **settings))
    assert load_checkpoint(b / "checkpoint.pt")["epoch"] == 1
    task_b = Blobs(init_seed=99)  # another init: everything must come from the checkpoint
    rows_b = fit(task_b, config(b, resume=True, **settings))
    for p, q in zip(task_a.model.parameters(), task_b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert without_seconds(rows_b) == without_seconds(rows_a)
    assert without_seconds(json.loads((b / "metrics.json").read_text())) == without_seconds(rows_a)
    csv_a, csv_b = ((d / "metrics.csv").read_text().splitlines() for d in (a, b))
    drop_seconds = lambda lines: [line.rsplit(",", 2)[0] for line in lines]  # the times are the last columns
    assert drop_seconds(csv_b) == drop_seconds(csv_a) and len(csv_b) == 5


def test_resume_refuses_other_trajectory_settings(tmp_path):
    fit(Blobs(), config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"TrainConfig.lr=0.1 differs from 0.05"):
        fit(Blobs(), config(tmp_path, lr=0.1, resume=True))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_checkpoint_raises(tmp_path, damage):
    fit(Blobs(), config(tmp_path, epochs=1))
    path = tmp_path / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) * 2 // 3 :]
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt is damaged or half-written"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        fit(Blobs(), config(tmp_path, resume=True))


def test_legacy_checkpoint_with_a_sha256_sidecar(tmp_path):
    """monode 0.1.0 wrote the digest into checkpoint.pt.sha256: still checked and loaded."""
    import hashlib

    fit(Blobs(), config(tmp_path / "run", epochs=1))
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    path = tmp_path / "checkpoint.pt"
    torch.save(ckpt, path)
    sidecar = tmp_path / "checkpoint.pt.sha256"
    sidecar.write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "  checkpoint.pt\n")
    assert load_checkpoint(path)["epoch"] == 0
    path.write_bytes(b"not a checkpoint")
    sidecar.write_text(hashlib.sha256(b"not a checkpoint").hexdigest())
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt matches its sha256 but does not load"):
        load_checkpoint(path)
    sidecar.unlink()
    with pytest.raises(CheckpointError, match="is damaged or half-written: File is not a zip file"):
        load_checkpoint(path)
    torch.save(ckpt, path)  # a plain torch checkpoint, no digest anywhere
    with pytest.raises(CheckpointError, match="no sha256 digest and no readable sidecar"):
        load_checkpoint(path)


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    fit(Blobs(), config(tmp_path, epochs=2))
    path = tmp_path / "checkpoint.pt"
    before = path.read_bytes(), (tmp_path / "metrics.csv").read_text()
    with pytest.raises(
        TrainingDivergedError,
        match=r"loss is nan at epoch 2, batch 3 \(lr 0.05\); .*epoch 1\) is kept at .*checkpoint\.pt",
    ):
        fit(FailsAt(3), config(tmp_path, resume=True))
    assert (path.read_bytes(), (tmp_path / "metrics.csv").read_text()) == before
    assert load_checkpoint(path)["epoch"] == 1


def test_nan_loss_in_first_epoch_writes_nothing(tmp_path):
    with pytest.raises(TrainingDivergedError, match=r"epoch 0, batch 0 \(lr 0.05\); no checkpoint"):
        fit(FailsAt(0), config(tmp_path))
    assert not (tmp_path / "checkpoint.pt").exists()


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    fit(Blobs(), config(tmp_path / "fresh", epochs=1, resume=True))
    assert "starting a fresh run" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="--resume.*another --out"):
        fit(Blobs(), config(tmp_path / "fresh", epochs=1))


def test_checkpoint_loads_with_weights_only(tmp_path):
    task = Blobs()
    fit(task, config(tmp_path, epochs=1, weight_decay=1e-3))
    ckpt = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["weight_decay"] == 1e-3
    assert ckpt["epoch"] == 0 and ckpt["step"] == BATCHES and len(ckpt["rows"]) == 1
    assert ckpt["config"]["out"] == str(tmp_path) and isinstance(ckpt["rng"]["torch"], torch.Tensor)
    for name, p in task.model.state_dict().items():
        assert torch.equal(ckpt["model"][name], p)


def test_lr_milestones(tmp_path):
    rows = fit(Blobs(), config(tmp_path, epochs=3, lr_milestones={0: 0.05, 2: 0.005}))
    assert [r["lr"] for r in rows] == [0.05, 0.05, 0.005]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"] == 0.005


def test_lr_step(tmp_path):
    rows = fit(Blobs(), config(tmp_path, epochs=2, lr_step=(3, 0.5)))
    # the last step of epoch 0 is step 4 (rate 0.05 * 0.5 ** 1), of epoch 1 step 9 (0.05 * 0.5 ** 3)
    assert [r["lr"] for r in rows] == [0.025, 0.00625]


def test_grad_clip(tmp_path):
    # Adam divides by sqrt(v) + eps: gradients clipped far below eps = 1e-8 hardly move the weights
    task = Blobs()
    before = [p.detach().clone() for p in task.model.parameters()]
    fit(task, config(tmp_path, epochs=1, grad_clip=1e-12))
    moved = max((p - q).abs().max().item() for p, q in zip(task.model.parameters(), before))
    assert 0 < moved < 1e-3 * 0.05


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(epochs=0), r"TrainConfig.epochs must be >= 1, got 0"),
        (dict(grad_clip=-1.0), r"TrainConfig.grad_clip must be None or finite and > 0, got -1.0"),
        (dict(lr=float("inf")), r"TrainConfig.lr must be finite and > 0, got inf"),
        (dict(device="cuda:99"), r"--device 'cuda:99': (this torch build or machine has no CUDA|only \d+ CUDA)"),
        (dict(lr_milestones={0: 0.1}, lr_step=(5, 0.5)), r"TrainConfig.lr_step must be None when lr_milestones"),
    ],
)
def test_config_errors_name_the_argument(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        config(tmp_path, **bad)


class ODEClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.field = nn.Linear(2, 2)
        self.readout = nn.Linear(2, 2)

    def forward(self, x):
        t = torch.tensor([0.0, 1.0])
        y = monode.odeint(lambda t, y: torch.tanh(self.field(y)), x, t, method="rk4", options=dict(step_size=0.25))
        return self.readout(y[-1])


def test_nfe_columns(tmp_path):
    task = Blobs()
    task.model = ODEClassifier()
    rows = fit(task, config(tmp_path, epochs=1, grad_clip=1.0, max_batches_per_epoch=2))
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    for column in ("train_forward_nfe", "train_backward_nfe", "eval_forward_nfe"):
        assert isinstance(rows[0][column], float) and rows[0][column] > 0


def test_tensorboard_logger_writes_batch_and_epoch_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = fit(Blobs(), config(tmp_path, epochs=2, log=("tensorboard",)))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, 2 * BATCHES + 1))
    epoch_loss = events.Scalars("epoch/train_loss")
    assert [e.step for e in epoch_loss] == [0, 1]
    assert epoch_loss[-1].value == pytest.approx(rows[-1]["train_loss"], rel=1e-6)
    assert {"train/forward_nfe", "train/lr", "epoch/eval_accuracy"} <= set(events.Tags()["scalars"])


def test_unknown_or_missing_logger_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    with pytest.raises(ValueError, match="--log 'wandb' is not a logger; choose from \\['tensorboard'\\]"):
        config(tmp_path, log=("wandb",))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"--log tensorboard needs the tensorboard package: pip install"):
        config(tmp_path, log=("tensorboard",))


def test_epoch_line_is_short_and_aligned(capsys):
    from monode._loggers import epoch_line

    row = {"epoch": 3, "lr": 0.01, "train_loss": 0.23456, "train_accuracy": 0.9, "train_forward_nfe": 26.0,
           "train_backward_nfe": 32.5, "eval_loss": 0.25, "eval_accuracy": 0.91, "eval_forward_nfe": 26.0,
           "train_seconds": 1.0, "seconds": 1.234}  # fmt: skip
    line = epoch_line(3, 60, row)
    assert line.startswith("[ 4/60] train loss 0.2346    accuracy 0.9")
    assert "| eval loss 0.25      accuracy 0.91 |" in line and line.endswith(
        "| NFE fwd 26    bwd 32    eval 26 | 1.2 s"
    )
    other = epoch_line(10, 60, {**row, "train_loss": 12.5})
    assert other.index("accuracy") == line.index("accuracy")  # columns line up from epoch to epoch
