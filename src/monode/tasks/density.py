"""Density estimation on 2-D toy densities with continuous normalising flows (FFJORD; NAG-solver paper).

Data: fresh samples of a toy density (`monode.data.toy2d`: 8gaussians, 2moons, checkerboard,
pinwheel, rings, 2spirals), a training set and a held-out set per seed. Model (`--model node`, the
FFJORD baseline): a `CNF` whose field f(t, z) is a time-conditioned tanh MLP. Only "node" is offered:
the CNF docstring says why momentum models give no exact likelihood. Sign convention
(`monode.dynamics.cnf`): data x = z(0) flows to z(T), delta' = -tr(df/dz) from delta(0) = 0, and
log p(x) = log N(z(T); 0, I) - delta(T).

Loss: the batch mean of -log p(x), with the run's solver and the trace estimator of setting `trace`
("exact", or "hutchinson" with `noise` "gaussian" or "rademacher"). Metric: held-out NLL in nats per
sample (lower is better), always with the exact trace and a reference solver (`eval_method`, default
dopri5 at `eval_tol` 1e-5), so it is the likelihood of the continuous model whatever the training
solver. With coarse fixed steps the training loss is no valid NLL (see `monode.dynamics.cnf`): NAG
with 10 steps on 8gaussians trains to 1.7 nats, below the data's entropy 2.8, while that model's
held-out NLL is 40. eval_forward_nfe counts the reference solver.

After training, `after_training` writes <out>/density.png: the data, the learned density exp(log p) on a grid
(`log_density_grid`) and samples of the model, both with the reference solver.

Presets: "paper" follows FFJORD's train_toy.py defaults (hidden 64-64-64 tanh, T = 0.5, exact
trace, dopri5 tol 1e-5, Adam 1e-3 with weight decay 1e-5, batch 100, 10^4 iterations) with the
adjoint, except that t enters f as one input feature (FFJORD: concatsquash layers), T is fixed
(FFJORD trains it) and the 10^4 batches are 10 passes over 10^5 fixed samples (FFJORD: fresh draws);
"quick" (the same field, dopri5 tol 1e-3 without the adjoint, lr 3e-3, batch 200, 30 passes over
4 000 samples) trains in about two minutes on one CPU thread. Fixed-step methods (euler, midpoint,
rk4, nag) step by `step_size` (default 0.05: 10 steps over T).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..data import TOY2D, sample_toy2d
from ..dynamics import MLPField
from ..dynamics.cnf import CNF
from ..figures import figure, save
from ..solvers import METHODS
from ..train import Task
from ._base import BenchmarkTask
from ._settings import RunSettings, solver_keywords

PLOT_LIMIT = 4.0  # the toy densities live in [-4, 4]^2


def log_density_grid(
    log_prob: Callable[[Tensor], Tensor], limit: float = PLOT_LIMIT, size: int = 100, batch: int = 2500
) -> tuple[Tensor, Tensor]:
    """log p on the size x size grid of cell centres of [-limit, limit]^2, evaluated in chunks of `batch`.

    Returns (points [size, size, 2], log p [size, size]); row i has y = points[i, :, 1] (image order
    for imshow with origin="lower").
    """
    edges = torch.linspace(-limit, limit, size + 1)
    centres = (edges[1:] + edges[:-1]) / 2
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    points = torch.stack([xx, yy], -1)
    with torch.no_grad():
        logp = torch.cat([log_prob(chunk).cpu() for chunk in points.reshape(-1, 2).split(batch)])
    return points, logp.reshape(size, size)


class Density(BenchmarkTask):
    name = "density"
    figures = ("training", "density")
    summary = "2-D toy densities (8gaussians, 2moons, checkerboard, ...) with a CNF: held-out NLL, density PNG"
    models = ("node",)
    metric = "nll"
    higher_is_better = False
    # FFJORD train_toy.py: dims 64-64-64, tanh, T = 0.5, brute-force trace, dopri5 1e-5, Adam 1e-3, wd 1e-5,
    # batch 100, 10 000 iterations (fresh samples there; 10 passes over 100 000 here)
    _paper = dict(epochs=10, lr=1e-3, weight_decay=1e-5, batch_size=100, method="dopri5", rtol=1e-5, atol=1e-5,
                  step_size=0.05, adjoint=True, dataset="8gaussians", trace="exact", noise="gaussian",
                  n_train=100_000, n_eval=10_000, hidden=64, depth=4, t_end=0.5, eval_method="dopri5",
                  eval_tol=1e-5, grid_size=200, n_plot=20_000)  # fmt: skip
    presets = {
        "paper": _paper,
        # a few minutes on one CPU thread
        "quick": {
            **_paper,
            **dict(
                epochs=30,
                lr=3e-3,
                weight_decay=0.0,
                batch_size=200,
                rtol=1e-3,
                atol=1e-3,
                adjoint=False,
                n_train=4000,
                n_eval=2000,
                grid_size=100,
                n_plot=4000,
            ),
        },
    }

    def flow(self, s: RunSettings) -> CNF:
        """The CNF of settings `s`: f = MLPField(2, hidden, depth, tanh, time), the solver of the run."""
        net = MLPField(2, int(s["hidden"]), depth=int(s["depth"]), activation="tanh", time=True)
        return CNF(net, dim=2, t_end=float(s["t_end"]), trace=s["trace"], noise=s["noise"], **s.solver())

    def build(self, s: RunSettings) -> _DensityTask:
        if s["dataset"] not in TOY2D:
            raise ValueError(f"--set dataset={s['dataset']!r} is not a 2-D toy density; choose one of {sorted(TOY2D)}")
        if s["eval_method"] not in METHODS:
            raise ValueError(
                f"--set eval_method={s['eval_method']!r} is not a monode solver; choose one of {sorted(METHODS)}"
            )
        n_train = s.get("subset") or s["n_train"]
        train = sample_toy2d(s["dataset"], int(n_train), seed=1000 + s.seed)
        test = sample_toy2d(s["dataset"], int(s["n_eval"]), seed=2000 + s.seed)
        return _DensityTask(self.flow(s), train, test, _eval_solver(s))

    def after_training(
        self,
        task: Task,
        s: RunSettings,
        out: Path,
        rows: list[dict[str, float]],
    ) -> None:
        """Write <out>/density.svg/png: data, learned density and samples of the trained flow."""
        flow = task.model.eval()
        assert isinstance(flow, CNF)
        data = sample_toy2d(s["dataset"], int(s["n_plot"]), seed=3000 + s.seed)
        solver = _eval_solver(s)
        with torch.no_grad():
            samples = flow.sample(int(s["n_plot"]), torch.Generator().manual_seed(4000 + s.seed), solver).cpu()
        _, logp = log_density_grid(lambda x: flow.log_prob(x.to(s.device), "exact", solver), size=int(s["grid_size"]))
        nll = rows[-1].get("eval_nll") if rows else None
        title = f"{s['dataset']}: CNF trained with {s['method']}" + (
            "" if nll is None else f", held-out NLL {nll:.3f} (evaluated with {s['eval_method']})"
        )
        _plot_density(out / "density", data, logp, samples, title)


def _eval_solver(s: RunSettings) -> dict:
    """The reference solver of held-out NLL, density grid and samples."""
    return solver_keywords(s["eval_method"], s["eval_tol"], s["eval_tol"], step_size=s["step_size"])


def _plot_density(stem: Path, data: Tensor, logp: Tensor, samples: Tensor, title: str) -> None:
    """Three panels on [-4, 4]^2: data points, learned density exp(log p), model samples (the point clouds
    rasterized inside the vector file, which stays small)."""
    fig, axes = figure(1, 3, width=4.0, height=4.3)
    extent = (-PLOT_LIMIT, PLOT_LIMIT, -PLOT_LIMIT, PLOT_LIMIT)
    axes[1].imshow(logp.exp().numpy(), origin="lower", extent=extent, cmap="viridis")
    for ax, points in ((axes[0], data), (axes[2], samples)):
        ax.scatter(*points.T.numpy(), s=1, alpha=0.3, linewidths=0, rasterized=True)
    for ax, name in zip(axes, ("data", "learned density", "model samples")):
        ax.set_title(name)
        ax.set_xlim(extent[:2])
        ax.set_ylim(extent[2:])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    save(fig, stem)


class _DensityTask:
    def __init__(self, model: CNF, train: Tensor, test: Tensor, eval_solver: dict) -> None:
        self.model, self.train_data, self.eval_data = model, (train,), (test,)
        self.eval_solver = eval_solver

    def loss(self, model: CNF, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, float]]:
        return -model.log_prob(batch[0]).mean(), {}

    def evaluate(self, model: CNF, batch: tuple[Tensor, ...]) -> dict[str, float]:
        return {"nll": float(-model.log_prob(batch[0], "exact", self.eval_solver).mean())}


TASK = Density()
