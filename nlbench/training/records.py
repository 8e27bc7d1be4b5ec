"""Run records: one JSON file per run, written atomically, validated when read."""
from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import tempfile

import torch

from nlbench.training.config import RENAMED_PROFILES
from nlbench.errors import UserError
from nlbench.registry import AVALANCHE_PREFIX

# 2: memory breakdown, optimizers, strategy_source, numerics.cuda_graph; 1 (no field): before them.
SCHEMA_VERSION = 2
REQUIRED_KEYS = ("scenario", "strategy", "seed", "profile", "config", "tasks", "acc", "acc_init",
                 "metrics", "train_seconds", "images_per_second", "peak_memory_mb", "device", "versions")


# A record's place: OUT/<profile>/<data>/<scenario>/<run>/seedK.json. Profile and data set lead, so that
# runs of one protocol on one data set sit together and a record never shares a folder with another
# protocol's (the identity check in nlbench.launchers.sweep still refuses another config at a path).


def record_path(out: str | os.PathLike, profile: str, data_kind: str, scenario: str, run_name: str,
                seed: int) -> pathlib.Path:
    folder = run_name.replace(":", "-")  # avalanche:EWC -> avalanche-EWC: portable file names
    return pathlib.Path(out) / profile / data_kind / scenario / folder / f"seed{seed}.json"


def out_of(path: pathlib.Path) -> pathlib.Path:
    """The OUT folder a record path was planned under (record_path's inverse)."""
    return path.parents[4]  # seedK.json in run, in scenario, in data, in profile, in OUT


def check_out_folder(out: str | os.PathLike) -> None:
    """--out must be a folder we can write in (or can create), checked before any run starts."""
    path = pathlib.Path(out)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UserError(f"--out {out}: {existing} is a file, not a folder; give a folder for the records")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {existing} is not writable; give a folder you can write in")


def atomic_write_text(path: pathlib.Path, text: str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file,
    and two writers of the same path leave one whole version."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: pathlib.Path, data: bytes) -> None:
    """atomic_write_text for bytes (a checkpoint sent back by a Ray worker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a record is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_record(path: pathlib.Path, record: dict) -> None:
    atomic_write_text(path, json.dumps({"schema_version": SCHEMA_VERSION, **record}, indent=1) + "\n")


def read_record(path: pathlib.Path) -> dict:
    try:
        record = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"corrupt run record {path} ({type(exc).__name__}); delete it and rerun that run") from exc
    missing = [k for k in REQUIRED_KEYS if k not in record] if isinstance(record, dict) else list(REQUIRED_KEYS)
    if missing:
        raise UserError(f"run record {path} lacks keys {', '.join(missing)} (another version?); "
                        "delete it and rerun that run")
    if record.get("schema_version", 1) > SCHEMA_VERSION:
        raise UserError(f"run record {path} is schema {record['schema_version']}, newer than this nlbench "
                        f"({SCHEMA_VERSION}); update nlbench to read it")
    return upgrade(record)


# Fields that older records (or hand-made ones in tests) may lack, and what a missing one means.
OPTIONAL_DEFAULTS = {
    "status": "complete", "diverged_at": None, "data_set": "full",  # records before the mini set used the full set
    "data_source": "unknown", "peak_memory_kind": "", "wall_seconds": None, "numerics": None,
    "memory": None, "optimizers": None, "strategy_source": None, "images": None,
    "probe": None, "probe_init": None,  # records before the linear probe (nlbench.training.probe) have none
    "seed_parallel": None,  # trained alone; else its seed-parallel group (nlbench.training.group)
    "tuned": None,  # settings not from bench.py tune; else the study they came from (nlbench.launchers.tuning.provenance)
    "displacement": None,  # records before 2026-12-08, and seed-parallel members, measured no displacement
    "end_of_task_seconds": None,  # records before 2026-11-29 did not time after_task (train_seconds: the steps only)
}


# What a seed-parallel group's step is, whatever a member's one-seed stepper would have done (group.py
# writes it; upgrade reads the group records made before 2026-11-29, which copied the member's choice)
GROUP_NUMERICS = {"cuda_graph": False, "optimizer_impl": "stacked elementwise steps (seed-parallel group), eager"}


def upgrade(record: dict) -> dict:
    """Any record, read as the current schema: fields it predates get their meaning when absent
    (None = unknown), so that readers index records directly, with no fallbacks of their own."""
    record = {"schema_version": 1, **record}
    if str(record.get("strategy", "")).startswith(AVALANCHE_PREFIX):
        # Avalanche's own loop was always timed whole (its end-of-experience work inside train_seconds)
        record.setdefault("end_of_task_seconds", 0.0)
    for key, value in OPTIONAL_DEFAULTS.items():
        record.setdefault(key, value)
    if (record.get("seed_parallel") or {}).get("group_size", 1) > 1 and record.get("numerics"):
        record["numerics"] = {**record["numerics"], **GROUP_NUMERICS}  # groups always stepped eagerly
    record.setdefault("run_name", record["strategy"])
    record.setdefault("settings", list(record["acc"]))
    record["profile"] = RENAMED_PROFILES.get(record["profile"], record["profile"])
    return record


def versions() -> dict:
    from nlbench import __version__
    from nlbench.registry import ROOT as root

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if len(commit) == 40 else None
    if len(commit) != 40:  # not a git checkout (a tree copied to a GPU machine): the copier may say which
        commit = os.environ.get("NLBENCH_GIT_COMMIT") or None
    return {"python": platform.python_version(), "torch": torch.__version__, "nlbench": __version__,
            "git_commit": commit, "git_dirty": dirty}
