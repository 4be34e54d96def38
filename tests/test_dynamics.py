"""The model family: registry, equations at hand-computed points, analytic solutions, parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
from torch import nn

from monode.dynamics import (
    EXPERIMENTS,
    MODELS,
    AdamField,
    AdamInitialState,
    HeavyBallField,
    NesterovField,
    OfficialNesterovField,
    TimeScaledField,
    build_initializer,
    build_model,
    nesterov_dr,
    nesterov_k,
    nesterov_r,
)
from monode.layers import ODEBlock, image_classifier
from problems import NesterovHForm, damped_oscillator_exact

F64 = torch.float64


class Affine(nn.Module):
    """f(t, h) = 2 h + t: a field whose values are easy to compute by hand."""

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return 2 * h + t


class Linear(nn.Module):
    """f(t, h) = h A^T, time-independent."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return h @ self.a.T


class Given(nn.Module):
    """An initial-state module returning fixed variables (whatever the input)."""

    def __init__(self, *variables: torch.Tensor) -> None:
        super().__init__()
        self.variables = variables

    def forward(self, x: torch.Tensor):
        return self.variables


def scalar(v: float) -> torch.Tensor:
    return torch.tensor([[v]], dtype=F64)


# --- registry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registry_entry_is_consistent(name):
    spec = MODELS[name]
    assert spec.name == name
    assert set(spec.presets) <= set(EXPERIMENTS), name  # presets are keyed by task names
    for preset in EXPERIMENTS:  # every experiment builds (with the model's defaults where it has no preset)
        field = build_model(name, dim=2, hidden=3, preset=preset)
        assert isinstance(field, spec.field) and field.state_size == spec.state_size
    init = build_initializer(name, in_channels=2, dim=2, hidden=3, conv=False)
    variables = init(torch.randn(4, 2))
    state = field.encode(variables, torch.tensor(spec.t_span[0]))
    assert len(state if isinstance(state, tuple) else (state,)) == spec.state_size


def test_paper_model_properties():
    assert MODELS["nesterovnode"].t_span == (1.0, 2.0) and MODELS["hbnode"].t_span == (0.0, 1.0)
    assert MODELS["sonode"].f_channels(5) == (10, 5) and MODELS["anode"].f_channels(6) == (6, 6)
    assert [MODELS[n].state_size for n in ("node", "sonode", "hbnode", "adamnode")] == [1, 2, 2, 3]


def test_build_model_errors_name_the_argument():
    with pytest.raises(ValueError, match="'hbnod'"):
        build_model("hbnod", dim=2, hidden=2)
    with pytest.raises(ValueError, match="dim="):
        build_model("hbnode")
    with pytest.raises(ValueError, match="'bogus'"):
        build_model("hbnode", dim=2, hidden=2, preset="bogus")
    with pytest.raises(ValueError, match="xi_logit"):
        build_model("hbnode", dim=2, hidden=2, xi=1.0, xi_logit=0.0)
    with pytest.raises(ValueError, match="activation"):
        build_model("ghbnode", dim=2, hidden=2, activation="swish")


def test_presets_are_applied():
    ghb = build_model("ghbnode", net="conv", preset="mnist")
    assert ghb.net.conv1.in_channels == 7 and ghb.net.conv1.out_channels == 45  # DF(6, 45)
    assert torch.allclose(ghb.xi_value(), torch.tensor(math.log1p(math.exp(2.0))))  # softplus(2) = 2.127
    assert ghb.gate is torch.tanh
    cifar = build_model("ghbnode", dim=2, hidden=2, preset="cifar10")
    assert "xi_logit" not in dict(cifar.named_parameters()) and float(cifar.xi_value()) == 1.5
    hb_walker = build_model("hbnode", dim=2, hidden=2, preset="walker2d")
    assert abs(float(hb_walker.xi_value()) - math.log(2)) < 1e-7 and not hb_walker.xi.requires_grad
    adam = build_model("adamnode", dim=2, hidden=2, preset="cifar10")
    with torch.no_grad():
        coef = adam.coefficients()
    assert abs(coef.beta1.item() - 0.9526) < 1e-4 and abs(coef.beta2.item() - 0.9526) < 1e-4 and coef.xi is None
    gn = build_model("gnesterovnode", dim=2, hidden=2)
    assert float(gn.gated_k(torch.tensor(2.0))) == 0.5  # hardtanh(+-0.5) clips k(2) = 0.961


# --- equations at a point ---------------------------------------------------------------------------


def test_ghbnode_field_by_hand():
    field = HeavyBallField(Affine(), activation="tanh", gamma_logit=0.0, xi=0.7).double()  # gamma = 0.5
    dh, dm = field(torch.tensor(0.5, dtype=F64), (scalar(0.3), scalar(-0.4)))
    assert dh.item() == pytest.approx(math.tanh(-0.4))  # -0.379949
    # m' = -0.5 * (-0.4) + (2 * 0.3 + 0.5) - 0.7 * 0.3 = 0.2 + 1.1 - 0.21
    assert dm.item() == pytest.approx(1.09)
    bounded = HeavyBallField(Affine(), activation=("hardtanh", 0.25)).double()
    assert bounded(torch.tensor(0.5, dtype=F64), (scalar(0.3), scalar(-0.4)))[0].item() == -0.25


def test_adamnode_field_by_hand():
    field = AdamField(Affine(), beta_logits=(0.0, math.log(3.0)), xi=0.1).double()  # beta = (0.5, 0.75)
    dh, dm, dv = field(torch.tensor(0.5, dtype=F64), (scalar(0.3), scalar(0.2), scalar(0.5)))
    # f = 1.1; h' = 0.2 / sqrt(softplus(0.5) + 1e-16) = 0.2 / sqrt(0.974077)
    assert dh.item() == pytest.approx(0.2026438138)
    assert dm.item() == pytest.approx(0.5 * (1.1 - 0.2) - 0.1 * 0.3)  # 0.42
    assert dv.item() == pytest.approx(0.75 * (1.21 - 0.5))  # 0.5325
    sigmoid_v = AdamField(Affine(), v_activation="sigmoid", beta_logits=(0.0, 0.0)).double()
    dh = sigmoid_v(torch.tensor(0.5, dtype=F64), (scalar(0.3), scalar(0.2), scalar(0.5)))[0]
    assert dh.item() == pytest.approx(0.2 / math.sqrt(1 / (1 + math.exp(-0.5))))
    identity_v = AdamField(Affine(), v_activation=None).double()  # v = 0: the eps floor, h' = m / eps
    dh = identity_v(torch.tensor(0.5, dtype=F64), (scalar(0.3), scalar(0.2), scalar(0.0)))[0]
    assert dh.item() == pytest.approx(0.2 / 1e-8)


def test_official_heavy_ball_and_adam_forms_map_onto_ours():
    """The released code's equations (written out here) equal ours under m = -m_c (and f = -f_c for HB)."""
    torch.manual_seed(0)
    t, h, m_c, v = torch.tensor(0.5, dtype=F64), *torch.randn(3, 4, 2, dtype=F64)
    f_c = Affine()
    # HeavyBallNODE: h' = tanh(-m_c), m_c' = f_c - sigmoid(g~) m_c + softplus(c~) h
    hb = HeavyBallField(lambda t, h: -f_c(t, h), activation="tanh", gamma_logit=0.3, xi_logit=0.2)
    dh, dm = hb.double()(t, (h, -m_c))
    assert torch.allclose(dh, torch.tanh(-m_c))
    softplus = torch.nn.functional.softplus
    official_dm = f_c(t, h) - torch.sigmoid(torch.tensor(0.3)) * m_c + softplus(torch.tensor(0.2)) * h
    assert torch.allclose(dm, -official_dm)
    # AdamNODEs: h' = -m_c / (sqrt(softplus(v)) + eps), m_c' = sig(a1)(-f - m_c) + softplus(c1) h, v' = sig(a2)(f^2 - v)
    adam = AdamField(f_c, beta_logits=(-5.0, 5.0), xi_logit=0.2).double()
    dh, dm, dv = adam(t, (h, -m_c, v))
    f = f_c(t, h)
    assert torch.allclose(dh, -m_c / (torch.sqrt(softplus(v)) + 1e-8))
    official_dm = torch.sigmoid(torch.tensor(-5.0)) * (-f - m_c) + softplus(torch.tensor(0.2)) * h
    assert torch.allclose(dm, -official_dm.double())
    assert torch.allclose(dv, torch.sigmoid(torch.tensor(5.0)).double() * (f * f - v))


def test_nesterov_factors():
    one, two = torch.tensor(1.0, dtype=F64), torch.tensor(2.0, dtype=F64)
    assert nesterov_k(one).item() == pytest.approx(1.6487, abs=1e-4)
    assert nesterov_k(two).item() == pytest.approx(0.9610, abs=1e-4)
    assert nesterov_r(one).item() == pytest.approx(0.6065, abs=1e-4)
    assert nesterov_dr(one).item() == pytest.approx(0.6065, abs=1e-4)
    assert nesterov_r(two).item() == pytest.approx(1.0405, abs=1e-4)
    assert nesterov_dr(two).item() == pytest.approx(0.2601, abs=1e-4)


def test_nesterov_paper_field_by_hand():
    field = NesterovField(Affine(), xi=0.7).double()
    dx, dm = field(torch.tensor(1.5, dtype=F64), (scalar(0.3), scalar(-0.4)))
    # k(1.5) = 1.5^-1.5 e^0.75 = 1.152349; h = 0.345705; f = 2h + 1.5 = 2.191409
    # m' = -m - f - xi h = 0.4 - 2.191409 - 0.241993
    assert dx.item() == pytest.approx(-0.4)
    assert dm.item() == pytest.approx(-2.0334025687)


def test_nesterov_official_field_by_hand():
    """The released code's equations: m~ = r' a + r b, a' = m~, b' = sign f(t, a) - m~ - xi a."""
    field = OfficialNesterovField(Affine(), xi=0.7).double()
    assert isinstance(build_model("nesterovnode", dim=1, hidden=2, official=True), OfficialNesterovField)
    t = torch.tensor(1.5, dtype=F64)
    da, db = field(t, (scalar(0.3), scalar(-0.4)))
    # r(1.5) = 0.867793, r'(1.5) = (3/3 - 1/2) r = 0.433896; m~ = 0.433896*0.3 - 0.867793*0.4 = -0.216948
    assert da.item() == pytest.approx(-0.2169481923)
    # f(t, a) = 2*0.3 + 1.5 = 2.1 (f sees the raw a); b' = -2.1 + 0.216948 - 0.21
    assert db.item() == pytest.approx(-2.0930518077)
    plus = OfficialNesterovField(Affine(), xi=0.7, sign=1).double()
    assert plus(t, (scalar(0.3), scalar(-0.4)))[1].item() == pytest.approx(2.1 + 0.2169481923 - 0.21)
    # calc_algebraic_factor at T = 2: h = k a = 0.961058*0.3; c_T = r'(2) = 0.260130; h' = k (b - c_T h)
    h, dh = field.decode((scalar(0.3), scalar(-0.4)), torch.tensor(2.0, dtype=F64))
    assert h.item() == pytest.approx(0.2883173271)
    assert dh.item() == pytest.approx(-0.4565024346)
    readout = field.readout((scalar(0.3), scalar(-0.4)), torch.tensor(2.0, dtype=F64))
    assert readout.item() == pytest.approx(0.2883173271)
    assert field.encode((scalar(0.3), scalar(-0.4)), torch.tensor(1.0))[0].item() == 0.3  # no change of variables


# --- analytic solutions -------------------------------------------------------------------------------


def test_hbnode_is_a_damped_oscillator():
    omega, h0, m0 = 2.0, 0.8, -0.3
    net = Linear(torch.tensor([[-(omega**2)]], dtype=F64))
    field = HeavyBallField(net, gamma_logit=0.0).double()  # gamma = 0.5, sigma = id, xi = 0
    block = ODEBlock(field, Given(scalar(h0), scalar(m0)), rtol=1e-10, atol=1e-10)
    h1 = block(torch.zeros(1, 1, dtype=F64)).item()
    assert h1 == pytest.approx(damped_oscillator_exact(h0, m0, 0.5, omega, 1.0), rel=1e-4)
    trajectory = block(torch.zeros(1, 1, dtype=F64), torch.linspace(0, 1, 5, dtype=F64))
    exact = [damped_oscillator_exact(h0, m0, 0.5, omega, t) for t in (0, 0.25, 0.5, 0.75, 1.0)]
    assert torch.allclose(trajectory.flatten(), torch.tensor(exact, dtype=F64), rtol=1e-4, atol=1e-8)


def test_nesterov_matches_its_second_order_h_form():
    torch.manual_seed(0)
    a = 0.5 * torch.randn(3, 3, dtype=F64)
    x0, m0 = torch.randn(2, 3, dtype=F64), torch.randn(2, 3, dtype=F64)
    oracle = NesterovHForm(a)
    h0 = oracle.k(1.0) * x0
    times = torch.linspace(1.0, 2.0, 4, dtype=F64)
    field = NesterovField(Linear(a.clone())).double()
    ours = ODEBlock(field, Given(h0, m0), rtol=1e-10, atol=1e-10)(torch.zeros(2, 3, dtype=F64), times)
    reference = torchdiffeq.odeint(oracle, oracle.initial(x0, m0, 1.0), times, rtol=1e-11, atol=1e-11)[0]
    assert torch.allclose(ours, reference, rtol=1e-6, atol=1e-8)


def test_time_scaled_field_rescales_each_sample():
    field = HeavyBallField(Linear(torch.tensor([[-1.0]], dtype=F64)), gamma_logit=0.0).double()
    dt = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
    state = (torch.ones(3, 1, dtype=F64), torch.ones(3, 1, dtype=F64))
    dh, dm = TimeScaledField(field.bind(), dt, ndim=2)(torch.tensor(0.0), state)
    plain_dh, plain_dm = field(torch.tensor(0.0), state)
    assert torch.equal(dh, plain_dh * dt[:, None]) and torch.equal(dm, plain_dm * dt[:, None])


# --- shapes, dtypes, gradients -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_state_shapes_and_dtypes_are_preserved(name, dtype):
    torch.manual_seed(0)
    field = build_model(name, dim=3, hidden=4, net="conv").to(dtype)
    init = build_initializer(name, in_channels=2, dim=3, hidden=4).to(dtype)
    x = torch.randn(2, 2, 4, 4, dtype=dtype)
    variables = init(x)
    state = field.encode(variables, torch.tensor(field.t_span[0], dtype=dtype))
    out = field.bind(dtype=dtype)(torch.tensor(field.t_span[0], dtype=dtype), state)
    for s, d in zip(*((state, out) if isinstance(state, tuple) else ((state,), (out,)))):
        assert d.shape == s.shape == (2, 3, 4, 4) and d.dtype == s.dtype == dtype
    h = ODEBlock(field, init, method="rk4", options=dict(step_size=0.5))(x)
    assert h.shape == (2, 3, 4, 4) and h.dtype == dtype


def _gradcheck_block(block: ODEBlock, x: torch.Tensor, **tolerances) -> bool:
    """gradcheck of the block's output with respect to its input and every parameter.

    The parameters are replaced for good by the tensors gradcheck perturbs (not swapped in for
    the forward call only, as torch.func.functional_call does): an adjoint backward pass
    re-evaluates the field after the forward call has returned.
    """
    values = []
    for module in block.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                module._parameters[name] = param.detach().clone().requires_grad_()
                values.append(module._parameters[name])
    return torch.autograd.gradcheck(lambda x, *params: block(x), (x.requires_grad_(), *values), **tolerances)


# Every scalar parameter is differentiated (xi~ too); hardtanh gates are swapped for tanh because
# gradcheck needs differentiable gates.
GRADCHECK_CASES = {name: {} for name in MODELS} | {
    "hbnode": dict(xi_logit=0.5),
    "adamnode": dict(xi_logit=0.5),
    "nesterovnode": dict(xi_logit=0.5),
    "gnesterovnode": dict(preset="cifar10", xi=0.0, xi_logit=0.5),
    "nesterovnode-official": dict(official=True, xi_logit=0.5),
}


@pytest.mark.parametrize("adjoint", [False, True], ids=["backprop", "adjoint"])
@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck_through_odeblock(case, adjoint):
    torch.manual_seed(1)
    field = build_model(case.split("-")[0], dim=2, hidden=3, net_options=dict(depth=2), **GRADCHECK_CASES[case])
    block = ODEBlock(field.double(), method="rk4", options=dict(step_size=0.05 if adjoint else 0.1), adjoint=adjoint)
    x = 0.5 * torch.randn(2, 2, dtype=F64)
    assert _gradcheck_block(block, x, atol=1e-5, rtol=1e-3)


def test_gradcheck_dopri5_with_initial_velocity():
    torch.manual_seed(2)
    field = build_model("ghbnode", dim=2, hidden=3, net_options=dict(depth=2)).double()
    init = build_initializer("ghbnode", in_channels=1, dim=2, hidden=2, conv=False).double()
    block = ODEBlock(field, init, rtol=1e-10, atol=1e-10)
    assert _gradcheck_block(block, 0.5 * torch.randn(2, 1, dtype=F64), atol=1e-5, rtol=1e-3)


# --- the papers' MNIST / CIFAR parameter counts (Xia et al. 2021 Table 1; the released code) -----------

MNIST_COUNTS = {
    "node": 85316,
    "anode": 85462,
    "sonode": 86179,
    "hbnode": 85931,
    "ghbnode": 85235,
    "nesterovnode": 85930,
    "gnesterovnode": 85930,
    "adamnode": 85832,
}
CIFAR_COUNTS = {
    "node": 173611,
    "anode": 172452,
    "sonode": 171635,
    "hbnode": 172916,
    "ghbnode": 172916,
    "nesterovnode": 172915,
    "gnesterovnode": 172915,
    "adamnode": 173070,
}


@pytest.mark.parametrize("name", sorted(MNIST_COUNTS))
def test_mnist_and_cifar_parameter_counts(name):
    mnist = sum(p.numel() for p in image_classifier(name, "mnist").parameters())
    assert abs(mnist - MNIST_COUNTS[name]) <= 0.01 * MNIST_COUNTS[name], (name, mnist)
    cifar = sum(p.numel() for p in image_classifier(name, "cifar10", in_channels=3, image_size=32).parameters())
    assert abs(cifar - CIFAR_COUNTS[name]) <= 0.01 * CIFAR_COUNTS[name], (name, cifar)


def test_exact_counts_where_the_architecture_is_the_papers():
    assert sum(p.numel() for p in image_classifier("node").parameters()) == 85316
    assert sum(p.numel() for p in image_classifier("anode").parameters()) == 85462
    assert sum(p.numel() for p in image_classifier("sonode").parameters()) == 86179
    assert sum(p.numel() for p in image_classifier("ghbnode").parameters()) == 85235
    official_adam = build_initializer("adamnode", in_channels=1, preset="mnist", layout="official")
    assert sum(p.numel() for p in official_adam.parameters()) == 85832 - 62820 - 5  # 23,007: 7 channels o


def test_official_adam_initial_state_follows_the_released_sign():
    """The released builder's second block is the momentum m_c of h' = sigma(-m_c) / (sqrt(act(v)) + eps); with
    m = -m_c the initial h' must equal the released one (it had the opposite sign)."""
    torch.manual_seed(0)
    init = AdamInitialState(1, 5, 8, conv=False, layout="official").double()
    x = torch.randn(4, 1, dtype=F64)
    h0, m0, v0 = init(x)
    o = init.net(x)
    m_c0 = torch.cat([x, o, o * o], 1)[:, 5:10]
    field = AdamField(Affine()).double()
    dh = field(torch.tensor(0.0, dtype=F64), (h0, m0, v0))[0]
    released = -m_c0 / (torch.sqrt(nn.functional.softplus(v0)) + 1e-8)
    torch.testing.assert_close(dh, released, rtol=1e-7, atol=1e-12)
