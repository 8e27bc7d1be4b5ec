"""Move run records into the layout OUT/<profile>/<data>/<scenario>/<run>/seedK.json (nlbench.training.records).

    python scripts/migrate_records.py results/runs            # say what would move
    python scripts/migrate_records.py results/runs --apply    # move (git mv inside a git checkout)

Every record keeps its identity: the file's bytes move unchanged (profile, data set, scenario, strategy,
seed and config are read from the record itself, never from its old folder). One exception, written
into the record: a run of another class order (scenario.class_order_seed) gets that order in its run
name, as a run planned today would (nlbench.training.config.NAMING_KEYS), since it may no longer share a
folder with the default order's run. A checkpoint (.ckpt) moves with its run's records (one beside no
record at all stays, and is named); a stale .lock is dropped. Records already in place are left alone, so the script can run again after more runs landed
in the old layout. A destination that holds another file stops the script before anything moves.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the checkout's nlbench

from nlbench.training import config as C  # noqa: E402
from nlbench.training.records import atomic_write_text, out_of, read_record, record_path  # noqa: E402


def run_name_of(record: dict) -> str:
    """The record's run name as the planner names it today (the class order is a naming key)."""
    name = record.get("run_name", record["strategy"])
    order = (record["config"].get("scenario") or {}).get("class_order_seed")
    if order is None or f"{C.CLASS_ORDER_KEY}=" in name:
        return name
    if "@" in name:  # where the order goes among other overrides is config.run_name's rule: not guessed here
        raise SystemExit(f"error: {name} (class order {order}) has other overrides; nothing moved: plan its "
                         "name with nlbench.training.config.run_name and move it by hand")
    return f"{name}@{C.CLASS_ORDER_KEY}={order}"


def target(out: pathlib.Path, record: dict) -> pathlib.Path:
    """Where the record belongs, from what read_record makes of it (a renamed profile's current name, the
    full set for records from before the mini set)."""
    return record_path(out, record["profile"], record.get("data_set", "full"), record["scenario"],
                       run_name_of(record), record["seed"])


def plan(out: pathlib.Path) -> list[tuple[pathlib.Path, pathlib.Path, dict]]:
    moves = []
    for path in sorted(out.rglob("seed*.json")):
        new = target(out, read_record(path))
        if new != path:
            moves.append((path, new, json.loads(path.read_text())))
    destinations = [new for _, new, _ in moves]
    clashes = {d for d in destinations if destinations.count(d) > 1 or d.exists()}
    if clashes:
        raise SystemExit(f"error: {len(clashes)} destinations are taken (e.g. {sorted(clashes)[0]}); "
                         "nothing moved: resolve them by hand, then rerun")
    return moves


def in_git(path: pathlib.Path) -> bool:
    return subprocess.run(["git", "ls-files", "--error-unmatch", path.name], cwd=path.parent,
                          capture_output=True).returncode == 0


def move(old: pathlib.Path, new: pathlib.Path) -> None:
    new.parent.mkdir(parents=True, exist_ok=True)
    if in_git(old):
        subprocess.run(["git", "mv", str(old.resolve()), str(new.resolve())], cwd=old.parent, check=True)
    else:
        old.rename(new)


def checkpoints_beside(record: pathlib.Path) -> list[pathlib.Path]:
    """The checkpoints that move with a record: its own, and those of the same run's other seeds that
    have no record yet (a run in progress: the record beside it says where its run now lives)."""
    return [c for c in sorted(record.parent.glob("seed*.ckpt"))
            if c.stem == record.stem or not c.with_suffix(".json").exists()]


def apply(moves) -> None:
    for old, new, record in moves:
        move(old, new)
        name = run_name_of(record)
        if name != record["run_name"]:
            atomic_write_text(new, json.dumps({**record, "run_name": name}, indent=1) + "\n")
        for ckpt in checkpoints_beside(old):  # this seed's, and those of seeds still without a record
            move(ckpt, new.parent / ckpt.name)
        old.with_suffix(".lock").unlink(missing_ok=True)
    for folder in sorted({p for old, _, _ in moves for p in old.parents}, key=lambda p: -len(p.parts)):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=pathlib.Path, help="the records folder (e.g. results/runs)")
    ap.add_argument("--apply", action="store_true", help="move; without it, only say what would move")
    args = ap.parse_args()
    moves = plan(args.out)
    for old, new, _ in moves:
        print(f"{old} -> {new}")
    assert all(out_of(new) == args.out for _, new, _ in moves)
    if args.apply:
        apply(moves)
        for ckpt in sorted(args.out.rglob("seed*.ckpt")):
            if not ckpt.with_suffix(".json").exists() and not any(ckpt.parent.glob("seed*.json")):
                print(f"left in place: {ckpt} (no record of its run says where it belongs)")
    print(f"{len(moves)} records {'moved' if args.apply else 'to move (rerun with --apply)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
