"""What every launcher of a sweep does around a run: skip a run whose record exists (refusing one of
another config), and write a finished run's record once, atomically, beside where its checkpoint was.
The local loop (nlbench.cli) and the Ray launcher (nlbench.launchers.ray_launcher) share these."""
from __future__ import annotations

import contextlib
import os
import pathlib

from nlbench.training import config as C
from nlbench.errors import UserError
from nlbench.training.records import out_of, read_record, write_record


def check_existing(spec, data, force: bool = False) -> bool:
    """True when the planned run's record already holds this run (skip it); a record of another
    config, profile or data set there is an error, never an answer for this one (``force``: rerun)."""
    path = spec.path
    if not path.exists() or force:
        return False
    old = read_record(path)
    if old["profile"] != spec.profile:
        raise UserError(f"{path} holds a {old['profile']}-profile run; use another --out for {spec.profile} runs, "
                        "or --force to replace it")
    if old.get("data_set", "full") != data.kind:  # records from before the mini set are full-data runs
        raise UserError(f"{path} holds a run on the {old.get('data_set', 'full')} data set; use another --out "
                        f"for runs on the {data.kind} set, or --force to replace it")
    diff = config_conflict(spec, old)
    if diff:  # never answer a changed config with another config's numbers
        raise UserError(f"{path} holds a run with another config ({diff}); use another --out for this "
                        "config, or --force to replace that record")
    print(f"skip {path} (exists with the same config; --force reruns it)")
    return True


def config_conflict(spec, old: dict) -> str:
    """How the record ``old`` at the spec's path differs in config from the planned run ('' if not):
    the first three differences, the one rule the command line and the campaign planner share."""
    diff = C.identity_diff(old["config"], spec.cfg, C.identity_defaults(spec.scenario, spec.strategy))
    return "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")


@contextlib.contextmanager
def run_lock(path: pathlib.Path):
    """Hold ``<record>.lock`` while a run trains, so a second process started on the same run (a
    campaign resuming from a checkpoint another command is still writing) stops with a one-line
    error instead of training beside it and overwriting its checkpoint. An flock dies with its
    process, so a killed run leaves no stale lock."""
    import fcntl  # POSIX only; the suite's launchers run on Linux and macOS
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_suffix(".lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"{path.parent.name} seed {path.stem[4:]} is already running in process {holder} "
                            f"(it holds {lock}); wait for it or stop it, then rerun this command") from None
        if _same_file(fd, lock):  # not a lock file its previous holder unlinked while we waited
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)  # closing releases the flock


def _same_file(fd: int, path: pathlib.Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def finish_record(record: dict, name: str, wall_seconds: float, path: pathlib.Path) -> int:
    """Write a finished run's record (atomically) where its checkpoint was, drop the checkpoint, say
    what it got; 1 if the run diverged."""
    record["run_name"] = name
    record["wall_seconds"] = wall_seconds
    from nlbench.training.tuned import provenance  # a tuned run (NAME@tuned=PROTOCOL) says where its values came from
    record["tuned"] = provenance(name, record, out_of(path))
    write_record(path, record)
    path.with_suffix(".ckpt").unlink(missing_ok=True)
    print_summary(record, path)
    return 1 if record["status"] == "diverged" else 0


def print_summary(record: dict, path) -> None:
    print(f"== {record['scenario']} / {record['run_name']} / seed {record['seed']} ({record['status']}): "
          f"{record['train_seconds']:.1f}s training, {record['images_per_second'] or 0:.0f} img/s, "
          f"peak {record['peak_memory_mb']:.0f} MB -> {path}")
    mini = record["data_set"] == "mini"
    print(f"  data: {'MINI set, not the full CIFAR-10: ' if mini else ''}{record['data_source']}; "
          f"{record['images']['train']} train / {record['images']['test']} test images")
    for setting, rows in record["acc"].items():
        print(f"  accuracy matrix ({setting}, row = after task i, column = task j):")
        for i, row in enumerate(rows):
            cells = " ".join("   -  " if v is None else f"{v:6.1f}" for v in (row or [None] * len(rows)))
            print(f"    {i + 1}: {cells}")
        m = (record["metrics"] or {}).get(setting) or {}
        print("    " + "  ".join(f"{k}={'n/a' if v is None else f'{v:.2f}'}" for k, v in m.items()))
