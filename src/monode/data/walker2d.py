"""Walker2d kinematic rollouts (ODE-LSTM data set of Lechner & Hasani), folder `walker2d`.

`<folder>/walker/rollout_000.npy .. rollout_399.npy`: float64 [T, 17] (qpos[1:] then clipped qvel),
T between 131 and 1000. `walker2d_windows` is the preprocessing of the ODE-LSTM `Walker2dImitationData`
class, which HeavyBallNODE (`odelstm_data.py`) and NesterovNODE reuse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ._files import DataIntegrityError, resolve_data_dir, verify_checksums

__all__ = ["load_walker2d_rollouts", "walker2d_windows"]

N_ROLLOUTS, N_FEATURES = 400, 17
FILES = tuple(f"walker/rollout_{i:03d}.npy" for i in range(N_ROLLOUTS))
# The seeds of Walker2dImitationData: its file shuffle and its per-step drop draws.
ORIGINAL_SHUFFLE_SEED, ORIGINAL_DROP_SEED = 125487, 891374


def load_walker2d_rollouts(data_dir: str | Path | None = None) -> list[np.ndarray]:
    """The 400 rollouts, in file-name order, each float64 [T, 17]; all checksums are verified first."""
    folder = resolve_data_dir("walker2d", data_dir)
    verify_checksums(folder, FILES)
    rollouts = []
    for name in FILES:
        try:
            rollout = np.load(folder / name, allow_pickle=False)
        except ValueError as error:
            raise DataIntegrityError(folder / name, f"not a plain .npy array ({error})") from None
        if rollout.ndim != 2 or rollout.shape[1] != N_FEATURES or len(rollout) < 2:
            raise DataIntegrityError(folder / name, f"expected shape [T >= 2, {N_FEATURES}], got {rollout.shape}")
        rollouts.append(rollout)
    return rollouts


def walker2d_windows(
    rollouts: list[np.ndarray], *, seq_len: int = 64, stride: int = 16, drop_prob: float = 0.1, seed: int | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """Irregularly sampled windows of the rollouts, split by file into train/val/test (75/10/15 %).

    The exact `Walker2dImitationData` protocol (ODE-LSTM, reused by HeavyBallNODE):
      1. Shuffle the files (seeded); the first 15 % are test, the next 10 % val, the rest train
         (400 files: 60 / 40 / 300).
      2. Per rollout r [T, 17], input/target pairs (x_t, y_t) = (r[t], r[t + 1]) for t = 0 .. T-2;
         the target is always the raw next step, whether or not that step is itself kept.
      3. Each pair is dropped with probability `drop_prob`, per step (train files first, then val, test).
         dt of a kept pair = number of steps since the previous kept pair (for the first: its t + 1),
         so dt >= 1 and its mean is about 1 / (1 - drop_prob).
      4. Windows of `seq_len` consecutive kept pairs start at 0, stride, 2 stride, ... < n_kept - seq_len
         (the original's range; a rollout contributes only if it keeps more than `seq_len` pairs).

    `seed=None` uses the original seeds (125487 for the shuffle, 891374 for the drops), which reproduces
    the published split and drops; an int seeds both (shuffle: `seed`, drops: `seed + 1`).
    Returns per split a dict of tensors: `x` float32 [N, seq_len, 17] inputs, `dt` float32 [N, seq_len] gaps
    in raw steps (the reference models divide them by 64), `y` float32 [N, seq_len, 17] targets, and
    `file` int64 [N], the index in `rollouts` of each window's rollout.
    """
    if seq_len < 1 or stride < 1:
        raise ValueError(f"seq_len and stride must be >= 1, got seq_len={seq_len}, stride={stride}")
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
    order = np.arange(len(rollouts))
    np.random.RandomState(ORIGINAL_SHUFFLE_SEED if seed is None else seed).shuffle(order)
    drop_rng = np.random.RandomState(ORIGINAL_DROP_SEED if seed is None else seed + 1)
    n_test, n_test_val = int(0.15 * len(order)), int(0.25 * len(order))
    split_files = {"train": order[n_test_val:], "val": order[n_test:n_test_val], "test": order[:n_test]}
    if min(n_test, n_test_val - n_test, len(order) - n_test_val) == 0:
        raise ValueError(f"rollouts must hold enough files for a 75/10/15 % split (>= 10), got {len(rollouts)}")

    out = {}
    for name, files in split_files.items():  # train first: the drop draws follow the original order
        xs, dts, ys, sources = [], [], [], []
        for i in files:
            rollout = np.asarray(rollouts[i], dtype=np.float32)
            kept = np.flatnonzero(drop_rng.rand(len(rollout) - 1) < 1.0 - drop_prob)
            dt = np.diff(kept, prepend=-1)
            starts = np.arange(0, len(kept) - seq_len, stride)
            window = starts[:, None] + np.arange(seq_len)  # [windows, seq_len] positions in the kept sequence
            xs.append(rollout[kept[window]])
            ys.append(rollout[kept[window] + 1])
            dts.append(dt[window].astype(np.float32))
            sources.append(np.full(len(starts), i, dtype=np.int64))
        out[name] = {
            key: torch.from_numpy(np.concatenate(parts))
            for key, parts in (("x", xs), ("dt", dts), ("y", ys), ("file", sources))
        }
    return out
