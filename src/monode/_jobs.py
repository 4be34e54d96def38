"""Several training runs at once, one process each (`monode compare --jobs N`).

Each run is the same `BenchmarkTask.run` a sequential comparison makes, in a fresh (spawned) process with
its output in `<out>/<model>.log`; so the metrics are those of a sequential run. The cores are shared
out (torch threads = cores // jobs); with several CUDA devices and `--device cuda`, job i runs on
cuda:(i mod count).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from .tasks import TASKS, RunOptions, RunResult

__all__ = ["run_parallel"]


def _run_one(task: str, opts: RunOptions, out: Path, threads: int, log: Path) -> RunResult:
    torch.set_num_threads(threads)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return TASKS[task].run(opts, out)


def run_parallel(
    task: str,
    runs: Sequence[tuple[str, RunOptions, Path]],
    jobs: int,
    done: Callable[[str, RunResult], None] = lambda name, result: None,
) -> dict[str, RunResult]:
    """Run each (name, options, folder) of `runs` with at most `jobs` at a time; `done(name, result)` as
    each finishes. The first failure cancels the runs not yet started and is raised."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // jobs)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    results: dict[str, RunResult] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {}
        for i, (name, opts, out) in enumerate(runs):
            if gpus > 1 and torch.device(opts.device).type == "cuda":
                opts = dataclasses.replace(opts, device=f"cuda:{i % gpus}")
            log = out.parent / f"{out.name}.log"
            futures[pool.submit(_run_one, task, opts, out, threads, log)] = name
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in finished:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()  # type: ignore[misc]
                results[futures[future]] = future.result()
                done(futures[future], results[futures[future]])
    return {name: results[name] for name, _, _ in runs}
