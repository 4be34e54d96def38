"""The fused CPU tail ops (`monode.dynamics._fused`) against the fields' ATen ops and autograd."""
from __future__ import annotations

import warnings

import pytest
import torch

from monode.dynamics import _fused, build_model

F64 = torch.float64

pytestmark = pytest.mark.skipif(not _fused.ENABLED, reason="MONODE_FUSED=0 turns the fused ops off")

# (model, field options, whether the field routes its tail through a fused op)
CASES = [
    ("adamnode", {}, True), ("adamnode", dict(v_activation="sigmoid", xi_logit=0.3), True),
    ("adamnode", dict(v_activation=None, xi=0.5), True), ("adamnode", dict(activation="tanh"), False),
    ("gnesterovnode", {}, True),  # MNIST: hardtanh(+-0.5) gates, learnable xi
    ("gnesterovnode", dict(activation="tanh", k_activation="tanh", f_activation="sigmoid", xi=1.5, xi_logit=None), True),
    ("nesterovnode", dict(official=True), True), ("nesterovnode", dict(official=True, sign=1, xi_logit=0.2), True),
    ("nesterovnode", {}, False), ("nesterovnode", dict(sign=1, xi=0.4), False),  # add, negate: cheaper as ATen
    ("gnesterovnode", dict(activation=None, k_activation=None, f_activation="tanh", xi_logit=None), True),
    ("hbnode", {}, False),  # one addcmul: no cheaper as a call
    ("hbnode", dict(xi=0.7), False), ("ghbnode", {}, True),  # tanh gate, learnable xi
    ("ghbnode", dict(activation=("hardtanh", 0.5), xi_logit=None, learn_gamma=False), True),
]


def test_the_ops_build_here():
    """This machine has a C++ compiler and ninja: the ops must build (elsewhere they fall back, tested below)."""
    assert _fused.available()


def _field(name, options, dtype):
    torch.manual_seed(0)
    field = build_model(name, dim=6, hidden=8, **options).to(dtype)
    with torch.no_grad():
        for p in field.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return field


def _state(field, dtype, batch=5):
    state = tuple(torch.randn(batch, 6, dtype=dtype) for _ in range(field.state_size))
    if field.state_size == 3:  # v = m^2 + noise, as AdamNODE's v tracks f^2; some of it past softplus' threshold 20
        offsets = torch.tensor([0.1, 21.0, 1.0, 5.0, 30.0], dtype=dtype)[:batch, None]
        state = (state[0], state[1], state[2].abs() + offsets)
    return state


def _call_and_grads(field, t, state, cot):
    bound = field.bind()
    leaves = tuple(s.clone().requires_grad_(True) for s in state)
    out = bound(t, leaves)
    grads = torch.autograd.grad(out, (*leaves, *bound.adjoint_params()), cot, allow_unused=True)
    return out, grads


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("name, options, fused", CASES)
def test_fused_tail_equals_aten_ops(name, options, fused, dtype, tol, monkeypatch):
    field = _field(name, options, dtype)
    used = []
    for op in ("adam_tail", "momentum_tail", "adam_backward", "momentum_backward"):
        original = getattr(_fused, op)
        monkeypatch.setattr(_fused, op, lambda *a, _o=original, _n=op: used.append(_n) or _o(*a))
    t = torch.tensor(1.5, dtype=dtype)
    state = _state(field, dtype)
    cot = tuple(torch.randn_like(s) for s in state)
    out, grads = _call_and_grads(field, t, state, cot)
    with torch.no_grad():
        vjp = field.bind().vjp(t, state, cot)
    assert bool(used) == fused
    monkeypatch.setattr(_fused, "ENABLED", False)
    ref_out, ref_grads = _call_and_grads(field, t, state, cot)
    ref_vjp = field.bind().vjp(t, state, cot)
    for a, b in zip((*ref_out, *ref_vjp[0], *ref_vjp[1], *ref_vjp[2]), (*out, *vjp[0], *vjp[1], *vjp[2])):
        torch.testing.assert_close(b, a, rtol=tol, atol=tol)
    for a, b in zip(ref_grads, grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=tol, atol=tol)


@pytest.mark.parametrize("name, options", [(n, o) for n, o, fused in CASES if fused and "hardtanh" not in str(o)
                                           and (n, o) != ("gnesterovnode", {})])  # no hardtanh kinks
def test_gradcheck_through_fused_ops(name, options):
    """The fused ops' backward, for the state and the field's scalar parameters, against finite differences."""
    field = _field(name, options, F64)
    t = torch.tensor(1.3, dtype=F64)
    state = tuple(s.requires_grad_(True) for s in _state(field, F64, batch=3))
    scalars = tuple(p for n, p in field.named_parameters() if not n.startswith("net."))
    assert torch.autograd.gradcheck(lambda *inputs: field.bind()(t, inputs[:len(state)]), (*state, *scalars))


@pytest.mark.parametrize("name", ["adamnode", "ghbnode"])
def test_double_backward_through_a_fused_op_is_refused(name):
    """Its backward is raw loops: create_graph=True raises (naming the way out) instead of wrong 2nd derivatives."""
    field = _field(name, {}, F64)
    state = tuple(s.requires_grad_(True) for s in _state(field, F64))
    out = field.bind()(torch.tensor(0.5, dtype=F64), state)
    with pytest.raises(RuntimeError, match="no double backward.*MONODE_FUSED=0"):
        torch.autograd.grad(sum(o.sum() for o in out), state, create_graph=True)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's forward AD scripts helpers with jit.script
def test_forward_mode_ad_through_a_fused_op_is_refused():
    import torch.autograd.forward_ad as fwad
    field = _field("adamnode", {}, F64)
    state = _state(field, F64)
    with fwad.dual_level():
        dual = (fwad.make_dual(state[0], torch.ones_like(state[0])), *state[1:])
        with pytest.raises(RuntimeError, match="no forward-mode AD"):
            field.bind()(torch.tensor(0.5, dtype=F64), dual)


def test_nan_propagates_through_the_fused_ops():
    field = _field("adamnode", {}, F64)
    state = _state(field, F64)
    state[2][0, 0] = float("nan")
    with torch.no_grad():
        dh, dm, dv = field.bind()(torch.tensor(0.5, dtype=F64), state)
    assert torch.isnan(dh[0, 0]) and torch.isnan(dv[0, 0]) and torch.isfinite(dh[1:]).all()


def test_operands_must_match_and_may_be_strided():
    f = torch.randn(4, 3)
    one = torch.tensor(0.5)
    with pytest.raises(RuntimeError, match="must have f's shape"):
        _fused.adam_tail(f, f, f, torch.randn(4, 2), one, one, None, 1, 1e-16)
    strided = torch.randn(3, 4).t()  # a transposed view: copied to a dense tensor, same result
    got = _fused.adam_tail(f, f, strided, f.abs(), one, one, None, 1, 1e-16)
    want = _fused.adam_tail(f, f, strided.contiguous(), f.abs(), one, one, None, 1, 1e-16)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_build_failure_warns_once_and_fields_use_aten_ops(monkeypatch, tmp_path):
    monkeypatch.setattr(_fused, "_ops", None)
    monkeypatch.setattr(_fused, "_tried", False)
    monkeypatch.setattr(_fused, "_flag_sets", lambda: [["--no-such-flag"]])
    monkeypatch.setenv("MONODE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_fused, "_build", lambda flags: (_ for _ in ()).throw(RuntimeError("cc: no such flag")))
    field = _field("adamnode", {}, F64)
    state = _state(field, F64)
    with pytest.warns(RuntimeWarning, match="could not be built .*cc: no such flag"):
        out = field.bind()(torch.tensor(0.5, dtype=F64), state)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        again = field.bind()(torch.tensor(0.5, dtype=F64), state)
    for a, b in zip(out, again):
        torch.testing.assert_close(a, b)
    assert _fused.adam_tail(*state, *state[:1], torch.tensor(0.5, dtype=F64), torch.tensor(-0.5, dtype=F64),
                            None, 1, 1e-16) is None


@pytest.mark.parametrize("name, options", [("adamnode", {}), ("gnesterovnode", {})])
def test_large_states_split_across_threads_match_aten(name, options, monkeypatch):
    """Past the parallel grain (32768 elements) the forward loop is split across threads: same values."""
    torch.manual_seed(3)
    field = build_model(name, dim=4, hidden=8, net="conv", **options).double()
    t = torch.tensor(1.4, dtype=F64)
    state = tuple(torch.randn(40, 4, 16, 16, dtype=F64) for _ in range(field.state_size))  # 40960 elements
    if field.state_size == 3:
        state = (state[0], state[1], state[2].abs())
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            out = field.bind()(t, state)
            monkeypatch.setattr(_fused, "ENABLED", False)
            ref = field.bind()(t, state)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(ref, out):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
