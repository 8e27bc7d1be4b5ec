"""Whether the records of one folder reproduce another's bit for bit: the evidence that two code
versions compute the same runs, so that a pair whose two records come from different git commits
still pairs like with like.

    python scripts/compare_records.py OLD NEW     # OLD, NEW: folders of run records (any layout)

For every record path (relative to its folder) present in both, it compares the accuracy matrices in
every setting, the initial ones, the probe matrices and the metrics, exactly (floats as stored), and
prints one line per record and a summary; exit 0 when all of them match, 1 otherwise, 2 on bad input.
Fields that say how a run went rather than what it computed (times, memory, versions, displacement
records that older versions lack) are not compared.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

COMPARED = ("acc", "acc_init", "probe", "probe_init", "metrics", "config", "tasks")


def compare(old: pathlib.Path, new: pathlib.Path) -> list[tuple[str, list[str]]]:
    """(record's relative path, the compared fields that differ) for every record in both folders."""
    found = []
    for path in sorted(new.rglob("seed*.json")):
        rel = path.relative_to(new)
        before = old / rel
        if not before.exists():
            continue
        a, b = json.loads(before.read_text()), json.loads(path.read_text())
        found.append((str(rel), [key for key in COMPARED if a.get(key) != b.get(key)]))
    return found


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    args = ap.parse_args(argv)
    old, new = pathlib.Path(args.old), pathlib.Path(args.new)
    for folder in (old, new):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder of run records", file=sys.stderr)
            return 2
    found = compare(old, new)
    if not found:
        print(f"error: no record is in both {old} and {new}", file=sys.stderr)
        return 2
    for rel, differ in found:
        print(f"{rel}: {'identical' if not differ else 'DIFFERS in ' + ', '.join(differ)}")
    same = sum(not differ for _, differ in found)
    print(f"{same} of {len(found)} records identical in {', '.join(COMPARED)}")
    return 0 if same == len(found) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
