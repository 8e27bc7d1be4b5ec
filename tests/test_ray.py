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


def argv(cifar_root, out, sweep=SWEEP, sets=()):
    return [*sweep, "--data-root", str(cifar_root), "--out", str(out), "--no-download", "--quiet",
            "--device", "cpu", "--set", *TINY, "scenario.n_tasks=2", *sets]


def records(out):
    return sorted(p.relative_to(out).as_posix() for p in pathlib.Path(out).rglob("*") if p.is_file())


def local_reference(cifar_root, out, sweep=SWEEP, sets=()):
    """The same runs in this process with one torch thread, as each Ray worker has (--ray-cpus 1)."""
    import torch
    from nlbench.cli import main
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(argv(cifar_root, out, sweep, sets)) == 0
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


def test_a_killed_worker_is_retried_from_its_checkpoint(cluster, cifar_root, tmp_path):
    """SIGKILL the worker right after its first stage's checkpoint: Ray retries the task, the new
    worker resumes from the checkpoint the driver kept, and the record equals an uninterrupted run."""
    import tempfile
    from nlbench.cli import main
    one = ["--scenario", "split-cifar", "--strategy", "adam", "--seeds", "0"]
    longer = ["scenario.n_tasks=4", "train.epochs=6"]  # later stages take seconds: time to kill mid-run
    local_reference(cifar_root, tmp_path / "local", one, longer)
    out = tmp_path / "ray"
    result = {}
    thread = threading.Thread(target=lambda: result.update(code=main(
        [*argv(cifar_root, out, one, longer), "--launcher", "ray", "--address", cluster])))
    thread.start()
    import hashlib
    key = hashlib.sha256(str((out / "split-cifar" / "adam" / "seed0.json").resolve()).encode()).hexdigest()[:16]
    folder = pathlib.Path(tempfile.gettempdir()) / "nlbench-ray" / key
    deadline = time.time() + 120
    while not (folder / "run.ckpt").exists() and time.time() < deadline and thread.is_alive():
        time.sleep(0.02)
    assert (folder / "run.ckpt").exists(), "the worker never checkpointed"
    time.sleep(0.5)  # let it hand the checkpoint to the driver's store
    killed = int((folder / "worker.pid").read_text())
    os.kill(killed, signal.SIGKILL)
    thread.join(timeout=300)
    assert result.get("code") == 0
    assert int((folder / "worker.pid").read_text()) != killed  # a second attempt ran it
    assert records(out) == ["split-cifar/adam/seed0.json"]
    assert load_record(out, "split-cifar", "adam")["acc"] == load_record(tmp_path / "local", "split-cifar", "adam")["acc"]


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
    assert records(out) == sorted(f"split-cifar/{s}/seed{k}.json" for s in ("adam", "ewc") for k in (0, 1))
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
