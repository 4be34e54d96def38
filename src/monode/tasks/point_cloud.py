"""Point-cloud separation: nested spheres (Dupont et al. 2019; HBNODE §5.1, NesterovNODE).

Points with radius in [0, 0.5] (label -1) sit inside a shell with radius in [0.85, 1] (label +1), in
`dim` dimensions (2 by default). A NODE cannot separate them without crossing trajectories, so the
task shows how augmentation and momentum help, and how many NFE each model needs. The model: an ODE
block on the points with a small ELU MLP field, h(T) read out by Linear(dim -> 1); loss MSE against
the +-1 labels (HBNODE notebooks), accuracy = sign agreement.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..dynamics import MODELS, build_initializer, build_model
from ..layers import ODEBlock
from ._base import BenchmarkTask, ScoredTask
from ._settings import RunSettings


def nested_spheres(
    n_inner: int,
    n_outer: int,
    dim: int = 2,
    inner: tuple[float, float] = (0.0, 0.5),
    outer: tuple[float, float] = (0.85, 1.0),
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Points uniformly directed, radius uniform in the range (as Dupont's ConcentricSphere); labels -1/+1."""
    if dim < 1 or n_inner < 1 or n_outer < 1:
        raise ValueError(f"nested_spheres needs dim, n_inner, n_outer >= 1, got {dim}, {n_inner}, {n_outer}")
    g = torch.Generator().manual_seed(seed)

    def shell(n: int, lo: float, hi: float) -> Tensor:
        direction = torch.randn(n, dim, generator=g)
        direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return direction * (lo + (hi - lo) * torch.rand(n, 1, generator=g))

    x = torch.cat([shell(n_inner, *inner), shell(n_outer, *outer)])
    y = torch.cat([-torch.ones(n_inner), torch.ones(n_outer)])
    perm = torch.randperm(len(x), generator=g)
    return x[perm], y[perm]


HIDDEN = {"node": 20, "anode": 20, "sonode": 13}  # HBNODE notebooks' widths (equal parameter budgets); others 14


class PointCloud(BenchmarkTask):
    name = "point-cloud"
    summary = "separate nested spheres (generated, 2-D or n-D): accuracy vs forward/backward NFE"
    models = tuple(MODELS)
    metric = "accuracy"
    # NesterovNODE protocol: Adam 1e-2, 200 epochs, batch 50, dopri5 tol 1e-7, 40 inner / 80 outer points
    _paper = dict(epochs=200, lr=1e-2, batch_size=50, method="dopri5", rtol=1e-7, atol=1e-7, adjoint=True, dim=2,
                  n_inner=40, n_outer=80)  # fmt: skip
    presets = {
        "paper": _paper,
        # minutes on a CPU for all models (the README demo)
        "quick": {**_paper, **dict(epochs=60, batch_size=60, rtol=1e-5, atol=1e-5, n_inner=120, n_outer=240)},
    }

    def build(self, s: RunSettings) -> ScoredTask:
        d = int(s["dim"])
        train = nested_spheres(s["n_inner"], s["n_outer"], d, seed=1000 + s.seed)
        test = nested_spheres(s["n_inner"], s["n_outer"], d, seed=2000 + s.seed)
        name = s.model
        dim = d + 1 if name == "anode" else d
        hidden = HIDDEN.get(name, 14)
        field = build_model(
            name, dim=dim, hidden=hidden, net="mlp", net_options=dict(activation="elu"), preset=self.name
        )
        init = build_initializer(name, in_channels=d, dim=dim, hidden=hidden, conv=False, preset=self.name)
        block = ODEBlock(field, init, **s.solver())
        model = nn.Sequential(block, nn.Linear(dim, 1))
        return ScoredTask(model, train, test, _score)


def _score(model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, float]]:
    x, y = batch
    pred = model(x).squeeze(-1)
    loss = nn.functional.mse_loss(pred, y)
    return loss, {"accuracy": float((torch.sign(pred) == y).float().mean())}


TASK = PointCloud()
