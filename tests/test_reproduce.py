"""benchmarks/reproduce.py: every implemented claim's entry point runs on its tiny setting and writes its data,
figure and verdict; the others are listed and refused with one line."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reproduce.py"
spec = importlib.util.spec_from_file_location("reproduce", SCRIPT)
assert spec is not None and spec.loader is not None
reproduce = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reproduce)


@pytest.fixture(scope="module")
def shared_out(tmp_path_factory) -> Path:
    """One --out for every claim, so the point-cloud claims share their tiny runs (as the full ones do)."""
    return tmp_path_factory.mktemp("reproduce")


@pytest.mark.data("plane_vibration", "mnist", "walker2d")
@pytest.mark.xdist_group("reproduce")  # one worker, so the point-cloud claims share their tiny runs
@pytest.mark.parametrize("claim", list(reproduce.CLAIMS))
def test_each_claim_writes_its_data_figure_and_verdict(claim: str, shared_out: Path) -> None:
    assert reproduce.run([claim, "--tiny", "--out", str(shared_out)]) == 0
    result = json.loads((shared_out / claim / "result.json").read_text())
    assert result["claim"] == claim and result["tiny"] is True
    assert result["verdict"] in ("reproduced", "partly reproduced", "not reproduced", "refuted", "not measurable here")
    assert list(csv.reader(open(shared_out / claim / result["data"])))[1:]  # rows of raw data
    assert (shared_out / claim / result["figure"]).read_text().lstrip().startswith("<?xml")


def test_list_and_unknown_claims(capsys) -> None:
    assert reproduce.run(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in [*reproduce.CLAIMS, *reproduce.PLANNED])
    assert reproduce.run(["walker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'walker' is not a claim" in err
