"""options['compile'] for the adaptive solvers: one graph per step structure, reused by every solve, the
same solutions and gradients as the eager solver, and a warned fallback when compilation fails."""

from __future__ import annotations

import warnings

import pytest
import torch

from monode import ODEInputError, odeint, odeint_adjoint, record_stats
from monode.dynamics import MLPField, build_model
from monode.layers import ODERNN
from monode.solvers import _compile
from monode.tasks import TASKS, RunOptions
from problems import HarmonicOscillator

F64 = torch.float64


def _ode_rnn(name: str, compile: bool | dict, hidden: int = 4) -> ODERNN:
    torch.manual_seed(0)
    field = build_model(name, dim=hidden, net=lambda i, o: MLPField(i, hidden, o, depth=2), preset="walker2d")
    cell = lambda v, x: tuple(p + x.sum(1, keepdim=True) for p in v) if isinstance(v, tuple) else v + x  # noqa: E731
    options = dict(norm="rms", compile=compile) if compile else dict(norm="rms")
    return ODERNN(field, cell, hidden_size=hidden, adjoint=True, rtol=1e-7, atol=1e-9, options=options).double()


def _run(rnn: ODERNN, x: torch.Tensor, dt: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int]]:
    rnn.zero_grad(set_to_none=True)
    with record_stats() as stats:
        out = rnn(x, dt)
        h = out.evolved[0] if isinstance(out.evolved, tuple) else out.evolved
        loss = h.square().mean()
        loss.backward()
    return loss.detach(), [p.grad.clone() for p in rnn.parameters()], (stats.forward_nfe, stats.backward_nfe)


def _sequence(seed: int, steps: int = 3, batch: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(steps, batch, 4, generator=g, dtype=F64), 0.2 + torch.rand(steps, batch, generator=g, dtype=F64)


@pytest.mark.parametrize("name", ["hbnode", "node"])
def test_one_graph_per_structure_reused_by_every_solve_with_eager_results(name: str) -> None:
    """Traced with a counting backend (no code generation): the ODE-RNN's many solves, forward and adjoint,
    of two sequences compile a fixed set of graphs during the first; loss, gradients and NFE equal eager."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    compiled, eager = _ode_rnn(name, dict(backend=counter)), _ode_rnn(name, False)
    x, dt = _sequence(0)
    loss, grads, nfe = _run(compiled, x, dt)
    frames = counter.frame_count
    assert 1 <= frames <= 4  # forward step and start, adjoint step and start
    loss_e, grads_e, nfe_e = _run(eager, x, dt)
    torch.testing.assert_close(loss, loss_e, rtol=1e-10, atol=0)
    for g, ge in zip(grads, grads_e):
        torch.testing.assert_close(g, ge, rtol=1e-7, atol=1e-12)
    assert nfe == nfe_e
    _run(compiled, *_sequence(1))  # new gaps, new TimeScaledField and solver objects: no new graph
    assert counter.frame_count == frames


def test_inductor_compiled_adjoint_matches_eager() -> None:
    """The real code path (compile=True: inductor, C++ wrapper on CPU) on an ODE-RNN in float64: the tuple-state
    models' graphs are checked with a counting backend above; this one is a NODE, whose four graphs compile
    in two thirds of the time of HBNODE's."""
    _compile.FAILED.clear()
    x, dt = _sequence(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed compilation would only warn
        loss, grads, nfe = _run(_ode_rnn("node", True), x, dt)
    loss_e, grads_e, nfe_e = _run(_ode_rnn("node", False), x, dt)
    assert not _compile.FAILED
    torch.testing.assert_close(loss, loss_e, rtol=1e-10, atol=0)
    for g, ge in zip(grads, grads_e):
        torch.testing.assert_close(g, ge, rtol=1e-6, atol=1e-10)
    assert abs(nfe[0] - nfe_e[0]) <= 0.1 * nfe_e[0] and abs(nfe[1] - nfe_e[1]) <= 0.1 * nfe_e[1]


def test_compiled_tuple_state_solution_is_accurate() -> None:
    from torch._dynamo.testing import CompileCounter

    osc = HarmonicOscillator()
    x0, v0 = torch.randn(3, dtype=F64), torch.randn(3, dtype=F64)
    t = torch.linspace(0, 4, 5, dtype=F64)
    x, v = odeint(osc, (x0, v0), t, rtol=1e-9, atol=1e-10, options=dict(compile=dict(backend=CompileCounter())))
    xe, ve = osc.exact(x0, v0, t)
    torch.testing.assert_close(x, xe, rtol=0, atol=1e-7)
    torch.testing.assert_close(v, ve, rtol=0, atol=1e-7)


def test_compile_failure_warns_and_solves_eagerly() -> None:
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no compiler here")

    options = dict(compile=dict(backend=broken_backend))
    net = torch.nn.Linear(3, 3).double()
    f = lambda t, y: torch.tanh(net(y))  # noqa: E731
    y0 = torch.randn(2, 3, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    torch._dynamo.reset()
    with pytest.warns(RuntimeWarning, match="options\\['compile'\\] failed"):
        y = odeint_adjoint(f, y0, t, options=options, adjoint_params=tuple(net.parameters()))
    y[-1].sum().backward()  # the adjoint (same options) stays eager without warning again
    torch.testing.assert_close(y, odeint(f, y0, t))


def test_compile_option_is_validated() -> None:
    with pytest.raises(ODEInputError, match="compile"):
        odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), options=dict(compile="yes"))


def test_sequence_paper_presets_compile_and_the_flag_overrides() -> None:
    task = TASKS["walker2d"]

    def options(**run: object) -> dict | None:
        return task.settings(RunOptions("hbnode", **run)).solver()["options"]  # type: ignore[arg-type]

    assert options(preset="paper") == {"compile": True}
    assert options(preset="paper", compile=False) is None
    assert options(preset="quick") is None
    assert options(preset="quick", compile=True, method="rk4", step_size=0.1) == {"compile": True, "step_size": 0.1}
    with pytest.raises(ValueError, match="--step-size 0.1 applies to fixed-step methods"):
        options(preset="quick", step_size=0.1)


def test_backprop_through_compiled_steps_gives_eager_gradients() -> None:
    from torch._dynamo.testing import CompileCounter

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    y0, t = torch.randn(4, 3, dtype=F64), torch.tensor([0.0, 0.4, 1.0], dtype=F64)
    grads = []
    for options in (dict(compile=dict(backend=CompileCounter())), None):
        net.zero_grad()
        odeint(lambda t, y: net(y) * torch.cos(t), y0, t, options=options).square().sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for g, ge in zip(*grads):
        torch.testing.assert_close(g, ge, rtol=1e-9, atol=1e-12)
