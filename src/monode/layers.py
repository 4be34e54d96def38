"""nn.Modules that own state augmentation, readout and integration time.

    block = ODEBlock(build_model("hbnode", dim=4, hidden=32),
                     init=build_initializer("hbnode", in_channels=2, dim=4, hidden=16, conv=False))
    h = block(x)                                    # h(T), the readout
    block.last_stats.forward_nfe, block.last_stats.backward_nfe   # backward filled by .backward()

`ODEBlock` maps an input to the model's initial variables (an initial-state module, or the input
itself), encodes them into the solver state, integrates the field over its time span and reads
out h. `ODERNN` runs an ODE-RNN over irregularly spaced observations in one batched solve per step.
`ResNetBlock` is the baseline the NAG-solver paper compares against: the Euler discretisation of
a NODE block with its own weights per step.
Both compute the field's coefficients (gamma, xi, ...) once per forward and integrate the bound
field, with backprop through the solver or the adjoint method.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from .dynamics import State, VectorField, build_initializer, build_model, get_spec, time_scaled
from .solvers import SolverStats, active_recorders, odeint, odeint_adjoint, record_stats, report

__all__ = ["ODEBlock", "ODERNN", "ODERNNOutput", "ResNetBlock", "image_classifier"]

_OUTPUTS = ("readout", "variables", "state")


def _at(solution: State, i: int) -> State:
    """The state at output index i of a stacked solution."""
    return solution[i] if isinstance(solution, torch.Tensor) else tuple(s[i] for s in solution)


def _stack(states: Sequence[State]) -> State:
    """States (tensors or tuples of tensors) stacked over a new leading time dimension."""
    if isinstance(states[0], torch.Tensor):
        return torch.stack(list(states))  # type: ignore[arg-type]
    return tuple(torch.stack(parts) for parts in zip(*states))


def _first(variables: State) -> torch.Tensor:
    return variables if isinstance(variables, torch.Tensor) else variables[0]


class _Integrator(nn.Module):
    """Solver settings of a layer (the keywords documented in `ODEBlock`) and the one place that
    calls `odeint` / `odeint_adjoint`."""

    def __init__(
        self,
        field: VectorField,
        *,
        t_span: Sequence[float] | None = None,
        method: str | None = "dopri5",
        rtol: float = 1e-7,
        atol: float = 1e-9,
        options: dict | None = None,
        adjoint: bool = False,
        adjoint_rtol: float | None = None,
        adjoint_atol: float | None = None,
        adjoint_method: str | None = None,
        adjoint_options: dict | None = None,
    ) -> None:
        super().__init__()
        t_span = tuple(float(v) for v in (field.t_span if t_span is None else t_span))
        if len(t_span) != 2 or t_span[0] == t_span[1]:
            raise ValueError(f"t_span must be two distinct times (t0, t1), got {t_span!r}")
        self.field = field
        self.t_span = t_span
        self.method, self.rtol, self.atol, self.options = method, rtol, atol, options
        self.adjoint = adjoint
        self.adjoint_settings: dict[str, Any] = dict(
            adjoint_rtol=adjoint_rtol,
            adjoint_atol=adjoint_atol,
            adjoint_method=adjoint_method,
            adjoint_options=adjoint_options,
        )
        self.last_stats = SolverStats()

    def _grid(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.t_span, dtype=like.dtype, device=like.device)

    def _solve(self, func: nn.Module, state0: State, times: torch.Tensor) -> State:
        if self.adjoint:
            return odeint_adjoint(
                func,
                state0,
                times,
                rtol=self.rtol,
                atol=self.atol,
                method=self.method,
                options=self.options,
                **self.adjoint_settings,
            )
        return odeint(func, state0, times, rtol=self.rtol, atol=self.atol, method=self.method, options=self.options)


class ODEBlock(_Integrator):
    """Integrate a model from an input: x -> initial variables -> solve over t_span -> h(T).

    Args:
        field: a `VectorField` (see `monode.dynamics.build_model`).
        init: module mapping the input to the initial variables (h0, or (h0, m0), (h0, m0, v0)):
            `ZeroAugment`, `InitialVelocity`, `AdamInitialState` or your own. None: the input is h0.
            Variables not produced start at zero.
        **solver: the solver keywords, shared with `ODERNN`: t_span (integration interval; default the
            field's, [0, 1], Nesterov [1, 2]); method="dopri5", rtol=1e-7, atol=1e-9, options=None (passed
            to `monode.solvers.odeint`); adjoint=False (gradients by the adjoint method, constant memory,
            instead of backprop through the solver); adjoint_rtol, adjoint_atol, adjoint_method and
            adjoint_options (its backward solve).

    `last_stats` is the `SolverStats` of the last forward; its backward counts are filled in
    when that forward's backward pass runs.
    """

    def __init__(self, field: VectorField, init: nn.Module | None = None, **solver: Any) -> None:
        super().__init__(field, **solver)
        self.init = init

    def forward(self, x: torch.Tensor, times: torch.Tensor | None = None, *, output: str = "readout") -> Any:
        """h(T) for the batch x, or the solution at every time of `times` (stacked on dim 0).

        Args:
            x: input batch, [B, C, ...].
            times: 1-D output times (times[0] is the initial time); default: just t_span's end.
            output: "readout" (h), "variables" (the model's (h, m, ...), e.g. for an ODE-RNN) or
                "state" (the raw solver state).
        """
        if output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        variables = x if self.init is None else self.init(x)
        ref = _first(variables)
        grid = self._grid(ref) if times is None else times.to(dtype=ref.dtype, device=ref.device)
        state0 = self.field.encode(variables, grid[0])
        stats = SolverStats()
        with record_stats(stats):
            solution = self._solve(self.field.bind(dtype=ref.dtype), state0, grid)
        self.last_stats = stats
        if times is None:
            return self._output(_at(solution, -1), grid[-1], output)
        return _stack([self._output(_at(solution, i), grid[i], output) for i in range(len(grid))])

    def _output(self, state: State, t: torch.Tensor, output: str) -> State:
        if output == "readout":
            return self.field.readout(state, t)
        return self.field.decode(state, t) if output == "variables" else state


class ODERNNOutput(NamedTuple):
    """Per-step hidden variables of an ODE-RNN, stacked over time: [T, B, ...] (tuples for momentum models).

    updated[i]: right after the jump at observation i; evolved[i]: after the gap dt[i] (the following
    gap; with `evolve_first`, the gap before observation i, so evolved[i] precedes updated[i]).
    """

    updated: State
    evolved: State


class ODERNN(_Integrator):
    """ODE-RNN: the hidden variables jump at each observation, then evolve by the ODE over the gap.

    For each step i: variables = cell(variables, x[i]) (the jump), then the ODE runs for dt[i]
    (sample b for dt[i, b]) in a single batched solve: the field is integrated over its t_span with
    every sample's derivative multiplied by dt[i, b] / |t_span| (`TimeScaledField`, the papers'
    time rescaling; exact for autonomous f, while time-dependent fields see the span's time). So
    evolved[i] is the prediction for the time of observation i + 1, as in the papers' ODE_RNN.
    The cell sees and returns the model's variables (h, m, ...) (`VectorField.decode`), so a
    Nesterov model restarts its clock consistently at every gap.

    Args:
        field: the `VectorField`.
        cell: update module called as cell(variables, x_i) -> variables (a tensor for NODE/ANODE).
        hidden_size: size of each zero initial variable when forward gets no `variables`.
        evolve_first: evolve over dt[i] *before* the jump at observation i (the released Walker2D NODE/ANODE
            scripts' `rnn_out=True` order, a compatibility setting of `monode.tasks.sequences`).
        **solver: the solver keywords of `ODEBlock` (t_span, method, rtol, atol, options, adjoint, adjoint_*).

    `last_stats` counts all solves of the last sequence (forward, and backward once it runs).
    """

    def __init__(
        self,
        field: VectorField,
        cell: Callable[[State, torch.Tensor], State],
        *,
        hidden_size: int | None = None,
        evolve_first: bool = False,
        **solver: Any,
    ) -> None:
        super().__init__(field, **solver)
        self.cell = cell
        self.hidden_size = hidden_size
        self.evolve_first = evolve_first

    def forward(self, x: torch.Tensor, dt: torch.Tensor, variables: State | None = None) -> ODERNNOutput:
        """Run over observations x [T, B, ...] with gaps dt [T, B] from initial `variables` (default zeros)."""
        if dt.ndim != 2 or x.shape[:2] != dt.shape:
            raise ValueError(
                f"dt must have shape [T, B] = {tuple(x.shape[:2])} (the leading dims of x), got {tuple(dt.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError("ODERNN.forward: x has no observations (T = 0); give at least one")
        if bool((dt < 0).any()):
            raise ValueError(f"ODERNN.forward: gaps dt must be >= 0, got a minimum of {float(dt.min()):g}")
        if variables is None:
            if self.hidden_size is None:
                raise ValueError("ODERNN.forward: pass variables= or construct the layer with hidden_size=")
            zeros = x.new_zeros(x.shape[1], self.hidden_size)
            variables = zeros if self.field.state_size == 1 else (zeros,) * self.field.state_size
        grid = self._grid(x)
        func = self.field.bind(dtype=x.dtype)
        span = abs(self.t_span[1] - self.t_span[0])
        dt = dt.to(x.dtype)
        updated, evolved = [], []
        stats = SolverStats()
        with record_stats(stats):
            for i in range(x.shape[0]):
                if not self.evolve_first:
                    variables = self.cell(variables, x[i])
                    updated.append(variables)
                state = self.field.encode(variables, grid[0])
                scaled = time_scaled(func, dt[i], _first(variables).ndim, span)
                variables = self.field.decode(_at(self._solve(scaled, state, grid), -1), grid[-1])
                evolved.append(variables)
                if self.evolve_first:
                    variables = self.cell(variables, x[i])
                    updated.append(variables)
        self.last_stats = stats
        return ODERNNOutput(_stack(updated), _stack(evolved))


class ResNetBlock(nn.Module):
    """A residual network with the discretisation budget of an ODE block: depth steps of

        x_{k+1} = x_k + h f_k(t_k, x_k),   h = (t1 - t0) / depth,   t_k = t0 + k h,

    i.e. the Euler scheme of a NODE whose f has untied weights per step (`make_net()` builds each
    f_k, the same network as the NODE field's). Each forward reports `depth` evaluations to the
    active `record_stats` recorders, and `depth` more when its backward runs, as backprop through
    an Euler solve would, so ResNets sit in the same NFE tables as the ODE models.
    """

    def __init__(
        self,
        make_net: Callable[[], nn.Module],
        depth: int,
        *,
        init: nn.Module | None = None,
        t_span: Sequence[float] = (0.0, 1.0),
    ) -> None:
        super().__init__()
        if not (isinstance(depth, int) and depth >= 1):
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        self.nets = nn.ModuleList(make_net() for _ in range(depth))
        self.init = init
        self.t0, self.h = float(t_span[0]), (float(t_span[1]) - float(t_span[0])) / depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if self.init is None else _first(self.init(x))
        depth, recorders = len(self.nets), active_recorders()
        report(recorders, backward=False, nfe=depth, steps=depth)
        for k, net in enumerate(self.nets):
            x = x + self.h * net(x.new_tensor(self.t0 + k * self.h), x)
        if x.requires_grad and recorders:
            x.register_hook(lambda grad: report(recorders, backward=True, nfe=depth, steps=depth))
        return x


def image_classifier(
    name: str,
    preset: str = "mnist",
    *,
    in_channels: int = 1,
    image_size: int = 28,
    num_classes: int = 10,
    resnet_depth: int = 10,
    **block_options: Any,
) -> nn.Sequential:
    """The papers' image classifier: initial state -> ODE with the conv field -> h(T) -> Linear.

    Sizes (dim, hidden of DF(dim, hidden)) and field options come from the model's `preset`
    ("mnist" or "cifar10"; for CIFAR-10 pass in_channels=3, image_size=32). The head reads only h(T):
    Linear(dim * image_size**2 -> num_classes). block_options go to `ODEBlock` (method, rtol, ...).
    name="resnet" builds the `ResNetBlock` baseline instead: NODE's initial state and conv field
    sizes, `resnet_depth` residual steps (block_options are ignored, it has no solver).
    """
    spec = get_spec("node" if name == "resnet" else name)
    dim = spec.preset(preset).get("dim")
    if dim is None:
        raise ValueError(f"preset {preset!r} of model {name!r} has no image sizes; use 'mnist' or 'cifar10'")
    init = build_initializer(spec.name, in_channels=in_channels, preset=preset)
    if name == "resnet":
        block: nn.Module = ResNetBlock(
            lambda: build_model("node", net="conv", preset=preset).net, resnet_depth, init=init
        )
    else:
        block = ODEBlock(build_model(name, net="conv", preset=preset), init, **block_options)
    head = nn.Linear(dim * image_size * image_size, num_classes)
    return nn.Sequential(block, nn.Flatten(), head)
