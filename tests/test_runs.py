"""Runs that cannot be lost or misread: atomic checkpoints under injected kills, the run-folder lock,
one-line CLI errors, config.json and the resume refusal, `monode eval` and `monode.load_run`."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import signal
import zipfile
from pathlib import Path

import pytest
import torch

import monode
import monode._atomic as atomic
from monode._run_lock import RunLockedError, locked_run_dir
from monode.cli import main
from monode.solvers import MaxStepsExceededError
from monode.train import CheckpointError, TrainingDivergedError, fit, load_checkpoint
from trainables import BATCHES, Blobs, FailsAt, config, without_seconds


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the trainer catches it."""


STAGES = ("partial", "written", "replaced", "synced")  # where in one atomic write the kill lands
WRITES_PER_EPOCH = 3  # metrics.csv, metrics.json, checkpoint.pt


def kill_during(monkeypatch, write: int, stage: str) -> None:
    """Kill the process at `stage` of its `write`-th atomic write (counted from 0)."""
    calls = {"write": -1}
    real_write_tmp, real_replace, real_fsync = atomic.write_tmp, os.replace, atomic.fsync_dir

    def write_tmp(path: Path, data: bytes) -> Path:
        calls["write"] += 1
        if calls["write"] == write and stage == "partial":  # half the bytes on disk, then dead
            (path.with_name(f".{path.name}.{os.getpid()}.tmp")).write_bytes(data[: len(data) // 2])
            raise Killed
        tmp = real_write_tmp(path, data)
        if calls["write"] == write and stage == "written":
            raise Killed
        return tmp

    def replace(src, dst) -> None:
        real_replace(src, dst)
        if calls["write"] == write and stage == "replaced":
            raise Killed

    def fsync_dir(directory: Path) -> None:
        real_fsync(directory)
        if calls["write"] == write and stage == "synced":
            raise Killed

    monkeypatch.setattr(atomic, "write_tmp", write_tmp)
    monkeypatch.setattr(atomic.os, "replace", replace)
    monkeypatch.setattr(atomic, "fsync_dir", fsync_dir)


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("file", range(WRITES_PER_EPOCH))
def test_kill_at_any_instant_of_a_save_resumes_exactly(tmp_path, monkeypatch, file: int, stage: str) -> None:
    settings = dict(lr_step=(7, 0.8), weight_decay=1e-3)
    reference = without_seconds(fit(Blobs(), config(tmp_path / "a", epochs=3, **settings)))
    run = tmp_path / "b"
    with monkeypatch.context() as m:
        kill_during(m, WRITES_PER_EPOCH + file, stage)  # in the saves after epoch 1
        with pytest.raises(Killed):
            fit(Blobs(), config(run, epochs=3, **settings))
    epoch = load_checkpoint(run / "checkpoint.pt")["epoch"]  # loads: never damaged
    assert epoch == (1 if (file == 2 and stage in ("replaced", "synced")) else 0)
    rows = fit(Blobs(init_seed=7), config(run, epochs=3, resume=True, **settings))
    assert without_seconds(rows) == reference
    assert without_seconds(json.loads((run / "metrics.json").read_text())) == reference
    assert not list(run.glob(".*.tmp")), "temporary files of the killed save are cleaned"


def test_checkpoint_is_one_file_that_torch_loads_and_carries_its_digest(tmp_path) -> None:
    fit(Blobs(), config(tmp_path, epochs=1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".monode.lock",
        "checkpoint.pt",
        "metrics.csv",
        "metrics.json",
    ]
    data = (tmp_path / "checkpoint.pt").read_bytes()
    assert torch.load(io.BytesIO(data), weights_only=True)["epoch"] == 0
    # a well-formed archive whose digest does not match its records: named as such
    source, forged = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(forged, "w") as out:
        for info in source.infolist():
            body = b"0" * 64 if info.filename.endswith("monode.sha256") else source.read(info)
            out.writestr(info, body)
    (tmp_path / "checkpoint.pt").write_bytes(forged.getvalue())
    with pytest.raises(CheckpointError, match=r"sha256 is [0-9a-f]{64}, its digest expects 0{64}"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def _hold_lock(folder: str, ready, release) -> None:
    with locked_run_dir(folder):
        ready.set()
        release.wait(60)


def test_a_second_process_on_the_same_out_is_refused_and_a_dead_ones_lock_is_stale(tmp_path, capsys) -> None:
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(RunLockedError, match=rf"in use by another monode run \(pid {holder.pid}\)"):
            fit(Blobs(), config(tmp_path, epochs=1))
        argv = ["train", "point-cloud", "--model", "node", "--epochs", "1", "--no-progress", "--out", str(tmp_path)]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"(pid {holder.pid})" in err
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies holding the lock
        holder.join()
    assert len(fit(Blobs(), config(tmp_path, epochs=1))) == 1  # the dead owner's lock does not block


def test_solver_failure_during_training_is_a_divergence_naming_where(tmp_path) -> None:
    fit(Blobs(), config(tmp_path, epochs=1))
    with pytest.raises(TrainingDivergedError) as info:
        fit(FailsAt(2, MaxStepsExceededError), config(tmp_path, epochs=2, resume=True))
    e = info.value
    assert (e.epoch, e.batch, e.lr, e.checkpoint) == (1, 2, 0.05, tmp_path / "checkpoint.pt")
    assert "the ODE solver failed" in str(e) and "epoch 1, batch 2 (lr 0.05)" in str(e)
    assert "last good checkpoint (epoch 0)" in str(e)
    with pytest.raises(MaxStepsExceededError):  # the very first solve: a settings problem, not a divergence
        fit(FailsAt(0, MaxStepsExceededError), config(tmp_path / "fresh", epochs=1))
    assert BATCHES > 2


def test_huge_learning_rate_from_the_cli_is_reported_as_a_divergence(tmp_path, capsys) -> None:
    argv = ["train", "point-cloud", "--model", "hbnode", "--lr", "1e8", "--epochs", "3", "--no-progress"]
    assert main([*argv, "--set", "n_inner=30", "--set", "n_outer=60", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("monode: error: ") and err.count("\n") == 1
    assert "(lr 1e+08)" in err and "at epoch " in err and ("checkpoint" in err)


NO_DATA = "/nonexistent-monode-data"
CLI_ERRORS = [  # (arguments after `monode`, a fragment of the one-line error)
    (["train", "mnist", "--model", "node", "--set", "n_inner=abc"], "--set n_inner=... is not a setting"),
    (
        ["train", "point-cloud", "--model", "node", "--set", "n_inner=abc"],
        "--set n_inner=abc: n_inner must be an integer",
    ),
    (["train", "point-cloud", "--model", "node", "--set", "n_inner=2.5"], "n_inner must be an integer"),
    (["train", "point-cloud", "--model", "node", "--set", "dim=True"], "--set dim=True: dim must be an integer"),
    (["train", "point-cloud", "--model", "node", "--set", "adjoint=maybe"], "adjoint must be true or false"),
    (["train", "point-cloud", "--model", "node", "--set", "dim"], "--set expects KEY=VALUE"),
    (["train", "mnist", "--model", "node", "--set", "subset=x"], "subset must be an integer or None"),
    (["train", "cifar10", "--model", "node", "--set", "lr_step=5"], "lr_step must be a tuple"),
    (["train", "walker2d", "--model", "node", "--set", "lr_milestones=[1]"], "lr_milestones must be a dict"),
    (["train", "walker2d", "--model", "node", "--set", "wiring=skewed"], "--set wiring='skewed' must be one of"),
    (["train", "mnist", "--model", "node", "--lr", "inf"], "--lr inf must be a finite number > 0"),
    (["train", "mnist", "--model", "node", "--lr", "nan"], "--lr nan must be a finite number > 0"),
    (["train", "mnist", "--model", "node", "--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
    (["train", "mnist", "--model", "node", "--rtol", "-1"], "--rtol -1.0 must be a finite number > 0"),
    (["train", "mnist", "--model", "node", "--epochs", "0"], "--epochs 0 must be an integer >= 1"),
    (["train", "mnist", "--model", "node", "--batch-size", "-4"], "--batch-size -4 must be an integer >= 1"),
    (["train", "mnist", "--model", "node", "--subset", "0"], "--subset 0 must be an integer >= 1"),
    (["train", "mnist", "--model", "node", "--device", "cuda:7"], "--device 'cuda:7'"),
    (["train", "mnist", "--model", "node", "--device", "gpu"], "--device 'gpu' is not a torch device"),
    (["train", "mnist", "--model", "node", "--method", "rk45"], "--method 'rk45' is not a monode solver"),
    (["train", "mnist", "--model", "node", "--step-size", "0.1"], "--step-size 0.1 applies to fixed-step methods"),
    (["train", "mnist", "--model", "nope"], "--model 'nope' is not available"),
    (["train", "mnist", "--model", "node", "--preset", "huge"], "--preset 'huge' is not defined"),
    (["train", "mnist"], "the following arguments are required: --model"),
    (["train", "no-such-task", "--model", "node"], "unknown task 'no-such-task'"),
    (["compare", "mnist", "--models", "node,nope"], "--model 'nope' is not available"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["eval", NO_DATA], "is not a monode run folder"),
]


@pytest.mark.parametrize("argv, message", CLI_ERRORS, ids=[" ".join(a) for a, _ in CLI_ERRORS])
def test_cli_user_errors_are_one_line_with_exit_2_before_data_loading(tmp_path, capsys, argv, message) -> None:
    """--data-dir points nowhere: an error about the data would mean the input was checked too late."""
    data = [] if argv[0] not in ("train", "compare") or len(argv) < 3 else ["--data-dir", NO_DATA]
    assert main([*argv, *data, "--out", str(tmp_path / "o")] if data else argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("monode: error: ") and captured.err.count("\n") == 1, captured.err
    assert message in captured.err
    assert not (tmp_path / "o").exists(), "nothing is written for a refused run"


def test_out_under_a_file_is_a_one_line_error(tmp_path, capsys) -> None:
    (tmp_path / "file").write_text("")
    argv = ["train", "mnist", "--model", "node", "--data-dir", NO_DATA, "--out", str(tmp_path / "file" / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create the output folder" in err and "Not a directory" in err


QUICK = ["--epochs", "2", "--no-progress", "--set", "n_inner=30", "--set", "n_outer=60"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "hbnode"
    assert (
        main(
            ["train", "point-cloud", "--model", "hbnode", "--rtol", "1e-4", "--atol", "1e-4", *QUICK, "--out", str(out)]
        )
        == 0
    )
    return out


def test_config_json_records_every_resolved_setting_and_the_versions(finished_run) -> None:
    cfg = json.loads((finished_run / "config.json").read_text())
    assert (cfg["task"], cfg["model"], cfg["preset"], cfg["seed"]) == ("point-cloud", "hbnode", "quick", 0)
    assert cfg["settings"]["rtol"] == 1e-4 and cfg["settings"]["n_inner"] == 30 and cfg["settings"]["epochs"] == 2
    assert cfg["settings"]["method"] == "dopri5" and cfg["settings"]["adjoint"] is True  # preset values too
    assert cfg["versions"] == {
        "monode": monode.__version__,
        "torch": torch.__version__,
        "python": cfg["versions"]["python"],
    }
    assert set(cfg["user_set"]) == {"rtol", "atol", "epochs", "n_inner", "n_outer"}


def test_resume_refuses_other_settings_listing_each(finished_run, capsys) -> None:
    before = (finished_run / "checkpoint.pt").read_bytes()
    argv = ["train", "point-cloud", "--model", "node", "--rtol", "1e-3", "--atol", "1e-4", *QUICK, "--set", "dim=3"]
    assert main([*argv, "--resume", "--out", str(finished_run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume:" in err
    for difference in ("model 'node' (was 'hbnode')", "rtol 0.001 (was 0.0001)", "dim 3 (was 2)"):
        assert difference in err
    assert (finished_run / "checkpoint.pt").read_bytes() == before


def test_resume_may_add_epochs(finished_run, tmp_path) -> None:
    import shutil

    run = tmp_path / "more"
    shutil.copytree(finished_run, run)
    argv = ["train", "point-cloud", "--model", "hbnode", "--rtol", "1e-4", "--atol", "1e-4", *QUICK, "--epochs", "3"]
    assert main([*argv, "--resume", "--out", str(run)]) == 0
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == 2
    assert json.loads((run / "config.json").read_text())["settings"]["epochs"] == 3


def test_eval_recomputes_the_recorded_metrics(finished_run, capsys) -> None:
    recorded = json.loads((finished_run / "metrics.json").read_text())[-1]
    assert main(["eval", str(finished_run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["metrics"]
    assert metrics["eval_accuracy"] == recorded["eval_accuracy"]
    assert metrics["eval_loss"] == pytest.approx(recorded["eval_loss"], rel=1e-6)
    assert metrics["eval_forward_nfe"] == recorded["eval_forward_nfe"]
    assert main(["eval", str(finished_run)]) == 0
    assert "eval_accuracy" in capsys.readouterr().out


def test_load_run_returns_the_trained_model_with_its_settings(finished_run) -> None:
    run = monode.load_run(finished_run)
    assert run.settings.model == "hbnode" and run.settings["rtol"] == 1e-4 and len(run.rows) == 2
    saved = load_checkpoint(finished_run / "checkpoint.pt")["model"]
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, saved[name])
    assert not run.model.training
    x, y = run.task.eval_data
    with torch.no_grad():
        accuracy = float((torch.sign(run.model(x).squeeze(-1)) == y).float().mean())
    assert accuracy == pytest.approx(run.rows[-1]["eval_accuracy"], abs=1e-6)
