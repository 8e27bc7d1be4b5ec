"""What tripped a new user in their first hour (issue 19), each pinned by a test."""
import json
import os
import signal
import subprocess
import sys
import time

from conftest import TINY, load_record

from nlbench.cli import main

BENCH = [sys.executable, "bench.py"]


def test_one_ctrl_c_stops_an_avalanche_run(cifar_root, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*BENCH, "--scenario", "split-cifar", "--strategy", "avalanche:Naive", "--device", "cpu",
                             "--data-root", str(cifar_root), "--out", str(tmp_path), "--no-download", "--quiet",
                             "--set", *TINY, "train.epochs=200"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    while line and "data:" not in line:  # the announcement comes right before the run starts
        line = proc.stdout.readline()
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and time.monotonic() - start < 20, err[-500:]
    assert "no record was written" in err and not list(tmp_path.rglob("seed0.json"))


def test_plugin_check_that_raises_a_plain_exception_is_a_one_line_error(bench, tmp_path, capsys):
    plugin = tmp_path / "picky.py"
    plugin.write_text(
        "from nlbench import Strategy, register_strategy\n\n"
        "@register_strategy('picky')\nclass Picky(Strategy):\n    defaults = {'k': 1}\n\n"
        "    @classmethod\n    def check(cls, hp):\n        if hp['k'] > 1:\n            raise ValueError('k must be 1')\n")
    code, _ = bench("--scenario", "split-cifar", "--strategy", "picky", "--plugin", str(plugin), sets=["strategy.k=2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "strategy 'picky' rejected its settings in check(): ValueError: k must be 1" in err


def test_record_says_which_optimizer_and_which_plugin_file_trained_the_model(bench, tmp_path):
    plugin = tmp_path / "my_sgd.py"
    plugin.write_text(
        "import torch\nfrom nlbench import Strategy, register_strategy\n\n"
        "@register_strategy('my-sgd')\nclass MySGD(Strategy):\n"
        "    def __init__(self, ctx, **hp):\n        super().__init__(ctx, **hp)\n"
        "        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.05)\n\n"
        "    def observe(self, batch):\n"
        "        return self.update(self.ctx.loss(self.model(batch.x), batch.y), self.opt)\n")
    code, out = bench("--scenario", "split-cifar", "--strategy", "my-sgd", "--plugin", str(plugin))
    rec = load_record(out, "split-cifar", "my-sgd")
    assert code == 0 and [(o["type"], o["lr"]) for o in rec["optimizers"]] == [("SGD", 0.05)]
    import hashlib
    assert rec["strategy_source"] == {"file": str(plugin.resolve()), "sha256": hashlib.sha256(plugin.read_bytes()).hexdigest()}
    from nlbench.reporting.report import load_records
    assert set(load_records(out)["optimizer"]) == {"SGD, lr 0.05"}  # what the report's caption shows


def test_report_says_where_it_wrote_and_describes_the_users_records(bench, tmp_path, capsys):
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam")
    code, out = bench("--scenario", "split-cifar", "--strategy", "avalanche:EWC", out=out, sets=["strategy.ewc_lambda=10"])
    capsys.readouterr()
    assert main(["report", "--runs", str(out), "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert f"-> {out / 'report'}/" in printed
    readme = (out / "report" / "README.md").read_text()
    assert str(out) in readme and "results/reproduce.sh" not in readme
    table = (out / "report" / "tables" / "split-cifar.md").read_text()
    assert "avalanche:EWC@ewc_lambda=10" in table and "Adam (fine-tune)" in table  # side by side


def test_avalanche_runs_print_none_of_avalanches_warnings(cifar_root, tmp_path):
    done = subprocess.run([*BENCH, "--scenario", "split-cifar", "--strategy", "avalanche:Naive", "--device", "cpu",
                           "--data-root", str(cifar_root), "--out", str(tmp_path), "--no-download", "--quiet",
                           "--set", *TINY, "scenario.n_tasks=2"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-500:]
    assert "No loggers specified" not in done.stderr and "QP solver" not in done.stderr


def test_speed_refuses_too_few_images_and_bad_out_before_measuring(cifar_root, tmp_path, capsys):
    base = ["speed", "--device", "cpu", "--workers", "0", "--data-root", str(cifar_root), "--no-download",
            "--skip-avalanche", "--set", "backbone.width=8"]
    assert main([*base, "--images", "64", "--out", str(tmp_path / "s.json")]) == 2
    assert "use at least 128 (4 batches)" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main([*base, "--images", "200", "--out", str(blocker / "speed.json")]) == 2
    assert "is not a writable folder" in capsys.readouterr().err
    assert main([*base, "--images", "200", "--out", str(tmp_path)]) == 0  # a folder: speed.json inside it
    assert json.loads((tmp_path / "speed.json").read_text())["batches"]
