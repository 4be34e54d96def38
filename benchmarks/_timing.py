"""Shared timing helpers for the benchmark scripts (median of repeated wall-clock runs)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_time(
    fn: Callable[[], object],
    repeat: int = 7,
    warmup: int = 2,
    min_time: float = 0.0,
    sync: Callable[[], object] = lambda: None,
) -> float:
    """Median wall time of fn() in seconds over `repeat` runs (each run repeated until min_time); `sync`
    after each call waits for the device (torch.cuda.synchronize on CUDA)."""
    for _ in range(warmup):
        fn()
    sync()
    samples = []
    for _ in range(repeat):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            sync()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        samples.append(elapsed / n)
    return statistics.median(samples)


def paired_times(
    fns: list[Callable[[], object]], repeat: int = 7, warmup: int = 1, sync: Callable[[], object] = lambda: None
) -> list[list[float]]:
    """Wall times of each fn in seconds, `repeat` samples each, taken in rounds (each round runs every fn once,
    in an order rotated per round), so that a machine whose speed drifts biases none of them: compare per-round
    differences or ratios, not separately measured medians."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync()
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(repeat):
        for i in [(r + j) % len(fns) for j in range(len(fns))]:
            start = time.perf_counter()
            fns[i]()
            sync()
            samples[i].append(time.perf_counter() - start)
    return samples


def print_table(headers: list[str], rows: list[list[object]]) -> str:
    """Print (and return) a GitHub-markdown table."""
    cells = [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text
