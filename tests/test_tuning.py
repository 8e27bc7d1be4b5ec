"""bench.py tune: the test set is never read, a killed study resumes with its finished trials intact,
every method gets the same budget, the first-tasks protocol splits the stream, and a tuned run
uses and records the chosen values."""
import json
import os
import pathlib
import pickle
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from conftest import TINY, load_record

optuna = pytest.importorskip("optuna")
ROOT = pathlib.Path(__file__).resolve().parent.parent
SMALL = [*TINY, "train.epochs=1", "scenario.n_tasks=3"]


def tune_argv(cifar_root, out, *extra, strategies=("adam",), trials=3, sets=SMALL):
    return ["tune", "--scenario", "split-cifar", "--strategy", *strategies, "--trials", str(trials),
            "--data-root", str(cifar_root), "--no-download", "--device", "cpu", "--out", str(out),
            *extra, "--set", *sets]


def trials_of(out, name):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out}/tuning/{name}.sqlite3")
    return [(t.number, t.state.name, t.params, t.value) for t in study.get_trials()]


def test_the_test_set_is_never_read(cifar_root, tmp_path):
    """The same study on a copy of the data whose test labels are shuffled: identical trials."""
    from nlbench.cli import main
    shuffled = tmp_path / "shuffled"
    shutil.copytree(cifar_root, shuffled)
    batch = shuffled / "cifar-10-batches-py" / "test_batch"
    d = pickle.loads(batch.read_bytes())
    d["labels"] = list(reversed(d["labels"]))
    batch.write_bytes(pickle.dumps(d))
    assert main(tune_argv(cifar_root, tmp_path / "a")) == 0
    assert main(tune_argv(shuffled, tmp_path / "b")) == 0
    name = "split-cifar.quick.full.adam.held-out"
    a, b = trials_of(tmp_path / "a", name), trials_of(tmp_path / "b", name)
    assert len(a) == 3 and a == b
    assert len({t[3] for t in a}) > 1 or len({json.dumps(t[2]) for t in a}) == 3  # the trials differ


def test_validation_images_come_from_the_training_set(cifar_root):
    import torch

    from nlbench.training import config as C
    from nlbench.training.data import load_data, select_data
    from nlbench.training.splits import build_scenario
    data = select_data("full", str(cifar_root), False)
    cfg = C.resolve("split-cifar", "adam", "quick", C.parse_sets(["data.validation_fraction=0.25"]))
    s = build_scenario("split-cifar", "split", cfg, 0, torch.device("cpu"), data)
    arrays = load_data(data)
    train = {bytes(x.numpy()) for x in arrays.train_x}
    held, kept = {bytes(x.numpy()) for x in s.test_x}, {bytes(x.numpy()) for x in s.train_x}
    assert held <= train and not held & kept           # held out of training, never a test image
    assert len(s.test_y) == 10 * (60 // 4) and len(s.train_y) == 10 * 45


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_study_resumes_with_its_finished_trials_intact(cifar_root, tmp_path, how):
    out = tmp_path / "runs"
    cmd = [sys.executable, str(ROOT / "bench.py"), *tune_argv(cifar_root, out, trials=4,
                                                              sets=[*TINY, "train.epochs=3", "scenario.n_tasks=3"])]
    name = "split-cifar.quick.full.adam.held-out"
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:  # read-only SQL: opening the study here would race the command creating its tables
            with sqlite3.connect(out / "tuning" / f"{name}.sqlite3") as db:
                states = [row[0] for row in db.execute("SELECT state FROM trials")]
        except sqlite3.Error:  # not created yet
            continue
        if states.count("COMPLETE") >= 2 and "RUNNING" in states:
            break
    proc.send_signal(how)
    said = proc.communicate(timeout=60)[0]
    if how == signal.SIGTERM:  # stopped in a trial: one line, the signal's exit code
        assert proc.returncode == 143 and "rerun the same command" in said and "Traceback" not in said, said
    before = [t for t in trials_of(out, name) if t[1] == "COMPLETE"]
    assert len(before) >= 2, trials_of(out, name)
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    after = trials_of(out, name)
    complete = [t for t in after if t[1] == "COMPLETE"]
    assert complete[:len(before)] == before                       # nothing finished was lost or rerun
    assert len(complete) == 4 and [t[1] for t in after].count("RUNNING") == 0
    interrupted = [t for t in after if t[1] == "FAIL"]
    assert len(interrupted) == 1
    if interrupted[0][2]:  # it had drawn its values (it may be stopped before): they are tried again
        assert interrupted[0][2] in [t[2] for t in complete[len(before):]] and "tried again" in again.stdout


def test_every_method_gets_the_same_budget(cifar_root, tmp_path):
    from nlbench.cli import main
    assert main(tune_argv(cifar_root, tmp_path, strategies=("adam", "ewc"), trials=3)) == 0
    for strategy, keys in (("adam", {"train.lr"}), ("ewc", {"train.lr", "strategy.lam"})):
        trials = trials_of(tmp_path, f"split-cifar.quick.full.{strategy}.held-out")
        assert len(trials) == 3 and all(set(t[2]) == keys for t in trials)
        doc = yaml.safe_load((tmp_path / "tuning" / f"split-cifar.quick.full.{strategy}.held-out.yaml").read_text())
        assert doc["budget"] == 3 and doc["trials_finished"] == 3
        best = max((t for t in trials if t[1] == "COMPLETE"), key=lambda t: t[3])
        assert doc["best_value"] == round(best[3], 4) and doc["values"]["train.lr"] == best[2]["train.lr"]
    run = ["--scenario", "split-cifar", "--strategy", "adam", "--tuned", "held-out", "--data-root", str(cifar_root),
           "--no-download", "--device", "cpu", "--out", str(tmp_path), "--quiet", "--set", *SMALL]
    assert main(run) == 0  # held-out: the tuned run is on the whole stream, tested on the test set
    record = load_record(tmp_path, "split-cifar", "adam@tuned=held-out")
    assert record["config"]["data"]["validation_fraction"] is None and len(record["tasks"]) == 3
    assert record["tuned"]["file"] == "tuning/split-cifar.quick.full.adam.held-out.yaml"
    from nlbench.reporting.report import main as report
    assert report(["--runs", str(tmp_path), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "tables" / "tuning.md").read_text()
    assert "split-cifar.quick.full.ewc.held-out" in table and "| 3        |" in table
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").glob("tuning-*"))
    assert figures == ["tuning-split-cifar.quick.full.adam.held-out-history.png",
                       "tuning-split-cifar.quick.full.ewc.held-out-history.png",
                       "tuning-split-cifar.quick.full.ewc.held-out-importance.png"]


def test_the_first_tasks_protocol_tunes_on_the_first_tasks_and_runs_on_the_rest(cifar_root, tmp_path):
    from nlbench.cli import main
    assert main(tune_argv(cifar_root, tmp_path, "--protocol", "first-tasks", "--first-tasks", "1", trials=2)) == 0
    study = optuna.load_study(study_name="split-cifar.quick.full.adam.first-tasks",
                              storage=f"sqlite:///{tmp_path}/tuning/split-cifar.quick.full.adam.first-tasks.sqlite3")
    assert study.user_attrs["protocol_sets"] == {"data": {"validation_fraction": 0.1, "tasks": [0, 1]}}
    assert all(len(t.user_attrs["acc"]) == 1 for t in study.trials)  # one task seen by every trial
    argv = ["--scenario", "split-cifar", "--strategy", "adam", "--tuned", "first-tasks", "--data-root", str(cifar_root),
            "--no-download", "--device", "cpu", "--out", str(tmp_path), "--quiet", "--set", *SMALL]
    assert main(argv) == 0
    record = load_record(tmp_path, "split-cifar", "adam@tuned=first-tasks")
    assert record["tasks"] == [[2, 3], [4, 5]] and record["config"]["data"]["tasks"] == [1, 3]
    assert record["config"]["train"]["lr"] == record["tuned"]["values"]["train.lr"]
    assert record["tuned"]["budget"] == 2 and record["tuned"]["protocol"] == "first-tasks"


def test_tuning_input_errors_are_one_line(cifar_root, tmp_path, capsys):
    from nlbench.cli import main
    argv = ["--scenario", "split-cifar", "--strategy", "adam", "--tuned", "held-out", "--data-root", str(cifar_root),
            "--no-download", "--device", "cpu", "--out", str(tmp_path)]
    assert main(argv) == 2 and "run bench.py tune --scenario split-cifar --strategy adam" in capsys.readouterr().err
    assert main(tune_argv(cifar_root, tmp_path, "--first-tasks", "3", "--protocol", "first-tasks")) == 2
    assert "--first-tasks must be from 1 to 2" in capsys.readouterr().err
    assert main(tune_argv(cifar_root, tmp_path, trials=2)) == 0
    assert main(tune_argv(cifar_root, tmp_path, trials=2, sets=[*SMALL, "train.epochs=2"])) == 2  # another study
    assert "was made with another sets" in capsys.readouterr().err
    from nlbench.launchers.tuning import check_spec
    from nlbench.errors import UserError
    with pytest.raises(UserError, match="is not a search spec"):
        check_spec("train.lr", ["log", 0.0, 1.0], "test")


def test_a_campaign_row_can_use_the_tuned_values(cifar_root, tmp_path):
    from types import SimpleNamespace

    from nlbench.launchers.campaign import child_command, plan
    from nlbench.reporting.specs import load_campaign
    from nlbench.cli import main
    assert main(tune_argv(cifar_root, tmp_path, trials=1)) == 0  # OUT/tuning: the campaign reads it there
    small = dict(s.split("=", 1) for s in SMALL)
    path = tmp_path / "tuned-campaign.yaml"
    path.write_text(yaml.safe_dump({"scenario": "split-cifar", "profile": "quick", "seeds": [0, 1], "runs": [
        {"label": "Adam", "strategy": "adam", "set": small},
        {"label": "Adam, tuned", "strategy": "adam", "tuned": "held-out", "set": small}]}))
    runs = plan(load_campaign(str(path)), tmp_path, "full")
    assert [r.spec.name for r in runs[:2]] == ["adam", "adam@tuned=held-out"]
    chosen = yaml.safe_load((tmp_path / "tuning" / "split-cifar.quick.full.adam.held-out.yaml").read_text())
    args = SimpleNamespace(device="cpu", data_root=str(cifar_root), no_download=True)
    cmd = child_command([runs[1]], args, "full")
    assert cmd[cmd.index("--tuned") + 1] == "held-out" and "--tuned" not in child_command([runs[0]], args, "full")
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).returncode == 0
    record = json.loads(runs[1].path.read_text())
    assert record["config"]["train"]["lr"] == chosen["values"]["train.lr"] and record["tuned"]["budget"] == 1


def test_parallel_workers_spend_the_budget_exactly(cifar_root, tmp_path):
    """--jobs 2: the remaining trials are shared out, so the study ends with exactly --trials."""
    from nlbench.cli import main
    from nlbench.launchers.tuning import shares
    assert shares(5, 2) == [3, 2] and shares(1, 4) == [1] and shares(0, 2) == []
    assert main(tune_argv(cifar_root, tmp_path, "--jobs", "2", trials=3)) == 0
    trials = trials_of(tmp_path, "split-cifar.quick.full.adam.held-out")
    assert len(trials) == 3 and all(t[1] in ("COMPLETE", "PRUNED") for t in trials)


def test_a_tuned_row_sits_beside_its_strategy_in_the_main_table():
    import pandas as pd

    from nlbench.registry import label_of, ordered
    assert label_of("ewc@tuned=held-out") == "EWC, tuned (held-out)"
    assert ordered(["replay", "ewc@tuned=held-out", "ewc"]).index("ewc@tuned=held-out") == \
        ordered(["replay", "ewc@tuned=held-out", "ewc"]).index("ewc") + 1
    from nlbench.reporting.report import main_rows
    runs = pd.DataFrame({"run": ["ewc", "ewc@tuned=held-out", "ewc@lam=5", "ewc@lam=5,tuned=held-out"],
                         "strategy": ["ewc"] * 4})
    assert main_rows(runs)["run"].tolist() == ["ewc", "ewc@tuned=held-out"]  # a plain strategy's tuned run joins
