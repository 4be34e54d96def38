"""PhysioNet/CinC Challenge 2012 ICU records (sets A and B), folder `physionet2012`, in the Latent ODE layout.

Files: `set-{a,b}.tar.gz` (one `set-x/<RecordID>.txt` per stay: lines `HH:MM,Parameter,Value` over the
first 48 hours) and `Outcomes-{a,b}.txt` (`In-hospital_death` is the label). The tarballs are read as
streams, never extracted. Parsed records are cached as a `.pt` file keyed by the files' sha256.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ._files import DataIntegrityError, file_digest, resolve_data_dir, verify_checksums

__all__ = ["PARAMS", "STATIC", "PhysioNetRecord", "load_physionet", "physionet_feature_stats", "physionet_tensors"]

# The 41 feature columns, in the order of Latent ODE's `PhysioNet.params` (Rubanova et al. 2019).
PARAMS = (
    "Age",
    "Gender",
    "Height",
    "ICUType",
    "Weight",
    "Albumin",
    "ALP",
    "ALT",
    "AST",
    "Bilirubin",
    "BUN",
    "Cholesterol",
    "Creatinine",
    "DiasABP",
    "FiO2",
    "GCS",
    "Glucose",
    "HCO3",
    "HCT",
    "HR",
    "K",
    "Lactate",
    "Mg",
    "MAP",
    "MechVent",
    "Na",
    "NIDiasABP",
    "NIMAP",
    "NISysABP",
    "PaCO2",
    "PaO2",
    "pH",
    "Platelets",
    "RespRate",
    "SaO2",
    "SysABP",
    "Temp",
    "TroponinI",
    "TroponinT",
    "Urine",
    "WBC",
)
# The general descriptors recorded once at 00:00; -1 there means "not recorded".
STATIC = ("RecordID", "Age", "Gender", "Height", "ICUType")
DESCRIPTORS = ("Age", "Gender", "Height", "ICUType", "Weight")
HEADER = "Time,Parameter,Value"
CACHE_FORMAT = 1
_RECORD_ID = len(PARAMS)  # the code of the RecordID lines, past the feature codes


@dataclass(frozen=True)
class PhysioNetRecord:
    """One ICU stay; row j holds every observation made at `times[j]`.

    times  float32 [T]      hours since admission, increasing, times[0] == 0 (the descriptor row; 10 of
                            the 8000 stays have no other row)
    values float32 [T, 41]  feature values in `PARAMS` order, raw units, 0 where not observed
    mask   float32 [T, 41]  1 where observed
    static float32 [5]      `STATIC`: RecordID, Age, Gender, Height, ICUType; NaN where not recorded
    label  int              In-hospital_death (0 or 1)
    """

    record_id: int
    times: torch.Tensor
    values: torch.Tensor
    mask: torch.Tensor
    static: torch.Tensor
    label: int


def _read_set(tar_path: Path) -> tuple[list[int], str, list[int]]:
    """(record ids, the records' bodies joined, line count of each body) of one tarball, by record id."""
    bodies: dict[int, str] = {}
    with tarfile.open(tar_path, mode="r|gz") as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".txt")):
                continue
            stream = tar.extractfile(member)
            if stream is None:  # not a regular file
                continue
            header, _, body = stream.read().decode("ascii").partition("\n")
            if header.strip() != HEADER or not Path(member.name).stem.isdigit():
                raise DataIntegrityError(tar_path, f"{member.name} is not a record (header {header!r})")
            bodies[int(Path(member.name).stem)] = body if body.endswith("\n") or not body else body + "\n"
    ids = sorted(bodies)
    return ids, "".join(bodies[i] for i in ids), [bodies[i].count("\n") for i in ids]


def _parse_lines(text: str, n_lines: int, source: Path) -> np.ndarray:
    """float64 [n_lines, 4] of hours, minutes, parameter code, value, for `HH:MM,Parameter,Value` lines."""
    for code, name in enumerate((*PARAMS, "RecordID")):
        text = text.replace(f",{name},", f",{code},")
    with warnings.catch_warnings():  # numpy warns, then stops early, on text it cannot parse: checked below
        warnings.simplefilter("ignore", DeprecationWarning)
        flat = np.fromstring(text.replace(":", ",").replace("\n", ",").rstrip(","), sep=",")
    if flat.size != 4 * n_lines:
        bad = next(
            (
                line
                for line in text.splitlines()
                if len(line.replace(":", ",").split(",")) != 4 or not line.split(",")[1].isdigit()
            ),
            "?",
        )
        raise DataIntegrityError(source, f"unexpected record line {bad!r} (unknown parameter or bad format)")
    return flat.reshape(n_lines, 4)


def _parse_set(tar_path: Path, quantization: float | None) -> dict[str, torch.Tensor]:
    """All records of one tarball as flat tensors: per-record data, row times back to back, observed cells."""
    ids, text, counts = _read_set(tar_path)
    lines = _parse_lines(text, sum(counts), tar_path)
    hours, minutes, code, value = lines[:, 0], lines[:, 1], lines[:, 2].astype(np.int64), lines[:, 3]
    record = np.repeat(np.arange(len(ids)), counts)
    minute = (hours * 60 + minutes).astype(np.int64)
    # Rows: one per (record, time); with quantization, times are rounded to multiples of it (hours).
    tick = minute if not quantization else np.round(minute / 60.0 / quantization).astype(np.int64)
    row_key, row = np.unique(record * (1 << 32) + tick, return_inverse=True)
    row_tick = row_key % (1 << 32)
    row_times = row_tick / 60.0 if not quantization else row_tick * quantization
    lengths = np.bincount(row_key >> 32, minlength=len(ids))

    static = np.full((len(ids), len(STATIC)), np.nan)
    for column, name in enumerate(STATIC):
        line_code = _RECORD_ID if name == "RecordID" else PARAMS.index(name)
        at = (code == line_code) & (minute == 0) & (value >= 0)
        static[record[at], column] = value[at]
    if not np.array_equal(static[:, 0], ids):
        raise DataIntegrityError(tar_path, "a record's RecordID line differs from its file name")

    descriptor = np.isin(code, [PARAMS.index(name) for name in DESCRIPTORS])
    observed = (code < len(PARAMS)) & ~(descriptor & (minute == 0) & (value < 0))
    cell = row[observed] * len(PARAMS) + code[observed]
    n_cells = len(row_key) * len(PARAMS)
    count = np.bincount(cell, minlength=n_cells)
    total = np.bincount(cell, weights=value[observed], minlength=n_cells)
    cells = np.flatnonzero(count)
    return {
        "record_ids": torch.tensor(ids, dtype=torch.int64),
        "lengths": torch.from_numpy(lengths),
        "static": torch.from_numpy(static.astype(np.float32)),
        "times": torch.from_numpy(row_times.astype(np.float32)),
        "cells": torch.from_numpy(cells),  # row * 41 + feature of each observed entry
        "cell_values": torch.from_numpy((total[cells] / count[cells]).astype(np.float32)),
    }  # repeats averaged


def _read_labels(path: Path, record_ids: torch.Tensor) -> torch.Tensor:
    """In-hospital_death (int64 [N]) of `record_ids`, from an Outcomes file."""
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(0, 5), dtype=np.int64, ndmin=2)
    except ValueError as error:
        raise DataIntegrityError(path, f"cannot parse as an Outcomes table ({error})") from None
    death = dict(zip(table[:, 0].tolist(), table[:, 1].tolist()))
    missing = [i for i in record_ids.tolist() if i not in death]
    if missing:
        raise DataIntegrityError(path, f"no outcome for {len(missing)} records, e.g. RecordID {missing[0]}")
    return torch.tensor([death[i] for i in record_ids.tolist()], dtype=torch.int64)


def _build(folder: Path, sets: tuple[str, ...], quantization: float | None) -> dict[str, torch.Tensor]:
    """Parse the tarballs of `sets` and join their flat tensors and labels."""
    parts, rows = [], 0
    for name in tqdm(sets, desc="PhysioNet 2012: parsing (once; cached)", unit="set", disable=None, leave=False):
        part = _parse_set(folder / f"set-{name}.tar.gz", quantization)
        part["labels"] = _read_labels(folder / f"Outcomes-{name}.txt", part["record_ids"])
        part["cells"] += rows * len(PARAMS)
        rows += len(part["times"])
        parts.append(part)
    return {key: torch.cat([part[key] for part in parts]) for key in parts[0]}


def _load_cache(path: Path, key: str) -> dict[str, torch.Tensor] | None:
    """The cached tensors if `path` loads with `weights_only=True`, has `key` and consistent shapes."""
    try:
        blob = torch.load(path, weights_only=True)
        lengths = blob["lengths"]
        rows = int(lengths.sum())
        cells = blob["cells"]
        consistent = (
            blob["key"] == key
            and blob["times"].shape == (rows,)
            and cells.shape == blob["cell_values"].shape
            and cells.dtype == torch.int64
            and (len(cells) == 0 or 0 <= int(cells.min()) <= int(cells.max()) < rows * len(PARAMS))
            and len(blob["record_ids"]) == len(blob["labels"]) == len(blob["static"]) == len(lengths)
        )
    except Exception:  # a missing, truncated or foreign file: rebuild it
        return None
    return blob if consistent else None


def load_physionet(
    data_dir: str | Path | None = None,
    sets: tuple[str, ...] = ("a", "b"),
    cache_dir: str | Path | None = None,
    quantization: float | None = None,
) -> list[PhysioNetRecord]:
    """Every record of the PhysioNet 2012 `sets`, as a list of `PhysioNetRecord` (sets in order, then RecordID).

    Latent ODE layout (`lib/physionet.py`): the 41 `PARAMS` columns, including the descriptors Age, Gender,
    Height, ICUType observed at time 0, and Weight both at time 0 and later; observations at the same time
    share a row and repeated ones are averaged; `quantization` (hours, e.g. 0.1) rounds the times first,
    as Latent ODE's option of the same name does. One difference: a descriptor recorded as -1 ("unknown")
    is left unobserved (Latent ODE stores the -1). The descriptors are also given as `static`.

    Checksums are verified first. The parse (about 5 s) is cached in `cache_dir` (default
    `~/.cache/monode`) as a `.pt` file keyed by the files' sha256, `sets` and `quantization`; a cache
    that does not load (`torch.load(weights_only=True)`) or does not match is rebuilt.
    """
    sets = tuple(sets)
    if not sets or any(name not in ("a", "b", "c") for name in sets) or len(set(sets)) != len(sets):
        raise ValueError(f"sets must be distinct names among 'a', 'b', 'c', got {sets!r}")
    if quantization is not None and not quantization > 0:
        raise ValueError(f"quantization must be None or > 0 (hours), got {quantization}")
    folder = resolve_data_dir("physionet2012", data_dir)
    files = [file for name in sets for file in (f"set-{name}.tar.gz", f"Outcomes-{name}.txt")]
    verify_checksums(folder, files)

    key = " ".join(
        [f"format={CACHE_FORMAT}", f"quantization={quantization}"]
        + [f"{file}={file_digest(folder / file)}" for file in files]
    )
    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else Path.home() / ".cache" / "monode"
    cache_path = cache_root / f"physionet2012-{''.join(sets)}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    data = _load_cache(cache_path, key)
    if data is None:
        data = _build(folder, sets, quantization)
        partial = cache_path.with_name(f"{cache_path.name}.{os.getpid()}.tmp")
        try:
            cache_root.mkdir(parents=True, exist_ok=True)
            torch.save({**data, "key": key}, partial)
            os.replace(partial, cache_path)
        except OSError:  # a read-only cache location only costs a re-parse next time
            partial.unlink(missing_ok=True)

    lengths = data["lengths"].tolist()
    values = torch.zeros(len(data["times"]) * len(PARAMS))
    mask = torch.zeros(len(data["times"]) * len(PARAMS))
    values[data["cells"]] = data["cell_values"]
    mask[data["cells"]] = 1.0
    values, mask = values.view(-1, len(PARAMS)), mask.view(-1, len(PARAMS))
    return [
        PhysioNetRecord(int(record_id), times, values, record_mask, static, int(label))
        for record_id, times, values, record_mask, static, label in zip(
            data["record_ids"].tolist(),
            data["times"].split(lengths),
            values.split(lengths),
            mask.split(lengths),
            data["static"],
            data["labels"].tolist(),
        )
    ]


def physionet_feature_stats(records: list[PhysioNetRecord]) -> dict[str, torch.Tensor]:
    """Per-feature min, max, mean, std and count (float32 [41] each) over observed values only.

    A feature never observed gets min 0, max 1, mean 0, std 1, so normalising with it is the identity.
    """
    if not records:
        raise ValueError("records is empty")
    values = torch.cat([r.values for r in records]).double()
    mask = torch.cat([r.mask for r in records]) > 0
    count = mask.sum(0)
    seen = count > 0
    inf = torch.tensor(float("inf"), dtype=torch.float64)
    low = torch.where(mask, values, inf).amin(0)
    high = torch.where(mask, values, -inf).amax(0)
    mean = torch.where(mask, values, 0.0).sum(0) / count.clamp(min=1)
    var = torch.where(mask, (values - mean) ** 2, 0.0).sum(0) / count.clamp(min=1)
    stats = {
        "min": torch.where(seen, low, 0.0),
        "max": torch.where(seen, high, 1.0),
        "mean": torch.where(seen, mean, 0.0),
        "std": torch.where(seen & (var > 0), var.sqrt(), 1.0),
        "count": count.double(),
    }
    return {name: value.float() for name, value in stats.items()}


def physionet_tensors(
    records: list[PhysioNetRecord], *, normalize: str | None = "minmax", stats: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Pad `records` into one batch; normalise the observed values per feature.

    `normalize`: "minmax" maps each feature's observed range to [0, 1] ((x - min) / (max - min), range 0
    taken as 1; Latent ODE divides by max instead, which equals this only when min = 0), "zscore" gives
    (x - mean) / std, None leaves raw units. `stats` (from `physionet_feature_stats`, e.g. of the training
    records) defaults to the stats of `records` themselves. Unobserved entries stay 0 either way.
    Returns: times float32 [N, Tmax] (hours, 0-padded), values float32 [N, Tmax, 41], mask float32
    [N, Tmax, 41], lengths int64 [N], labels int64 [N], static float32 [N, 5], record_ids int64 [N].
    """
    if normalize not in ("minmax", "zscore", None):
        raise ValueError(f"normalize must be 'minmax', 'zscore' or None, got {normalize!r}")
    if not records:
        raise ValueError("records is empty")
    pad = lambda tensors: torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True)  # noqa: E731
    values, mask = pad([r.values for r in records]), pad([r.mask for r in records])
    if normalize is not None:
        stats = physionet_feature_stats(records) if stats is None else stats
        if normalize == "minmax":
            shift, scale = stats["min"], stats["max"] - stats["min"]
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        else:
            shift, scale = stats["mean"], stats["std"]
        values = (values - shift) / scale * mask
    return {
        "times": pad([r.times for r in records]),
        "values": values,
        "mask": mask,
        "lengths": torch.tensor([len(r.times) for r in records], dtype=torch.int64),
        "labels": torch.tensor([r.label for r in records], dtype=torch.int64),
        "static": torch.stack([r.static for r in records]),
        "record_ids": torch.tensor([r.record_id for r in records], dtype=torch.int64),
    }
