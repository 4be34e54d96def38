"""Every task writes its figures, as SVG beside a 200-dpi PNG; comparisons over seeds plot a band."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from monode.cli import main
from monode.data import write_cifar10_like
from monode.figures import DPI
from monode.tasks import TASKS

FAST = ["--epochs", "1", "--no-progress", "--batch-size", "16", "--max-batches", "2"]
TINY = {  # the smallest run of each task that still trains and evaluates (data: ../shared/data or generated)
    "point-cloud": [*FAST, "--set", "n_inner=20", "--set", "n_outer=20"],
    "mnist": [*FAST, "--subset", "32", "--set", "test_subset=32", "--method", "rk4", "--step-size", "0.5"],
    "cifar10": [*FAST, "--subset", "16", "--set", "test_subset=8", "--method", "rk4", "--step-size", "0.5"],
    "density": [
        *FAST,
        "--set",
        "n_train=64",
        "--set",
        "n_eval=32",
        "--set",
        "n_plot=200",
        "--set",
        "grid_size=20",
        "--set",
        "eval_tol=1e-3",
    ],  # fmt: skip
    "plane-vibration": [*FAST, "--rtol", "1e-3", "--atol", "1e-3"],
    "walker2d": [*FAST, "--rtol", "1e-3", "--atol", "1e-3"],
    "silverbox-init": ["--set", "draws=2", "--set", "steps=8", "--rtol", "1e-4", "--atol", "1e-4"],
    "timeseries": [*FAST, "--set", "subset=32", "--set", "eval_size=16"],
}
DATA = {
    "mnist": "mnist",
    "plane-vibration": "plane_vibration",
    "walker2d": "walker2d",
    "silverbox-init": "plane_vibration",
}
MODEL = {"density": "node", "silverbox-init": "hbnode"}


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_writes_its_figures_as_svg_and_200_dpi_png(name: str, tmp_path, request) -> None:
    assert name in TINY, f"add task {name!r} to TINY: its smallest run"
    if name in DATA:
        request.applymarker(pytest.mark.data(DATA[name]))
        from monode.data import resolve_data_dir

        if not resolve_data_dir(DATA[name]).is_dir():
            pytest.skip(f"needs the {DATA[name]!r} data set")
    extra = []
    if name == "cifar10":
        extra = ["--data-dir", str(write_cifar10_like(tmp_path / "data" / "cifar10", n_train=16, n_test=8).parent)]
    out = tmp_path / "run"
    assert main(["train", name, "--model", MODEL.get(name, "hbnode"), *TINY[name], *extra, "--out", str(out)]) == 0
    for stem in TASKS[name].figures:
        svg, png = out / f"{stem}.svg", out / f"{stem}.png"
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
        with Image.open(png) as image:
            assert image.format == "PNG" and round(image.info["dpi"][0]) == DPI


def test_compare_over_seeds_tabulates_mean_and_spread_and_plots_a_band(tmp_path) -> None:
    argv = ["compare", "point-cloud", "--models", "node,hbnode", "--seeds", "2", *TINY["point-cloud"]]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    table = (tmp_path / "table.md").read_text()
    assert "| seeds |" in table.splitlines()[2] and " ± " in table
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert sorted({(r["model"], r["seed"]) for r in rows}) == [
        ("hbnode", "0"),
        ("hbnode", "1"),
        ("node", "0"),
        ("node", "1"),
    ]
    assert (tmp_path / "hbnode" / "seed-1" / "metrics.json").exists()
    svg = (tmp_path / "accuracy.svg").read_text()
    assert "mean of 2 seeds" in svg or "mean of 2 seeds" in svg.replace("\n", " ")
