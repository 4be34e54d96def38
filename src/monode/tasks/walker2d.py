"""Walker2D kinematic simulation (HBNODE §5.4, NesterovNODE): irregularly sampled ODE-RNN regression.

Data (`monode.data.walker2d_windows`, the ODE-LSTM protocol): 400 MuJoCo rollouts of 17 features,
files split 75/10/15 %, each step dropped with probability 0.1, windows of 64 kept steps (stride 16);
the target of step i is the raw next state, the gap dt_i (in raw steps, the gap *before* observation i)
is divided by 64 and, as in the official ODE-RNN, evolves the state after observation i. Model:
`monode.tasks.sequences` with the "mlp" cell (3 tanh layers on [v, x] plus the residual), zero
initial state (ANODE: a Linear of the first observation into 5 of its 24 channels), f one
Linear(24, 24) as in the HBNODE repo (`--set f_depth=3`: the NesterovNODE repo's 3-layer tanh MLP),
decoder Linear(24 -> 17). Loss and metric: MSE of the one-step predictions.

Sizes per model reproduce the parameter counts of the HBNODE authors' released scripts (Xia et al. 2021,
arXiv:2110.04840): NODE 8,729, ANODE 8,819, SONODE 8,757, GHBNODE 8,899, HBNODE 8,898 (the official 8,899 also
counts its frozen c~); f_depth=3 adds 1,200 (NODE 9,929, as the NesterovNODE repo). AdamNODE (no official Walker
script) gets hidden 21 for a comparable budget (8,755). The "paper" preset keeps the official per-model learning-
rate schedules unless --lr or --set lr_milestones=... is given.

`--set wiring=released` (a compatibility setting, for any model) reproduces the released NODE/ANODE scripts'
wiring: evolve before each observation, predict y_i from the state before x_i was seen, cell without the
residual. It is not the papers' model; it exists to test whether it explains their NODE/ANODE numbers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..data import load_walker2d_rollouts, walker2d_windows
from ..dynamics import MODELS
from ._base import BenchmarkTask, ScoredTask
from ._settings import RunOptions, RunSettings
from .sequences import (
    SequenceModel,
    SequenceSizes,
    build_sequence_model,
    check_wiring,
    plot_predictions,
    split_tensors,
)

TIME_SCALE = 1.0 / 64.0  # the official scripts divide the raw step gaps by 64
FEATURES = 17

_H = 24
SIZES: dict[str, SequenceSizes] = {
    "node": SequenceSizes(_H, cell_widths=(3 * _H, 2 * _H)),
    "anode": SequenceSizes(_H, cell_widths=(3 * _H, 2 * _H), encoder="first", encoder_features=5),
    "sonode": SequenceSizes(23, cell_widths=(46, 46)),
    "adamnode": SequenceSizes(21, cell_widths=(42, 42)),
}
DEFAULT_SIZES = SequenceSizes(_H, cell_widths=(2 * _H, 2 * _H))  # HBNODE, GHBNODE, (G)NesterovNODE

# The official scripts' Adam schedules: {epoch: lr}; NODE/ANODE use a constant 3e-3.
LR_SCHEDULES: dict[str, dict[int, float]] = {"node": {0: 3e-3}, "anode": {0: 3e-3}}
DEFAULT_LR_SCHEDULE = {0: 1e-3, 50: 3e-3}


def build_walker_model(
    name: str, *, f_depth: int = 1, seq_len: int = 64, wiring: str = "aligned", **solver: Any
) -> SequenceModel:
    """Model `name`'s Walker2D ODE-RNN; f is `f_depth` tanh Linear layers of width hidden (1: the HBNODE
    repo's, 3: the NesterovNODE repo's); wiring "released": the released NODE/ANODE scripts' misaligned
    readout (`monode.tasks.sequences`). solver: `ODERNN` keywords (method, rtol, atol, adjoint, ...)."""
    if f_depth < 1:
        raise ValueError(f"f_depth must be >= 1, got {f_depth}")
    sizes = SIZES.get(name, DEFAULT_SIZES)
    sizes = dataclasses.replace(sizes, f_widths=(sizes.hidden,) * (f_depth - 1))
    return build_sequence_model(
        name, "walker2d", sizes, features=FEATURES, seq_len=seq_len, cell="mlp", f_activation="tanh",
        wiring=wiring, **solver,
    )  # fmt: skip


def _score(model: SequenceModel, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, Tensor]]:
    x, dt, y = batch
    loss = nn.functional.mse_loss(model(x, dt).prediction, y)
    return loss, {"mse": loss.detach()}


class Walker2D(BenchmarkTask):
    name = "walker2d"
    figures = ("training", "predictions")
    summary = "Walker2D kinematics (irregular, 17 features): ODE-RNN one-step MSE vs forward/backward NFE"
    models = tuple(MODELS)
    metric = "mse"
    higher_is_better = False
    # HBNODE protocol: dopri5 rtol = atol = 1e-7 with the adjoint, batch 256, 500 epochs, clip 1, test every
    # 20 epochs; lr_milestones None = the model's official schedule (LR_SCHEDULES)
    _paper = dict(epochs=500, lr=1e-3, lr_milestones=None, batch_size=256, method="dopri5", rtol=1e-7, atol=1e-7,
                  adjoint=True, grad_clip=1.0, eval_every=20, eval_split="test", f_depth=1, seq_len=64,
                  max_batches=None, compile=True, wiring="aligned")  # fmt: skip
    presets = {
        "paper": _paper,
        # minutes on a CPU: looser tolerance (1e-4), 8 batches of 64 per epoch, constant lr
        "quick": {
            **_paper,
            **dict(epochs=5, lr=3e-3, batch_size=64, rtol=1e-4, atol=1e-4, eval_every=1, max_batches=8, compile=False),
        },
    }

    def settings(self, opts: RunOptions) -> RunSettings:
        s = super().settings(opts)
        check_wiring(str(s["wiring"]))  # (before any data is loaded)
        if s["lr_milestones"] is None and s.preset == "paper" and "lr" not in s.user_set:
            s = s.replace(lr_milestones=LR_SCHEDULES.get(s.model, DEFAULT_LR_SCHEDULE))
        return s

    def build(self, s: RunSettings) -> ScoredTask:
        seq_len = int(s["seq_len"])
        splits = walker2d_windows(load_walker2d_rollouts(s.data_dir), seq_len=seq_len)
        for split in splits.values():
            split["dt"] = split["dt"] * TIME_SCALE
        keys = ("x", "dt", "y")
        train = split_tensors(splits, "train", keys, s.get("subset"))
        evaluation = split_tensors(splits, s["eval_split"], keys)
        model = build_walker_model(
            s.model, f_depth=int(s["f_depth"]), seq_len=seq_len, wiring=str(s["wiring"]), **s.solver()
        )
        return ScoredTask(model, train, evaluation, _score)

    def after_training(self, task: Any, s: RunSettings, out: Path, rows: list[dict[str, float]]) -> None:
        """predictions.svg/png: four of the 17 kinematic channels of a test window against the predictions."""
        plot_predictions(task.model, task.eval_data, out / "predictions", f"Walker2D, {s.model}", channels=(0, 1, 8, 9))


TASK = Walker2D()
