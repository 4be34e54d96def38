"""What the ODE-RNN sequence tasks (plane vibration, Walker2D) share: the papers' ODE-RNN for any model.

For every model of the registry the network is the same hybrid (Xia et al. 2021, arXiv:2110.04840, §5.3-5.4):

    v_0        = encoder(input)  or zeros            the model's variables (h), (h, m) or (h, m, v)
    u_i        = cell(v_i, x_i)                      jump at observation i (residual update)
    v_{i+1}    = ODE(u_i) over the gap dt_i          one batched solve, per-sample dt (`ODERNN`)
    recon_i    = decoder(h of u_i)      ~ x_i        (plane vibration only)
    predict_i  = decoder(h of v_{i+1})  ~ y_i        the next observation
    forecast_j = decoder(h of v_T evolved j units)   j = 0..F-1, one solve, no inputs (plane vibration)

`decoder` is one Linear(hidden -> features) on h alone. Two cells as in the official scripts:
"linear" (plane vibration) u = v + W [v_1, .., v_k] + U x, with one Linear per variable (so
the parameter counts match the papers'), and "mlp" (Walker2D) u = v + MLP([v_1, .., v_k, x]) with
tanh between layers. The f networks ignore t (the official `tempf`), so the per-sample time
rescaling of `ODERNN` is exact. All models get the same wiring, including NODE/ANODE.

`wiring="released"` is a compatibility setting that reproduces the released Walker2D NODE/ANODE scripts of
Xia et al. (`rnn_out=True`, a cell without the residual), which only the baselines have:

    e_i        = ODE(w_{i-1}) over dt_i,  w_i = cell(e_i, x_i),  w_{-1} = v_0     evolve, then jump
    predict_i  = decoder(h of w_{i-1})    ~ y_i                                    read before x_i is seen

so each prediction of y_i is made from the observations before x_i, without evolving to x_i's time: a
one-step misalignment that makes the task harder for the baselines than for the momentum models.
Solver settings are the caller's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..dynamics import MLPField, State, build_model
from ..dynamics.networks import mlp
from ..layers import ODERNN, ODEBlock

__all__ = [
    "SequenceSizes",
    "SequenceModel",
    "SequenceOutput",
    "build_sequence_model",
    "mlp",
    "shrink_parameters",
    "split_tensors",
]


def _parts(variables: State) -> tuple[Tensor, ...]:
    return (variables,) if isinstance(variables, Tensor) else tuple(variables)


def _unflatten(flat: Tensor, k: int) -> State:
    """[B, k*H] back to the model's variables: a tensor for k = 1, else a tuple of k [B, H] tensors."""
    return flat if k == 1 else flat.chunk(k, dim=1)


class LinearUpdate(nn.Module):
    """Plane-vibration cell: u = v + sum_j W_j v_j + U x, all outputs k*hidden (HBNODE's PV `temprnn`)."""

    def __init__(self, features: int, hidden: int, n_vars: int) -> None:
        super().__init__()
        self.inputs = nn.Linear(features, n_vars * hidden)
        self.mixers = nn.ModuleList(nn.Linear(hidden, n_vars * hidden) for _ in range(n_vars))
        self.n_vars = n_vars

    def forward(self, variables: State, x: Tensor) -> State:
        parts = _parts(variables)
        out = self.inputs(x) + torch.cat(parts, 1)
        for mixer, v in zip(self.mixers, parts):
            out = out + mixer(v)
        return _unflatten(out, self.n_vars)


class MLPUpdate(nn.Module):
    """Walker2D cell: u = v + MLP([v_1, .., v_k, x]), tanh between the layers of `widths` (without the
    residual v + when `residual` is False, as the released NODE/ANODE scripts)."""

    def __init__(self, features: int, hidden: int, n_vars: int, widths: Sequence[int], residual: bool = True) -> None:
        super().__init__()
        self.net = mlp([n_vars * hidden + features, *widths, n_vars * hidden], "tanh")
        self.n_vars, self.residual = n_vars, residual

    def forward(self, variables: State, x: Tensor) -> State:
        flat = torch.cat(_parts(variables), 1)
        out = self.net(torch.cat([flat, x], 1))
        return _unflatten(flat + out if self.residual else out, self.n_vars)


class Encoder(nn.Module):
    """Initial variables: Linear(in -> out) of the input, zero-padded to k*hidden and split (ANODE: out < k*hidden)."""

    def __init__(self, in_features: int, out_features: int, total: int, n_vars: int) -> None:
        super().__init__()
        if not 1 <= out_features <= total:
            raise ValueError(f"encoder_features must be in [1, {total}], got {out_features}")
        self.linear = nn.Linear(in_features, out_features)
        self.pad, self.n_vars = total - out_features, n_vars

    def forward(self, x: Tensor) -> State:
        out = self.linear(x)
        if self.pad:
            out = torch.cat([out, out.new_zeros(out.shape[0], self.pad)], 1)
        return _unflatten(out, self.n_vars)


@dataclasses.dataclass(frozen=True)
class SequenceSizes:
    """One model's sizes in an ODE-RNN task (those of the HBNODE authors' released scripts).

    hidden: channels of each variable; f_widths: hidden widths of the f MLP (() = one Linear);
    cell_widths: hidden widths of the "mlp" cell; encoder: None (zero initial state), "window" (the
    flattened input sequence) or "first" (the first observation); encoder_features: how many leading
    channels the encoder fills (None = all; ANODE fills 5 and leaves the augmented ones at zero).
    """

    hidden: int
    f_widths: tuple[int, ...] = ()
    cell_widths: tuple[int, ...] = ()
    encoder: str | None = None
    encoder_features: int | None = None


class SequenceOutput(NamedTuple):
    """reconstruction, prediction: [B, T, C] decoded from the updated / evolved h; last: v_T (variables)."""

    reconstruction: Tensor
    prediction: Tensor
    last: State


class SequenceModel(nn.Module):
    """The ODE-RNN of the module docstring around an `ODERNN` layer; batches are [B, T, C] with gaps [B, T]."""

    def __init__(
        self, rnn: ODERNN, decoder: nn.Linear, encoder: nn.Module | None = None, encoder_input: str | None = None
    ) -> None:
        super().__init__()
        if (encoder is None) != (encoder_input is None) or encoder_input not in (None, "window", "first"):
            raise ValueError(
                f"encoder_input must be 'window' or 'first' with an encoder, None without, got {encoder_input!r}"
            )
        self.rnn, self.decoder, self.encoder, self.encoder_input = rnn, decoder, encoder, encoder_input

    def _h(self, variables: State) -> Tensor:
        return _parts(variables)[0]

    def forward(self, x: Tensor, dt: Tensor) -> SequenceOutput:
        variables = None
        if self.encoder is not None:
            variables = self.encoder(x.flatten(1) if self.encoder_input == "window" else x[:, 0])
        out = self.rnn(x.transpose(0, 1), dt.transpose(0, 1), variables)
        final = out.updated if self.rnn.evolve_first else out.evolved  # the variables after the last observation
        last = tuple(v[-1] for v in final) if isinstance(final, tuple) else final[-1]
        predicted_from = self._h(final)
        if self.rnn.evolve_first:  # wiring="released": predict y_i from h after x_{i-1} (module docstring)
            h0 = predicted_from.new_zeros(predicted_from[:1].shape) if variables is None else self._h(variables)[None]
            predicted_from = torch.cat([h0, predicted_from[:-1]])
        return SequenceOutput(
            self.decoder(self._h(out.updated)).transpose(0, 1), self.decoder(predicted_from).transpose(0, 1), last
        )

    def forecast(self, last: State, steps: int) -> Tensor:
        """[B, steps, C]: h decoded at `steps` unit-spaced times from `last` on (the first is `last` itself).

        One solve with an output per step, as the official `multiforecast` (the clock runs on from the
        span's start, t0 .. t0 + steps - 1); it shares the ODE-RNN's field and solver settings.
        """
        rnn, h0 = self.rnn, self._h(last)
        block = ODEBlock(
            rnn.field,
            method=rnn.method,
            rtol=rnn.rtol,
            atol=rnn.atol,
            options=rnn.options,
            adjoint=rnn.adjoint,
            **rnn.adjoint_settings,
        )
        times = rnn.t_span[0] + torch.arange(steps, dtype=h0.dtype, device=h0.device)
        return self.decoder(self._h(block(last, times, output="variables"))).transpose(0, 1)


WIRINGS = ("aligned", "released")


def check_wiring(wiring: str) -> str:
    """`wiring` if it is one of WIRINGS, else a ValueError naming the setting and value."""
    if wiring not in WIRINGS:
        raise ValueError(f"--set wiring={wiring!r} must be one of {list(WIRINGS)}")
    return wiring


def build_sequence_model(
    name: str,
    preset: str,
    sizes: SequenceSizes,
    *,
    features: int,
    seq_len: int,
    cell: str,
    f_activation: str,
    wiring: str = "aligned",
    **solver: Any,
) -> SequenceModel:
    """The ODE-RNN of model `name` with the registry's field options for `preset` ("plane-vibration", "walker2d").

    features: channels C of an observation; seq_len: T (for a "window" encoder); cell: "linear" or
    "mlp"; f_activation: "relu" or "tanh" between f's layers; wiring: "aligned" (every model) or "released"
    (the released Walker2D baselines' wiring, module docstring; "mlp" cell only); solver: `ODERNN` solver keywords. The
    error norm defaults to options["norm"] = "rms" over the whole state: the official scripts stack
    (h, m) into one [B, 2, H] tensor, so torchdiffeq's norm there is one RMS, not the max over h and m.
    """
    hidden = sizes.hidden

    def f_net(f_in: int, f_out: int) -> nn.Module:  # ignores t, as the official `tempf`
        return MLPField(f_in, sizes.f_widths, f_out, activation=f_activation)

    released = check_wiring(wiring) == "released"
    field = build_model(name, dim=hidden, net=f_net, preset=preset)
    k = field.state_size
    if cell == "linear" and not released:
        update: nn.Module = LinearUpdate(features, hidden, k)
    elif cell == "mlp":
        update = MLPUpdate(features, hidden, k, sizes.cell_widths, residual=not released)
    else:
        raise ValueError(f"cell must be 'mlp', or 'linear' with wiring='aligned', got {cell!r} with {wiring!r}")
    encoder = None
    if sizes.encoder is not None:
        in_features = features * seq_len if sizes.encoder == "window" else features
        encoder = Encoder(in_features, sizes.encoder_features or k * hidden, k * hidden, k)
    solver["options"] = {"norm": "rms", **(solver.get("options") or {})}  # the official stacked-state norm
    rnn = ODERNN(field, update, hidden_size=hidden, evolve_first=released, **solver)
    return SequenceModel(rnn, nn.Linear(hidden, features), encoder, sizes.encoder)


def shrink_parameters(model: nn.Module, factor: float) -> None:
    """Multiply every parameter by `factor` (the official PV `pre_shrink`: all initial weights x 0.01,
    the field's scalar logits included, so gamma~ = -3 starts at -0.03)."""
    if not factor > 0:
        raise ValueError(f"pre_shrink must be > 0, got {factor!r}")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(factor)


def split_tensors(
    splits: dict[str, dict[str, Tensor]], split: str, keys: Sequence[str], limit: int | None = None
) -> tuple[Tensor, ...]:
    """The tensors `keys` of split `split` ("train", "val" or "test"), the first `limit` windows only."""
    if split not in splits:
        raise ValueError(f"eval_split must be one of {sorted(splits)}, got {split!r}")
    return tuple(splits[split][key][:limit] for key in keys)


def plot_predictions(
    model: SequenceModel,
    batch: tuple[Tensor, ...],
    stem: Path,
    title: str,
    channels: Sequence[int],
    forecast: Tensor | None = None,
) -> None:
    """predictions.svg/png: one test window, each of `channels` in a row: the observations y (dots) and the
    ODE-RNN's one-step predictions of them (line), then, given `forecast` targets [B, F, C], the forecast
    from the window's last state (dashed) against those targets."""
    from ..figures import figure, legend_outside, save

    x, dt, y = batch[0][:1], batch[1][:1], batch[2][:1]
    model.eval()
    with torch.no_grad():
        out = model(x, dt)
        ahead = None if forecast is None else model.forecast(out.last, forecast.shape[1])
    steps = torch.arange(y.shape[1])
    fig, axes = figure(len(channels), 1, width=7.0, height=1.8)
    axes = list(axes.ravel())
    for ax, c in zip(axes, channels):
        ax.plot(steps, y[0, :, c], "o", ms=2.5, color="0.3", label="observed")
        ax.plot(steps, out.prediction[0, :, c], "-", lw=1.2, label="one-step prediction")
        if ahead is not None and forecast is not None:
            later = steps[-1] + torch.arange(forecast.shape[1])
            ax.plot(later, forecast[0, :, c], "s", ms=3, color="0.5", label="forecast target")
            ax.plot(later, ahead[0, :, c], "--", lw=1.5, label="forecast")
        ax.set_ylabel(f"channel {c}", fontsize=8)
        ax.grid(True, alpha=0.3)
    legend_outside(axes[0], fontsize=8)
    axes[-1].set_xlabel("observation in the window")
    axes[0].set_title(f"A test window: {title}", fontsize=10)
    fig.tight_layout()
    save(fig, stem)
