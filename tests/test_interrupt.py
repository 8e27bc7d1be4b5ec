"""Interruption and divergence: checkpoints, resume to the same matrix, diverged records."""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY, load_record

ROOT = pathlib.Path(__file__).resolve().parent.parent


def bench_cmd(cifar_root, out, *extra):
    return [sys.executable, str(ROOT / "bench.py"), "--scenario", "split-cifar", "--strategy", "replay",
            "--data-root", str(cifar_root), "--out", str(out), "--no-download", "--quiet", "--device", "cpu",
            "--set", *TINY, "train.epochs=3", "scenario.n_tasks=3", *extra]


def test_sigint_at_a_random_point_then_resume_gives_the_uninterrupted_matrix(cifar_root, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    ref_out, cut_out = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(bench_cmd(cifar_root, ref_out), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(bench_cmd(cifar_root, cut_out), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # Wait until training has started (the first task's summary line), then interrupt at a random moment.
    line = proc.stdout.readline()
    while line and "task 1/" not in line:
        line = proc.stdout.readline()
    time.sleep(random.uniform(0.0, 0.3))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    record = cut_out / "quick" / "full" / "split-cifar" / "replay" / "seed0.json"
    if proc.returncode == 0:  # the run finished before the signal landed: nothing to resume
        pytest.skip("run completed before SIGINT arrived")
    assert proc.returncode == 130, err
    ckpt = record.with_suffix(".ckpt")
    assert "checkpoint saved to" in err and ckpt.exists() and not record.exists()
    assert not list(cut_out.rglob("*.tmp"))
    done = subprocess.run(bench_cmd(cifar_root, cut_out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming from" in done.stdout
    assert not ckpt.exists()  # deleted once the record is written
    resumed, whole = json.loads(record.read_text()), load_record(ref_out, "split-cifar", "replay")
    assert resumed["acc"] == whole["acc"]
    assert resumed["displacement"] == whole["displacement"] and len(whole["displacement"]["tasks"]) > 0


def test_checkpoint_at_end_of_task_resumes_identically(bench, tmp_path, monkeypatch):
    """A killed process (SIGKILL) loses at most the current task: simulate by failing in task 2."""
    from nlbench.training import runner
    bench("--scenario", "split-cifar", "--strategy", "nested", out=tmp_path / "ref", sets=["scenario.n_tasks=3"])
    real = runner._train_task
    calls = {"n": 0}

    def dying(loop, task, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash in task 2")
        return real(loop, task, *args, **kw)

    monkeypatch.setattr(runner, "_train_task", dying)
    with pytest.raises(RuntimeError, match="simulated crash"):
        bench("--scenario", "split-cifar", "--strategy", "nested", out=tmp_path / "cut", sets=["scenario.n_tasks=3"])
    ckpt = tmp_path / "cut" / "quick" / "full" / "split-cifar" / "nested" / "seed0.ckpt"
    assert ckpt.exists()
    monkeypatch.setattr(runner, "_train_task", real)
    # the same command on other data (e.g. --data auto falling back) is another run, in its own folder
    code, _ = bench("--scenario", "split-cifar", "--strategy", "nested", "--data", "mini", out=tmp_path / "cut",
                    sets=["scenario.n_tasks=3"])
    assert code == 0 and ckpt.exists()
    assert load_record(tmp_path / "cut", "split-cifar", "nested", data="mini")["data_set"] == "mini"
    code, _ = bench("--scenario", "split-cifar", "--strategy", "nested", out=tmp_path / "cut", sets=["scenario.n_tasks=3"])
    assert code == 0 and not ckpt.exists()
    resumed, whole = load_record(tmp_path / "cut", "split-cifar", "nested"), load_record(tmp_path / "ref", "split-cifar", "nested")
    assert resumed["acc"] == whole["acc"] and resumed["displacement"] == whole["displacement"]


def test_nan_loss_stops_the_run_and_records_it_as_diverged(bench, tmp_path, capsys):
    plugin = tmp_path / "explode.py"
    plugin.write_text(
        "import torch.nn.functional as F\n"
        "from nlbench import Strategy, register_strategy\n\n"
        "@register_strategy('explode')\n"
        "class Explode(Strategy):\n"
        "    '''Adam whose loss turns NaN in the second task.'''\n"
        "    def __init__(self, ctx, **hp):\n"
        "        super().__init__(ctx, **hp)\n"
        "        self.opt = ctx.make_optimizer(self.model.parameters())\n"
        "    def observe(self, batch):\n"
        "        loss = F.cross_entropy(self.model(batch.x), batch.y)\n"
        "        if int(batch.task[0]) == 1:\n"
        "            loss = loss * float('nan')\n"
        "        self.opt.zero_grad(); loss.backward(); self.opt.step()\n"
        "        return loss.detach()\n")
    code, out = bench("--scenario", "split-cifar", "--strategy", "explode", "--plugin", str(plugin),
                      sets=["scenario.n_tasks=3"])
    captured = capsys.readouterr()
    rec = load_record(out, "split-cifar", "explode")
    assert code == 1
    assert "loss is nan in strategy 'Explode', task 2, epoch 1, step 5" in captured.out
    assert rec["status"] == "diverged" and rec["metrics"] == {"class_il": None, "task_il": None}
    assert len(rec["acc"]["class_il"]) == 1  # what was measured before it diverged
    assert "task 2" in rec["diverged_at"]


def test_a_second_process_on_a_running_run_stops_with_one_line_and_leaves_it_alone(cifar_root, tmp_path):
    """Two processes on one run would train side by side and overwrite each other's checkpoint (it
    happened: a campaign resumed from the checkpoint of a run still going by hand)."""
    from nlbench.launchers.sweep import run_lock
    record = tmp_path / "quick" / "full" / "split-cifar" / "replay" / "seed0.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with run_lock(record):  # this test process plays the run already going
        record.with_suffix(".ckpt").write_bytes(b"the running process's checkpoint")
        second = subprocess.run(bench_cmd(cifar_root, tmp_path), env=env, capture_output=True, text=True)
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"already running in process {os.getpid()}" in lines[0], second.stderr
        assert record.with_suffix(".ckpt").read_bytes() == b"the running process's checkpoint"
        assert not record.exists()
    assert not record.with_suffix(".lock").exists()  # released and removed with its holder
    record.with_suffix(".ckpt").unlink()
    done = subprocess.run(bench_cmd(cifar_root, tmp_path), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert record.exists() and not record.with_suffix(".lock").exists()


def test_a_stop_during_gdumbs_end_of_task_training_gives_up_at_once_and_resumes_identically(bench, tmp_path,
                                                                                             monkeypatch):
    """GDumb trains a network for minutes in after_task: SIGINT there stops the run at the next pass
    (ctx.check_stop), keeping the checkpoint of task 1's end; the same command then gives the
    uninterrupted matrix."""
    import signal

    from nlbench.registry import STRATEGIES
    gdumb = STRATEGIES["gdumb"].obj
    sets = ["scenario.n_tasks=3", "strategy.buffer_size=40", "strategy.passes=4"]
    code, _ = bench("--scenario", "split-cifar", "--strategy", "gdumb", out=tmp_path / "ref", sets=sets)
    assert code == 0
    real, calls, passes = gdumb.after_task, {"n": 0}, []

    def interrupted(self, task):
        calls["n"] += 1
        if calls["n"] == 2:  # task 2's end: the signal arrives while the memory training runs
            self.optimizer.register_step_post_hook(lambda *_: passes.append(1))
            signal.raise_signal(signal.SIGINT)
        return real(self, task)

    monkeypatch.setattr(gdumb, "after_task", interrupted)
    with pytest.raises(SystemExit) as stopped:
        bench("--scenario", "split-cifar", "--strategy", "gdumb", out=tmp_path / "cut", sets=sets)
    run = tmp_path / "cut" / "quick" / "full" / "split-cifar" / "gdumb@buffer_size=40,passes=4"
    assert stopped.value.code == 130 and (run / "seed0.ckpt").exists() and not (run / "seed0.json").exists()
    assert passes == []  # it gave up before its first pass, not after all of them
    monkeypatch.setattr(gdumb, "after_task", real)
    code, _ = bench("--scenario", "split-cifar", "--strategy", "gdumb", out=tmp_path / "cut", sets=sets)
    assert code == 0 and not (run / "seed0.ckpt").exists()
    ref = tmp_path / "ref" / "quick" / "full" / "split-cifar" / "gdumb@buffer_size=40,passes=4" / "seed0.json"
    assert json.loads((run / "seed0.json").read_text())["acc"] == json.loads(ref.read_text())["acc"]
