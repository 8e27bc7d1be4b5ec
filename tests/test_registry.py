"""Tests parametrized over the registry: every registered strategy runs a tiny stream end to end,
resumes after an interrupt to the uninterrupted matrix, and appears in a report under its label;
a plugin strategy and a new scenario file reach the report with no edit of the library."""
import os
import signal

import pytest

from conftest import load_record
from nlbench.training import config as C
from nlbench.reporting import report
from nlbench.plugins import load_builtins
from nlbench.registry import AVALANCHE_PREFIX
from nlbench.registry import STRATEGIES, label_of
from nlbench.training.runner import StepRunner

load_builtins()
REGISTERED = sorted(n for n in STRATEGIES if not n.startswith(AVALANCHE_PREFIX))
SMALL = ["scenario.n_tasks=2", "train.epochs=2"]
# CLS-ER predicts with its stable memory, updated on 10% of the steps by design: in this stream's 16 steps
# it barely leaves its initialisation, so here both memories follow every step
PER_STRATEGY = {"clser": ["strategy.stable_update_freq=1.0", "strategy.plastic_update_freq=1.0"],
                "gdumb": ["strategy.passes=10"]}  # its 70 passes over the memory after each task: minutes here


def interrupt_at_step(monkeypatch, k: int) -> None:
    """Deliver SIGINT to this process during the k-th training step, as a user's Ctrl-C would."""
    real, calls = StepRunner.step, {"n": 0}

    def step(self, *args):
        calls["n"] += 1
        if calls["n"] == k:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args)
    monkeypatch.setattr(StepRunner, "step", step)


@pytest.mark.parametrize("strategy", REGISTERED)
def test_every_registered_strategy_runs_resumes_and_is_reported(bench, tmp_path, monkeypatch, strategy):
    sets = SMALL + PER_STRATEGY.get(strategy, [])
    name = C.run_name(strategy, C.parse_sets(sets))  # the record's folder: strategy@overrides for CLS-ER
    code, ref = bench("--scenario", "split-cifar", "--strategy", strategy, out=tmp_path / "ref", sets=sets)
    rec = load_record(ref, "split-cifar", name)
    assert code == 0 and rec["status"] == "complete" and rec["metrics"]["class_il"]["avg_acc"] is not None
    assert rec["metrics"]["task_il"]["avg_acc"] > 55  # above the 50% of guessing between a task's two classes

    interrupt_at_step(monkeypatch, 7)  # task 1, epoch 2 (the synthetic task has 120 images: 8 steps of 16)
    with pytest.raises(SystemExit) as stopped:
        bench("--scenario", "split-cifar", "--strategy", strategy, out=tmp_path / "cut", sets=sets)
    assert stopped.value.code == 128 + signal.SIGINT
    assert (tmp_path / "cut" / "quick" / "full" / "split-cifar" / name / "seed0.ckpt").exists()
    monkeypatch.undo()
    code, cut = bench("--scenario", "split-cifar", "--strategy", strategy, out=tmp_path / "cut", sets=sets)
    assert code == 0 and load_record(cut, "split-cifar", name)["acc"] == rec["acc"]

    assert report.main(["--runs", str(ref), "--out", str(tmp_path / "rep"), "--no-figures"]) == 0
    if name == strategy:  # a run with overrides (CLS-ER's here) is tabled by the campaigns that name it
        table = (tmp_path / "rep" / "tables" / "split-cifar.md").read_text()
        assert f"| {label_of(strategy)} " in table


PLUGIN = '''
import torch
from nlbench import PlainStrategy, register_strategy


@register_strategy("my-sgd", label="My SGD", group="baseline", order=5)
class MySGD(PlainStrategy):
    """Plain SGD, from a user's file."""
    optimizer_kind = "sgd"
'''


def test_a_plugin_strategy_reaches_the_report_with_its_label_and_group(bench, tmp_path):
    plugin = tmp_path / "my_sgd.py"
    plugin.write_text(PLUGIN)
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam", "my-sgd", "--plugin", str(plugin), sets=SMALL)
    assert code == 0
    assert report.main(["--runs", str(out), "--out", str(tmp_path / "rep"), "--plugin", str(plugin)]) == 0
    rows = [line.split("|")[1].strip() for line in (tmp_path / "rep" / "tables" / "split-cifar.md").read_text()
            .splitlines() if line.startswith("| ") and "Strategy" not in line and "---" not in line]
    assert rows[:2] == ["My SGD", "Adam (fine-tune)"]  # baseline group, order 5 before adam's 10
    assert (tmp_path / "rep" / "figures" / "split-cifar-class_il-curves.png").exists()


SCENARIO = '''
builder: split
description: "Three tasks of three classes"
params: {n_tasks: 3, classes_per_task: 3}
report:
  title: "Split CIFAR-9 (3 tasks x 3 classes)"
profiles:
  quick:
    backbone: {name: cnn, width: 8}
    data: {train_per_class: 30, test_per_class: 10}
    train: {epochs: 1, batch_size: 16}
  paper:
    backbone: {name: cnn, width: 8}
    data: {train_per_class: 30, test_per_class: 10}
    train: {epochs: 1, batch_size: 16}
'''


def test_a_new_scenario_file_reaches_the_report_unedited(bench, tmp_path, monkeypatch):
    folder = tmp_path / "my-scenarios"
    folder.mkdir()
    (folder / "split-nine.yaml").write_text(SCENARIO)
    monkeypatch.setenv("NLBENCH_SCENARIOS", str(folder))
    code, out = bench("--scenario", "split-nine", "--strategy", "adam", "replay", "--profile", "quick", tiny=False)
    assert code == 0 and load_record(out, "split-nine", "adam")["tasks"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert report.main(["--runs", str(out), "--out", str(tmp_path / "rep")]) == 0
    text = (tmp_path / "rep" / "tables" / "split-nine.md").read_text()
    assert text.startswith("Split CIFAR-9 (3 tasks x 3 classes)")
    for column in ("Class-IL acc", "Class-IL forgetting", "Class-IL learning acc", "Task-IL acc"):
        assert column in text  # default columns, from the settings the records hold
    assert "| Adam (fine-tune) " in text and "| Replay " in text
    assert (tmp_path / "rep" / "figures" / "split-nine-task_il-matrices.png").exists()
