"""A non-editable install (pip install ., here into a folder of its own) runs the main job from any
folder: the baselines and scenarios ship inside the package, the mini set too, and `python -m
nlbench` is the command line."""
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def tracked_copy(target: pathlib.Path) -> pathlib.Path:
    """The checkout's files without records, environments and history (what a release holds)."""
    ignore = shutil.ignore_patterns(".git", ".venv", "results", "runs", "site", "*.egg-info", "__pycache__", "*.ckpt",
                                    "build")
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


def test_a_non_editable_install_runs_the_main_job_outside_the_checkout(tmp_path):
    source, installed, elsewhere = tracked_copy(tmp_path / "src"), tmp_path / "site", tmp_path / "elsewhere"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "--target", str(installed), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    shutil.rmtree(source)  # nothing may come from the source tree any more
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1"}

    def nlbench(*args):
        return subprocess.run([sys.executable, "-m", "nlbench", *args], cwd=elsewhere, env=env, capture_output=True,
                              text=True, timeout=600)
    where = subprocess.run([sys.executable, "-c", "import nlbench; print(nlbench.__file__)"], cwd=elsewhere, env=env,
                           capture_output=True, text=True)
    assert pathlib.Path(where.stdout.strip()).is_relative_to(installed)
    listed = nlbench("--list")
    assert listed.returncode == 0 and "icarl" in listed.stdout and "split-cifar" in listed.stdout, listed.stderr
    run = nlbench("--scenario", "split-cifar", "--strategy", "adam", "--data", "mini", "--quiet",
                  "--set", "backbone.width=8", "train.epochs=1", "data.train_per_class=50", "data.test_per_class=20")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (elsewhere / "runs" / "quick" / "mini" / "split-cifar" / "adam" / "seed0.json").exists()
    status = nlbench("campaign", "mir-online", "--status", "--out", "runs")
    assert status.returncode == 0 and "ER-200" in status.stdout, status.stderr
