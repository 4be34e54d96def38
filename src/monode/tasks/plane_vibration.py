"""Plane vibration (F-16 ground vibration test; HBNODE §5.3): irregular ODE-RNN forecasting.

Data (`monode.data.plane_vibration_windows`, HeavyBallNODE's `pvdat.py`): 5 z-scored channels,
10 % of the time indices thrown out, the kept ones split 2:1:1 in time into train/val/test and
cut into windows of 64 observations; gaps dt in samples (not rescaled). Model:
`monode.tasks.sequences` with the "linear" cell u = v + W v + U x, an encoder Linear(64*5 ->
all initial variables) of the whole input window (ANODE: into 5 of its 27 channels), f a 3-layer
ReLU MLP, decoder Linear(hidden -> 5), and every initial parameter multiplied by `pre_shrink` = 0.01.

Loss (the official `trainpv`): 0.1 (MSE(prediction, y) + MSE(reconstruction, x)) + MSE(forecast),
the forecast being the 8 samples from the last observation on at unit gaps (forecast[0] is the last
one-step prediction). The headline metric is the forecast MSE on the test split.

Sizes per model reproduce the parameter counts of the HBNODE authors' released scripts (Xia et al. 2021,
arXiv:2110.04840): NODE 15,986, ANODE 16,730, SONODE 16,649, HBNODE/GHBNODE 16,127. Models without an official PV
script: (G)NesterovNODE use the HB sizes, AdamNODE hidden 14 (16,331 parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..data import load_plane_vibration, plane_vibration_windows
from ..dynamics import MODELS
from ._base import BenchmarkTask, Score, ScoredTask
from ._settings import RunSettings
from .sequences import (
    SequenceModel,
    SequenceSizes,
    build_sequence_model,
    plot_predictions,
    shrink_parameters,
    split_tensors,
)

FORECAST, FEATURES = 8, 5

SIZES: dict[str, SequenceSizes] = {
    "node": SequenceSizes(21, f_widths=(63, 84), encoder="window"),
    "anode": SequenceSizes(27, f_widths=(81, 108), encoder="window", encoder_features=5),
    "sonode": SequenceSizes(19, f_widths=(38, 19), encoder="window"),  # f: [y, v] (38) -> 38 -> 19 -> 19
    "adamnode": SequenceSizes(14, f_widths=(14, 14), encoder="window"),
}
DEFAULT_SIZES = SequenceSizes(20, f_widths=(20, 20), encoder="window")  # HBNODE, GHBNODE, (G)NesterovNODE


def build_pv_model(name: str, *, seq_len: int = 64, pre_shrink: float = 0.01, **solver: Any) -> SequenceModel:
    """Model `name`'s plane-vibration ODE-RNN, every parameter multiplied by `pre_shrink`.
    solver: `ODERNN` keywords (method, rtol, atol, adjoint, ...)."""
    model = build_sequence_model(
        name,
        "plane-vibration",
        SIZES.get(name, DEFAULT_SIZES),
        features=FEATURES,
        seq_len=seq_len,
        cell="linear",
        f_activation="relu",
        **solver,
    )
    shrink_parameters(model, pre_shrink)
    return model


def pv_score(recon_weight: float) -> Score:
    """The official loss: recon_weight (one-step MSE + reconstruction MSE) + forecast MSE (mean over the
    8 steps; the official log keeps the per-step vector, whose mean is the test MSE reported)."""

    def score(model: SequenceModel, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        x, dt, y, target = batch
        out = model(x, dt)
        one_step = nn.functional.mse_loss(out.prediction, y)
        recon = nn.functional.mse_loss(out.reconstruction, x)
        forecast = nn.functional.mse_loss(model.forecast(out.last, target.shape[1]), target)
        loss = recon_weight * (one_step + recon) + forecast
        return loss, {"forecast_mse": forecast.detach(), "mse": one_step.detach(), "recon_mse": recon.detach()}

    return score


class PlaneVibration(BenchmarkTask):
    name = "plane-vibration"
    figures = ("training", "predictions")
    summary = "F-16 plane vibration (irregular, 5 channels): ODE-RNN 8-step forecast MSE vs NFE"
    models = tuple(MODELS)
    metric = "forecast_mse"
    higher_is_better = False
    # HBNODE protocol (trainpv.py): dopri5 rtol = atol = 1e-7 with the adjoint, batch 64, 500 epochs,
    # Adam {0: 1e-3, 50: 1e-4}, clip 1, pre_shrink 0.01, evaluation every epoch
    _paper = dict(epochs=500, lr=1e-3, lr_milestones={0: 1e-3, 50: 1e-4}, batch_size=64, method="dopri5", rtol=1e-7,
                  atol=1e-7, adjoint=True, grad_clip=1.0, pre_shrink=0.01, recon_weight=0.1, eval_split="test",
                  seq_len=64, max_batches=None, compile=True)  # fmt: skip
    presets = {
        "paper": _paper,
        # minutes on a CPU: looser tolerance (1e-4), 4 of the 8 batches per epoch, constant lr
        "quick": {
            **_paper,
            **dict(epochs=8, lr_milestones=None, rtol=1e-4, atol=1e-4, max_batches=4, compile=False),
        },
    }

    def build(self, s: RunSettings) -> ScoredTask:
        seq_len = int(s["seq_len"])
        splits = plane_vibration_windows(load_plane_vibration(s.data_dir), seq_len=seq_len, forecast=FORECAST)
        keys = ("x", "dt", "y", "forecast")
        train = split_tensors(splits, "train", keys, s.get("subset"))
        evaluation = split_tensors(splits, s["eval_split"], keys)
        model = build_pv_model(s.model, seq_len=seq_len, pre_shrink=float(s["pre_shrink"]), **s.solver())
        return ScoredTask(model, train, evaluation, pv_score(float(s["recon_weight"])))

    def after_training(self, task: Any, s: RunSettings, out: Path, rows: list[dict[str, float]]) -> None:
        """predictions.svg/png: the 5 channels of a test window, one-step predictions and the 8-step forecast."""
        x, dt, y, target = task.eval_data
        title = f"plane vibration, {s.model}"
        plot_predictions(task.model, (x, dt, y), out / "predictions", title, range(FEATURES), forecast=target[:1])


TASK = PlaneVibration()
