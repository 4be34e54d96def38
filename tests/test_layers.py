"""ODEBlock and ODERNN: outputs, statistics, adjoint agreement, per-sample time gaps, the demo."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch
import torchdiffeq
from torch import nn

from monode.dynamics import MODELS, build_initializer, build_model
from monode.layers import ODERNN, ODEBlock, image_classifier
from monode.solvers import record_stats

F64 = torch.float64


def _block(name: str, **options) -> ODEBlock:
    torch.manual_seed(0)
    field = build_model(name, dim=3, hidden=8).double()
    init = build_initializer(name, in_channels=2, dim=3, hidden=4, conv=False).double()
    return ODEBlock(field, init, rtol=1e-9, atol=1e-9, **options)


def test_outputs_readout_variables_state_and_trajectory():
    block = _block("nesterovnode")
    x = torch.randn(5, 2, dtype=F64)
    h, state, variables = block(x), block(x, output="state"), block(x, output="variables")
    k2 = 2.0**-1.5 * torch.e  # h(2) = k(2) x(2) for the paper NesterovNODE
    assert torch.allclose(h, k2 * state[0]) and torch.equal(variables[0], h) and torch.equal(variables[1], state[1])
    times = torch.tensor([1.0, 1.5, 2.0], dtype=F64)
    trajectory = block(x, times)
    assert trajectory.shape == (3, 5, 3) and torch.allclose(trajectory[-1], h, atol=1e-8)
    assert torch.allclose(trajectory[0], block.init(x)[0])  # h(t0) = h0: encode and readout are inverse
    with pytest.raises(ValueError, match="'everything'"):
        block(x, output="everything")


def test_no_init_means_zero_momentum_and_t_span_override():
    field = build_model("hbnode", dim=2, hidden=4).double()
    x = torch.randn(3, 2, dtype=F64)
    h, m = ODEBlock(field, t_span=(0.0, 1e-12))(x, output="variables")
    assert torch.allclose(h, x) and torch.allclose(m, torch.zeros_like(m), atol=1e-10)
    with pytest.raises(ValueError, match="t_span"):
        ODEBlock(field, t_span=(1.0, 1.0))


@pytest.mark.parametrize("adjoint", [False, True])
def test_last_stats_count_forward_and_backward(adjoint):
    block = _block("hbnode", adjoint=adjoint)
    h = block(torch.randn(4, 2, dtype=F64))
    stats = block.last_stats
    assert stats.forward_nfe > 0 and stats.backward_nfe == 0
    h.sum().backward()
    assert block.last_stats is stats and stats.backward_nfe > 0
    if not adjoint:
        assert stats.backward_nfe == stats.forward_nfe


@pytest.mark.parametrize("name", ["hbnode", "ghbnode", "adamnode", "gnesterovnode"])
def test_adjoint_gradients_match_backprop(name):
    x = torch.randn(4, 2, dtype=F64)
    grads = []
    for adjoint in (False, True):
        block = _block(name, adjoint=adjoint)
        if name == "gnesterovnode":  # smooth gates: hardtanh kinks make the two differ by more than the tolerance
            block.field = build_model(name, dim=3, hidden=8, preset="cifar10").double()
        params = [p for p in block.parameters()]
        grads.append(torch.autograd.grad(block(x).pow(2).sum(), params))
    for backprop, adjoint in zip(*grads):
        assert torch.allclose(backprop, adjoint, rtol=1e-5, atol=1e-7)


class Identity(nn.Module):
    def forward(self, variables, x):
        return variables


def test_odernn_per_sample_gaps_match_separate_solves():
    """One batched solve with gaps dt = (0.3, 1, 2.5) equals three solves of the field over [0, dt_i]."""
    torch.manual_seed(0)
    field = build_model("ghbnode", dim=3, hidden=8).double()  # autonomous MLP f
    rnn = ODERNN(field, Identity(), rtol=1e-10, atol=1e-10)
    h0, m0 = torch.randn(3, 3, dtype=F64), torch.randn(3, 3, dtype=F64)
    dt = torch.tensor([[0.3, 1.0, 2.5]], dtype=F64)
    out = rnn(torch.zeros(1, 3, 1, dtype=F64), dt, (h0, m0))
    assert out.evolved[0].shape == (1, 3, 3) and torch.equal(out.updated[0][0], h0)
    for i in range(3):
        t = torch.tensor([0.0, dt[0, i].item()], dtype=F64)
        h_ref, m_ref = torchdiffeq.odeint(field, (h0[i : i + 1], m0[i : i + 1]), t, rtol=1e-11, atol=1e-11)
        assert torch.allclose(out.evolved[0][0, i], h_ref[-1, 0], rtol=1e-7, atol=1e-9)
        assert torch.allclose(out.evolved[1][0, i], m_ref[-1, 0], rtol=1e-7, atol=1e-9)


class AddInput(nn.Module):
    """Jump h <- h + W x, keep m."""

    def __init__(self, features: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(features, hidden)

    def forward(self, variables, x):
        if isinstance(variables, torch.Tensor):
            return variables + self.linear(x)
        return (variables[0] + self.linear(x), *variables[1:])


@pytest.mark.parametrize("name", ["node", "hbnode", "adamnode", "nesterovnode"])
def test_odernn_sequence_shapes_and_adjoint(name):
    torch.manual_seed(0)
    field = build_model(name, dim=4, hidden=8).double()
    cell = AddInput(3, 4).double()
    x, dt = torch.randn(5, 2, 3, dtype=F64), torch.rand(5, 2, dtype=F64)
    results = []
    for adjoint in (False, True):
        rnn = ODERNN(field, cell, hidden_size=4, rtol=1e-9, atol=1e-9, adjoint=adjoint)
        out = rnn(x, dt)
        h = out.evolved if name == "node" else out.evolved[0]
        assert h.shape == (5, 2, 4)
        if name != "node":
            assert len(out.updated) == MODELS[name].state_size
        params = list(rnn.parameters())
        results.append(torch.autograd.grad(h[-1].pow(2).sum(), params))
    for backprop, adjoint in zip(*results):
        assert torch.allclose(backprop, adjoint, rtol=1e-5, atol=1e-7)


def test_odernn_checks_shapes():
    rnn = ODERNN(build_model("hbnode", dim=2, hidden=2), Identity(), hidden_size=2)
    with pytest.raises(ValueError, match=r"\[T, B\]"):
        rnn(torch.zeros(4, 3, 1), torch.zeros(4, 2))


def test_odernn_counts_every_solve():
    rnn = ODERNN(
        build_model("hbnode", dim=2, hidden=2), Identity(), hidden_size=2, method="rk4", options=dict(step_size=0.5)
    )
    rnn(torch.zeros(3, 2, 1), torch.ones(3, 2))
    assert rnn.last_stats.forward_nfe == 3 * 2 * 4 and rnn.last_stats.solves == 3


def test_image_classifier_forward():
    model = image_classifier("hbnode", method="rk4", options=dict(step_size=0.5))
    logits = model(torch.rand(2, 1, 28, 28))
    assert logits.shape == (2, 10)


def test_demo_runs(capsys, monkeypatch):
    demo = Path(__file__).resolve().parents[1] / "docs" / "demo_models.py"
    monkeypatch.setattr(sys, "argv", [str(demo), "--batch", "3", "--dim", "2", "--tol", "1e-3"])
    runpy.run_path(str(demo), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + len(MODELS)
    for line, name in zip(lines[1:], MODELS):
        words = line.split()
        assert words[0] == name and int(words[-2]) > 0
        assert int(words[-1]) > 0


def test_odernn_adjoint_matches_torchdiffeq_per_solve_reference():
    """The whole ODE-RNN (jumps, one solve per gap, adjoint through all of them) against torchdiffeq solving
    each gap on the stacked [B, 2, H] state with that gap's own scale (the released code's way, without its
    stateful-gap bug): the same loss, backward NFE and gradients (float64)."""
    torch.manual_seed(0)
    field = build_model("hbnode", dim=3, hidden=5, xi_logit=0.0).double()
    cell = AddInput(2, 3).double()
    x, dt = torch.randn(4, 6, 2, dtype=F64), 0.1 + torch.rand(4, 6, dtype=F64)
    settings = dict(rtol=1e-8, atol=1e-8)
    rnn = ODERNN(field, cell, hidden_size=3, adjoint=True, options=dict(norm="rms"), **settings)
    with record_stats() as stats:
        loss = rnn(x, dt).evolved[0].square().sum()
        loss.backward()
    ours = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    calls = []

    def solve(state, gap):
        def stacked(t, s):
            calls.append(1)
            return gap.view(-1, 1, 1) * torch.stack(field(t, tuple(s.unbind(1))), 1)

        return torchdiffeq.odeint_adjoint(
            stacked,
            torch.stack(state, 1),
            torch.tensor([0.0, 1.0], dtype=F64),
            adjoint_params=tuple(field.parameters()),
            **settings,
        )[-1].unbind(1)

    state, hs = (x.new_zeros(6, 3),) * 2, []
    for i in range(4):
        state = solve(cell(state, x[i]), dt[i])
        hs.append(state[0])
    reference = torch.stack(hs).square().sum()
    forward = len(calls)
    reference.backward()
    torch.testing.assert_close(loss, reference, rtol=1e-9, atol=0)
    assert (stats.forward_nfe, stats.backward_nfe) == (forward, len(calls) - forward)
    for a, p in zip(ours, rnn.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-6, atol=1e-9)


def test_odernn_refuses_an_empty_sequence_and_negative_gaps() -> None:
    field = build_model("hbnode", dim=2, hidden=3)
    rnn = ODERNN(field, lambda v, x: v, hidden_size=2, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="no observations"):
        rnn(torch.zeros(0, 4, 2), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="gaps dt must be >= 0, got a minimum of -0.5"):
        rnn(torch.zeros(3, 4, 2), torch.full((3, 4), 0.1).index_fill_(0, torch.tensor([1]), -0.5))


def test_a_plain_sequential_network_is_called_without_t_and_trains() -> None:
    """f(h) networks (an nn.Sequential) are detected once, at construction, and called as f(t, h) = net(h)."""
    from monode.dynamics._time_free import TimeFree

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))
    field = build_model("hbnode", net=net)
    assert isinstance(field.net, TimeFree) and field.net.net is net
    block = ODEBlock(field, method="dopri5", rtol=1e-5, atol=1e-5, adjoint=True)
    optimizer = torch.optim.Adam(block.parameters(), lr=1e-2)
    x, target = torch.randn(16, 4), torch.randn(16, 4)
    losses = []
    for _ in range(3):
        loss = (block(x) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] and all(p.grad is not None for p in net.parameters())
    assert build_model("node", dim=3, hidden=8).net.__class__.__name__ == "MLPField"  # f(t, h): as it is


def test_a_network_of_three_arguments_is_refused_at_construction() -> None:
    class Three(nn.Module):
        def forward(self, t, h, extra):
            return h

    with pytest.raises(TypeError, match=r"Three.forward\(t, h, extra\) takes 3 required positional arguments"):
        build_model("node", net=Three())
