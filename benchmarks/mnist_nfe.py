"""MNIST: accuracy, forward/backward NFE and time per epoch of every model, beside the HBNODE authors' logs.

Trains each model with the `mnist` task (the papers' classifier, dopri5 with the adjoint) on a subset
of the real MNIST training set and tests on a subset of the test set. The peer is NODE trained in the
same run: the table gives each model's NFE and time as a ratio to NODE's, next to the same ratios in
the authors' logs (papers.md section 7.2: full data, 40 epochs, tol 1e-4, GPU). Absolute NFE depend on
the tolerance and on how far training has gone (they grow over training), so compare the ratios.

    python benchmarks/mnist_nfe.py [--subset 512] [--epochs 2] [--tol 1e-4] [--models node,hbnode]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _timing import print_table
from monode.tasks import TASKS, RunOptions

MODELS = ("node", "anode", "sonode", "hbnode", "ghbnode", "adamnode", "nesterovnode", "gnesterovnode")
# papers.md 7.2: mean over 40 epochs of per-batch train NFE (forward, backward), s/epoch, test accuracy @40.
PAPER = {
    "node": (67.4, 135.9, 754, 0.9694),
    "anode": (36.1, 48.3, 244, 0.9813),
    "sonode": (41.8, 44.4, 234, 0.9815),
    "hbnode": (31.3, 34.6, 200, 0.9794),
    "ghbnode": (34.3, 42.7, 230, 0.9821),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--subset", type=int, default=512, help="training images (default 512)")
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tol", type=float, default=1e-4, help="rtol = atol (the HBNODE paper's 1e-4)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = p.parse_args()
    models = [m.strip() for m in args.models.split(",")]
    task = TASKS["mnist"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for model in models:
            print(f"== {model}", flush=True)
            opts = RunOptions(
                model=model,
                subset=args.subset,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                rtol=args.tol,
                atol=args.tol,
                method="dopri5",
                adjoint=True,
                progress=False,
                device=args.device,
                overrides={"test_subset": args.test_subset},
            )
            rows, params = task.run(opts, out / model)
            mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
            results[model] = dict(
                params=params,
                acc=rows[-1]["eval_accuracy"],
                fwd=mean("train_forward_nfe"),
                bwd=mean("train_backward_nfe"),
                sec=mean("seconds"),
            )
    ref = results.get("node")
    table = []
    for model, r in results.items():
        paper = PAPER.get(model)
        ratio = (lambda k: r[k] / ref[k]) if ref else (lambda k: float("nan"))
        table.append(
            [
                model,
                r["params"],
                r["acc"],
                r["fwd"],
                r["bwd"],
                r["sec"],
                ratio("fwd"),
                ratio("bwd"),
                ratio("sec"),
                *(
                    ("-",) * 4
                    if paper is None
                    else (
                        paper[3],
                        paper[0] / PAPER["node"][0],
                        paper[1] / PAPER["node"][1],
                        paper[2] / PAPER["node"][2],
                    )
                ),
            ]
        )
    print(
        f"\nMNIST, {args.subset} training / {args.test_subset} test images, {args.epochs} epochs, batch "
        f"{args.batch_size}, lr {args.lr}, dopri5 tol {args.tol}, adjoint. Ratios are to NODE of this run; "
        f"paper columns: papers.md 7.2 (60k images, 40 epochs)."
    )
    print_table(
        [
            "model",
            "params",
            "test acc",
            "fwd NFE",
            "bwd NFE",
            "s/epoch",
            "fwd/NODE",
            "bwd/NODE",
            "time/NODE",
            "paper acc",
            "paper fwd/NODE",
            "paper bwd/NODE",
            "paper time/NODE",
        ],
        table,
    )


if __name__ == "__main__":
    main()
