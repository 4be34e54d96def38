"""Density task: CNF log-likelihood against closed forms, the trace estimators, gradients, toy samplers, CLI."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from monode.cli import main
from monode.data import TOY2D, sample_toy2d
from monode.dynamics import MLPField
from monode.dynamics.cnf import CNF, TRACES, divergence, hutchinson_noise, standard_normal_log_prob
from monode.tasks import TASKS, RunOptions
from monode.tasks.density import log_density_grid

TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-10)
TINY = [
    "--set",
    "n_train=200",
    "--set",
    "n_eval=100",
    "--set",
    "n_plot=300",
    "--set",
    "grid_size=16",
    "--set",
    "hidden=8",
    "--set",
    "depth=2",
]


class LinearField(nn.Module):
    """f(t, z) = A z: the flow is z(T) = expm(A T) z(0), with log-determinant tr(A) T."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.clone())

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ self.a.T


A = torch.tensor([[0.3, -0.5], [0.8, -0.1]], dtype=torch.float64)  # not symmetric, not normal


def linear_log_prob(a: torch.Tensor, x: torch.Tensor, t_end: float) -> torch.Tensor:
    """The closed form: log p(x) = log N(expm(A T) x; 0, I) + tr(A) T."""
    return standard_normal_log_prob(x @ torch.linalg.matrix_exp(a * t_end).T) + torch.trace(a) * t_end


def mlp(seed: int = 0, hidden: int = 8, depth: int = 3) -> MLPField:
    torch.manual_seed(seed)
    return MLPField(2, hidden, depth=depth, activation="tanh", time=True).double()


# --- exact log-likelihood -------------------------------------------------------------------------


@pytest.mark.parametrize("trace", TRACES)
def test_identity_flow_gives_the_standard_normal_exactly(trace: str) -> None:
    net = mlp()
    nn.init.zeros_(net.layers[-1].weight)
    nn.init.zeros_(net.layers[-1].bias)  # f == 0 with a live graph: df/dz = 0 through autograd
    x = torch.randn(7, 2, dtype=torch.float64) * 2
    oracle = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1)
    flow = CNF(net, 2, t_end=0.5, trace=trace)
    z, delta = flow(x)
    assert torch.equal(delta, torch.zeros_like(delta))  # (z(T) = x up to dopri5's dense-output rounding)
    torch.testing.assert_close(z, x, rtol=0, atol=1e-14)
    torch.testing.assert_close(flow.log_prob(x), oracle, rtol=0, atol=1e-14)


@pytest.mark.parametrize("adjoint", [False, True])
def test_linear_flow_log_prob_and_gradient_match_the_closed_form(adjoint: bool) -> None:
    x = torch.randn(6, 2, dtype=torch.float64)
    flow = CNF(LinearField(A), 2, t_end=0.7, adjoint=adjoint, **TIGHT)
    logp = flow.log_prob(x)
    a = A.clone().requires_grad_(True)
    expected = linear_log_prob(a, x, 0.7)
    torch.testing.assert_close(logp, expected.detach(), rtol=0, atol=1e-8)
    logp.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(flow.net.a.grad, a.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_log_prob_of_linear_flow_is_right_in_expectation(noise: str) -> None:
    n = 20_000  # one point repeated: every row draws its own probe, so the rows are independent estimates
    x = torch.tensor([[0.4, -1.2]], dtype=torch.float64).expand(n, 2)
    flow = CNF(
        LinearField(A), 2, t_end=0.7, trace="hutchinson", noise=noise, method="rk4", options=dict(step_size=0.05)
    )
    torch.manual_seed(0)
    with torch.no_grad():
        estimates = flow.log_prob(x)
    exact = linear_log_prob(A, x[:1], 0.7)
    assert estimates.std() > 1e-3  # really random ...
    assert abs(float(estimates.mean() - exact)) < 5 * float(estimates.std()) / math.sqrt(n)  # ... and unbiased


def test_solver_override_integrates_with_the_given_method() -> None:
    """One Euler step is the map (I + A T) x with delta = -tr(A) T: not the flow's log-determinant."""
    x = torch.randn(4, 2, dtype=torch.float64)
    flow = CNF(LinearField(A), 2, t_end=0.7, **TIGHT)
    with torch.no_grad():
        euler = flow.log_prob(x, solver=dict(method="euler", options=None))
        accurate = flow.log_prob(x)
    one_step = standard_normal_log_prob(x @ (torch.eye(2, dtype=torch.float64) + 0.7 * A).T) + torch.trace(A) * 0.7
    torch.testing.assert_close(euler, one_step, rtol=0, atol=1e-12)
    torch.testing.assert_close(accurate, linear_log_prob(A, x, 0.7), rtol=0, atol=1e-8)
    assert (euler - accurate).abs().max() > 0.01


# --- the trace estimators -------------------------------------------------------------------------


def test_exact_divergence_is_the_jacobian_trace_and_hutchinson_is_unbiased() -> None:
    net = mlp(1)
    t = torch.tensor(0.3, dtype=torch.float64)
    z = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    f = net(t, z)
    exact = divergence(f, z)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: net(t, v.unsqueeze(0))[0], z[i].detach())
        torch.testing.assert_close(exact[i], torch.trace(jac), rtol=0, atol=1e-12)

    n = 20_000
    zs = z.detach().repeat(n, 1).requires_grad_(True)
    fs = net(t, zs)
    for kind in ("gaussian", "rademacher"):
        estimates = divergence(fs, zs, hutchinson_noise(zs, kind, torch.Generator().manual_seed(2))).view(n, 3)
        stderr = estimates.std(0) / math.sqrt(n)
        assert (stderr > 0).all() and ((estimates.mean(0) - exact.detach()).abs() < 5 * stderr).all()
    rademacher = hutchinson_noise(zs, "rademacher")
    assert set(rademacher.unique().tolist()) == {-1.0, 1.0}


def test_bad_trace_and_noise_names_are_errors() -> None:
    with pytest.raises(ValueError, match="trace must be one of"):
        CNF(mlp(), 2, trace="approximate")
    with pytest.raises(ValueError, match="noise must be one of"):
        CNF(mlp(), 2, trace="hutchinson", noise="uniform")
    with pytest.raises(ValueError, match=r"x must have shape \[batch, 2\]"):
        CNF(mlp(), 2).log_prob(torch.zeros(3, 3, dtype=torch.float64))


# --- gradients --------------------------------------------------------------------------------------


@pytest.mark.parametrize("trace", TRACES)
def test_gradcheck_of_log_prob_through_rk4(trace: str) -> None:
    """Backprop through the solver and through the trace (second derivatives of f) against finite differences."""
    flow = CNF(mlp(3, hidden=4, depth=2), 2, t_end=0.5, trace=trace, method="rk4", options=dict(step_size=0.25))
    names = [name for name, _ in flow.named_parameters()]

    def log_prob(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)  # the same Hutchinson probe at every call
        z, delta = torch.func.functional_call(flow, dict(zip(names, params)), (x,))
        return standard_normal_log_prob(z) - delta

    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    params = tuple(p.detach().clone().requires_grad_(True) for p in flow.parameters())
    assert torch.autograd.gradcheck(log_prob, (x, *params))


# --- toy samplers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_toy_samplers_shape_seed_and_range(name: str) -> None:
    x = sample_toy2d(name, 500, seed=3)
    assert x.shape == (500, 2) and x.dtype == torch.get_default_dtype() and torch.isfinite(x).all()
    assert torch.equal(x, sample_toy2d(name, 500, seed=3))
    assert torch.equal(x, sample_toy2d(name, 500, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(x, sample_toy2d(name, 500, seed=4))
    assert x.abs().max() < 6 and x.std(0).min() > 0.5  # spread over the [-4, 4]^2 plotting window


def test_toy_samplers_draw_the_documented_shapes() -> None:
    board = sample_toy2d("checkerboard", 2000)
    cells = torch.floor((board + 4) / 2)
    assert board.abs().max() <= 4 and ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()  # dark squares only
    centres = (
        2
        * math.sqrt(2)
        * torch.stack([torch.cos(torch.arange(8) * math.pi / 4), torch.sin(torch.arange(8) * math.pi / 4)], 1)
    )
    gaussians = sample_toy2d("8gaussians", 4000)
    nearest = torch.cdist(gaussians, centres).min(1).values
    assert abs(float(nearest.pow(2).mean()) - 2 * 0.35**2) < 0.02  # E|x - c|^2 = 2 sigma^2
    radius = sample_toy2d("rings", 4000).norm(dim=1)
    ring_gap = (radius.unsqueeze(1) - torch.tensor([0.75, 1.5, 2.25, 3.0])).abs().min(1).values
    assert ring_gap.max() < 0.5 and ring_gap.mean() < 0.1


def test_unknown_toy_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown 2-D toy dataset 'moons'"):
        sample_toy2d("moons", 10)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        sample_toy2d("rings", 0)


# --- grid, task and CLI -----------------------------------------------------------------------------------


def test_log_density_grid_layout_and_mass() -> None:
    points, logp = log_density_grid(lambda x: x[:, 0] + 10 * x[:, 1], limit=2.0, size=6)
    assert points.shape == (6, 6, 2) and logp.shape == (6, 6)
    torch.testing.assert_close(logp, points[..., 0] + 10 * points[..., 1])
    assert (points[:, :, 1] == points[:, :1, 1]).all()  # rows have constant y (imshow, origin="lower")
    _, logp = log_density_grid(lambda x: standard_normal_log_prob(x), limit=4.0, size=200)
    assert abs(float(logp.exp().sum() * (8 / 200) ** 2) - math.erf(4 / math.sqrt(2)) ** 2) < 1e-4


def test_density_train_cli_writes_png_and_rejects_bad_dataset(tmp_path, capsys) -> None:
    assert (
        main(
            [
                "train",
                "density",
                "--model",
                "node",
                "--epochs",
                "1",
                "--no-progress",
                "--set",
                "dataset=8gaussians",
                *TINY,
                "--out",
                str(tmp_path / "a"),
            ]
        )
        == 0
    )
    assert (tmp_path / "a" / "density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(tmp_path / "a" / "metrics.csv")))
    assert math.isfinite(float(rows[-1]["eval_nll"]))
    assert (
        main(["train", "density", "--model", "node", "--set", "dataset=swissroll", "--out", str(tmp_path / "b")]) == 2
    )
    assert "--set dataset='swissroll' is not a 2-D toy density" in capsys.readouterr().err
    assert main(["train", "density", "--model", "node", "--set", "eval_method=rk45", "--out", str(tmp_path / "d")]) == 2
    assert "--set eval_method='rk45' is not a monode solver" in capsys.readouterr().err
    assert main(["train", "density", "--model", "hbnode", "--out", str(tmp_path / "c")]) == 2
    assert "--model 'hbnode' is not available" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags",
    [
        ["--method", "rk4", "--step-size", "0.1"],
        ["--method", "nag"],
        ["--set", "trace=hutchinson", "--set", "noise=rademacher", "--adjoint"],
    ],
)
def test_density_cli_solver_and_trace_choices(tmp_path, flags: list[str]) -> None:
    assert (
        main(
            [
                "train",
                "density",
                "--model",
                "node",
                "--epochs",
                "1",
                "--no-progress",
                "--set",
                "dataset=2moons",
                *TINY,
                *flags,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    nfe = {"rk4": 4 * 5, "nag": 10}  # T = 0.5: 5 RK4 steps of 0.1; 10 NAG steps of the default 0.05
    method = flags[1] if flags[0] == "--method" else None
    if method:
        assert float(rows[-1]["train_forward_nfe"]) == nfe[method]
    assert (tmp_path / "density.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_short_training_beats_the_standard_normal(tmp_path) -> None:
    settings = [
        "--set",
        "n_train=1000",
        "--set",
        "n_eval=1000",
        "--set",
        "hidden=32",
        "--set",
        "depth=3",
        "--set",
        "n_plot=500",
        "--set",
        "grid_size=20",
    ]
    task = TASKS["density"]
    opts = RunOptions(model="node", overrides={"n_train": 1000, "n_eval": 1000, "hidden": 32, "depth": 3})
    torch.manual_seed(0)
    untrained = task.build(task.settings(opts))
    held_out = untrained.eval_data[0]
    with torch.no_grad():
        before = -float(untrained.model.log_prob(held_out, trace="exact").mean())
    baseline = -float(standard_normal_log_prob(held_out).mean())  # N(0, I), about 5.96 nats on 8gaussians

    assert (
        main(
            [
                "train",
                "density",
                "--model",
                "node",
                "--epochs",
                "20",
                "--batch-size",
                "100",
                "--no-progress",
                *settings,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    after = float(rows[-1]["eval_nll"])
    # measured: 5.80 untrained -> 3.17 after 20 epochs (N(0, I): 5.97; the data's entropy, the optimum: about 2.8)
    assert after < 0.65 * before and after < baseline - 2.0
