"""Build any monode model by name, run one batch forward and backward, print its NFE.

python docs/demo_models.py                 # every model
python docs/demo_models.py --model hbnode --batch 64
"""

from __future__ import annotations

import argparse

import torch

from monode.dynamics import MODELS, build_initializer, build_model
from monode.layers import ODEBlock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", choices=sorted(MODELS), action="append", help="model name (repeatable; default: all)"
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dim", type=int, default=8, help="channels of h")
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    x = torch.randn(args.batch, 2)  # a batch of 2-D points
    print(f"{'model':<14} {'h(T) shape':<12} {'forward NFE':>11} {'backward NFE':>12}")
    for name in args.model or MODELS:
        field = build_model(name, dim=args.dim, hidden=32)  # f: 3-layer tanh MLP, the paper defaults
        init = build_initializer(name, in_channels=2, dim=args.dim, hidden=16, conv=False)
        block = ODEBlock(field, init, rtol=args.tol, atol=args.tol)
        h = block(x)
        h.pow(2).mean().backward()
        stats = block.last_stats
        print(f"{name:<14} {str(tuple(h.shape)):<12} {stats.forward_nfe:>11} {stats.backward_nfe:>12}")


if __name__ == "__main__":
    main()
