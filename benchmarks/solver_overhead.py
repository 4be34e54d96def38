"""Solver overhead: monode vs torchdiffeq (the named peer) on a batch-128 x dim-64 tanh MLP field.

For each method (every adaptive method torchdiffeq also has; euler, midpoint, rk4) and time span, in one run:
wall time, NFE, per-step overhead ((wall - the field's own cost) / steps, the field's cost being its bare call
per evaluation, with its backward when backpropagated, and call + vector-Jacobian product per backward
evaluation of the adjoint) and efficiency (the field's cost / wall), forward only (no grad) and forward+backward
(backprop through the solver), plus the adjoint for dopri5. rk4 is also compared with a plain hand-written RK4
loop. Ratios < 1 mean monode is cheaper.

    python benchmarks/solver_overhead.py [--threads 1] [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import functools
import importlib

import torch
import torchdiffeq

import monode
from _timing import median_time, print_table
from monode.solvers import ADAPTIVE


def make_field(dim: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.Tanh(), torch.nn.Linear(dim, dim))

    class Field(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.net(y))

    return Field()


def hand_rk4(f, y, t0: float, t1: float, h: float) -> torch.Tensor:
    n = max(1, round((t1 - t0) / h))
    h = (t1 - t0) / n
    t = torch.tensor(t0, device=y.device)
    for _ in range(n):
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t = t + h
    return y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeat = 3 if args.quick else 7
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timed = functools.partial(median_time, sync=sync)
    field = make_field().to(device)
    y0 = torch.randn(128, 64, device=device)
    t0 = torch.tensor(0.0, device=device)
    with torch.no_grad():
        bare = timed(lambda: field(t0, y0), repeat=repeat, min_time=0.05)
    y0g = y0.clone().requires_grad_(True)
    bare_bwd = timed(
        lambda: torch.autograd.grad(field(t0, y0g).sum(), (y0g, *field.parameters())),
        repeat=repeat,
        min_time=0.05,
    )
    print(
        f"bare field call: {bare * 1e6:.1f} us forward, {bare_bwd * 1e6:.1f} us forward+backward "
        f"(torch {torch.__version__}, {device}, {torch.get_num_threads()} threads)\n"
    )

    rows = []
    shared = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS
    adaptive = [(m, None) for m in monode.METHODS if m in ADAPTIVE and m in shared]  # every one
    cases = adaptive + [("euler", 0.05), ("midpoint", 0.05), ("rk4", 0.05)]
    for span in (1.0, 10.0):
        t = torch.tensor([0.0, span], device=device)
        for method, step in cases:
            opts = None if step is None else dict(step_size=step)
            modes = [("fwd", False), ("fwd+bwd", False)] + ([("fwd+bwd adjoint", True)] if method == "dopri5" else [])
            for mode, adjoint in modes:
                results = {}
                for name, lib in (("monode", monode), ("torchdiffeq", torchdiffeq)):
                    calls = {"n": 0}

                    def counted(tt, y, _f=field, _c=calls):
                        _c["n"] += 1
                        return _f(tt, y)

                    solve = lib.odeint_adjoint if adjoint else lib.odeint
                    kw = dict(adjoint_params=tuple(field.parameters())) if adjoint else {}
                    if lib is monode and step is not None:
                        o = dict(opts, max_num_steps=10**6)
                    else:
                        o = opts

                    def run(_solve=solve, _kw=kw, _o=o, _mode=mode, _c=calls):
                        if _mode == "fwd":
                            with torch.no_grad():
                                return _solve(counted, y0, t, rtol=1e-6, atol=1e-8, method=method, options=_o, **_kw)
                        y = _solve(counted, y0g, t, rtol=1e-6, atol=1e-8, method=method, options=_o, **_kw)
                        _c["fwd"] = _c["n"]
                        return torch.autograd.grad(y[-1].square().sum(), (y0g, *field.parameters()))

                    with monode.record_stats() as st:
                        calls["n"] = 0
                        run()
                    nfe = calls["n"]
                    fwd_nfe = calls.get("fwd", nfe)
                    if name == "monode":
                        steps = st.forward_steps + (st.backward_steps if adjoint else 0)
                        monode_nfe, monode_steps = nfe, steps
                    else:  # same algorithm and step control: same steps per evaluation
                        steps = monode_steps * nfe / monode_nfe
                    wall = timed(run, repeat=repeat, warmup=1)
                    # the field's own cost: a forward call per evaluation, with its backward when backpropagated;
                    # the adjoint's backward evaluations each make a call and its vector-Jacobian product
                    if mode == "fwd":
                        eval_cost = nfe * bare
                    elif adjoint:
                        eval_cost = fwd_nfe * bare + (nfe - fwd_nfe) * bare_bwd
                    else:
                        eval_cost = nfe * bare_bwd
                    overhead = max(wall - eval_cost, 0.0) / max(steps, 1)
                    results[name] = (wall, nfe, overhead, eval_cost / wall)
                m, p = results["monode"], results["torchdiffeq"]
                rows.append(
                    [
                        f"[0,{span:g}]",
                        method,
                        mode,
                        m[1],
                        p[1],
                        m[0] * 1e3,
                        p[0] * 1e3,
                        m[2] * 1e6,
                        p[2] * 1e6,
                        m[2] / max(p[2], 1e-12),
                        m[3],
                        p[3],
                    ]
                )
    print_table(
        [
            "span",
            "method",
            "mode",
            "NFE",
            "NFE tdq",
            "ms",
            "ms tdq",
            "overhead/step us",
            "tdq overhead/step us",
            "overhead ratio",
            "efficiency",
            "eff. tdq",
        ],
        rows,
    )

    print("\nrk4 vs a plain hand-written loop (step 0.05):")
    rows = []
    for span in (1.0, 10.0):
        t = torch.tensor([0.0, span], device=device)
        with torch.no_grad():
            ours = timed(lambda: monode.odeint(field, y0, t, method="rk4", options=dict(step_size=0.05)), repeat=repeat)
            hand = timed(lambda: hand_rk4(field, y0, 0.0, span, 0.05), repeat=repeat)
        ours_b = timed(
            lambda: torch.autograd.grad(
                monode.odeint(field, y0g, t, method="rk4", options=dict(step_size=0.05))[-1].square().sum(), y0g
            ),
            repeat=repeat,
        )
        hand_b = timed(
            lambda: torch.autograd.grad(hand_rk4(field, y0g, 0.0, span, 0.05).square().sum(), y0g), repeat=repeat
        )
        rows.append([f"[0,{span:g}]", ours * 1e3, hand * 1e3, ours / hand, ours_b * 1e3, hand_b * 1e3, ours_b / hand_b])
    print_table(
        ["span", "monode fwd ms", "hand fwd ms", "ratio", "monode fwd+bwd ms", "hand fwd+bwd ms", "ratio"], rows
    )


if __name__ == "__main__":
    main()
