"""CIFAR-10 from the official "CIFAR-10 python version" batches, folder `cifar10`.

Layout: `<folder>/cifar-10-batches-py/{data_batch_1..5, test_batch}` (the tarball's own folder), each a
pickled dict with b"data" (uint8 [N, 3072], channel-major) and b"labels" (list of int). `data_dir` may
also point at `cifar-10-batches-py` itself. The pickles are read with an unpickler that can only build
numpy arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ._files import CHECKSUM_FILE, DataIntegrityError, file_digest, resolve_data_dir, verify_checksums

__all__ = ["load_cifar10", "write_cifar10_like"]

BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
# Published md5s of the official python batches: the check used when the folder has no SHA256SUMS.
PUBLISHED_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
LABEL_NAMES = (b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck")


def _reconstruct() -> Any:
    """numpy's array-unpickling helper, wherever this numpy version keeps it."""
    try:
        from numpy._core.multiarray import _reconstruct as helper  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct as helper  # type: ignore[no-redef]
    return helper


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global raises `DataIntegrityError`."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def __init__(self, file: BinaryIO, path: Path):
        super().__init__(file, encoding="bytes")  # the official batches are Python 2 pickles
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise DataIntegrityError(
                self.path, f"pickle refers to {module}.{name}, which a CIFAR-10 batch never needs; refusing to load it"
            )
        return self.ALLOWED[module, name]()


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, 3, 32, 32], int64 [N]) of one batch file, unpickled with `NumpyOnlyUnpickler`."""
    with open(path, "rb") as f:
        try:
            batch = NumpyOnlyUnpickler(f, path).load()
        except DataIntegrityError:
            raise
        except Exception as error:  # a damaged pickle can fail in many ways; report them all alike
            raise DataIntegrityError(path, f"not a readable CIFAR-10 batch ({error!r})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataIntegrityError(path, "not a CIFAR-10 batch: expected a dict with b'data' and b'labels'")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"], dtype=np.int64)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or len(data) != len(labels)
    ):
        raise DataIntegrityError(
            path,
            f"b'data' must be uint8 [N, 3072] with N = {len(labels)} labels, "
            f"got {getattr(data, 'dtype', type(data))} {getattr(data, 'shape', '')}",
        )
    return data.reshape(-1, 3, 32, 32), labels


def _batch_prefix(folder: Path) -> str:
    """The batches' path relative to `folder`: "cifar-10-batches-py/" unless `folder` is that folder."""
    return "" if (folder / TEST_BATCHES[0]).is_file() or (folder / TRAIN_BATCHES[0]).is_file() else BATCH_DIR + "/"


def load_cifar10(
    data_dir: str | Path | None = None, split: str = "train", subset: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 `split` ("train": 50000, "test": 10000) as (images float32 [N, 3, 32, 32] in [0, 1], labels int64 [N]).

    Checksums are verified first: against `SHA256SUMS` in the folder when there is one, otherwise against
    the published md5s of the official batches. `subset` keeps the first `subset` examples (batches in
    order 1..5). Pixels are only scaled by 1/255 (no normalisation, no augmentation).
    """
    batches = {"train": TRAIN_BATCHES, "test": TEST_BATCHES}.get(split)
    if batches is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if subset is not None and subset < 0:
        raise ValueError(f"subset must be None or >= 0, got {subset}")
    folder = resolve_data_dir("cifar10", data_dir)
    prefix = _batch_prefix(folder)
    names = [prefix + batch for batch in batches]
    verify_checksums(folder, names, fallback={prefix + k: v for k, v in PUBLISHED_MD5.items()})
    images, labels, count = [], [], 0
    for name in names:
        if subset is not None and count >= subset:
            break
        batch_images, batch_labels = read_batch(folder / name)
        images.append(batch_images)
        labels.append(batch_labels)
        count += len(batch_labels)
    images_np, labels_np = np.concatenate(images)[:subset], np.concatenate(labels)[:subset]
    return torch.from_numpy(images_np.astype(np.float32) / 255.0), torch.from_numpy(labels_np)


def write_cifar10_like(folder: str | Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write a tiny random data set in the exact CIFAR-10 python layout, plus its SHA256SUMS.

    For tests and examples only (random pixels and labels). The train images are spread over the five
    `data_batch_*` files as evenly as possible; `batches.meta` holds the label names. Pickles use protocol
    4 (the official files are Python 2 protocol-2 pickles; both load the same way). Returns `folder`,
    ready for `load_cifar10(folder, ...)`.
    """
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
    folder = Path(folder)
    (folder / BATCH_DIR).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = [len(part) for part in np.array_split(np.arange(n_train), len(TRAIN_BATCHES))] + [n_test]
    for index, (name, size) in enumerate(zip(TRAIN_BATCHES + TEST_BATCHES, sizes)):
        batch = {
            b"batch_label": f"{'testing' if name in TEST_BATCHES else 'training'} batch {index % 5 + 1} of 5".encode(),
            b"labels": [int(label) for label in rng.integers(0, 10, size)],
            b"data": rng.integers(0, 256, (size, 3 * 32 * 32), dtype=np.uint8),
            b"filenames": [f"image_{index}_{i}.png".encode() for i in range(size)],
        }
        (folder / BATCH_DIR / name).write_bytes(pickle.dumps(batch, protocol=4))
    meta = {b"num_cases_per_batch": max(sizes), b"label_names": list(LABEL_NAMES), b"num_vis": 3072}
    (folder / BATCH_DIR / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    names = [f"{BATCH_DIR}/{name}" for name in ("batches.meta", *TRAIN_BATCHES, *TEST_BATCHES)]
    lines = [f"{file_digest(folder / name)}  {name}\n" for name in names]
    (folder / CHECKSUM_FILE).write_text("".join(lines))
    return folder
