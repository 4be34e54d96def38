"""Silverbox initialisation study (HBNODE Fig. 3; also in the AdamNODE and NesterovNODE repos).

No training: each model, untrained, is driven by the Silverbox input over t = 0..63 (one unit per
sample). The field's f is one Linear layer of [h, u(t)] with u the input V1 (x100) linearly
interpolated between samples; h0 = [V2(0) x100, 0, ...] and each momentum variable starts at a
uniform(-1, 1) draw (AdamNODE: v0 = m0^2). Ten random initialisations per model (f drawn like
nn.Linear's default) run as one batch (dopri5, rtol = atol = 1e-7, float64). Each unit interval is
one solve over the model's span, as an ODE-RNN gap is: for every other model this equals one long
solve, and NesterovNODE restarts its clock (t in [1, 2]) instead of running k(t) = t^-1.5 e^(t/2) up
to t = 64, where it overflows. Reported: log10 of the mean over the initialisations of the norm of
the model's whole state (h, m, ...) at each time, as the official script does.

The claim reproduced: a heavy-ball model with an unbounded f blows up (h'' + gamma h' = w h + ...
grows like exp(sqrt(w) t) for w > 0; about 20 orders over the horizon), while GHBNODE's gate
(|h'| <= 5) and restoring term, and GNesterovNODE's bounded gates, keep the state within about one
order. NODE, ANODE and SONODE grow too (h' = w h + ...: exp(w t)); AdamNODE's normalised h' stays
within a few orders.

    monode train silverbox-init --model all      # every model in one plot
    monode train silverbox-init --model hbnode,ghbnode

writes silverbox_init.csv (column t, then one column per model) and silverbox_init.png into --out.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import load_silverbox
from ..dynamics import MODELS, build_model
from ..layers import ODEBlock
from ._base import BenchmarkTask, RunResult
from ._settings import RunOptions

ALL = "all"
DIMS = {"anode": 2}  # ANODE: the input channel plus one zero-augmented channel (official zpad = 1); others 1


class ForcedLinearEnsemble(nn.Module):
    """f(t, h)_r = W_r [h_r, u(t)] + b_r for R independent draws r (row r of the batch uses draw r).

    u interpolates `forcing` linearly between unit-spaced samples at the physical time
    `offset + t - t0` (`offset`: the start of the interval being solved, set by the caller).
    W_r and b_r are uniform(-1/sqrt(in + 1), 1/sqrt(in + 1)), nn.Linear's default initialisation.
    """

    def __init__(
        self, in_features: int, out_features: int, draws: int, forcing: Tensor, t0: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features + 1)

        def uniform(*shape: int) -> Tensor:
            return (torch.rand(*shape, generator=generator, dtype=forcing.dtype) * 2 - 1) * bound

        self.weight = nn.Parameter(uniform(draws, in_features + 1, out_features))
        self.bias = nn.Parameter(uniform(draws, 1, out_features))
        self.forcing: Tensor
        self.register_buffer("forcing", forcing)
        self.t0, self.offset = t0, 0.0

    def input(self, t: Tensor) -> Tensor:
        """u: the forcing interpolated at offset + t - t0 (clamped to the record)."""
        s = (t - self.t0 + self.offset).clamp(0, len(self.forcing) - 1)
        i = s.floor().long().clamp(max=len(self.forcing) - 2)
        return torch.lerp(self.forcing[i], self.forcing[i + 1], s - i)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        z = torch.cat([h, self.input(t).expand(h.shape[0], 1)], 1)
        return torch.baddbmm(self.bias, z.unsqueeze(1), self.weight).squeeze(1)


def log10_mean_norm(
    name: str,
    record: np.ndarray,
    *,
    draws: int = 10,
    steps: int = 64,
    seed: int = 0,
    scale: float = 100.0,
    **solver: Any,
) -> tuple[np.ndarray, int]:
    """log10 of the mean (over `draws` initialisations) state norm of model `name` at `steps` unit times.

    record: the Silverbox record [T, 2] (V1 input, V2 output), multiplied by `scale`. Returns the curve
    [steps] and the parameters of one initialisation. solver: `ODEBlock` keywords (method, rtol, ...).
    """
    spec = MODELS[name]
    dtype = torch.float64
    generator = torch.Generator().manual_seed(seed)
    forcing = torch.as_tensor(record[:, 0] * scale, dtype=dtype)
    dim, t0 = DIMS.get(name, 1), spec.t_span[0]
    field = build_model(
        name,
        dim=dim,
        preset="silverbox-init",
        net=lambda f_in, f_out: ForcedLinearEnsemble(f_in, f_out, draws, forcing, t0, generator),
    ).to(dtype)
    h0 = torch.zeros(draws, dim, dtype=dtype)
    h0[:, 0] = float(record[0, 1] * scale)
    momenta = [torch.rand(draws, dim, generator=generator, dtype=dtype) * 2 - 1 for _ in range(spec.state_size - 1)]
    if spec.state_size == 3:  # AdamNODE: the second moment of the first
        momenta[1] = momenta[0] ** 2
    variables = h0 if spec.state_size == 1 else (h0, *momenta)
    block, net = ODEBlock(field, **solver), field.net
    assert isinstance(net, ForcedLinearEnsemble)
    norms: list[Tensor] = []
    with torch.no_grad():
        for step in range(steps):
            if step:
                net.offset = float(step - 1)
                variables = block(variables, output="variables")
            parts = (variables,) if isinstance(variables, Tensor) else variables
            norms.append(torch.cat(parts, dim=1).norm(dim=1))
    ensemble = sum(p.numel() for p in net.parameters())
    scalars = sum(p.numel() for p in field.parameters() if p.requires_grad) - ensemble  # gamma~, xi~, ...
    return torch.stack(norms).mean(dim=1).log10().numpy(), ensemble // draws + scalars  # norms: [steps, draws]


class SilverboxInit(BenchmarkTask):
    name = "silverbox-init"
    figures = ("silverbox_init",)
    summary = "untrained models driven by the Silverbox input: log10 mean state norm over t (a study, no training)"
    models = tuple(MODELS) + (ALL,)
    metric = "growth_orders"
    trains = False
    higher_is_better = False
    presets = {
        # the official script: 10 initialisations, t = 0..63, dopri5 rtol = atol = 1e-7, input x100
        "paper": dict(draws=10, steps=64, scale=100.0, method="dopri5", rtol=1e-7, atol=1e-7),
        "quick": dict(draws=10, steps=64, scale=100.0, method="dopri5", rtol=1e-7, atol=1e-7),  # seconds already
    }

    @staticmethod
    def model_names(model: str) -> tuple[str, ...]:
        """--model: "all" or one or more comma-separated model names."""
        names = tuple(MODELS) if model == ALL else tuple(m.strip() for m in model.split(","))
        unknown = [n for n in names if n not in MODELS]
        if unknown:
            raise ValueError(
                f"--model {model!r}: {unknown[0]!r} is not a model; give 'all' or comma-separated "
                f"names of {list(MODELS)}"
            )
        return names

    def check_model(self, model: str) -> None:
        self.model_names(model)

    def run(self, opts: RunOptions, out: Path) -> RunResult:
        """The study for the --model names: one row per model (log10 norm at t = 0 and 63, growth in
        orders), the CSV and the plot in `out`; parameters: one initialisation's, summed over the models."""
        s = self.settings(opts)
        solver = s.solver()
        with self.run_folder(s, Path(out)) as out:
            record = load_silverbox(s.data_dir)
            curves: dict[str, np.ndarray] = {}
            rows: list[dict[str, Any]] = []
            total = 0
            for name in self.model_names(s.model):
                curve, params = log10_mean_norm(
                    name,
                    record,
                    draws=int(s["draws"]),
                    steps=int(s["steps"]),
                    seed=s.seed,
                    scale=float(s["scale"]),
                    **solver,
                )
                curves[name] = curve
                total += params
                rows.append(
                    {
                        "model": name,
                        "log10_norm_start": float(curve[0]),
                        "log10_norm_end": float(curve[-1]),
                        "growth_orders": float(curve[-1] - curve[0]),
                        "parameters": params,
                    }
                )
                print(f"{name:14s} log10 mean norm {curve[0]:7.2f} -> {curve[-1]:7.2f}", flush=True)
            _write_csv(out / "silverbox_init.csv", curves)
            _write_plot(out / "silverbox_init", curves)
        return RunResult(rows, total)


def _write_csv(path: Path, curves: dict[str, np.ndarray]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t", *curves])
        for t, values in enumerate(zip(*curves.values())):
            writer.writerow([t, *(f"{v:.6g}" for v in values)])


def _write_plot(stem: Path, curves: dict[str, np.ndarray]) -> None:
    from ..figures import figure, legend_outside, save

    fig, ax = figure(width=7.0, height=4.5)
    for name, curve in curves.items():
        ax.plot(curve, label=name, linewidth=2)
    ax.set_xlabel("t (Silverbox samples)")
    ax.set_ylabel("log10 mean ||state(t)||")
    ax.set_title("Untrained models driven by the Silverbox input (10 initialisations)")
    ax.grid(True, alpha=0.4)
    legend_outside(ax, fontsize=8)
    save(fig, stem)


TASK = SilverboxInit()
