"""Time-series task: spiral generator, masked losses, the latent ODE with every model, short trainings, the CLI.

PhysioNet's 8000 records and its death counts (554 in set A) are checked in tests/test_data.py.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch

from monode.cli import main
from monode.data import make_spirals
from monode.dynamics import MODELS
from monode.tasks import TASKS, RunOptions
from monode.tasks.timeseries import LatentODE, masked_mse

F64 = torch.float64


def _rows(out) -> list[dict[str, str]]:
    return list(csv.DictReader(open(out / "metrics.csv")))


# ---------------------------------------------------------------- spirals


def test_make_spirals_shapes_times_and_seeding() -> None:
    data = make_spirals(30, n_grid=20, n_observed=7, seed=3)
    assert data["times"].shape == (30, 7) and data["values"].shape == data["mask"].shape == (30, 7, 2)
    assert data["labels"].shape == (30,) and set(data["labels"].tolist()) == {0, 1}
    times = data["times"]
    assert (times.diff(dim=1) > 0).all() and times.min() >= 0 and times.max() <= 1
    assert torch.allclose(times * 19, (times * 19).round(), atol=1e-5)  # on the grid of 20 points
    assert len({tuple(row) for row in times.tolist()}) > 1  # each spiral has its own times
    again, other = make_spirals(30, n_grid=20, n_observed=7, seed=3), make_spirals(30, n_grid=20, n_observed=7, seed=4)
    assert all(torch.equal(data[k], again[k]) for k in data) and not torch.equal(data["values"], other["values"])
    with pytest.raises(ValueError, match="n_observed"):
        make_spirals(5, n_grid=10, n_observed=11)


def test_spirals_without_noise_follow_the_formula() -> None:
    """Radius r0 + growth * s with r0 in the range; the angle turns clockwise exactly for label 1."""
    data = make_spirals(40, n_grid=50, n_observed=10, turns=0.25, radius=(0.5, 1.0), growth=1.0, noise_std=0.0)
    s, x = data["times"].double(), data["values"].double()
    r0 = x.norm(dim=-1) - s
    assert torch.allclose(r0, r0[:, :1].expand_as(r0), atol=1e-5) and r0.min() >= 0.5 - 1e-5 and r0.max() <= 1 + 1e-5
    angle = torch.atan2(x[..., 1], x[..., 0])
    step = torch.remainder(angle.diff(dim=1) + math.pi, 2 * math.pi) - math.pi  # < a quarter turn: no wrap-around
    expected = 2 * math.pi * 0.25 * s.diff(dim=1) * (1 - 2 * data["labels"].double()[:, None])
    assert torch.allclose(step, expected, atol=1e-5)


# ---------------------------------------------------------------- masked losses


def test_masked_mse_ignores_masked_out_entries() -> None:
    pred, target = torch.tensor([1.0, 2.0, 5.0, 0.0]), torch.tensor([0.0, 0.0, 1.0, 3.0])
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert masked_mse(pred, target, mask) == pytest.approx((1 + 4) / 2)
    changed_pred, changed_target = pred.clone(), target.clone()
    changed_pred[2], changed_target[3] = float("inf"), float("nan")
    assert masked_mse(changed_pred, changed_target, mask) == pytest.approx(2.5)
    assert masked_mse(pred, target, torch.zeros(4)) == 0


def _tiny_task(holdout: float = 0.5, **settings):
    task = TASKS["timeseries"]
    opts = RunOptions(
        model="hbnode",
        overrides=dict(
            holdout=holdout, n_spirals=20, n_observed=8, n_grid=16, latent=3, rec_dim=4, hidden=8, **settings
        ),
    )
    torch.manual_seed(0)
    return task.build(task.settings(opts))


def test_task_loss_ignores_values_where_nothing_is_observed() -> None:
    """Changing a value with mask 0 changes neither the loss nor any metric (evaluation uses z0 = mean)."""
    built = _tiny_task()
    times, values, mask, visible = (t[:4].clone() for t in built.train_data)
    mask[:, 2:5, 1] = 0  # feature 1 unobserved at rows 2..4
    before = built.evaluate(built.model, (times, values, mask, visible))
    values[:, 2:5, 1] = float("nan")
    after = built.evaluate(built.model, (times, values, mask, visible))
    assert before == after and before["mse"] > 0


def test_encoder_ignores_rows_held_out_and_the_metric_scores_them() -> None:
    built = _tiny_task(holdout=0.5)
    times, values, mask, visible = (t[:4].clone() for t in built.train_data)
    hidden = visible == 0
    assert hidden.any() and (~hidden).any()
    mean, log_var = built.model.encode(times, values, mask, visible)
    before = built.evaluate(built.model, (times, values, mask, visible))
    values[hidden] += 3.0
    mean2, log_var2 = built.model.encode(times, values, mask, visible)
    after = built.evaluate(built.model, (times, values, mask, visible))
    assert torch.equal(mean, mean2) and torch.equal(log_var, log_var2)
    assert after["recon_mse"] == before["recon_mse"] and after["mse"] > before["mse"] + 1


# ---------------------------------------------------------------- the latent ODE


def _series(batch: int = 3, features: int = 2, length: int = 5, seed: int = 0):
    """Random irregular series of different lengths, 0-padded like physionet_tensors, some entries unobserved."""
    g = torch.Generator().manual_seed(seed)
    times = torch.zeros(batch, length, dtype=F64)
    mask = (torch.rand(batch, length, features, generator=g) < 0.7).to(F64)
    for b in range(batch):
        n = length - b
        times[b, :n] = torch.rand(n, generator=g, dtype=F64).sort().values * 0.9
        mask[b, n:] = 0
        mask[b, 0] = 1
    values = torch.randn(batch, length, features, generator=g, dtype=F64) * mask
    return times, values, mask, torch.ones(batch, length, dtype=F64)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_runs_forward_and_backward(name: str) -> None:
    torch.manual_seed(0)
    model = LatentODE(name, 2, latent=3, rec_dim=4, hidden=8, t_max=1.0, rtol=1e-3, atol=1e-4).double()
    times, values, mask, visible = _series()
    mean, log_var = model.encode(times, values, mask, visible)
    pred = model.decode(mean + (0.5 * log_var).exp(), times)
    assert mean.shape == log_var.shape == (3, 3) and pred.shape == values.shape
    masked_mse(pred, values, mask).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.encoder.last_stats.forward_nfe > 0 and model.decoder.last_stats.forward_nfe > 0


def test_batched_series_match_series_solved_alone() -> None:
    """Per-series gaps (time rescaling), padding and the union-of-times gather: a batch gives each series
    what it gets alone, to solver tolerance."""
    torch.manual_seed(0)
    model = LatentODE("ghbnode", 2, latent=3, rec_dim=4, hidden=8, t_max=1.0, rtol=1e-10, atol=1e-10).double()
    times, values, mask, visible = _series()
    z0 = model.encode(times, values, mask, visible)[0]
    pred = model.decode(z0, times)
    for b in range(3):
        n = 5 - b  # without its padding rows
        alone = (times[b : b + 1, :n], values[b : b + 1, :n], mask[b : b + 1, :n], visible[b : b + 1, :n])
        z0_alone = model.encode(*alone)[0]
        assert torch.allclose(z0[b], z0_alone[0], rtol=1e-7, atol=1e-9)
        assert torch.allclose(pred[b, :n], model.decode(z0_alone, alone[0])[0], rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------- the CLI and short trainings


def _train(tmp_path, *args: str) -> int:
    return main(
        [
            "train",
            "timeseries",
            "--model",
            "hbnode",
            "--epochs",
            "1",
            "--no-progress",
            "--batch-size",
            "10",
            "--max-batches",
            "1",
            "--set",
            "n_spirals=40",
            "--set",
            "n_observed=10",
            "--set",
            "n_grid=20",
            "--set",
            "eval_size=10",
            "--out",
            str(tmp_path),
            *args,
        ]
    )


@pytest.mark.parametrize(
    "solver",
    [[], ["--method", "rk4", "--step-size", "0.1"], ["--method", "nag"], ["--adjoint"]],
    ids=["default", "rk4", "nag", "adjoint"],
)
def test_cli_trains_on_spirals(tmp_path, solver: list[str]) -> None:
    assert _train(tmp_path, "--set", "dataset=spirals", *solver) == 0
    (row,) = _rows(tmp_path)
    assert math.isfinite(float(row["eval_mse"])) and float(row["train_forward_nfe"]) > 0


def test_cli_rejects_an_unknown_dataset(tmp_path, capsys) -> None:
    assert _train(tmp_path, "--set", "dataset=mnist") == 2
    assert "dataset='mnist'" in capsys.readouterr().err


@pytest.mark.slow
def test_spirals_training_lowers_held_out_mse(tmp_path) -> None:
    """20 steps on quarter-turn spirals: the MSE on the held-out points falls below half that of predicting 0."""
    opts = RunOptions(
        model="hbnode",
        epochs=2,
        batch_size=25,
        lr=2e-2,
        progress=False,
        subset=250,
        overrides=dict(eval_size=100, n_observed=20, n_grid=50, turns=0.25),
    )
    task = TASKS["timeseries"]
    rows = task.run(opts, tmp_path).rows
    _, values, mask, visible = task.build(task.settings(opts)).eval_data
    held_out = mask * (1 - visible).unsqueeze(-1)
    zero_mse = float(masked_mse(torch.zeros_like(values), values, held_out))  # about 0.86
    assert rows[-1]["eval_mse"] < 0.5 * zero_mse
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


@pytest.mark.slow
@pytest.mark.data("physionet2012")
def test_physionet_subset_training_lowers_the_loss(tmp_path) -> None:
    """100 training records, 2 epochs of 4 batches: the loss falls and the held-out MSE drops 3x."""
    assert (
        main(
            [
                "train",
                "timeseries",
                "--model",
                "hbnode",
                "--set",
                "dataset=physionet",
                "--subset",
                "100",
                "--batch-size",
                "25",
                "--set",
                "eval_size=50",
                "--epochs",
                "2",
                "--no-progress",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = _rows(tmp_path)
    loss = [float(r["train_loss"]) for r in rows]
    assert loss[-1] < loss[0] - 5  # loss = 50 MSE + const (obs_std 0.1): the MSE falls by more than 0.1
    assert float(rows[-1]["eval_mse"]) < float(rows[0]["train_mse"]) / 3
