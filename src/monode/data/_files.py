"""Where dataset files live, and checks that they are the files we expect.

Every loader finds its folder with `resolve_data_dir`, checks its files with `verify_checksums`
before parsing them, and reports problems with the two exceptions below. Nothing here downloads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "DataNotFoundError",
    "DataIntegrityError",
    "resolve_data_dir",
    "read_checksums",
    "verify_checksums",
    "file_digest",
]

ENV_VAR = "MONODE_DATA_DIR"
CHECKSUM_FILE = "SHA256SUMS"
_CHUNK = 1 << 20  # hash in 1 MiB chunks
# (resolved path, size, mtime_ns, algorithm) -> hex digest; lives for the process.
_DIGESTS: dict[tuple[str, int, int, str], str] = {}


class DataNotFoundError(FileNotFoundError):
    """Dataset files are missing. The message names the folder and the exact files expected."""

    def __init__(self, folder: str | Path, expected: Iterable[str], missing: Iterable[str] | None = None):
        self.folder = Path(folder)
        self.expected = list(expected)
        self.missing = list(self.expected if missing is None else missing)
        what = "" if self.missing == self.expected else f"missing {_name_list(self.missing)} of "
        super().__init__(
            f"dataset files not found in {self.folder}: {what}expected {_name_list(self.expected)}. "
            f"Put them there, or pass --data-dir / set {ENV_VAR} to the data root (which holds one "
            f"folder per dataset) or to the dataset's folder itself."
        )


def _name_list(names: list[str], most: int = 6) -> str:
    """`a, b, c`, shortened to `a, b, ..., z (N files)` for long lists."""
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[:2])}, ..., {names[-1]} ({len(names)} files)"


class DataIntegrityError(ValueError):
    """A dataset file exists but is not the file we expect (wrong checksum or malformed content)."""

    def __init__(self, path: str | Path, message: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


def checksum_error(path: str | Path, algorithm: str, expected: str, actual: str) -> DataIntegrityError:
    """The error for a file whose digest differs from the recorded one."""
    return DataIntegrityError(
        path, f"{algorithm} mismatch: expected {expected}, got {actual} (corrupted or a different version)"
    )


def _default_roots() -> list[Path]:
    """The `shared/data` folder of an ancestor of this file (the repo's sibling), then the user cache."""
    roots = [
        parent / "shared" / "data"
        for parent in Path(__file__).resolve().parents
        if (parent / "shared" / "data").is_dir()
    ][:1]
    return roots + [Path.home() / ".cache" / "monode" / "data"]


def resolve_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder of dataset `name`; it may not exist (the loader then raises `DataNotFoundError`).

    Looked up in this order: the `data_dir` argument; the `MONODE_DATA_DIR` environment variable;
    the nearest ancestor's `shared/data` (the repo's sibling `../shared/data`); `~/.cache/monode/data`.
    An explicit root (argument or variable) is final: it gives `<root>/<name>` when that folder exists,
    else the root itself, so `data_dir` may also point straight at the dataset folder.
    """
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"name must be a plain folder name, got {name!r}")
    explicit = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    if explicit is not None:
        root = Path(explicit).expanduser()
        return root / name if (root / name).is_dir() else root
    candidates = [root / name for root in _default_roots()]
    return next((folder for folder in candidates if folder.is_dir()), candidates[-1])


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, hashed in 1 MiB chunks and cached per (path, size, mtime) in this process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, algorithm)
    if key not in _DIGESTS:
        digest = hashlib.new(algorithm)
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def read_checksums(folder: str | Path) -> dict[str, str]:
    """The `{relative file name: sha256}` table of `folder/SHA256SUMS` (`sha256sum` output format)."""
    path = Path(folder) / CHECKSUM_FILE
    table: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        name = name.strip().removeprefix("*")  # "*name" marks binary mode in sha256sum output
        if not sep or len(digest) != 64 or not name:
            raise DataIntegrityError(path, f"line {number} is not '<sha256>  <file>': {line!r}")
        table[name] = digest.lower()
    return table


def verify_checksums(
    folder: str | Path,
    files: Iterable[str] | None = None,
    *,
    fallback: Mapping[str, str] | None = None,
    fallback_algorithm: str = "md5",
) -> None:
    """Check `files` (names relative to `folder`; default: all listed) against `folder/SHA256SUMS`.

    Without a SHA256SUMS file, `fallback` (`{name: digest}` in `fallback_algorithm`, e.g. published md5s)
    is used instead. Raises `DataNotFoundError` if the folder, a file or any checksum list is missing,
    and `DataIntegrityError` naming the file, the expected and the actual digest on a mismatch.
    """
    folder = Path(folder)
    sums_path = folder / CHECKSUM_FILE
    has_sums = sums_path.is_file()
    if not has_sums and fallback is None:
        expected = [*(files or []), CHECKSUM_FILE]
        raise DataNotFoundError(folder, expected, [n for n in expected if not (folder / n).is_file()])
    table, algorithm = (read_checksums(folder), "sha256") if has_sums else (dict(fallback or {}), fallback_algorithm)
    names = list(table) if files is None else list(files)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DataNotFoundError(folder, names, missing)
    for name in names:
        if name not in table:
            raise DataIntegrityError(folder / name, f"no checksum listed for it in {sums_path}")
        actual = file_digest(folder / name, algorithm)
        if actual != table[name]:
            raise checksum_error(folder / name, algorithm, table[name], actual)
