"""The campaign runner on tiny CPU runs: layout, budgeting, checkpoint at the deadline, resume."""
import json
import pathlib
import signal
import subprocess
import sys

import pytest
import yaml

from nlbench.cli import main
from nlbench.training.records import read_record

from conftest import TINY

BENCH = [sys.executable, "bench.py"]


def _campaign(tmp_path, seeds=(0, 1), sets=(), runs=None):
    spec = {"description": "tiny", "scenario": "split-cifar", "profile": "quick", "seeds": list(seeds),
            "set": {**dict(s.split("=", 1) for s in TINY), **dict(s.split("=", 1) for s in sets),
                    "scenario.n_tasks": 2},
            "runs": runs or [{"label": "FT", "strategy": "adam"},
                             {"label": "ER-20", "strategy": "replay", "set": {"strategy.buffer_size": 20}}]}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run(path, cifar_root, out, *extra):
    return main(["campaign", str(path), "--out", str(out), "--device", "cpu", "--data-root", str(cifar_root),
                 "--no-download", *extra])


@pytest.mark.slow
def test_campaign_writes_records_only_in_the_profile_layout(cifar_root, tmp_path, capsys):
    path, out = _campaign(tmp_path), tmp_path / "out"
    assert _run(path, cifar_root, out, "--budget", "600", "--jobs", "2") == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["quick/full/split-cifar/adam/seed0.json", "quick/full/split-cifar/adam/seed1.json",
                     "quick/full/split-cifar/replay@buffer_size=20/seed0.json",
                     "quick/full/split-cifar/replay@buffer_size=20/seed1.json"]
    assert read_record(out / files[2])["config"]["strategy"]["buffer_size"] == 20
    assert "4 runs finished" in capsys.readouterr().out
    # a second call has nothing to do and says the campaign is complete
    assert _run(path, cifar_root, out, "--budget", "60") == 0
    assert "0 of 4 left; complete" in capsys.readouterr().out


@pytest.mark.slow
def test_campaign_does_not_start_a_run_that_cannot_finish(cifar_root, tmp_path, capsys):
    path, out = _campaign(tmp_path, seeds=(0,), runs=[{"label": "FT", "strategy": "adam"}]), tmp_path / "out"
    assert _run(path, cifar_root, out, "--budget", "600") == 0
    rec = out / "quick/full/split-cifar/adam/seed0.json"
    data = json.loads(rec.read_text())
    data["wall_seconds"] = 500.0  # as if this row took 500 s
    rec.write_text(json.dumps(data))
    path = _campaign(tmp_path, seeds=(0, 1), runs=[{"label": "FT", "strategy": "adam"}])
    capsys.readouterr()
    assert _run(path, cifar_root, out, "--budget", "100", "--grace", "5") == 0
    text = capsys.readouterr().out
    assert "not started: FT seed 1 (expected 500 s" in text and "1 of 2 left" in text
    assert not (out / "quick/full/split-cifar/adam/seed1.json").exists()


@pytest.mark.slow
def test_campaign_checkpoints_at_the_deadline_and_resumes(cifar_root, tmp_path):
    """A run longer than the budget is stopped with a checkpoint; the same command finishes it."""
    path = _campaign(tmp_path, seeds=(0,), sets=["train.epochs=200"], runs=[{"label": "FT", "strategy": "adam"}])
    out = tmp_path / "out"
    cmd = [*BENCH, "campaign", str(path), "--out", str(out), "--device", "cpu", "--data-root", str(cifar_root),
           "--no-download"]
    first = subprocess.run([*cmd, "--budget", "16", "--grace", "8"], capture_output=True, text=True, timeout=120)
    record, ckpt = out / "quick/full/split-cifar/adam/seed0.json", out / "quick/full/split-cifar/adam/seed0.ckpt"
    assert first.returncode == 0, first.stderr[-500:]
    assert not record.exists() and ckpt.exists() and "1 checkpointed" in first.stdout
    second = subprocess.run([*cmd, "--budget", "300"], capture_output=True, text=True, timeout=320)
    assert second.returncode == 0 and "resuming" in second.stdout + second.stderr
    assert record.exists() and not ckpt.exists() and read_record(record)["status"] == "complete"


def _wait_until_training(lock, timeout=120):
    """Until the run holding ``lock`` (its pid inside) catches SIGTERM, i.e. is inside its training loop:
    a fixed sleep was too short on a busy machine, where the run was still building its model."""
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = pathlib.Path(f"/proc/{int(lock.read_text())}/status").read_text()
            caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
            if caught & (1 << (signal.SIGTERM - 1)):
                return
        except (OSError, ValueError):
            pass  # no lock (or no pid in it) yet
        time.sleep(0.2)
    raise AssertionError(f"the run never started training ({lock})")


@pytest.mark.slow
def test_campaign_sigterm_stops_its_runs_with_a_checkpoint(cifar_root, tmp_path):
    """SIGTERM (a batch system's end of job) to the campaign: its run saves a checkpoint and ends with
    it, no record, no run left going on its own; exit 143 (128 + SIGTERM)."""
    import signal
    import time
    path = _campaign(tmp_path, seeds=(0,), sets=["train.epochs=200"], runs=[{"label": "FT", "strategy": "adam"}])
    out = tmp_path / "out"
    proc = subprocess.Popen([*BENCH, "campaign", str(path), "--out", str(out), "--device", "cpu", "--data-root",
                             str(cifar_root), "--no-download", "--budget", "300"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_until_training(out / "quick/full/split-cifar/adam/seed0.lock")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and "terminated (SIGTERM)" in err, err[-500:]
    run = out / "quick/full/split-cifar/adam"
    assert (run / "seed0.ckpt").exists() and not (run / "seed0.json").exists()
    left = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    assert left == []


@pytest.mark.parametrize("argv, fragment", [
    (["campaign", "nope"], "unknown campaign 'nope'; valid: avalanche-parity, cifar10-converge, der-table2"),
    (["campaign", "der-table2"], "campaign needs --budget SECONDS"),
    (["campaign", "der-table2", "--budget", "10", "--grace", "20"], "--grace must be from 0 to below --budget"),
])
def test_campaign_bad_input_is_one_line(argv, fragment, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and err.count("\n") == 1


def test_campaign_status_lists_every_run(capsys, tmp_path):
    assert main(["campaign", "der-table2", "--status", "--out", str(tmp_path), "--seeds", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    from nlbench.reporting.specs import load_campaign
    rows = len(load_campaign("der-table2")["runs"])  # one line per row of the one seed, between the data set and the summary
    head, lines, summary = out[0], out[1:-1], out[-1]
    assert head.startswith("data set: full")
    assert len(lines) == rows and all(line.split()[0] == "missing" for line in lines)
    assert "der/full/split-cifar/replay@buffer_size=200/seed0.json" in "\n".join(lines)
    assert summary.startswith(f"summary: 0 done, 0 checkpointed, {rows} missing of {rows} on the full set")


@pytest.mark.slow
def test_campaign_refuses_a_record_of_another_config(cifar_root, tmp_path, capsys):
    path, out = _campaign(tmp_path, seeds=(0,), runs=[{"label": "FT", "strategy": "adam"}]), tmp_path / "out"
    assert _run(path, cifar_root, out, "--budget", "600") == 0
    rec = out / "quick/full/split-cifar/adam/seed0.json"
    data = json.loads(rec.read_text())
    data["config"]["train"]["lr"] = 0.5  # as if the protocol had changed since
    rec.write_text(json.dumps(data))
    capsys.readouterr()
    assert _run(path, cifar_root, out, "--status") == 2
    assert "holds a run with another config" in capsys.readouterr().err
