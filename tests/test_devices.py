"""Device audit: solves create no tensor on the default device (on CUDA that is a host tensor in the hot
path), read scalars from the device only for step control, and give the CPU's numbers on every available
device (CUDA cases skip without CUDA)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import monode
from monode.dynamics import MODELS, build_model
from monode.layers import ODEBlock
from monode.solvers import ADAPTIVE, METHODS

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class Audit(TorchDispatchMode):
    """Records ops whose outputs land on the meta device and counts scalar reads (item, float, bool, tolist)."""

    def __init__(self) -> None:
        super().__init__()
        self.on_default: list[str] = []
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.ops.aten._local_scalar_dense.default:
            self.reads += 1
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor) and o.device.type == "meta":
                self.on_default.append(str(func))
        return out


def audited(solve, *args, **kwargs) -> Iterator:
    """Run `solve` and the backward of its sum with the default device set to meta (a tensor made without
    an explicit device lands there), under `Audit`."""
    audit = Audit()
    torch.set_default_device("meta")
    try:
        with audit, monode.record_stats() as stats:
            solve(*args, **kwargs).sum().backward()
    finally:
        torch.set_default_device("cpu")
    return audit, stats


def _problem():
    lin = torch.nn.Linear(3, 3)
    return lin, (lambda t, y: torch.tanh(lin(y)) - 0.1 * t * y), torch.randn(4, 3, requires_grad=True)


def test_the_audit_sees_a_tensor_made_on_the_default_device() -> None:
    _, f, y0 = _problem()
    t = torch.tensor([0.0, 1.0])
    audit = Audit()
    torch.set_default_device("meta")
    try:
        with audit, pytest.raises(RuntimeError, match="meta"):
            monode.odeint(lambda t, y: f(t, y) + torch.ones(3), y0, t)
    finally:
        torch.set_default_device("cpu")
    assert "aten.ones.default" in audit.on_default


@pytest.mark.parametrize(
    "method,adjoint",
    [(m, a) for m in METHODS for a in (False, True) if a or "solver" not in METHODS[m].options],
)  # (scipy_solver has no gradient without the adjoint)
def test_solves_make_no_tensor_on_the_default_device_and_read_scalars_only_for_step_control(method, adjoint) -> None:
    lin, f, y0 = _problem()
    t = torch.tensor([0.0, 0.5, 1.0])
    options = dict(step_size=0.05) if "step_size" in METHODS[method].options else None
    kw = dict(adjoint_params=tuple(lin.parameters())) if adjoint else {}
    audit, stats = audited(  # (loose tolerances: the low-order methods need thousands of steps at the default)
        monode.odeint_adjoint if adjoint else monode.odeint, f, y0, t, method=method, options=options, rtol=1e-5,
        atol=1e-7, **kw,
    )  # fmt: skip
    assert audit.on_default == []
    if "solver" in METHODS[method].options:  # scipy_solver: a host solver, every evaluation crosses to NumPy
        pass  # (no read count: every evaluation reads the state by design)
    elif method in ADAPTIVE:  # one read per trial step (accept or reject), plus the start and the outputs
        trials = (
            stats.forward_steps + stats.forward_rejected + (stats.backward_steps + stats.backward_rejected) * adjoint
        )
        assert audit.reads <= trials + 2 * len(t) + 4 * (1 + adjoint)
    elif getattr(METHODS[method], "implicit", False):  # one read per corrector iteration (its convergence test)
        assert audit.reads <= stats.forward_nfe + stats.backward_nfe * adjoint + 2 * len(t) * (1 + adjoint)
    else:  # none per step: a finiteness check per output time
        assert audit.reads <= 2 * len(t) * (1 + adjoint)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_gives_the_cpu_solution_on_every_device(device, method) -> None:
    lin, f, y0 = _problem()
    t = torch.tensor([0.0, 0.5, 1.0])
    options = dict(step_size=0.05) if "step_size" in METHODS[method].options else None
    expected = monode.odeint(f, y0.detach(), t, method=method, options=options, rtol=1e-6, atol=1e-6)
    lin.to(device)
    got = monode.odeint(f, y0.detach().to(device), t.to(device), method=method, options=options, rtol=1e-6, atol=1e-6)
    assert got.device.type == device
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_trains_a_step_on_every_device(device, model) -> None:
    torch.manual_seed(0)
    field = build_model(model, dim=4, hidden=8, net="mlp")
    block = ODEBlock(field, method="dopri5", rtol=1e-4, atol=1e-4, adjoint=True).to(device)
    x = torch.randn(5, 4, device=device)
    out = block(x)
    assert out.device.type == device
    loss = out.square().mean()
    loss.backward()
    grads = [p.grad for p in block.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.device.type == device and torch.isfinite(g).all() for g in grads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_steps_on_cuda_match_eager() -> None:
    lin, f, y0 = _problem()
    lin.cuda()
    y0 = y0.detach().cuda()
    t = torch.tensor([0.0, 1.0], device="cuda")
    eager = monode.odeint(f, y0, t, rtol=1e-6, atol=1e-6)
    compiled = monode.odeint(f, y0, t, rtol=1e-6, atol=1e-6, options=dict(compile=True))
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
