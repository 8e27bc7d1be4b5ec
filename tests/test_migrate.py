"""scripts/migrate_records.py: records of the older layouts move to OUT/PROFILE/DATA/SCENARIO/RUN/seedK.json,
each keeping its identity."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def migrate(out, *flags):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "migrate_records.py"), str(out), *flags],
                          capture_output=True, text=True)


def old_layout(bench, tmp_path):
    """A run's record put where the older layouts had it, plus the same run as a class-order study's
    (OUT/class-order/order1/SCENARIO/adam, run name 'adam') and as a record of the renamed profile paper."""
    code, new = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["scenario.n_tasks=2", "train.epochs=1"])
    record = json.loads((new / "quick" / "full" / "split-cifar" / "adam" / "seed0.json").read_text())
    old = tmp_path / "old"
    files = {"split-cifar/adam/seed0.json": record,
             "online/split-cifar/adam/seed0.json": {**record, "profile": "online"},
             "mini/split-cifar/adam/seed0.json": {**record, "data_set": "mini"},
             "gpu-short/split-cifar/adam/seed0.json": {**record, "profile": "paper"},
             "class-order/order1/split-cifar/adam/seed0.json":
                 {**record, "config": {**record["config"], "scenario": {**record["config"]["scenario"],
                                                                        "class_order_seed": 1}}}}
    for name, rec in files.items():
        (old / name).parent.mkdir(parents=True, exist_ok=True)
        (old / name).write_text(json.dumps(rec, indent=1) + "\n")
    (old / "online/split-cifar/adam/seed1.ckpt").write_bytes(b"a run in progress")
    return old, files


def test_records_move_to_profile_data_scenario_run_and_keep_their_identity(bench, tmp_path):
    old, files = old_layout(bench, tmp_path)
    dry = migrate(old)
    assert dry.returncode == 0 and "5 records to move" in dry.stdout and (old / "split-cifar").exists()
    done = migrate(old, "--apply")
    assert done.returncode == 0, done.stderr
    moved = sorted(p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file())
    assert moved == ["gpu-short/full/split-cifar/adam/seed0.json",
                     "online/full/split-cifar/adam/seed0.json",
                     "online/full/split-cifar/adam/seed1.ckpt",
                     "quick/full/split-cifar/adam/seed0.json",
                     "quick/full/split-cifar/adam@scenario.class_order_seed=1/seed0.json",
                     "quick/mini/split-cifar/adam/seed0.json"]
    # the bytes move unchanged (a renamed profile keeps its old name inside the record) ...
    assert json.loads((old / "gpu-short/full/split-cifar/adam/seed0.json").read_text())["profile"] == "paper"
    assert (old / "quick/mini/split-cifar/adam/seed0.json").read_text() == \
        json.dumps(files["mini/split-cifar/adam/seed0.json"], indent=1) + "\n"
    # ... but a class-order run is named by its order, as the planner names it today
    ordered = json.loads((old / "quick/full/split-cifar/adam@scenario.class_order_seed=1/seed0.json").read_text())
    assert ordered == {**files["class-order/order1/split-cifar/adam/seed0.json"],
                       "run_name": "adam@scenario.class_order_seed=1"}
    assert "0 records moved" in migrate(old, "--apply").stdout  # again: nothing left to move


def test_a_moved_class_order_run_is_found_by_the_command_that_made_it(bench, tmp_path):
    """After the move the same command skips the run: its record sits where the planner looks."""
    old, _ = old_layout(bench, tmp_path)
    assert migrate(old, "--apply").returncode == 0
    code, _ = bench("--scenario", "split-cifar", "--strategy", "adam", out=old,
                    sets=["scenario.n_tasks=2", "train.epochs=1", "scenario.class_order_seed=1"])
    assert code == 0 and len(list(old.rglob("*class_order_seed=1/seed0.json"))) == 1


def test_a_taken_destination_stops_the_move_before_anything_moves(bench, tmp_path):
    old, _ = old_layout(bench, tmp_path)
    twin = old / "copy/split-cifar/adam/seed0.json"  # a second copy of one run: both belong at one place
    twin.parent.mkdir(parents=True)
    twin.write_text((old / "split-cifar/adam/seed0.json").read_text())
    before = sorted(p for p in old.rglob("*") if p.is_file())
    result = migrate(old, "--apply")
    assert result.returncode != 0 and "destinations are taken" in result.stderr
    assert sorted(p for p in old.rglob("*") if p.is_file()) == before
