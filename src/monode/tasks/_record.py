"""A run folder describes itself: `config.json` records what produced it, `load_run` rebuilds its model.

`config.json` is written when a run starts (before data loading): task, model, preset, seed, every
resolved setting, data folder, device, and the monode, torch and Python versions. `--resume` compares
the new settings with it and refuses any difference but those in `RESUMABLE` (more epochs, another
device or data folder, progress bars), listing each one.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, NamedTuple

import torch

from .. import __version__
from .._atomic import atomic_write
from ..train import CHECKPOINT, Task, check_device, load_checkpoint, seed_everything
from ._settings import RunSettings, coerce_setting

__all__ = ["CONFIG", "LoadedRun", "load_run", "read_config", "check_resumable", "write_config"]

CONFIG = "config.json"
RESUMABLE = frozenset({"epochs"})  # settings a resumed run may change (besides device, data_dir, progress)


def _plain(value: Any) -> Any:
    """`value` as JSON gives it back (tuples as lists, dict keys as strings), for comparisons."""
    return json.loads(json.dumps(value))


def config_of(s: RunSettings) -> dict[str, Any]:
    """The `config.json` record of a run with settings `s`."""
    return {
        "task": s.task,
        "model": s.model,
        "preset": s.preset,
        "seed": s.seed,
        "settings": _plain(dict(s.values)),
        "user_set": sorted(s.user_set),
        "data_dir": s.data_dir,
        "device": s.device,
        "versions": {"monode": __version__, "torch": torch.__version__, "python": platform.python_version()},
    }


def write_config(out: Path, s: RunSettings) -> None:
    atomic_write(out / CONFIG, (json.dumps(config_of(s), indent=1) + "\n").encode())


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The `config.json` of a run folder; ValueError if it is missing or unreadable."""
    path = Path(run_dir) / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{run_dir} is not a monode run folder: it has no {CONFIG}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    missing = {"task", "model", "preset", "seed", "settings"} - set(config if isinstance(config, dict) else ())
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}: not written by monode")
    return config


def check_resumable(out: Path, s: RunSettings) -> None:
    """Refuse to resume the run in `out` with settings other than its `config.json`'s, listing them all."""
    if not (out / CONFIG).exists():
        return  # a run of monode 0.1.0, or killed before its first line: the checkpoint's own check remains
    old, new = read_config(out), config_of(s)
    differences = [
        f"{name} {new[name]!r} (was {old.get(name)!r})"
        for name in ("task", "model", "preset", "seed")
        if new[name] != old.get(name)
    ]
    before, now = old.get("settings", {}), new["settings"]
    differences += [
        f"{key} {now.get(key)!r} (was {before.get(key)!r})"
        for key in sorted(set(before) | set(now))
        if key not in RESUMABLE and before.get(key) != now.get(key)
    ]
    if differences:
        raise ValueError(
            f"--resume: {out} was run with other settings: {'; '.join(differences)}. Resume with the "
            f"same settings or choose another --out"
        )
    versions = old.get("versions", {})
    changed = [f"{k} {versions[k]} -> {v}" for k, v in new["versions"].items() if versions.get(k) not in (None, v)]
    if changed:
        print(f"note: resuming {out} under other versions ({', '.join(changed)}): it may not replay bit for bit")


class LoadedRun(NamedTuple):
    """A finished (or checkpointed) run: its task with the trained model, settings, and metric rows."""

    task: Task
    settings: RunSettings
    rows: list[dict[str, Any]]

    @property
    def model(self) -> torch.nn.Module:
        return self.task.model


def load_run(run_dir: str | Path, *, data_dir: str | None = None, device: str = "cpu") -> LoadedRun:
    """Rebuild the run in `run_dir`: its task (data from `data_dir`, else the run's own data folder) with
    the model's weights from the last checkpoint, on `device`, in eval mode.

        run = monode.load_run("runs/point-cloud/hbnode")
        run.model(x); run.settings["rtol"]; run.rows[-1]["eval_accuracy"]
    """
    from . import TASKS  # the registry imports every task module, which imports this one

    run_dir = Path(run_dir)
    config = read_config(run_dir)
    if config["task"] not in TASKS:
        raise ValueError(f"{run_dir}: task {config['task']!r} of its {CONFIG} is not a task of monode {__version__}")
    bench = TASKS[config["task"]]
    if not bench.trains:
        raise ValueError(f"{run_dir}: task {bench.name!r} is a study without a trained model")
    presets = list(bench.presets.values())
    values = {k: coerce_setting(k, v, [p.get(k) for p in presets]) for k, v in config["settings"].items()}
    s = RunSettings(
        task=bench.name,
        model=config["model"],
        preset=config["preset"],
        seed=int(config["seed"]),
        device=str(check_device(device)),
        data_dir=data_dir if data_dir is not None else config.get("data_dir"),
        resume=False,
        progress=False,
        values=values,
        user_set=frozenset(config.get("user_set", ())),
    )
    if not (run_dir / CHECKPOINT).exists():
        raise ValueError(f"{run_dir} has no {CHECKPOINT}: the run did not finish an epoch")
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    seed_everything(s.seed)
    task = bench.build(s)
    task.model.load_state_dict(ckpt["model"])
    task.model.to(s.device).eval()
    return LoadedRun(task, s, list(ckpt["rows"]))
