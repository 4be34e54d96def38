"""Training beyond one process: torchrun data parallelism (gloo) against one process, exact resume with two
processes, `monode compare --jobs` against a sequential comparison, and the --nproc launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monode import cli
from monode.cli import main
from monode.train import _save_checkpoint, load_checkpoint

# A fixed-step solve, so that the only difference between one and two processes is the order of float
# sums (adaptive step control would see each rank's shard instead of the whole batch). 91 examples: the
# last global batch of 31 splits 16 + 15.
RUN = ["point-cloud", "--model", "hbnode", "--method", "rk4", "--step-size", "0.1", "--batch-size", "30",
       "--set", "n_inner=30", "--set", "n_outer=61", "--no-progress"]  # fmt: skip


def run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def metrics(run: Path) -> list[dict]:
    return [
        {k: v for k, v in row.items() if "seconds" not in k} for row in json.loads((run / "metrics.json").read_text())
    ]


EPOCHS = "4"


@pytest.mark.slow
def test_two_processes_match_one_and_a_killed_run_resumes_exactly(tmp_path) -> None:
    assert main(["train", *RUN, "--epochs", EPOCHS, "--out", str(tmp_path / "one")]) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run([*torchrun, "-m", "monode", "train", *RUN, "--epochs", EPOCHS, "--out", str(tmp_path / "two")])
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r.keys() for r in one] == [r.keys() for r in two]
    for a, b in zip(one, two):
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key  # float summation order only

    # the same run through the --nproc launcher, SIGKILLed (launcher, agent and both ranks) once a checkpoint
    # exists, then resumed by fresh processes: bit for bit the uninterrupted two-process run
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "monode", "train", *RUN, "--epochs", EPOCHS, "--nproc", "2", "--out", str(killed)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        if (killed / "checkpoint.pt").exists() and load_checkpoint(killed / "checkpoint.pt")["epoch"] >= 1:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at = load_checkpoint(killed / "checkpoint.pt")["epoch"]  # a kill at any instant leaves a loadable checkpoint
    assert 1 <= at < int(EPOCHS) - 1, f"the kill came too late to test anything (after epoch {at})"
    run([*command, "--resume"])
    assert metrics(killed) == two
    assert not list(killed.glob(".*.tmp"))


def test_resuming_with_another_number_of_processes_is_refused(tmp_path, capsys) -> None:
    import torch

    assert main(["train", *RUN, "--epochs", "1", "--out", str(tmp_path)]) == 0
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    ckpt.update(world_size=2, rng_ranks=[ckpt["rng"], ckpt["rng"]])
    _save_checkpoint(tmp_path / "checkpoint.pt", ckpt)
    assert main(["train", *RUN, "--epochs", "2", "--resume", "--out", str(tmp_path)]) == 2
    assert "written by 2 process(es), this run has 1" in capsys.readouterr().err
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 0


@pytest.mark.slow
def test_compare_jobs_gives_the_sequential_table(tmp_path) -> None:
    argv = ["compare", "point-cloud", "--models", "node,hbnode", "--epochs", "2", "--no-progress"]
    argv += ["--set", "n_inner=30", "--set", "n_outer=60"]
    assert main([*argv, "--out", str(tmp_path / "seq")]) == 0
    assert main([*argv, "--jobs", "2", "--out", str(tmp_path / "par")]) == 0

    def numbers(folder: Path) -> list[list[str]]:
        lines = (folder / "table.md").read_text().splitlines()
        header = [c.strip() for c in lines[2].split("|")] if len(lines) > 2 else []
        keep = [i for i, c in enumerate(header) if "s/epoch" not in c]
        return [[c.strip() for j, c in enumerate(line.split("|")) if j in keep] for line in lines[2:]]

    assert numbers(tmp_path / "par") == numbers(tmp_path / "seq")
    assert metrics(tmp_path / "par" / "hbnode") == metrics(tmp_path / "seq" / "hbnode")
    assert "[2/2] train loss" in (tmp_path / "par" / "hbnode.log").read_text()


def test_nproc_relaunches_the_same_command_under_torchrun(monkeypatch, tmp_path) -> None:
    seen = {}

    class Done:
        returncode = 0

    def run(command, **kw):
        seen["command"] = command
        return Done()

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["train", *RUN, "--nproc", "2", "--out", str(tmp_path)]) == 0
    command = seen["command"]
    assert command[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert (
        command[5:8] == ["-m", "monode", "train"]
        and "--nproc" not in command
        and command[8:]
        == [
            *RUN,
            "--out",
            str(tmp_path),
        ]
    )
    assert not tmp_path.joinpath("config.json").exists()  # the launcher itself writes nothing
    assert cli.main(["train", *RUN, "--nproc", "0"]) == 2


def test_compare_jobs_must_be_positive(capsys) -> None:
    assert main(["compare", "point-cloud", "--jobs", "0"]) == 2
    assert "--jobs 0 must be >= 1" in capsys.readouterr().err
