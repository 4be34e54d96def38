"""Irregularly sampled time series: a latent ODE (Rubanova et al. 2019) whose two ODEs are any monode model.

Data (setting `dataset`; data and splits use seed 0, so runs with another --seed share the test set):
* "spirals" (`make_spirals`): `n_spirals` noisy 2-D spirals, half clockwise, each seen at `n_observed`
  random times of a grid of `n_grid` points over [0, 1]; the first 80% train, the rest test.
* "physionet": PhysioNet 2012 sets a and b (8000 ICU stays, 41 features, times rounded to
  `quantization` hours, masks for missing values), split 80/20 by a fixed permutation, min-max
  normalised with the statistics of the whole training split (Rubanova et al.'s interpolation setup).
`subset` keeps the first N training series, `eval_size` the first N test series (None: all). Settings of
one dataset only: n_spirals, n_grid, n_observed, turns, noise_std (spirals); quantization (physionet).

Interpolation: every observed time row is hidden from the encoder with probability `holdout` (drawn
once per series); the model reconstructs every observed value. Metrics: `mse` on the hidden entries
(with holdout = 0, Rubanova et al.'s PhysioNet protocol, on all observed entries), `recon_mse` on the
entries the encoder saw, `kl` (nats per series).

Model (`LatentODE`): an ODE-RNN recognition network runs over the visible observations in reversed
time, its h at t = 0 gives q(z0) = N(mean, diag(exp(log_var))); z0 is sampled by reparameterisation
(its mean at evaluation), the model's initial-state network turns it into the ODE's variables, one
solve over the batch's union of times gives h(t), and a Linear layer reads the features out. The
loss is the negative ELBO per observed value, with a fixed observation noise `obs_std`:

    loss = [ sum_obs (x - x_hat)^2 / (2 obs_std^2) + n_obs log(obs_std sqrt(2 pi)) + kl_weight sum_b KL_b ] / n_obs
    KL_b = KL(N(mean_b, diag exp(log_var_b)) || N(0, I)) = 1/2 sum_j (mean^2 + exp(log_var) - 1 - log_var)

Times t in [0, t_max] (spirals t_max = 1, PhysioNet 48 h) map linearly onto the field's t_span. Sizes:
`rec_dim` (encoder h), `latent` (z0 and decoder h), `hidden` (units of every f MLP and initial-state
network). z0 fills the decoder's width, so ANODE's zero augmentation adds nothing here: it equals NODE.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import load_physionet, make_spirals, physionet_feature_stats, physionet_tensors
from ..dynamics import MODELS, State, build_initializer, build_model
from ..figures import figure, legend_outside, save
from ..layers import ODERNN, ODEBlock
from ._base import BenchmarkTask
from ._settings import RunSettings

__all__ = ["LatentODE", "ObservationCell", "masked_mse", "TASK"]

TRAIN_FRACTION = 0.8
PHYSIONET_HOURS = 48.0  # every stay is observed over its first 48 hours


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """sum(mask (pred - target)^2) / sum(mask): the mean squared error over entries with mask 1 (0 if none).

    Entries with mask 0 never reach the result (not even a NaN or inf there).
    """
    return (mask * torch.where(mask > 0, (pred - target).square(), 0.0)).sum() / mask.sum().clamp_min(1)


class ObservationCell(nn.Module):
    """The ODE-RNN jump at one time row: h <- GRUCell([x * m, m], h) where any feature is observed.

    Called as cell(variables, x_i) with x_i = [x * m, m] ([B, 2 * features]); h is the first variable
    (the only one for NODE/ANODE) and the momenta (m, v) of the other models carry over unchanged.
    Rows with nothing observed (padding, held-out rows) leave every variable as it is.
    """

    def __init__(self, features: int, hidden_size: int) -> None:
        super().__init__()
        self.gru = nn.GRUCell(2 * features, hidden_size)
        self.features = features

    def forward(self, variables: State, x: Tensor) -> State:
        h = variables if isinstance(variables, Tensor) else variables[0]
        observed = x[:, self.features :].sum(-1, keepdim=True) > 0
        h = torch.where(observed, self.gru(x, h), h)
        return h if isinstance(variables, Tensor) else (h, *variables[1:])


class LatentODE(nn.Module):
    """Latent ODE with an ODE-RNN encoder; both ODEs use model `model` (see the module docstring).

    Args:
        model: a key of `MODELS`; encoder field of width `rec_dim`, decoder field of width `latent`,
            both MLP fields with `hidden` units (tanh); decoder initial state from
            `build_initializer(model, in_channels=latent, dim=latent)`.
        features: observed features per time row.
        t_max: the time mapped onto the end of the field's t_span.
        **solver: solver keywords of `ODEBlock` / `ODERNN` (method, rtol, atol, options, adjoint).
    """

    def __init__(
        self, model: str, features: int, *, latent: int, rec_dim: int, hidden: int, t_max: float, **solver: Any
    ) -> None:
        super().__init__()
        if not t_max > 0:
            raise ValueError(f"t_max must be > 0, got {t_max!r}")
        self.encoder = ODERNN(
            build_model(model, dim=rec_dim, hidden=hidden),
            ObservationCell(features, rec_dim),
            hidden_size=rec_dim,
            **solver,
        )
        self.posterior = nn.Linear(rec_dim, 2 * latent)
        init = build_initializer(model, in_channels=latent, dim=latent, hidden=hidden, conv=False)
        self.decoder = ODEBlock(build_model(model, dim=latent, hidden=hidden), init, **solver)
        self.readout = nn.Linear(latent, features)
        self.t_max = float(t_max)

    def encode(self, times: Tensor, values: Tensor, mask: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log_var) [B, latent] of q(z0) from the rows with visible = 1.

        times [B, T] (increasing per series, 0-padded), values and mask [B, T, D], visible [B, T].
        The ODE-RNN runs from the last row to the first: row k jumps, then the ODE evolves over
        t[k] - t[k-1] (the first row: over t[0] - 0), so the last step ends at t = 0. Padding rows
        (time 0 after a later time) get gap 0, and with nothing observed they change nothing.
        Running forward in reversed time s = t_end - t keeps damped momentum models damped (Rubanova
        et al. solve backwards in t instead; for NODE the two differ only by the sign of the learned f).
        """
        seen = mask * visible.unsqueeze(-1)
        x = torch.cat([torch.where(seen > 0, values, 0.0), seen], -1)
        gaps = (times - F.pad(times[:, :-1], (1, 0))).clamp_min(0)
        span = abs(self.encoder.t_span[1] - self.encoder.t_span[0])
        out = self.encoder(x.flip(1).transpose(0, 1), (gaps * (span / self.t_max)).flip(1).t())
        h = out.evolved if isinstance(out.evolved, Tensor) else out.evolved[0]
        mean, log_var = self.posterior(h[-1]).chunk(2, -1)
        return mean, log_var

    def decode(self, z0: Tensor, times: Tensor) -> Tensor:
        """Predicted values [B, T, D] at `times` [B, T]: one batched solve over the union of the batch's
        times and 0, each series then reading its own rows (a gather, no loop over series)."""
        grid, index = torch.unique(F.pad(times, (1, 0)), sorted=True, return_inverse=True)
        t0, t1 = self.decoder.t_span
        h = self.decoder(z0, t0 + (t1 - t0) * grid / self.t_max)  # [G, B, latent]
        pred = self.readout(h).transpose(0, 1)  # [B, G, D]
        return pred.gather(1, index[:, 1:, None].expand(-1, -1, pred.shape[-1]))


class TimeSeries(BenchmarkTask):
    name = "timeseries"
    figures = ("training", "reconstructions")
    summary = "latent ODE on irregular series: spirals (generated) or PhysioNet 2012 (--set dataset=physionet)"
    models = tuple(MODELS)
    metric = "mse"
    higher_is_better = False
    # Rubanova et al.'s PhysioNet configuration: latent 20, recognition 40, 50 units, rtol 1e-3 / atol 1e-4,
    # lr 1e-2 decaying (their 0.999 per iteration floored at lr/10; here x0.8 every 1280 steps); conditioned
    # on every observation (holdout 0), reconstruction MSE, quantisation 0.1 h
    _paper = dict(dataset="spirals", epochs=100, lr=1e-2, lr_step=(1280, 0.8), batch_size=50, method="dopri5",
                  rtol=1e-3, atol=1e-4, adjoint=False, subset=None, eval_size=None, latent=20, rec_dim=40,
                  hidden=50, obs_std=0.01, kl_weight=1.0, holdout=0.0, quantization=0.1, n_spirals=1000,
                  n_grid=100, n_observed=40, turns=0.5, noise_std=0.1)  # fmt: skip
    presets = {
        "paper": _paper,
        # a couple of CPU minutes on either dataset: 400 training series, half the rows held out
        "quick": {
            **_paper,
            **dict(
                epochs=12,
                lr_step=None,
                subset=400,
                eval_size=200,
                latent=8,
                rec_dim=16,
                hidden=32,
                obs_std=0.1,
                holdout=0.5,
                quantization=1.0,
            ),
        },
    }

    def build(self, s: RunSettings) -> _TimeSeriesTask:
        if s["dataset"] not in _DATASETS:
            raise ValueError(
                f"--set dataset={s['dataset']!r} is not a dataset of task {self.name!r}; "
                f"choose one of {sorted(_DATASETS)}"
            )
        if not 0 <= s["holdout"] < 1:
            raise ValueError(f"--set holdout={s['holdout']!r} must be in [0, 1)")
        if not s["obs_std"] > 0:
            raise ValueError(f"--set obs_std={s['obs_std']!r} must be > 0")
        train, test, t_max = _DATASETS[s["dataset"]](s)
        features = train["values"].shape[-1]
        model = LatentODE(
            s.model, features, latent=s["latent"], rec_dim=s["rec_dim"], hidden=s["hidden"], t_max=t_max, **s.solver()
        )
        data = [_with_holdout(split, s["holdout"], seed) for seed, split in enumerate((train, test))]
        return _TimeSeriesTask(
            model, data[0], data[1], obs_std=s["obs_std"], kl_weight=s["kl_weight"], score_all=s["holdout"] == 0
        )

    def after_training(self, task: Any, s: RunSettings, out: Path, rows: list[dict[str, float]]) -> None:
        """reconstructions.svg/png: three test series, their three most observed features, the data seen by
        the encoder and held out from it, and the decoded trajectory on a fine grid."""
        plot_reconstructions(task.model, task.eval_data, out / "reconstructions", f"{s.model}, {s['dataset']}")


def plot_reconstructions(model: LatentODE, data: tuple[Tensor, ...], stem: Path, title: str, series: int = 3) -> None:
    times, values, mask, visible = _trim(tuple(t[:series] for t in data))
    model.eval()
    with torch.no_grad():
        mean, _ = model.encode(times, values, mask, visible)
        grid = torch.linspace(0, float(times.max()), 100).expand(len(times), -1).contiguous()
        curve = model.decode(mean, grid)
    counts = mask.sum((0, 1))
    features = counts.argsort(descending=True)[: min(3, values.shape[-1])].tolist()
    fig, axes = figure(len(times), len(features), width=3.6, height=2.4)
    axes = np.atleast_2d(axes).reshape(len(times), len(features))
    for i in range(len(times)):
        for j, d in enumerate(features):
            ax = axes[i, j]
            obs = mask[i, :, d] > 0
            shown = obs & (visible[i] > 0)
            held = obs & (visible[i] == 0)
            ax.plot(times[i][shown], values[i, shown, d], "o", ms=3, color="0.2", label="seen by the encoder")
            ax.plot(times[i][held], values[i, held, d], "x", ms=4, color="C3", label="held out")
            ax.plot(grid[i], curve[i, :, d], "-", color="C0", label="latent ODE")
            ax.grid(True, alpha=0.3)
            if i == 0:
                ax.set_title(f"feature {d}", fontsize=9)
            if i == len(times) - 1:
                ax.set_xlabel("t")
    legend_outside(axes[0, -1], fontsize=8)
    fig.suptitle(f"Reconstructions of test series: {title}")
    fig.tight_layout()
    save(fig, stem)


def _spirals(s: RunSettings) -> tuple[dict, dict, float]:
    data = make_spirals(
        s["n_spirals"], n_grid=s["n_grid"], n_observed=s["n_observed"], turns=s["turns"], noise_std=s["noise_std"]
    )
    n_train = int(TRAIN_FRACTION * s["n_spirals"])
    train = {k: v[:n_train][: s["subset"]] for k, v in data.items()}
    test = {k: v[n_train:][: s["eval_size"]] for k, v in data.items()}
    return train, test, 1.0  # make_spirals' t_end


def _physionet(s: RunSettings) -> tuple[dict, dict, float]:
    records = load_physionet(s.data_dir, quantization=s["quantization"])
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(0)).tolist()
    n_train = int(TRAIN_FRACTION * len(records))
    train_records = [records[i] for i in order[:n_train]]
    test_records = [records[i] for i in order[n_train:]]
    stats = physionet_feature_stats(train_records)  # of the whole training split, whatever the subset
    train, test = (
        physionet_tensors(part[:n], stats=stats)
        for part, n in ((train_records, s["subset"]), (test_records, s["eval_size"]))
    )
    keep = ("times", "values", "mask")
    return {k: train[k] for k in keep}, {k: test[k] for k in keep}, PHYSIONET_HOURS


_DATASETS = {"spirals": _spirals, "physionet": _physionet}


def _with_holdout(data: dict[str, Tensor], holdout: float, seed: int) -> tuple[Tensor, ...]:
    """(times, values, mask, visible): visible [N, T] is 0 for the rows hidden from the encoder."""
    draw = torch.rand(data["times"].shape, generator=torch.Generator().manual_seed(seed))
    return data["times"], data["values"], data["mask"], (draw >= holdout).float()


class _TimeSeriesTask:
    def __init__(
        self,
        model: LatentODE,
        train: tuple[Tensor, ...],
        test: tuple[Tensor, ...],
        *,
        obs_std: float,
        kl_weight: float,
        score_all: bool,
    ) -> None:
        self.model, self.train_data, self.eval_data = model, train, test
        self.obs_std, self.kl_weight, self.score_all = float(obs_std), float(kl_weight), score_all

    def _score(self, model: LatentODE, batch: tuple[Tensor, ...], sample: bool) -> tuple[Tensor, dict[str, Tensor]]:
        times, values, mask, visible = _trim(batch)
        mean, log_var = model.encode(times, values, mask, visible)
        z0 = mean + (0.5 * log_var).exp() * torch.randn_like(mean) if sample else mean
        pred = model.decode(z0, times)
        mse = masked_mse(pred, values, mask)
        kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(-1)
        nll = 0.5 * mse / self.obs_std**2 + math.log(self.obs_std * math.sqrt(2 * math.pi))  # per observed value
        loss = nll + self.kl_weight * kl.sum() / mask.sum().clamp_min(1)
        seen = mask * visible.unsqueeze(-1)
        target = mask if self.score_all else mask - seen
        return loss, {
            "mse": masked_mse(pred, values, target).detach(),
            "recon_mse": masked_mse(pred, values, seen).detach(),
            "kl": kl.mean().detach(),
        }

    def loss(self, model: LatentODE, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, Tensor]]:
        return self._score(model, batch, sample=True)

    def evaluate(self, model: LatentODE, batch: tuple[Tensor, ...]) -> dict[str, float]:
        loss, metrics = self._score(model, batch, sample=False)
        return {"loss": float(loss.detach()), **{k: float(v) for k, v in metrics.items()}}


def _trim(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The batch without its trailing rows that no series of the batch observes (padding)."""
    times, values, mask, visible = batch
    used = mask.flatten(2).amax(2).amax(0).nonzero()
    rows = int(used[-1]) + 1 if len(used) else 1
    return times[:, :rows], values[:, :rows], mask[:, :rows], visible[:, :rows]


TASK = TimeSeries()
