"""--launcher ray on a local Ray cluster: a 4-run sweep gives the local runs' records, a worker killed
mid-run is retried from its checkpoint (every record once), an interrupted driver's rerun finishes the
sweep, and without --launcher ray nothing imports Ray."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import TINY, load_record

ray = pytest.importorskip("ray")
ROOT = pathlib.Path(__file__).resolve().parent.parent
SWEEP = ["--scenario", "split-cifar", "--strategy", "adam", "ewc", "--seeds", "0", "1"]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module (2 CPUs: this machine's); the CLI joins it."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def argv(cifar_root, out, sweep=SWEEP, sets=(), extra=()):
    return [*sweep, *extra, "--data-root", str(cifar_root), "--out", str(out), "--no-download", "--quiet",
            "--device", "cpu", "--set", *TINY, "scenario.n_tasks=2", *sets]


def records(out):
    return sorted(p.relative_to(out).as_posix() for p in pathlib.Path(out).rglob("*") if p.is_file())


def local_reference(cifar_root, out, sweep=SWEEP, sets=(), extra=()):
    """The same runs in this process with one torch thread, as each Ray worker has (--ray-cpus 1)."""
    import torch
    from nlbench.cli import main
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv(cifar_root, out, sweep, sets, extra)) == 0
    finally:
        torch.set_num_threads(threads)


def test_a_ray_sweep_gives_the_local_records(cluster, cifar_root, tmp_path):
    from nlbench.cli import main
    local_reference(cifar_root, tmp_path / "local")
    code = main([*argv(cifar_root, tmp_path / "ray"), "--launcher", "ray", "--address", cluster])
    assert code == 0 and records(tmp_path / "ray") == records(tmp_path / "local")
    assert len(records(tmp_path / "ray")) == 4
    for strategy in ("adam", "ewc"):
        for seed in (0, 1):
            a = load_record(tmp_path / "local", "split-cifar", strategy, seed)
            b = load_record(tmp_path / "ray", "split-cifar", strategy, seed)
            assert a["acc"] == b["acc"] and a["metrics"] == b["metrics"] and a["config"] == b["config"]
            assert b["versions"]["git_commit"] == a["versions"]["git_commit"]
    code = main([*argv(cifar_root, tmp_path / "ray"), "--launcher", "ray", "--address", cluster])
    assert code == 0 and len(records(tmp_path / "ray")) == 4  # all there: nothing runs twice


@pytest.mark.parametrize("seeds", [["0"], ["0", "1"]], ids=["one run", "a seed-parallel group"])
def test_a_killed_worker_is_retried_from_its_checkpoint(cluster, cifar_root, tmp_path, seeds):
    """SIGKILL the worker right after its first stage's checkpoint: Ray retries the task, the new
    worker resumes from the checkpoint(s) the driver kept, and the records equal an uninterrupted
    run's (a group: every seed's, as the same group trained locally)."""
    import hashlib
    import tempfile
    from nlbench.cli import main
    one = ["--scenario", "split-cifar", "--strategy", "adam", "--seeds", *seeds]
    longer = ["scenario.n_tasks=4", "train.epochs=6"]  # later stages take seconds: time to kill mid-run
    group = ["--seed-parallel", str(len(seeds))]
    local_reference(cifar_root, tmp_path / "local", one, longer, group)
    out = tmp_path / "ray"
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=main(
        [*argv(cifar_root, out, one, longer, group), "--launcher", "ray", "--address", cluster])))
    thread.start()
    folders = [pathlib.Path(tempfile.gettempdir()) / "nlbench-ray" / hashlib.sha256(
        str((out / "quick" / "full" / "split-cifar" / "adam" / f"seed{k}.json").resolve()).encode()).hexdigest()[:16] for k in seeds]
    deadline = time.time() + 300  # a busy machine: Ray's start, the upload and the first task take a while
    while not all((f / "run.ckpt").exists() for f in folders) and time.time() < deadline and thread.is_alive():
        time.sleep(0.02)
    assert all((f / "run.ckpt").exists() for f in folders), "the worker never checkpointed"
    time.sleep(0.5)  # let it hand the checkpoints to the driver's store
    killed = int((folders[0] / "worker.pid").read_text())
    os.kill(killed, signal.SIGKILL)
    thread.join(timeout=300)
    assert result.get("code") == 0
    assert int((folders[0] / "worker.pid").read_text()) != killed  # a second attempt ran it
    assert records(out) == [f"quick/full/split-cifar/adam/seed{k}.json" for k in seeds]
    for k in map(int, seeds):
        ours, local = load_record(out, "split-cifar", "adam", k), load_record(tmp_path / "local", "split-cifar", "adam", k)
        assert ours["acc"] == local["acc"]
        assert (ours["seed_parallel"] or {}).get("group_size") == (len(seeds) if len(seeds) > 1 else None)


def test_a_seed_parallel_ray_sweep_groups_what_can_group(cluster, cifar_root, tmp_path, capsys):
    """--seed-parallel 2 on Ray: adam's two seeds are one task (the local group's records), M3's run one
    seed per task (its Newton-Schulz step would mix the models), saying so in one line."""
    from nlbench.cli import main
    sweep = ["--scenario", "split-cifar", "--strategy", "adam", "m3", "--seeds", "0", "1"]
    group = ["--seed-parallel", "2"]
    local_reference(cifar_root, tmp_path / "local", sweep, extra=group)
    capsys.readouterr()
    assert main([*argv(cifar_root, tmp_path / "ray", sweep, extra=group), "--launcher", "ray", "--address", cluster]) == 0
    said = capsys.readouterr().out
    assert "m3 runs one seed per Ray task" in said and "4 runs in 3 seed-parallel tasks" in said
    for strategy, size in (("adam", 2), ("m3", None)):
        for seed in (0, 1):
            ours = load_record(tmp_path / "ray", "split-cifar", strategy, seed)
            local = load_record(tmp_path / "local", "split-cifar", strategy, seed)
            assert ours["acc"] == local["acc"] and ours["metrics"] == local["metrics"]
            assert (ours["seed_parallel"] or {}).get("group_size") == size


def test_an_interrupted_driver_is_finished_by_the_same_command(cluster, cifar_root, tmp_path):
    out = tmp_path / "ray"
    cmd = [sys.executable, str(ROOT / "bench.py"), *argv(cifar_root, out), "--launcher", "ray", "--address", cluster]
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while not any(p.endswith(".json") for p in records(out)) and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    output = driver.communicate(timeout=120)[0]
    done_first = [p for p in records(out) if p.endswith(".json")]
    if driver.returncode != 0:  # stopped before the end (it may have finished first on a fast machine)
        assert driver.returncode == 130 and "rerun the same command" in output, output
    assert 1 <= len(done_first) <= 4
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert records(out) == sorted(f"quick/full/split-cifar/{s}/seed{k}.json" for s in ("adam", "ewc") for k in (0, 1))
    assert all(json.loads((out / p).read_text())["status"] == "complete" for p in records(out))


def test_the_local_launcher_never_imports_ray(cifar_root, tmp_path):
    code = ("import sys; from nlbench.cli import main; "
            f"rc = main({argv(cifar_root, tmp_path / 'local', ['--scenario', 'split-cifar', '--strategy', 'adam'])!r}); "
            "assert rc == 0 and 'ray' not in sys.modules, sorted(m for m in sys.modules if 'ray' in m)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True).returncode == 0


def test_ray_options_are_checked(cifar_root, tmp_path, capsys):
    from nlbench.cli import main
    assert main([*argv(cifar_root, tmp_path), "--address", "auto"]) == 2
    assert "--address needs --launcher ray" in capsys.readouterr().err
    assert main([*argv(cifar_root, tmp_path), "--launcher", "ray", "--jobs", "2"]) == 2
    assert "--jobs is the local launcher's" in capsys.readouterr().err


def test_a_tuning_study_runs_on_ray_workers(cluster, cifar_root, tmp_path, capsys):
    """bench.py tune --launcher ray --jobs 2: two Ray tasks share one study's budget exactly."""
    optuna = pytest.importorskip("optuna")
    from nlbench.cli import main
    argv = ["tune", "--scenario", "split-cifar", "--strategy", "adam", "--trials", "3", "--jobs", "2", "--launcher",
            "ray", "--address", cluster, "--data-root", str(cifar_root), "--no-download", "--device", "cpu",
            "--out", str(tmp_path), "--set", *TINY, "train.epochs=1", "scenario.n_tasks=2"]
    assert main(argv) == 0
    assert "2 tuning workers (2+1 trials)" in capsys.readouterr().out
    name = "split-cifar.quick.full.adam.held-out"
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/tuning/{name}.sqlite3")
    assert sorted(t.state.name for t in study.trials) in (["COMPLETE"] * 3, ["COMPLETE", "COMPLETE", "PRUNED"])
    assert (tmp_path / "tuning" / f"{name}.yaml").exists()
