"""MNIST / CIFAR-10 tasks and the ResNet baseline: real short training, data errors, NFE accounting."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch

from monode import odeint, record_stats
from monode.cli import main
from monode.data import resolve_data_dir, write_cifar10_like
from monode.dynamics import ConvField
from monode.layers import ResNetBlock, image_classifier
from monode.tasks import TASKS, RunOptions


def _rows(path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(path / "metrics.csv")))


@pytest.mark.slow
@pytest.mark.data("mnist")
def test_mnist_subset_training_beats_chance(tmp_path) -> None:
    """HBNODE on 384 real MNIST digits, 2 epochs with the adjoint and RK4 (2 steps; the quick preset's dopri5
    takes twice as long): loss falls, test accuracy far above 10% (0.71 on 400 test digits when written)."""
    argv = ["train", "mnist", "--model", "hbnode", "--subset", "384", "--set", "test_subset=400", "--epochs", "2",
            "--batch-size", "32", "--lr", "2e-3", "--method", "rk4", "--step-size", "0.5", "--no-progress",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    rows = _rows(tmp_path)
    assert float(rows[-1]["train_loss"]) < 0.5 * float(rows[0]["train_loss"])
    assert float(rows[-1]["eval_accuracy"]) >= 0.6
    assert float(rows[-1]["train_forward_nfe"]) > 0 and float(rows[-1]["train_backward_nfe"]) > 0


def test_cifar10_task_on_generated_batches(tmp_path) -> None:
    write_cifar10_like(tmp_path / "data", n_train=40, n_test=10)
    for model in ("ghbnode", "resnet"):
        assert (
            main(
                [
                    "train",
                    "cifar10",
                    "--model",
                    model,
                    "--data-dir",
                    str(tmp_path / "data"),
                    "--epochs",
                    "1",
                    "--batch-size",
                    "20",
                    "--set",
                    "resnet_depth=2",
                    "--method",
                    "rk4",
                    "--step-size",
                    "0.5",
                    "--no-progress",
                    "--out",
                    str(tmp_path / model),
                ]
            )
            == 0
        )
        row = _rows(tmp_path / model)[-1]
        assert 0 <= float(row["eval_accuracy"]) <= 1 and float(row["train_loss"]) > 0
        assert float(row["train_forward_nfe"]) == (8 if model == "ghbnode" else 2)


@pytest.mark.data("mnist")
def test_missing_and_corrupt_mnist_are_clear_errors(tmp_path, capsys) -> None:
    assert main(["train", "mnist", "--model", "node", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("monode: error:") and "train-images-idx3-ubyte.gz" in err
    source = resolve_data_dir("mnist")
    bad = tmp_path / "mnist"
    shutil.copytree(source, bad)
    with open(bad / "train-labels-idx1-ubyte.gz", "r+b") as fh:
        fh.seek(200)
        byte = fh.read(1)
        fh.seek(200)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert main(["train", "mnist", "--model", "node", "--data-dir", str(tmp_path), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "train-labels-idx1-ubyte.gz" in err and "sha256" in err.lower()


@pytest.mark.data("mnist")
def test_every_model_builds_for_both_image_tasks(tmp_path) -> None:
    write_cifar10_like(tmp_path, n_train=4, n_test=2)
    for task_name, data_dir, size in (("mnist", None, 28), ("cifar10", str(tmp_path), 32)):
        task = TASKS[task_name]
        for model in task.models:
            opts = RunOptions(
                model=model,
                data_dir=data_dir,
                subset=4,
                method="euler",
                step_size=1.0,
                overrides={"test_subset": 2, "resnet_depth": 1},
            )
            built = task.build(task.settings(opts))
            x = built.train_data[0]
            assert x.shape[-1] == size
            assert built.model(x).shape == (4, 10)


def test_resnet_with_tied_weights_is_an_euler_solve() -> None:
    torch.manual_seed(0)
    net = ConvField(2, 8).double()
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    block = ResNetBlock(lambda: net, depth=4)
    expected = odeint(
        net, x, torch.tensor([0.0, 1.0], dtype=torch.float64), method="euler", options=dict(step_size=0.25)
    )[-1]
    torch.testing.assert_close(block(x), expected)


def test_resnet_reports_depth_evaluations_forward_and_backward() -> None:
    model = image_classifier("resnet", "mnist", resnet_depth=3)
    assert len(model[0].nets) == 3 and model[0].nets[0] is not model[0].nets[1]
    with record_stats() as stats:
        out = model(torch.rand(2, 1, 28, 28))
        assert (stats.forward_nfe, stats.backward_nfe) == (3, 0)
        out.sum().backward()
    assert (stats.forward_nfe, stats.backward_nfe) == (3, 3)
    with pytest.raises(ValueError, match="depth"):
        ResNetBlock(lambda: ConvField(1, 4), depth=0)
