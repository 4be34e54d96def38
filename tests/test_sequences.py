"""The ODE-RNN sequence tasks (plane vibration, Walker2D) and the Silverbox initialisation study."""

from __future__ import annotations

import csv

import pytest
import torch

from monode.cli import main
from monode.dynamics import MODELS
from monode.tasks import TASKS, RunOptions, count_parameters
from monode.tasks.plane_vibration import build_pv_model
from monode.tasks.sequences import LinearUpdate
from monode.tasks.walker2d import build_walker_model

F64 = torch.float64
QUICK = dict(rtol=1e-4, atol=1e-4)  # the quick presets' tolerance


def test_parameter_counts_match_the_papers():
    """papers.md 7.1 (HBNODE repo); Walker HBNODE is one less: the official count includes its frozen c~."""
    pv = {"node": 15986, "anode": 16730, "sonode": 16649, "hbnode": 16127, "ghbnode": 16127}
    walker = {"node": 8729, "anode": 8819, "sonode": 8757, "hbnode": 8898, "ghbnode": 8899}
    assert {m: count_parameters(build_pv_model(m)) for m in pv} == pv
    assert {m: count_parameters(build_walker_model(m)) for m in walker} == walker
    # the NesterovNODE repo's Walker f (3 tanh layers) adds 2 * (24 * 24 + 24) parameters
    assert count_parameters(build_walker_model("node", f_depth=3)) == 9929


def _finite_gradients(model: torch.nn.Module, loss: torch.Tensor) -> bool:
    loss.backward()
    return all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_runs_both_tasks_with_the_right_shapes(name):
    """Forward shapes, and adjoint gradients reaching every parameter, at the quick presets' tolerance
    (NesterovNODE: the adjoint's steps past t = 0, where k(t) is NaN, are rejected by the solver)."""
    torch.manual_seed(0)
    x, dt = torch.randn(3, 6, 5), torch.rand(3, 6) + 0.5
    pv = build_pv_model(name, seq_len=6, adjoint=True, **QUICK)
    out = pv(x, dt)
    assert out.reconstruction.shape == out.prediction.shape == (3, 6, 5)
    forecast = pv.forecast(out.last, 8)
    assert forecast.shape == (3, 8, 5)
    assert torch.allclose(forecast[:, 0], out.prediction[:, -1], atol=1e-6)  # the last one-step prediction
    assert _finite_gradients(pv, forecast.square().mean() + out.reconstruction.square().mean())
    walker = build_walker_model(name, seq_len=6, adjoint=True, **QUICK)
    out = walker(torch.randn(3, 6, 17), dt / 64)
    assert out.prediction.shape == (3, 6, 17)
    assert _finite_gradients(walker, out.prediction.square().mean())


def _affine_flow(linear: torch.nn.Linear, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Exact flow of h' = W h + b over per-sample times t, via exp of the augmented matrix [[W, b], [0, 0]]."""
    n = linear.out_features
    m = torch.zeros(n + 1, n + 1, dtype=F64)
    m[:n, :n], m[:n, n] = linear.weight, linear.bias
    flows = torch.linalg.matrix_exp(m * t.reshape(-1, 1, 1))
    return (flows[:, :n, :n] @ h.unsqueeze(-1)).squeeze(-1) + flows[:, :n, n]


def test_odernn_wiring_matches_the_exact_solution_of_a_linear_node():
    """Walker NODE (f one Linear): update with x_i, evolve each sample by its own gap, decode; and the forecast."""
    torch.manual_seed(0)
    model = build_walker_model("node", rtol=1e-11, atol=1e-11).double()
    x, dt = torch.randn(4, 5, 17, dtype=F64), torch.rand(4, 5, dtype=F64) * 2
    with torch.no_grad():
        out = model(x, dt)
        f = model.rnn.field.net.layers[0]
        h = torch.zeros(4, 24, dtype=F64)
        for i in range(5):
            h = _affine_flow(f, model.rnn.cell(h, x[:, i]), dt[:, i])
            assert torch.allclose(out.prediction[:, i], model.decoder(h), rtol=1e-7, atol=1e-8)
        forecast = model.forecast(out.last, 3)
        for j in range(3):
            expected = model.decoder(_affine_flow(f, h, torch.full((4,), float(j), dtype=F64)))
            assert torch.allclose(forecast[:, j], expected, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name", ["node", "anode"])
def test_released_wiring_is_the_released_walker_baselines_recursion(name):
    """wiring="released" (Xia et al.'s Walker NODE/ANODE scripts, `rnn_out=True`): w_{-1} = v_0,
    w_i = cell(flow(w_{i-1}, dt_i), x_i) with a cell without residual; prediction i reads w_{i-1}."""
    torch.manual_seed(0)
    model = build_walker_model(name, wiring="released", rtol=1e-11, atol=1e-11).double()
    x, dt = torch.randn(4, 5, 17, dtype=F64), torch.rand(4, 5, dtype=F64) * 2
    with torch.no_grad():
        out = model(x, dt)
        f, cell = model.rnn.field.net.layers[0], model.rnn.cell.net
        w = torch.zeros(4, 24, dtype=F64) if model.encoder is None else model.encoder(x[:, 0])
        for i in range(5):
            assert torch.allclose(out.prediction[:, i], model.decoder(w), rtol=1e-7, atol=1e-8)
            w = cell(torch.cat([_affine_flow(f, w, dt[:, i]), x[:, i]], 1))  # no residual
        assert torch.allclose(out.last, w, rtol=1e-7, atol=1e-8)
    with pytest.raises(ValueError, match=r"--set wiring='x' must be one of \['aligned', 'released'\]"):
        build_walker_model(name, wiring="x")


def test_linear_update_is_the_papers_residual_jump():
    torch.manual_seed(0)
    cell = LinearUpdate(features=3, hidden=4, n_vars=2)
    h, m, x = torch.randn(2, 4), torch.randn(2, 4), torch.randn(2, 3)
    new_h, new_m = cell((h, m), x)
    jump = cell.inputs(x) + cell.mixers[0](h) + cell.mixers[1](m)
    assert torch.allclose(torch.cat([new_h, new_m], 1), torch.cat([h, m], 1) + jump)


def test_walker_paper_preset_keeps_the_official_learning_rate_schedules():
    task = TASKS["walker2d"]
    schedule = lambda **kw: task.settings(RunOptions(preset="paper", **kw))["lr_milestones"]  # noqa: E731
    assert schedule(model="hbnode") == {0: 1e-3, 50: 3e-3}
    assert schedule(model="node") == {0: 3e-3}
    assert schedule(model="node", lr=1e-2) is None  # an explicit --lr means a constant rate


@pytest.mark.data("plane_vibration")
def test_silverbox_init_heavy_ball_blows_up_and_the_gated_models_stay_bounded(tmp_path, capsys):
    """HBNODE Fig. 3: over t = 0..63 the HBNODE state norm grows by many orders more than GHBNODE's."""
    assert main(["train", "silverbox-init", "--model", "hbnode,ghbnode,gnesterovnode", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "silverbox_init.csv")))
    assert len(rows) == 64 and list(rows[0]) == ["t", "hbnode", "ghbnode", "gnesterovnode"]
    growth = {m: float(rows[-1][m]) - float(rows[0][m]) for m in ("hbnode", "ghbnode", "gnesterovnode")}
    assert growth["hbnode"] >= 10  # exp(sqrt(w) t) with w up to ~0.7: about 20 orders in the official setting
    assert growth["hbnode"] - growth["ghbnode"] >= 2 and growth["hbnode"] - growth["gnesterovnode"] >= 2
    assert growth["ghbnode"] < 1 and growth["gnesterovnode"] < 1
    assert (tmp_path / "silverbox_init.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["train", "silverbox-init", "--model", "hbnode,nope", "--out", str(tmp_path / "x")]) == 2
    assert "'nope' is not a model" in capsys.readouterr().err


def _train(tmp_path, task: str, model: str) -> list[dict[str, str]]:
    """8 epochs of 2 batches of 16 windows (of 16 steps) from the real data, tolerance 1e-3, lr 1e-2."""
    assert (
        main(
            [
                "train",
                task,
                "--model",
                model,
                "--epochs",
                "8",
                "--subset",
                "32",
                "--batch-size",
                "16",
                "--max-batches",
                "2",
                "--rtol",
                "1e-3",
                "--atol",
                "1e-3",
                "--lr",
                "1e-2",
                "--set",
                "seq_len=16",
                "--no-progress",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 8 and float(rows[-1]["train_forward_nfe"]) > 0 and float(rows[-1]["train_backward_nfe"]) > 0
    return rows


def _column(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows]


@pytest.mark.slow
@pytest.mark.data("walker2d")
def test_walker2d_training_on_real_data_lowers_the_loss(tmp_path):
    losses = _column(_train(tmp_path, "walker2d", "hbnode"), "train_loss")
    assert losses[-1] < 0.6 * losses[0]


@pytest.mark.slow
@pytest.mark.data("plane_vibration")
def test_plane_vibration_training_on_real_data_lowers_the_loss(tmp_path):
    """The forecast term dominates the loss and falls slowly; the one-step MSE falls fast."""
    rows = _train(tmp_path, "plane-vibration", "hbnode")
    losses, one_step = _column(rows, "train_loss"), _column(rows, "train_mse")
    assert losses[-1] < 0.9 * losses[0] and one_step[-1] < 0.5 * one_step[0]


def test_compare_refuses_a_study_with_a_clear_message(tmp_path, capsys) -> None:
    assert main(["compare", "silverbox-init", "--models", "hbnode,ghbnode", "--out", str(tmp_path)]) == 2
    assert "study without training" in capsys.readouterr().err
