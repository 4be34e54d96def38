"""Plane vibration (F-16 ground vibration test) and Silverbox records, folder `plane_vibration`.

Both CSVs come from the HeavyBallNODE repository (`data/pv.csv`, `data/sb.csv`). `plane_vibration_windows`
is that repository's preprocessing (`pvdat.py`, used by `trainpv.py` with 64 inputs and an 8-step forecast).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ._files import DataIntegrityError, resolve_data_dir, verify_checksums

__all__ = ["load_plane_vibration", "load_silverbox", "plane_vibration_windows"]

SPLITS = ("train", "val", "test")
# pvdat.py never samples the last 100 time indices, so that every forecast stays inside the record.
FORECAST_RESERVE = 100


def _read_columns(name: str, file: str, columns: int, rows: int, data_dir: str | Path | None) -> np.ndarray:
    """The first `columns` columns of a headed CSV in the `plane_vibration` folder, checked to be [rows, columns]."""
    folder = resolve_data_dir("plane_vibration", data_dir)
    verify_checksums(folder, [file])
    try:
        data = np.loadtxt(folder / file, delimiter=",", skiprows=1, usecols=range(columns), dtype=np.float64)
    except ValueError as error:
        raise DataIntegrityError(folder / file, f"cannot parse as CSV ({error})") from None
    if data.shape != (rows, columns) or not np.isfinite(data).all():
        raise DataIntegrityError(
            folder / file, f"expected {rows} finite rows of {columns} {name} columns, got shape {data.shape}"
        )
    return data


def load_plane_vibration(data_dir: str | Path | None = None) -> np.ndarray:
    """The F-16 vibration record `pv.csv` as float64 [73728, 5]: Force, Voltage, Acceleration1-3 (raw units).

    Read as HeavyBallNODE does (`genfromtxt(...)[1:, :-2]`): header skipped, the Fs column and the empty
    trailing column dropped. Sampled at 400 Hz.
    """
    return _read_columns("plane-vibration", "pv.csv", 5, 73728, data_dir)


def load_silverbox(data_dir: str | Path | None = None) -> np.ndarray:
    """The Silverbox record `sb.csv` as float64 [131072, 2]: V1 (input), V2 (output), raw units."""
    return _read_columns("Silverbox", "sb.csv", 2, 131072, data_dir)


def plane_vibration_windows(
    data: np.ndarray,
    *,
    seq_len: int = 64,
    forecast: int = 8,
    drop_frac: float = 0.1,
    seed: int = 1,
    split: str = "contiguous",
) -> dict[str, dict[str, torch.Tensor]]:
    """Irregularly sampled windows of a [T, C] record, split into train/val/test as HeavyBallNODE does.

    Steps (`pvdat.py`): z-score every column with the whole record's mean and std; keep a random sorted
    `1 - drop_frac` fraction of the time indices 0 .. T-101 (the rest are "thrown out"); split the kept
    indices 2:1:1; cut each part into consecutive, non-overlapping runs of `seq_len + 1` kept indices.
    With `split="contiguous"` (the original) the 2:1:1 split is of the sorted indices, so train is the
    first half of the record in time, val the next quarter, test the last quarter. With `split="shuffled"`
    (not in the original) the runs are cut from all kept indices and dealt to the splits 2:1:1 by a
    seeded permutation. `seed=1` with the default arguments reproduces the original index set exactly.

    Each split is a dict of tensors, N windows, window i built from kept indices k_0 < ... < k_L (L = seq_len):
      x        float32 [N, L, C]  inputs, the samples at k_0 .. k_{L-1}
      y        float32 [N, L, C]  one-step targets, the samples at k_1 .. k_L (the next kept sample)
      dt       float32 [N, L]     gaps k_{j+1} - k_j, in samples (>= 1; 1 sample = 1/400 s for pv.csv)
      forecast float32 [N, F, C]  the raw samples k_L, k_L + 1, ..., k_L + F - 1 (unit gaps; forecast[:, 0] == y[:, -1])
      index    int64   [N, L+1]   the kept indices k_0 .. k_L
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or len(data) <= FORECAST_RESERVE:
        raise ValueError(f"data must be [T, C] with T > {FORECAST_RESERVE}, got shape {data.shape}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if not 1 <= forecast <= FORECAST_RESERVE:
        raise ValueError(f"forecast must be in [1, {FORECAST_RESERVE}], got {forecast}")
    if not 0.0 <= drop_frac < 1.0:
        raise ValueError(f"drop_frac must be in [0, 1), got {drop_frac}")
    if split not in ("contiguous", "shuffled"):
        raise ValueError(f"split must be 'contiguous' or 'shuffled', got {split!r}")

    rng = np.random.RandomState(seed)
    data = (data - data.mean(axis=0)) / data.std(axis=0)
    rng.standard_normal(data.shape)  # pvdat.py adds error_var * noise (error_var = 0) before sampling
    full_len = len(data) - FORECAST_RESERVE
    kept = np.sort(rng.choice(full_len, int(full_len * (1 - drop_frac)), replace=False))

    run = seq_len + 1
    if split == "contiguous":
        n_train, n_val = (np.array([2, 1]) / 4 * len(kept)).astype(int)
        parts = np.split(kept, [n_train, n_train + n_val])
        runs = [part[: len(part) // run * run].reshape(-1, run) for part in parts]
    else:
        all_runs = kept[: len(kept) // run * run].reshape(-1, run)
        n_train, n_val = (np.array([2, 1]) / 4 * len(all_runs)).astype(int)
        runs = np.split(all_runs[rng.permutation(len(all_runs))], [n_train, n_train + n_val])

    def windows(index: np.ndarray) -> dict[str, torch.Tensor]:
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return {
            "x": as_tensor(data[index[:, :-1]]),
            "y": as_tensor(data[index[:, 1:]]),
            "dt": as_tensor(np.diff(index, axis=1)),
            "forecast": as_tensor(data[index[:, -1:] + np.arange(forecast)]),
            "index": torch.from_numpy(index.astype(np.int64)),
        }

    return {name: windows(index) for name, index in zip(SPLITS, runs)}
