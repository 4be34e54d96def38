"""Sequence benchmarks (Walker2D, plane vibration): accuracy, NFE and speed per model vs papers.md 7.2.

Part 1, accuracy: a reduced-epoch run of the task's "paper" preset (dopri5 rtol = atol = 1e-7, adjoint,
batch 256 Walker / 64 PV, the official lr schedules) per model, through `monode train`'s code path;
printed beside the HBNODE authors' logs (papers.md 7.2): test MSE (Walker: one-step; PV: 8-step
forecast), forward/backward NFE per batch (summed over the sequence's solves, as in the logs),
seconds per epoch, and the HBNODE/NODE ratios of both.

Part 2, speed: one training iteration (forward, loss, backward, clip, Adam step) on one batch of
real data, timed (median) for monode and for the named peer "official-style", measured in the same
run on the same network (a deep copy of the monode model): the released code's approach written
afresh here: per observation one `torchdiffeq.odeint_adjoint` dopri5 solve over the field's span of
the state stacked as [B, k, H], the whole field multiplied by the sample's gap (`elem_t`), its
coefficients (sigmoid(gamma~), softplus(xi~), ...) recomputed on every call, a Python NFE counter;
PV's forecast as one solve with outputs at the 8 unit steps. The loss is the task's own, so both
sides must agree (|loss diff| column). The issue's official timings (2.2 s / 1.34 s Walker HBNODE /
NODE at batch 256, 2.75 s / 1.45 s PV at batch 64) are printed for reference; the target is
peer / monode >= 5.

The peer keeps the released code's stateful gap (papers.md §10 item 7): `elem_t` holds the last solve's
gaps when the backward passes run, so its backward solves integrate the wrong dynamics (fewer backward
NFE on PV than a correct adjoint needs, and wrong gradients). A second, gap-fixed peer (`GapBoundCell`)
is run once per model: its backward NFE and the largest gradient difference to monode (relative to
the largest gradient) are the last columns; that is the correctness check of monode's gradients.
monode runs the paper preset as is, which compiles each solver step (`--no-compile`: eager); the first
(warm-up) iteration, which compiles, is not timed.

    python benchmarks/sequences.py --task walker2d --epochs 5                  # the real measurement
    python benchmarks/sequences.py --task both --epochs 1 --max-batches 2 --batch-size 16 --models hbnode,node
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torchdiffeq
from torch import Tensor, nn

from _timing import median_time, print_table
from monode.dynamics import MODELS, State
from monode.solvers import ODESolverError, record_stats
from monode.tasks import TASKS, RunOptions
from monode.tasks.sequences import SequenceModel, SequenceOutput
from monode.train import TrainingDivergedError, seed_everything

# papers.md 7.2: the HBNODE authors' logs (Walker: 1 run, 500 epochs; PV: older partial logs, NFE approximate)
PAPER = {
    "walker2d": {
        "node": dict(mse=2.443, fwd=2106, bwd=2170, s_epoch=112),
        "anode": dict(mse=2.342, fwd=2083, bwd=2159, s_epoch=118),
        "hbnode": dict(mse=1.160, fwd=1486, bwd=1488, s_epoch=120),
        "ghbnode": dict(mse=1.181, fwd=1501, bwd=1502, s_epoch=128),
    },
    "plane-vibration": {"node": dict(mse=0.0569, fwd=1409), "hbnode": dict(mse=0.0245, fwd=2557)},
}
OFFICIAL_SECONDS = {"walker2d": {"hbnode": 2.2, "node": 1.34}, "plane-vibration": {"hbnode": 2.75, "node": 1.45}}


class OfficialStyleCell(nn.Module):
    """The released cells' per-call work: split [B, k, H], the equations with coefficients recomputed,
    re-stack, multiply by the per-sample gap `elem_t`, count the call."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field, self.elem_t, self.nfe = field, None, 0

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        k = self.field.state_size
        out = self.field(t, x[:, 0] if k == 1 else tuple(x.unbind(1)))  # VectorField.forward: no bound coefficients
        return self.elem_t * (out.unsqueeze(1) if k == 1 else torch.stack(out, 1))


class GapBoundCell(nn.Module):
    """The cell with the gap of one solve bound to it: the released code's `elem_t` attribute holds the
    gap of the *last* solve when the adjoint's backward passes run (papers.md §10, item 7), so every
    backward solve integrates the last gap's dynamics. Re-setting it before each call fixes that."""

    def __init__(self, cell: OfficialStyleCell, elem_t: Tensor) -> None:
        super().__init__()
        self.cell, self.elem_t = cell, elem_t

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        self.cell.elem_t = self.elem_t
        return self.cell(t, x)


class OfficialStyleModel(nn.Module):
    """A monode `SequenceModel` (deep-copied: same weights) run the released code's way (module docstring).

    fix_gap=True binds each solve's gap to it (`GapBoundCell`): the same cost per call, but correct
    gradients, which must then equal monode's."""

    def __init__(self, model: SequenceModel, fix_gap: bool = False) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        self.cell = OfficialStyleCell(self.model.rnn.field)
        self.fix_gap = fix_gap

    def _solve(self, variables: State, elem_t: Tensor, times: Tensor) -> Tensor:
        """The stacked solution [len(times), B, k, H]; the solver options (NesterovNODE's step cap) are monode's."""
        field, rnn = self.model.rnn.field, self.model.rnn
        self.cell.elem_t = elem_t.view(-1, 1, 1)
        state = field.encode(variables, times[0])
        stacked = state.unsqueeze(1) if field.state_size == 1 else torch.stack(state, 1)
        # stacked: one RMS already; compilation is monode's own
        options = {k: v for k, v in (rnn.options or {}).items() if k not in ("norm", "compile")}
        func = GapBoundCell(self.cell, self.cell.elem_t) if self.fix_gap else self.cell
        return torchdiffeq.odeint_adjoint(
            func,
            stacked,
            times,
            rtol=rnn.rtol,
            atol=rnn.atol,
            method="dopri5",
            options=options or None,
            adjoint_params=tuple(self.cell.parameters()),
        )

    def _decode(self, state: Tensor, t: Tensor) -> State:
        field = self.model.rnn.field
        return field.decode(state[:, 0] if field.state_size == 1 else tuple(state.unbind(1)), t)

    @staticmethod
    def _h(variables: State) -> Tensor:
        return variables if isinstance(variables, Tensor) else variables[0]

    def forward(self, x: Tensor, dt: Tensor) -> SequenceOutput:
        m = self.model
        span = torch.tensor(m.rnn.t_span, dtype=x.dtype, device=x.device)
        if m.encoder is not None:
            variables = m.encoder(x.flatten(1) if m.encoder_input == "window" else x[:, 0])
        else:
            zeros = x.new_zeros(x.shape[0], m.rnn.hidden_size)
            variables = zeros if m.rnn.field.state_size == 1 else (zeros,) * m.rnn.field.state_size
        recon, pred = [], []
        for i in range(x.shape[1]):
            variables = m.rnn.cell(variables, x[:, i])
            recon.append(self._h(variables))
            variables = self._decode(self._solve(variables, dt[:, i] / (span[1] - span[0]), span)[-1], span[1])
            pred.append(self._h(variables))
        return SequenceOutput(m.decoder(torch.stack(recon, 1)), m.decoder(torch.stack(pred, 1)), variables)

    def forecast(self, last: State, steps: int) -> Tensor:
        h = self._h(last)
        times = self.model.rnn.t_span[0] + torch.arange(steps, dtype=h.dtype, device=h.device)
        path = self._solve(last, h.new_ones(h.shape[0]), times)
        return self.model.decoder(torch.stack([self._h(self._decode(s, t)) for s, t in zip(path, times)], 1))


def _training_step(
    task: Any, model: nn.Module, batch: tuple[Tensor, ...], sync: Callable[[], None]
) -> Callable[[], float]:
    """One training iteration (loss, backward, clip 1, Adam step) as a closure returning the loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-12)  # a real step that leaves the weights in place

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = task.loss(model, batch)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        sync()
        return loss.detach().item()

    return step


def _peer_pass(task: Any, peer: OfficialStyleModel, batch: tuple[Tensor, ...]) -> tuple[float, int, int]:
    """Loss, forward and backward NFE of one peer pass (its counter read between forward and backward)."""
    peer.zero_grad(set_to_none=True)
    peer.cell.nfe = 0
    loss, _ = task.loss(peer, batch)
    forward = peer.cell.nfe
    loss.backward()
    return loss.detach().item(), forward, peer.cell.nfe - forward


def _gradients(module: nn.Module) -> dict[str, Tensor]:
    return {name: p.grad.detach().clone() for name, p in module.named_parameters() if p.grad is not None}


def _gradient_difference(task: Any, model: SequenceModel, peer: OfficialStyleModel, batch: tuple[Tensor, ...]) -> float:
    """max |g_monode - g_peer| / max |g_peer| over the parameters, after one backward pass of each."""
    model.zero_grad(set_to_none=True)
    task.loss(model, batch)[0].backward()
    ours = _gradients(model)
    theirs = {name.removeprefix("model."): g for name, g in _gradients(peer).items()}
    scale = max(float(g.abs().max()) for g in theirs.values())
    return max(float((ours[name] - g).abs().max()) for name, g in theirs.items()) / scale


def speed(
    task_name: str, models: list[str], args: argparse.Namespace, peer_models: set[str]
) -> dict[str, tuple[float, int]]:
    """Time one iteration per model (monode, and the peer for `peer_models`); print the table.

    Returns per model (monode seconds per iteration, training batches in a full epoch)."""
    task, device = TASKS[task_name], torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows, seconds = [], {}
    for name in models:
        opts = _options(task_name, name, args, epochs=1)
        settings = task.settings(opts)
        seed_everything(0)
        built = task.build(settings)
        batch = tuple(t[: settings["batch_size"]].to(device) for t in built.train_data)
        model = built.model.to(device)
        # same weights, copied before any step
        peer = OfficialStyleModel(model) if name in peer_models else None
        fixed = OfficialStyleModel(model, fix_gap=True) if name in peer_models else None
        monode_step = _training_step(built, model, batch, sync)
        with record_stats() as stats:
            loss = monode_step()
        monode_seconds = median_time(monode_step, repeat=args.repeat, warmup=args.warmup)
        seconds[name] = (monode_seconds, math.ceil(len(built.train_data[0]) / settings["batch_size"]))
        row = [name, len(batch[0]), monode_seconds, stats.forward_nfe, stats.backward_nfe]
        if peer is None or fixed is None:
            row += ["", "", "", "", "", "", ""]
        else:
            peer_loss, peer_forward, peer_backward = _peer_pass(built, peer, batch)
            _, _, fixed_backward = _peer_pass(built, fixed, batch)
            gradient_difference = _gradient_difference(built, model, fixed, batch)
            peer_seconds = median_time(_training_step(built, peer, batch, sync), repeat=args.repeat, warmup=args.warmup)
            row += [
                peer_seconds,
                peer_forward,
                peer_backward,
                peer_seconds / monode_seconds,
                abs(peer_loss - loss),
                fixed_backward,
                gradient_difference,
            ]
        rows.append(row + [OFFICIAL_SECONDS[task_name].get(name, "")])
    print(
        f"\n### {task_name}: one training iteration (s), {args.device}, {torch.get_num_threads()} thread(s), "
        f"median of {args.repeat}; peer = official-style (torchdiffeq {torchdiffeq.__version__} odeint_adjoint)"
    )
    print_table(
        [
            "model",
            "batch",
            "monode s/iter",
            "fwd NFE",
            "bwd NFE",
            "peer s/iter",
            "peer fwd NFE",
            "peer bwd NFE",
            "peer/monode",
            "|loss diff|",
            "gap-fixed peer bwd NFE",
            "grad diff vs gap-fixed",
            "issue's official s/iter",
        ],
        rows,
    )
    return seconds


def _options(task_name: str, model: str, args: argparse.Namespace, epochs: int) -> RunOptions:
    overrides = {}
    if args.seq_len is not None:
        overrides["seq_len"] = args.seq_len
    return RunOptions(
        model=model,
        preset="paper",
        epochs=epochs,
        batch_size=args.batch_size,
        rtol=args.rtol,
        atol=args.atol,
        compile=args.compile,
        subset=args.subset,
        max_batches=args.max_batches,
        device=args.device,
        progress=False,
        overrides=overrides,
    )


def accuracy(
    task_name: str,
    models: list[str],
    args: argparse.Namespace,
    out: Path,
    iteration_seconds: dict[str, tuple[float, int]],
) -> None:
    """Reduced-epoch training per model; the table beside papers.md 7.2 and the HBNODE/NODE ratios."""
    task = TASKS[task_name]
    metric = f"eval_{task.metric}"
    results = {}
    for name in models:
        try:
            result = task.run(_options(task_name, name, args, epochs=args.epochs), out / task_name / name)
        except (ODESolverError, TrainingDivergedError) as error:  # report it, go on with the next model
            print(f"{task_name} / {name}: training stopped: {type(error).__name__}: {error}", flush=True)
            continue
        rows = result.rows
        evals = [r[metric] for r in rows if metric in r]
        results[name] = dict(
            params=result.parameters,
            final=evals[-1],
            best=min(evals),
            fwd=statistics.mean(r["train_forward_nfe"] for r in rows),
            bwd=statistics.mean(r["train_backward_nfe"] for r in rows),
            s_epoch=statistics.mean(r["seconds"] for r in rows),
        )
    paper = PAPER[task_name]
    table = []
    for name, r in results.items():
        p = paper.get(name, {})
        s_iter, batches = iteration_seconds.get(name, (float("nan"), 0))
        table.append(
            [
                name,
                r["params"],
                r["final"],
                r["best"],
                p.get("mse", ""),
                r["fwd"],
                p.get("fwd", ""),
                r["bwd"],
                p.get("bwd", ""),
                s_iter,
                r["s_epoch"],
                s_iter * batches,
                p.get("s_epoch", ""),
            ]
        )
    print(
        f"\n### {task_name}: {args.epochs} epoch(s) of the paper preset"
        + (f", {args.max_batches} batches per epoch (train and eval)" if args.max_batches else "")
        + f"; test metric {metric} (paper: min test MSE after 500 epochs)"
    )
    print_table(
        [
            "model",
            "params",
            "test MSE final",
            "test MSE best",
            "paper",
            "fwd NFE",
            "paper fwd",
            "bwd NFE",
            "paper bwd",
            "s/iter",
            "s/epoch run (incl. eval)",
            "s/epoch full (s/iter x batches)",
            "paper s/epoch",
        ],
        table,
    )
    if {"hbnode", "node"} <= set(results):
        hb, node = results["hbnode"], results["node"]
        ratio = lambda a, b: f"{a / b:.3f}" if b else "n/a"  # noqa: E731
        print(
            f"HBNODE / NODE: test MSE {ratio(hb['best'], node['best'])} (paper "
            f"{ratio(paper['hbnode']['mse'], paper['node']['mse'])}), forward NFE {ratio(hb['fwd'], node['fwd'])} "
            f"(paper {ratio(paper['hbnode']['fwd'], paper['node']['fwd'])})"
            + (
                f", backward NFE {ratio(hb['bwd'], node['bwd'])} (paper "
                f"{ratio(paper['hbnode']['bwd'], paper['node']['bwd'])})"
                if "bwd" in paper["hbnode"]
                else ""
            )
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["walker2d", "plane-vibration", "both"], default="both")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated (default: all)")
    parser.add_argument("--peer-models", default="hbnode,node", help="models also timed with the peer")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the reduced run")
    parser.add_argument("--max-batches", type=int, help="cap on train and eval batches per epoch")
    parser.add_argument("--batch-size", type=int, help="default: the paper's (Walker 256, PV 64)")
    parser.add_argument("--subset", type=int, help="only the first N training windows")
    parser.add_argument("--seq-len", type=int, help="window length (default: the paper's 64)")
    parser.add_argument("--rtol", type=float, help="default: the paper's 1e-7")
    parser.add_argument("--atol", type=float, help="default: the paper's 1e-7")
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        default=True,
        help="solve eagerly (default: the paper preset's torch.compile of each solver step)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed iterations per model (median)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-training", action="store_true", help="speed section only")
    parser.add_argument("--out", type=Path, help="run folders (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = [m.strip() for m in args.models.split(",")]
    peer_models = {m.strip() for m in args.peer_models.split(",")}
    tasks = ["walker2d", "plane-vibration"] if args.task == "both" else [args.task]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for task_name in tasks:
            seconds = speed(task_name, models, args, peer_models)
            if not args.skip_training:
                accuracy(task_name, models, args, out, seconds)


if __name__ == "__main__":
    main()
