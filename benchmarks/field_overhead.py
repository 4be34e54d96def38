"""What a model's vector field adds to its bare network call, at Walker2D size.

Batch 256, hidden 24, f = the Walker field network (3-layer tanh MLP 24 -> 24, papers.md section 6).
Per model: the bare network call f(t, h) vs the field call that a layer integrates
(`field.bind()`: coefficients computed once per solve): forward without autograd (the adjoint's
forward solve, evaluation), forward recording a graph, and forward + backward
(torch.autograd.grad of the output sum with respect to the state and the parameters). Times are
medians over many interleaved rounds; ratios are field / bare per round, then the median. The
budget is ratio <= 1.5. "field vjp" is what monode's adjoint pays per backward evaluation instead: the
field's value and closed-form VJP (`BoundField.vjp`, no autograd), against the same bare f+b. The named peer, "official-style HB", re-implements the released
HeavyBallNODE wrapper as papers.md describes it: state [B, 2, H] split and re-concatenated on
dim 1, sigmoid(gamma~) and the softplus(c~) h correction on every call, a Python nfe counter.

    python benchmarks/field_overhead.py [--rounds 30] [--inner 50] [--threads 1 0] [--models adamnode,peer]
                                        [--aten]  (without the fused CPU ops, for an A/B)
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monode.dynamics import MLPField, _fused, build_model

BATCH, HIDDEN = 256, 24
MODEL_ROWS = [("node", {}), ("sonode", {}), ("hbnode", {}), ("ghbnode", {}), ("adamnode", {}),
              ("nesterovnode", {}), ("gnesterovnode", {}), ("nesterovnode", dict(official=True))]


class OfficialStyleHeavyBall(nn.Module):
    """The released HeavyBallNODE's per-call work: h' = -m, m' = s f(t, h) - sigmoid(gamma~) m + softplus(c~) h."""

    def __init__(self, df: nn.Module, gamma_guess: float = -3.0, corr: float = -100.0, sign: int = 1) -> None:
        super().__init__()
        self.df = df
        self.gamma = nn.Parameter(torch.tensor([gamma_guess]))
        self.corr = nn.Parameter(torch.tensor([corr]), requires_grad=False)  # frozen, as by default
        self.sign = sign
        self.nfe = 0

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        h, m = torch.split(x, 1, dim=1)
        dh = -m
        dm = self.df(t, h) * self.sign - torch.sigmoid(self.gamma) * m
        dm = dm + F.softplus(self.corr) * h
        return torch.cat((dh, dm), dim=1)


def _walker_net(f_in: int = HIDDEN, f_out: int = HIDDEN) -> MLPField:
    """The Walker f: Linear -> tanh -> Linear -> tanh -> Linear (SONODE's takes [y, v], 48 inputs)."""
    return MLPField(f_in, HIDDEN, f_out, depth=3, activation="tanh")


def _calls(func: Callable, t: torch.Tensor, state, wrt: Sequence[torch.Tensor]):
    """(forward, forward+backward, forward without autograd) closures of one call.

    The backward is the gradient of the output's sum, taken as the vector-Jacobian product with
    all-ones cotangents (what a solver's backward pass does), so a tuple output pays no extra
    sum/add nodes.
    """
    out = func(t, state)
    ones = tuple(torch.ones_like(o) for o in ((out,) if isinstance(out, torch.Tensor) else out))

    def forward():
        return func(t, state)

    def forward_backward():
        out = func(t, state)
        return torch.autograd.grad(out, wrt, ones if isinstance(out, tuple) else ones[0], allow_unused=True)

    def forward_no_grad():
        with torch.no_grad():
            return func(t, state)
    return forward, forward_backward, forward_no_grad


def _cases(device: torch.device, models: set[str] | None):
    """(label, bare calls, field calls) per row (rows of `models` only, if given)."""
    torch.manual_seed(0)

    def state(n: int):
        return tuple(torch.randn(BATCH, HIDDEN, device=device).requires_grad_() for _ in range(n))

    for name, options in MODEL_ROWS:
        if models is not None and name not in models:
            continue
        field = build_model(name, dim=HIDDEN, hidden=HIDDEN, net=_walker_net, **options).to(device)
        t = torch.tensor(field.t_span[0] + 0.5, device=device)  # mid-span
        s = state(field.state_size)
        bound = field.bind()
        f_in = torch.randn(BATCH, field.f_channels(HIDDEN)[0], device=device).requires_grad_()  # sonode: [y, v]
        net_params = list(field.net.parameters())
        bare = _calls(field.net, t, f_in, [f_in, *net_params])
        wrt = (*s, *bound.adjoint_params())
        label = name + (" (official)" if options.get("official") else "")
        yield label, bare, _calls(bound, t, s[0] if field.state_size == 1 else s, wrt), _closed_form(bound, t, s)

    if models is not None and "peer" not in models:
        return
    t = torch.tensor(0.5, device=device)
    peer = OfficialStyleHeavyBall(_walker_net()).to(device)
    x = torch.randn(BATCH, 2, HIDDEN, device=device).requires_grad_()
    h = torch.randn(BATCH, 1, HIDDEN, device=device).requires_grad_()
    params = [p for p in peer.parameters() if p.requires_grad]
    net_params = list(peer.df.parameters())
    yield "official-style HB", _calls(peer.df, t, h, [h, *net_params]), _calls(peer, t, x, [x, *params]), None


def _closed_form(bound, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> Callable | None:
    """The field's value and VJP as monode's adjoint computes them (`BoundField.vjp`, no autograd), or None."""
    if not bound.vjp_supported():
        return None
    plain = tuple(p.detach() for p in state)
    ones = tuple(torch.ones_like(p) for p in plain)
    if len(plain) == 1:
        plain, ones = plain[0], ones[0]

    def call():
        with torch.no_grad():
            return bound.vjp(t, plain, ones)
    return call


def _time(fn: Callable, inner: int, sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(inner):
        fn()
    sync()
    return (time.perf_counter() - start) / inner * 1e6


def _measure(bare: Callable, field: Callable, rounds: int, inner: int, sync) -> tuple[float, float, float]:
    """Median bare us, median field us, median of per-round ratios; bare and field interleaved."""
    for _ in range(max(3, inner // 5)):
        bare(), field()
    bare_us, field_us, ratios = [], [], []
    for _ in range(rounds):
        b, f = _time(bare, inner, sync), _time(field, inner, sync)
        bare_us.append(b), field_us.append(f), ratios.append(f / b)
    return statistics.median(bare_us), statistics.median(field_us), statistics.median(ratios)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (median taken)")
    parser.add_argument("--inner", type=int, default=50, help="calls per round")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                        help="torch thread counts to measure (0 = the default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=None,
                        help="comma-separated rows to run (model names, 'peer'); default all")
    parser.add_argument("--aten", action="store_true",
                        help="the fields' ATen ops only, without the fused CPU ops (as MONODE_FUSED=0)")
    args = parser.parse_args(argv)
    if args.aten:
        _fused.ENABLED = False
    models = None if args.models is None else set(args.models.split(","))

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    default_threads = torch.get_num_threads()
    for threads in args.threads:
        torch.set_num_threads(threads or default_threads)
        print(f"\nbatch {BATCH}, hidden {HIDDEN}, Walker f (3-layer tanh MLP), {device}, "
              f"{torch.get_num_threads()} thread(s); us per call, medians of {args.rounds} x {args.inner}")
        print(f"{'':<24}{'forward, no grad':^26}   {'forward, recording':^26}   {'forward + backward':^26}   "
              f"{'adjoint':^17}")
        print(f"{'model':<24}" + f"{'bare':>9}{'field':>10}{'ratio':>7}   " * 3 + f"{'field vjp':>10}{'ratio':>7}")
        for label, bare, field, closed_form in _cases(device, models):
            ratios, cells = [], ""
            for k in (2, 0, 1):
                b, f, r = _measure(bare[k], field[k], args.rounds, args.inner, sync)
                ratios.append(r)
                cells += f"{b:>9.1f}{f:>10.1f}{r:>7.2f}   "
            vjp = "" if closed_form is None else "{1:>10.1f}{2:>7.2f}".format(
                *_measure(bare[1], closed_form, args.rounds, args.inner, sync))
            flag = "" if max(ratios) <= 1.5 else "  > 1.5"
            print(f"{label:<24}{cells}{vjp:<17}{flag}")
    torch.set_num_threads(default_threads)


if __name__ == "__main__":
    main()
