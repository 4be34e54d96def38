"""Point-cloud task and the CLI: real short trainings, the comparison report, clear errors."""

from __future__ import annotations

import csv

import pytest
import torch

from monode.cli import main
from monode.tasks import TASKS
from monode.tasks.point_cloud import nested_spheres


def test_nested_spheres_radii_and_labels() -> None:
    x, y = nested_spheres(50, 70, dim=3, seed=0)
    r = x.norm(dim=1)
    assert x.shape == (120, 3) and int((y == -1).sum()) == 50
    assert r[y == -1].max() <= 0.5 + 1e-6 and r[y == 1].min() >= 0.85 - 1e-6 and r.max() <= 1 + 1e-6
    with pytest.raises(ValueError, match="dim"):
        nested_spheres(1, 1, dim=0)


@pytest.mark.slow
def test_point_cloud_training_learns(tmp_path) -> None:
    """A real training of the task (NODE trains here too, in the compare tests and tests/test_reproduce.py)."""
    argv = ["train", "point-cloud", "--model", "hbnode", "--epochs", "25", "--no-progress", "--out", str(tmp_path)]
    code = main(argv)
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < 0.6 * losses[0]
    assert float(rows[-1]["eval_accuracy"]) >= 0.8  # chance is 2/3 (majority class)
    assert float(rows[-1]["train_forward_nfe"]) > 0 and float(rows[-1]["train_backward_nfe"]) > 0


def test_compare_writes_table_csv_and_plots(tmp_path) -> None:
    assert (
        main(
            [
                "compare",
                "point-cloud",
                "--models",
                "node,ghbnode",
                "--epochs",
                "2",
                "--no-progress",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    table = (tmp_path / "table.md").read_text()
    assert "| node |" in table and "| ghbnode |" in table
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert {r["model"] for r in rows} == {"node", "ghbnode"} and len(rows) == 4
    for stem in ("nfe_forward", "nfe_backward", "loss", "accuracy"):
        assert (tmp_path / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys) -> None:
    assert main(["train", "point-cloud", "--model", "nope", "--out", str(tmp_path)]) == 2
    assert "--model 'nope' is not available" in capsys.readouterr().err
    assert main(["train", "no-such-task", "--model", "node"]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "point-cloud",
                "--model",
                "node",
                "--method",
                "rk5",
                "--epochs",
                "1",
                "--no-progress",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "not a monode solver" in capsys.readouterr().err


def test_set_overrides_a_task_setting(tmp_path, capsys) -> None:
    assert (
        main(
            [
                "train",
                "point-cloud",
                "--model",
                "node",
                "--epochs",
                "1",
                "--no-progress",
                "--set",
                "dim=3",
                "--set",
                "n_inner=10",
                "--set",
                "n-outer=20",
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    from monode.tasks import RunOptions

    task = TASKS["point-cloud"]
    opts = RunOptions(model="node", overrides={"dim": 3, "n_inner": 10})
    built = task.build(task.settings(opts))
    assert built.train_data[0].shape[1] == 3 and len(built.train_data[0]) == 10 + 240
    assert main(["train", "point-cloud", "--model", "node", "--set", "colour=red", "--out", str(tmp_path / "b")]) == 2
    assert "--set colour=... is not a setting" in capsys.readouterr().err
    assert main(["train", "point-cloud", "--model", "node", "--set", "dim", "--out", str(tmp_path / "c")]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_listing_commands(capsys) -> None:
    assert main(["tasks"]) == 0 and "point-cloud" in capsys.readouterr().out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("node", "hbnode", "adamnode", "gnesterovnode"))


def test_every_model_builds_for_point_cloud() -> None:
    from monode.tasks import RunOptions

    task = TASKS["point-cloud"]
    for model in task.models:
        opts = RunOptions(model=model, epochs=1)
        built = task.build(task.settings(opts))
        out = built.model(built.train_data[0][:5])
        assert out.shape == (5, 1) and torch.isfinite(out).all()


def test_cli_version(capsys) -> None:
    import monode

    assert main(["--version"]) == 0 and capsys.readouterr().out.strip() == f"monode {monode.__version__}"


def test_step_size_with_an_adaptive_method_is_a_one_line_error(tmp_path, capsys) -> None:
    argv = ["train", "point-cloud", "--model", "node", "--step-size", "0.1", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("monode: error: --step-size 0.1 applies to fixed-step methods") and err.count("\n") == 1
