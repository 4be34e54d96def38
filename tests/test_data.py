"""monode.data against the real shared data (found by resolve_data_dir with no arguments) and tiny fakes."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from monode.data import (
    DataIntegrityError,
    DataNotFoundError,
    load_cifar10,
    load_mnist,
    load_physionet,
    load_plane_vibration,
    load_silverbox,
    load_walker2d_rollouts,
    physionet_tensors,
    plane_vibration_windows,
    resolve_data_dir,
    walker2d_windows,
    write_cifar10_like,
)
from monode.data import physionet as physionet_module
from monode.data._files import file_digest

MNIST_TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def copy_files(source: Path, target: Path, names: list[str], with_sums: bool = True) -> Path:
    """Writable copies of `names` (and SHA256SUMS) from `source` in `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names + (["SHA256SUMS"] if with_sums else []):
        shutil.copyfile(source / name, target / name)
        os.chmod(target / name, stat.S_IRUSR | stat.S_IWUSR)
    return target


def write_sums(folder: Path, names: list[str]) -> None:
    (folder / "SHA256SUMS").write_text("".join(f"{file_digest(folder / n)}  {n}\n" for n in names))


def flip_byte(path: Path, offset: int = 100) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


# ---------------------------------------------------------------- folders and checksums


@pytest.mark.data("mnist")
def test_resolve_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv("MONODE_DATA_DIR", raising=False)
    default = resolve_data_dir("mnist")
    assert (default / "SHA256SUMS").is_file() and default.name == "mnist"
    (tmp_path / "mnist").mkdir()
    assert resolve_data_dir("mnist", tmp_path) == tmp_path / "mnist"  # a data root
    assert resolve_data_dir("mnist", tmp_path / "mnist") == tmp_path / "mnist"  # the folder itself
    monkeypatch.setenv("MONODE_DATA_DIR", str(tmp_path))
    assert resolve_data_dir("mnist") == tmp_path / "mnist"
    assert resolve_data_dir("mnist", default) == default  # the argument beats the variable


def test_missing_folder_names_expected_files(tmp_path):
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte.gz") as info:
        load_mnist(tmp_path / "nowhere", split="test")
    assert isinstance(info.value, FileNotFoundError)
    assert "t10k-labels-idx1-ubyte.gz" in str(info.value) and "MONODE_DATA_DIR" in str(info.value)
    assert str(tmp_path / "nowhere") in str(info.value)


# ---------------------------------------------------------------- MNIST


@pytest.mark.data("mnist")
def test_mnist_real():
    images, labels = load_mnist(split="train")
    assert images.shape == (60000, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert images.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert 0.0 <= images.min().item() and images.max().item() == 1.0
    test_images, test_labels = load_mnist(split="test", subset=100)
    assert test_images.shape == (100, 1, 28, 28) and test_labels.shape == (100,)
    assert torch.equal(test_labels, load_mnist(split="test")[1][:100])


@pytest.mark.data("mnist")
def test_mnist_corrupted_copy_fails_checksum(tmp_path):
    folder = copy_files(resolve_data_dir("mnist"), tmp_path / "mnist", list(MNIST_TEST))
    assert load_mnist(tmp_path, split="test")[0].shape == (10000, 1, 28, 28)
    flip_byte(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataIntegrityError, match="t10k-labels-idx1-ubyte.gz.*sha256 mismatch"):
        load_mnist(folder, split="test")


@pytest.mark.data("mnist")
def test_mnist_published_md5_without_sums_and_bad_magic(tmp_path):
    folder = copy_files(resolve_data_dir("mnist"), tmp_path, list(MNIST_TEST), with_sums=False)
    assert load_mnist(folder, split="test", subset=5)[1].shape == (5,)  # checked against the published md5s
    raw = bytearray(gzip.decompress((folder / MNIST_TEST[1]).read_bytes()))
    raw[3] = 0x02  # magic 2049 -> 2050
    (folder / MNIST_TEST[1]).write_bytes(gzip.compress(bytes(raw)))
    write_sums(folder, list(MNIST_TEST))
    with pytest.raises(DataIntegrityError, match="magic number is 2050, expected 2049"):
        load_mnist(folder, split="test")


# ---------------------------------------------------------------- CIFAR-10 (generated tiny set)


def test_cifar10_like_round_trip(tmp_path):
    write_cifar10_like(tmp_path, n_train=23, n_test=7, seed=3)
    images, labels = load_cifar10(tmp_path, split="train")
    assert images.shape == (23, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (23,)
    batches = [pickle.loads((tmp_path / "cifar-10-batches-py" / f"data_batch_{i}").read_bytes()) for i in range(1, 6)]
    assert [len(b[b"labels"]) for b in batches] == [5, 5, 5, 4, 4]
    assert labels.tolist() == [label for b in batches for label in b[b"labels"]]
    raw = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
    assert torch.equal(images, torch.from_numpy(raw.astype(np.float32) / 255.0))
    test_images, test_labels = load_cifar10(tmp_path, split="test")
    assert test_images.shape == (7, 3, 32, 32) and test_labels.shape == (7,)
    assert torch.equal(load_cifar10(tmp_path, split="train", subset=6)[1], labels[:6])


def test_cifar10_tampered_batch_fails_checksum(tmp_path):
    write_cifar10_like(tmp_path, n_train=10, n_test=2)
    flip_byte(tmp_path / "cifar-10-batches-py" / "data_batch_2", offset=-10)
    with pytest.raises(DataIntegrityError, match="data_batch_2"):
        load_cifar10(tmp_path, split="train")
    assert load_cifar10(tmp_path, split="test")[0].shape == (2, 3, 32, 32)  # other files still load


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar10_refuses_malicious_pickle(tmp_path):
    write_cifar10_like(tmp_path, n_train=5, n_test=1)
    marker = tmp_path / "exploited"
    evil = tmp_path / "cifar-10-batches-py" / "test_batch"
    evil.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": [0]}))
    write_sums(tmp_path, ["cifar-10-batches-py/test_batch"])  # the checksum passes: only the unpickler guards
    with pytest.raises(DataIntegrityError, match="refusing"):
        load_cifar10(tmp_path, split="test")
    assert not marker.exists()


# ---------------------------------------------------------------- plane vibration and Silverbox


@pytest.mark.data("plane_vibration")
def test_plane_vibration_and_silverbox():
    data = load_plane_vibration()
    assert data.shape == (73728, 5) and data.dtype == np.float64 and not np.isnan(data).any()
    assert load_silverbox().shape == (131072, 2)


@pytest.mark.parametrize("split", ["contiguous", "shuffled"])
@pytest.mark.data("plane_vibration")
def test_plane_vibration_windows(split):
    windows = plane_vibration_windows(load_plane_vibration(), split=split)
    counts = {name: len(part["x"]) for name, part in windows.items()}
    assert counts["train"] == pytest.approx(2 * counts["val"], abs=3) and abs(counts["val"] - counts["test"]) <= 3
    indices = [set(part["index"].flatten().tolist()) for part in windows.values()]
    assert all(not (a & b) for i, a in enumerate(indices) for b in indices[i + 1 :])  # splits share no sample
    for part in windows.values():
        n = len(part["x"])
        assert part["x"].shape == part["y"].shape == (n, 64, 5) and part["dt"].shape == (n, 64)
        assert part["forecast"].shape == (n, 8, 5) and part["index"].shape == (n, 65)
        assert (part["dt"] >= 1).all() and torch.equal(part["dt"], part["index"].diff(dim=1).float())
        assert torch.equal(part["forecast"][:, 0], part["y"][:, -1])
        assert torch.equal(part["x"][:, 1:], part["y"][:, :-1])
    train = windows["train"]["x"].reshape(-1, 5)
    assert train.mean(0).abs().max() < 0.1 and (train.std(0) - 1).abs().max() < 0.1
    assert windows["train"]["dt"].mean().item() == pytest.approx(1 / 0.9, abs=0.02)


# ---------------------------------------------------------------- Walker2d


@pytest.mark.data("walker2d")
def test_walker2d():
    rollouts = load_walker2d_rollouts()
    assert len(rollouts) == 400 and sum(len(r) for r in rollouts) == 254963
    assert all(r.shape[1] == 17 and r.dtype == np.float64 for r in rollouts)
    windows = walker2d_windows(rollouts)
    files = {name: set(part["file"].tolist()) for name, part in windows.items()}
    assert [len(files[name]) for name in ("train", "val", "test")] == [300, 40, 60]
    assert (
        not (files["train"] & files["val"])
        and not (files["train"] & files["test"])
        and not (files["val"] & files["test"])
    )
    for part in windows.values():
        n = len(part["x"])
        assert part["x"].shape == part["y"].shape == (n, 64, 17) and part["dt"].shape == (n, 64)
        assert (part["dt"] >= 1).all()
        consecutive = part["dt"][:, 1:] == 1  # the next input is the raw next step, i.e. this target
        assert torch.equal(part["x"][:, 1:][consecutive], part["y"][:, :-1][consecutive])
    all_dt = torch.cat([part["dt"].flatten() for part in windows.values()])
    assert all_dt.mean().item() == pytest.approx(1 / 0.9, abs=0.01)
    other = walker2d_windows(rollouts, seed=5)
    assert set(other["test"]["file"].tolist()) != files["test"]


# ---------------------------------------------------------------- PhysioNet 2012


@pytest.fixture(scope="module")
def physionet_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("physionet_cache")
    return cache, load_physionet(cache_dir=cache)


@pytest.mark.data("physionet2012")
def test_physionet_records(physionet_cache):
    _, records = physionet_cache
    set_a, set_b = records[:4000], records[4000:]
    assert len(records) == 8000
    assert sum(r.label for r in set_a) == 554 and sum(r.label for r in set_b) == 568
    assert len({r.record_id for r in records}) == 8000
    times = torch.cat([r.times for r in records])
    assert times.min() >= 0 and times.max() <= 48
    for r in records[::97]:
        assert r.times[0] == 0 and (r.times.diff() > 0).all()
        assert r.values.shape == r.mask.shape == (len(r.times), 41)
        assert (r.values[r.mask == 0] == 0).all() and (r.mask.sum(1)[1:] >= 1).all()
        assert r.static[0] == r.record_id
    first = records[0]  # set-a/132539.txt: Age 54 at 00:00, Height -1 (unknown), HR 73 at 00:07
    assert first.record_id == 132539 and first.static[1] == 54 and torch.isnan(first.static[3])
    assert first.values[0, 0] == 54 and first.mask[0, 2] == 0
    assert first.times[1] == pytest.approx(7 / 60) and first.values[1, 19] == 73


@pytest.mark.data("physionet2012")
def test_physionet_cache_round_trip(physionet_cache, monkeypatch, tmp_path):
    cache, records = physionet_cache
    assert len(list(cache.glob("*.pt"))) == 1
    monkeypatch.setattr(physionet_module, "_build", lambda *args: pytest.fail("cache was not used"))
    again = load_physionet(cache_dir=cache)
    assert all(
        a.record_id == b.record_id
        and torch.equal(a.values, b.values)
        and torch.equal(a.mask, b.mask)
        and torch.equal(a.times, b.times)
        and a.label == b.label
        for a, b in zip(records, again)
    )
    monkeypatch.undo()
    small = tmp_path / "cache"
    load_physionet(sets=("b",), cache_dir=small, quantization=1.0)
    (cached,) = small.glob("*.pt")
    cached.write_bytes(b"not a torch file")
    rebuilt = load_physionet(sets=("b",), cache_dir=small, quantization=1.0)
    assert len(rebuilt) == 4000 and sum(r.label for r in rebuilt) == 568
    assert all(float(t) == round(float(t)) for t in rebuilt[0].times)  # quantized to whole hours
    assert torch.load(cached, weights_only=True)["lengths"].shape == (4000,)  # rewritten, loadable


@pytest.mark.data("physionet2012")
def test_physionet_tensors(physionet_cache):
    _, records = physionet_cache
    batch = physionet_tensors(records[:300])
    n, t_max = 300, max(len(r.times) for r in records[:300])
    assert batch["times"].shape == (n, t_max) and batch["values"].shape == batch["mask"].shape == (n, t_max, 41)
    assert batch["lengths"].tolist() == [len(r.times) for r in records[:300]]
    observed = batch["values"][batch["mask"] > 0]
    assert observed.min() >= 0 and observed.max() <= 1
    assert (batch["values"][batch["mask"] == 0] == 0).all()
    zscored = physionet_tensors(records[:300], normalize="zscore")
    assert zscored["values"][zscored["mask"] > 0].mean().abs() < 0.05
    assert batch["labels"].dtype == torch.int64 and batch["static"].shape == (n, 5)
