"""MNIST from the original gzipped IDX files (LeCun, Cortes & Burges), folder `mnist`."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from ._files import DataIntegrityError, resolve_data_dir, verify_checksums

__all__ = ["load_mnist"]

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# The published md5s of the original files: the check used when the folder has no SHA256SUMS.
PUBLISHED_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """The uint8 array of a gzipped IDX file, after checking its magic number and dimensions."""
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        raise DataIntegrityError(path, f"not a valid gzip file ({error})") from None
    header_len = 4 * (1 + ndim)
    if len(raw) < header_len:
        raise DataIntegrityError(path, f"IDX file too short ({len(raw)} bytes)")
    header = np.frombuffer(raw, dtype=">i4", count=1 + ndim)
    if header[0] != magic:
        raise DataIntegrityError(path, f"IDX magic number is {header[0]}, expected {magic}")
    shape = tuple(int(d) for d in header[1:])
    if len(raw) - header_len != int(np.prod(shape)):
        raise DataIntegrityError(
            path, f"IDX dimensions {shape} need {int(np.prod(shape))} bytes of data, found {len(raw) - header_len}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(shape)


def load_mnist(
    data_dir: str | Path | None = None, split: str = "train", subset: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST `split` ("train": 60000, "test": 10000) as (images float32 [N, 1, 28, 28] in [0, 1], labels int64 [N]).

    Checksums are verified before parsing. `subset` keeps the first `subset` examples (deterministic).
    Pixels are only scaled by 1/255, as the reference code does (no mean/std normalisation).
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, got {split!r}")
    if subset is not None and subset < 0:
        raise ValueError(f"subset must be None or >= 0, got {subset}")
    folder = resolve_data_dir("mnist", data_dir)
    verify_checksums(folder, FILES[split], fallback=PUBLISHED_MD5, fallback_algorithm="md5")
    image_file, label_file = (folder / name for name in FILES[split])
    images = read_idx(image_file, IMAGE_MAGIC, ndim=3)
    labels = read_idx(label_file, LABEL_MAGIC, ndim=1)
    if len(images) != len(labels):
        raise DataIntegrityError(label_file, f"{len(labels)} labels for {len(images)} images in {image_file.name}")
    images, labels = images[:subset], labels[:subset]
    return (torch.from_numpy(images.astype(np.float32)[:, None] / 255.0), torch.from_numpy(labels.astype(np.int64)))
