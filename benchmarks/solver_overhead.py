"""Solver overhead: monode vs torchdiffeq (the named peer) on a batch-128 x dim-64 tanh MLP field.

For each method (every adaptive method torchdiffeq also has; euler, midpoint, rk4) and time span, in one run:
wall time, NFE, per-step overhead and efficiency (the field's time / wall), forward only (no grad) and
forward+backward (backprop through the solver), plus the adjoint for dopri5. The field's time is what its
calls take inside each solve (timed around every call, on CPU); for the adjoint also what each vector-Jacobian
product's `torch.autograd.grad` over the field's graph takes inside the backward solve (both libraries make one
such call per backward evaluation); with backprop through the solver, the field's backward part is priced by
bare calls measured in the same rounds (the engine runs it interleaved with the solver's own backward).
Per-step overhead = median over rounds of (solve - field's time) / steps; rounds interleave the two
libraries, so that a machine whose speed drifts biases neither. rk4 is also compared with a plain
hand-written RK4 loop. Ratios < 1 mean monode is cheaper.

    python benchmarks/solver_overhead.py [--threads 1] [--quick] [--device cuda] [--methods dopri5 dopri8]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import statistics
import time

import torch
import torchdiffeq

import monode
from _timing import median_time, paired_times, print_table
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
    parser.add_argument("--methods", nargs="+", default=None, help="only these methods (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeat = 5 if args.quick else 9
    device = torch.device(args.device)
    on_cpu = device.type == "cpu"  # (on CUDA, calls are asynchronous: the field's time is its bare cost)
    sync = (lambda: None) if on_cpu else torch.cuda.synchronize
    timed = functools.partial(median_time, sync=sync)
    field = make_field().to(device)
    params = tuple(field.parameters())
    y0 = torch.randn(128, 64, device=device)
    y0g = y0.clone().requires_grad_(True)
    t0 = torch.tensor(0.0, device=device)
    grad = torch.autograd.grad
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads\n")

    def bare(calls: int, backward: bool) -> None:
        """`calls` bare calls of the field, without graph or each with its backward."""
        for _ in range(calls):
            if backward:
                torch.autograd.grad(field(t0, y0g).sum(), (y0g, *params))
            else:
                with torch.no_grad():
                    field(t0, y0)

    rows = []
    shared = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS
    adaptive = [(m, None) for m in monode.METHODS if m in ADAPTIVE and m in shared]  # every one
    cases = [c for c in adaptive + [("euler", 0.05), ("midpoint", 0.05), ("rk4", 0.05)]
             if args.methods is None or c[0] in args.methods]  # fmt: skip
    for span in (1.0, 10.0):
        t = torch.tensor([0.0, span], device=device)
        for method, step in cases:
            opts = None if step is None else dict(step_size=step)
            modes = [("fwd", False), ("fwd+bwd", False)] + ([("fwd+bwd adjoint", True)] if method == "dopri5" else [])
            for mode, adjoint in modes:
                runs, nfes, inside = {}, {}, {}
                for name, lib in (("monode", monode), ("torchdiffeq", torchdiffeq)):
                    calls = {"n": 0, "s": 0.0}
                    inside[name] = []

                    def counted(tt, y, _c=calls):
                        start = time.perf_counter()
                        out = field(tt, y)
                        _c["s"] += time.perf_counter() - start
                        _c["n"] += 1
                        return out

                    def vjp(*args, _c=calls, **kwargs):  # the adjoint's VJPs over the field's graph
                        start = time.perf_counter()
                        out = grad(*args, **kwargs)
                        _c["s"] += time.perf_counter() - start
                        return out

                    solve = lib.odeint_adjoint if adjoint else lib.odeint
                    kw = dict(adjoint_params=params) if adjoint else {}
                    o = dict(opts, max_num_steps=10**6) if lib is monode and step is not None else opts

                    def run(_solve=solve, _f=counted, _kw=kw, _o=o, _mode=mode, _c=calls, _inside=inside[name],
                            _vjp=vjp if adjoint and on_cpu else grad):  # fmt: skip
                        _c["n"], _c["s"] = 0, 0.0
                        if _mode == "fwd":
                            with torch.no_grad():
                                _solve(_f, y0, t, rtol=1e-6, atol=1e-8, method=method, options=_o, **_kw)
                        else:
                            y = _solve(_f, y0g, t, rtol=1e-6, atol=1e-8, method=method, options=_o, **_kw)
                            _c["fwd"] = _c["n"]
                            torch.autograd.grad = _vjp  # (the libraries look it up at each call)
                            try:
                                grad(y[-1].square().sum(), (y0g, *params))
                            finally:
                                torch.autograd.grad = grad
                        _inside.append(_c["s"])

                    with monode.record_stats() as st:
                        run()
                        sync()
                    nfes[name] = (calls["n"], calls.get("fwd", calls["n"]))
                    runs[name] = run
                    if name == "monode":
                        steps = st.forward_steps + (st.backward_steps if adjoint else 0)
                nfe, fwd_nfe = nfes["monode"]
                backpropagated = 0 if mode == "fwd" or (adjoint and on_cpu) else nfe - fwd_nfe if adjoint else nfe
                probe = min(nfe, 50)  # bare calls per round, to price one call and one backward
                fns = [runs["monode"], runs["torchdiffeq"]]
                if backpropagated or not on_cpu:
                    fns += [lambda n=probe: bare(n, False), lambda n=probe: bare(n, True)]
                walls = paired_times(fns, repeat=repeat, sync=sync)
                rounds = range(repeat)
                bare_call = [walls[2][r] / probe for r in rounds] if len(walls) > 2 else [0.0] * repeat
                bare_backward = [(walls[3][r] - walls[2][r]) / probe for r in rounds] if len(walls) > 2 else bare_call

                def field_time(name: str, r: int) -> float:
                    calls_inside = inside[name][-repeat:][r] if on_cpu else nfe * bare_call[r]
                    return calls_inside + backpropagated * max(bare_backward[r], 0.0)

                def per_step(i: int, name: str) -> float:
                    # same algorithm and step control in both: same steps per evaluation
                    return statistics.median(max(walls[i][r] - field_time(name, r), 0.0) for r in rounds) / steps

                ours, peer = per_step(0, "monode"), per_step(1, "torchdiffeq")
                wall, wall_peer = statistics.median(walls[0]), statistics.median(walls[1])
                cost = statistics.median(field_time("monode", r) for r in rounds)
                cost_peer = statistics.median(field_time("torchdiffeq", r) for r in rounds)
                rows.append(
                    [
                        f"[0,{span:g}]",
                        method,
                        mode,
                        nfe,
                        nfes["torchdiffeq"][0],
                        wall * 1e3,
                        wall_peer * 1e3,
                        ours * 1e6,
                        peer * 1e6,
                        ours / peer if ours > 0 and peer > 0 else "-",  # (below the timing's resolution)
                        cost / wall,
                        cost_peer / wall_peer,
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

    if args.methods is not None and "rk4" not in args.methods:
        return
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
