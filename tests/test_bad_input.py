"""Every bad input: a one-line message saying what is wrong and what is allowed, exit code 2,
and nothing written."""
import json
import shutil

import numpy as np
import pytest
import torch

from nlbench.training import config
def _files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


BAD = [
    # (id, argv, extra --set, message fragment)
    ("unknown scenario", ["--scenario", "split-mnist", "--strategy", "adam"], [], "unknown scenario 'split-mnist'; valid: cifar10"),
    ("unknown strategy", ["--scenario", "split-cifar", "--strategy", "sgdx"], [], "unknown strategy 'sgdx'; valid: adam"),
    ("unknown backbone", ["--scenario", "split-cifar", "--strategy", "adam"], ["backbone.name=vgg"], "unknown backbone 'vgg'; valid: cnn, mlp, resnet18"),
    ("unknown plugin file", ["--scenario", "split-cifar", "--strategy", "adam", "--plugin", "nope.py"], [], "plugin file not found: nope.py"),
    ("unknown train key", ["--scenario", "split-cifar", "--strategy", "adam"], ["train.epoch=3"], "unknown config key 'train.epoch'; valid: amp, augment, batch_size"),
    ("negative seed", ["--scenario", "split-cifar", "--strategy", "adam", "--seeds", "-1"], [], "--seeds must be integers from 0 to 2^63 - 1, got -1"),
    ("seed over 2^64", ["--scenario", "split-cifar", "--strategy", "adam", "--seeds", str(2 ** 64)], [], "--seeds must be integers from 0 to 2^63 - 1"),
    ("a --data-root without CIFAR-10", ["--scenario", "split-cifar", "--strategy", "adam", "--data-root", "{empty}/typo"], [],
     "holds no CIFAR-10 (CIFAR-10 not found at"),
    ("unknown strategy key", ["--scenario", "split-cifar", "--strategy", "ewc"], ["strategy.lambda=3"], "strategy 'ewc' has no hyperparameter lambda (its keys: fisher, fisher_chunk"),
    ("key only some strategies know", ["--scenario", "split-cifar", "--strategy", "ewc", "adam"], ["strategy.lam=3"],
     "strategy 'adam' has no hyperparameter lam (its keys: none); to set a key for some strategies of a sweep only, "
     "write strategy.NAME.KEY=VALUE"),
    ("unknown section", ["--scenario", "split-cifar", "--strategy", "adam"], ["optim.lr=3"], "keys start with one of: scenario"),
    ("zero epochs", ["--scenario", "split-cifar", "--strategy", "adam", "--epochs", "0"], [], "train.epochs must be a positive int, got 0"),
    ("wrong type", ["--scenario", "split-cifar", "--strategy", "adam"], ["train.batch_size=big"], "train.batch_size must be int, got 'big'"),
    ("negative lambda", ["--scenario", "split-cifar", "--strategy", "ewc"], ["strategy.lam=-1"], "strategy.lam must be a non-negative number, got -1"),
    ("empty replay buffer", ["--scenario", "split-cifar", "--strategy", "replay"], ["strategy.buffer_size=0"], "strategy.buffer_size must be a positive integer, got 0"),
    ("zero period", ["--scenario", "split-cifar", "--strategy", "nested"], ["strategy.periods=[0,4,1]"], "strategy.periods must hold positive integers"),
    ("fractional period", ["--scenario", "split-cifar", "--strategy", "nested"], ["strategy.periods=[1.5,4,1]"], "strategy.periods must hold positive integers"),
    ("wrong number of periods", ["--scenario", "split-cifar", "--strategy", "nested"], ["strategy.periods=[4,1]"], "a list of 3 positive integers"),
    ("bad grad_reduce", ["--scenario", "split-cifar", "--strategy", "cms"], ["strategy.grad_reduce=median"], "strategy.grad_reduce must be one of sum, mean, drop"),
    ("bad profile value", ["--scenario", "split-cifar", "--strategy", "adam"], ["data.train_per_class=-5"], "data.train_per_class must be a positive int"),
    ("missing data with --data full", ["--scenario", "split-cifar", "--strategy", "adam", "--data", "full", "--data-root", "{empty}"], [],
     "CIFAR-10 not found at"),
    ("--out is a file", ["--scenario", "split-cifar", "--strategy", "adam", "--out", "{file}"], [], "is a file, not a folder"),
    ("unknown data choice", ["--scenario", "split-cifar", "--strategy", "adam", "--data", "tiny"], [], "unknown --data 'tiny'; valid: auto, full, mini"),
    ("a plugin that is not a .py file", ["--scenario", "split-cifar", "--strategy", "adam", "--plugin", "{file}"], [],
     "is not a Python file (.py)"),
    ("negative class order seed", ["--scenario", "split-cifar", "--strategy", "adam"], ["scenario.class_order_seed=-1"],
     "scenario.class_order_seed must be null or an integer from 0 to 2^63 - 1"),
    ("negative classes a task", ["--scenario", "split-cifar", "--strategy", "adam"], ["scenario.classes_per_task=-1"],
     "split: scenario.classes_per_task must be a positive integer, got -1"),
    ("negative task count", ["--scenario", "permuted-cifar", "--strategy", "adam"], ["scenario.n_tasks=-1"],
     "permuted: scenario.n_tasks must be a positive integer, got -1"),
    ("negative CMS width", ["--scenario", "split-cifar", "--strategy", "nested-cms"], ["strategy.hidden_mult=-1"],
     "strategy.hidden_mult must be a positive integer, got -1"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_a_one_line_error_exit_2_and_nothing_written(case, cifar_root, tmp_path, capsys):
    from nlbench.cli import main
    _, argv, sets, fragment = case
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    (tmp_path / "file").write_text("not a folder")
    argv = [a.replace("{empty}", str(empty)).replace("{file}", str(tmp_path / "file")) for a in argv]
    if "--data-root" not in argv:
        argv += ["--data-root", str(cifar_root)]
    code = main([*argv, *([] if "--out" in argv else ["--out", str(out)]), "--no-download", "--quiet", "--device",
                 "cpu", "--set", "train.epochs=1", *sets])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err
    assert fragment in err
    assert _files(out) == []
    assert not (empty / "typo").exists()  # a typo'd --data-root is not created


def test_a_plugin_without_observe_is_refused_before_it_runs(tmp_path, cifar_root, capsys):
    from nlbench.cli import main
    plugin = tmp_path / "lazy.py"
    plugin.write_text("from nlbench import Strategy, register_strategy\n"
                      "@register_strategy('lazy-plugin')\nclass Lazy(Strategy):\n    pass\n")
    code = main(["--scenario", "split-cifar", "--strategy", "lazy-plugin", "--plugin", str(plugin), "--data-root",
                 str(cifar_root), "--out", str(tmp_path / "o"), "--no-download", "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "strategy 'lazy-plugin' (Lazy) defines no observe" in err and "\n" not in err
    assert _files(tmp_path / "o") == []


def test_a_misspelled_parameter_in_a_scenario_file_names_the_valid_ones(tmp_path, monkeypatch, capsys):
    from nlbench.cli import main
    (tmp_path / "my-split.yaml").write_text("builder: split\nparams: {n_task: 3}\nprofiles: {quick: {}}\n")
    monkeypatch.setenv("NLBENCH_SCENARIOS", str(tmp_path))
    assert main(["--scenario", "my-split", "--strategy", "adam", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "scenario 'my-split' has no parameter n_task (builder split takes: n_tasks, classes_per_task" in err
    assert "\n" not in err and _files(tmp_path / "o") == []


def test_one_broken_scenario_file_does_not_break_list(tmp_path, monkeypatch, capsys):
    from nlbench.cli import main
    (tmp_path / "broken.yaml").write_text("builder: split\nparams: [\n")
    monkeypatch.setenv("NLBENCH_SCENARIOS", str(tmp_path))
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "UNUSABLE: malformed YAML" in out and "split-cifar" in out


def test_the_batches_folder_itself_is_a_data_root(cifar_root):
    from nlbench.training.data import select_data
    assert select_data("auto", cifar_root / "cifar-10-batches-py", False).kind == "full"


def test_a_plugin_cannot_take_a_built_in_strategy_name(tmp_path, capsys):
    from nlbench.cli import main
    plugin = tmp_path / "clash.py"
    plugin.write_text("from nlbench import PlainStrategy, register_strategy\n"
                      "@register_strategy('ewc')\nclass Mine(PlainStrategy):\n    pass\n")
    assert main(["--list", "--plugin", str(plugin)]) == 2
    err = capsys.readouterr().err.strip()
    assert "strategy name 'ewc' is already registered by" in err and "baselines/ewc.py" in err and "\n" not in err
    from nlbench.registry import STRATEGIES
    assert STRATEGIES["ewc"].obj.__name__ != "Mine"


def test_seeds_must_be_integers_and_a_comma_gets_the_hint(capsys):
    from nlbench.cli import main
    assert main(["--scenario", "split-cifar", "--strategy", "adam", "--seeds", "zero"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seeds takes integers, got 'zero'"
    assert main(["--scenario", "split-cifar", "--strategy", "adam", "--seeds", "0,1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seeds takes space-separated integers: --seeds 0 1 (got '0,1')"


def test_plugin_that_raises_at_import(tmp_path, capsys):
    from nlbench.cli import main
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise ImportError('needs package foo')\n")
    assert main(["--list", "--plugin", str(plugin)]) == 2
    err = capsys.readouterr().err
    assert f"plugin {plugin} failed to import: ImportError: needs package foo" in err


def test_malformed_yaml_names_file_and_line(tmp_path, monkeypatch, capsys):
    from nlbench.cli import main
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "broken.yaml").write_text("builder: split\nparams:\n  n_tasks: [5\nprofiles: {}\n")
    monkeypatch.setattr(config, "SCENARIO_DIR", folder)
    assert main(["--scenario", "broken", "--strategy", "adam", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"malformed YAML in {folder / 'broken.yaml'}:4" in err


def test_corrupt_batch_file_names_the_file(cifar_root, tmp_path, capsys):
    from nlbench.cli import main
    root = tmp_path / "copy"
    shutil.copytree(cifar_root, root)
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    code = main(["--scenario", "split-cifar", "--strategy", "adam", "--data-root", str(root),
                 "--out", str(tmp_path / "o"), "--no-download", "--quiet", "--device", "cpu"])
    assert code == 2 and "corrupt CIFAR-10 batch file" in capsys.readouterr().err
    assert _files(tmp_path / "o") == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(capsys):
    from nlbench.cli import main
    assert main(["--scenario", "split-cifar", "--strategy", "adam", "--device", "cuda"]) == 2
    assert "no CUDA device is available; use --device cpu or auto" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "altered", "missing"])
def test_damaged_mini_set_is_refused(damage, tmp_path, monkeypatch, capsys):
    from nlbench.training import data
    from nlbench.cli import main
    bad = tmp_path / "cifar10_mini.npz"
    raw = data.MINI_PATH.read_bytes()
    if damage == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    elif damage == "altered":  # one JPEG byte changed: still a valid npz
        arrays = dict(np.load(data.MINI_PATH))
        arrays["train_jpeg"][1000] ^= 1
        np.savez(bad, **arrays)
    monkeypatch.setattr(data, "MINI_PATH", bad)
    code = main(["--scenario", "split-cifar", "--strategy", "adam", "--data", "mini", "--out", str(tmp_path / "o"),
                 "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert {"truncated": "is unreadable", "altered": "is corrupt", "missing": "is missing"}[damage] in err
    assert "reinstall nlbench" in err and _files(tmp_path / "o") == []


def test_record_from_other_data_is_not_silently_skipped(bench, capsys):
    """Runs on the two data sets live apart (OUT/PROFILE/DATA/...); a full-data record moved by hand
    into the mini set's place is refused, never taken for a mini run."""
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["train.epochs=1"])
    full = out / "quick" / "full" / "split-cifar" / "adam" / "seed0.json"
    before = full.read_text()
    code, _ = bench("--scenario", "split-cifar", "--strategy", "adam", "--data", "mini", sets=["train.epochs=1"])
    mini = out / "quick" / "mini" / "split-cifar" / "adam" / "seed0.json"
    assert code == 0 and full.read_text() == before and json.loads(mini.read_text())["data_set"] == "mini"
    mini.write_text(before)
    code, _ = bench("--scenario", "split-cifar", "--strategy", "adam", "--data", "mini", sets=["train.epochs=1"])
    err = capsys.readouterr().err
    assert code == 2 and "holds a run on the full data set; use another --out for runs on the mini set" in err


def test_ray_never_asks_for_gpus_a_cluster_lacks():
    """--launcher ray on a CPU-only cluster used to ask 1 GPU per run and wait forever."""
    from types import SimpleNamespace
    from nlbench.errors import UserError
    from nlbench.launchers.ray_launcher import gpus_per_run
    auto = SimpleNamespace(ray_gpus=None, device="auto")
    assert gpus_per_run(auto, 0) == 0.0 and gpus_per_run(auto, 4) == 1.0
    assert gpus_per_run(SimpleNamespace(ray_gpus=None, device="cpu"), 4) == 0.0
    assert gpus_per_run(SimpleNamespace(ray_gpus=0.25, device="cuda"), 1) == 0.25
    with pytest.raises(UserError, match="each run asks 1 GPU but the Ray cluster has 0"):
        gpus_per_run(SimpleNamespace(ray_gpus=None, device="cuda"), 0)


def test_ray_address_auto_without_a_cluster_is_a_one_line_error(cifar_root, tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    from nlbench.cli import main
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code = main(["--scenario", "split-cifar", "--strategy", "adam", "--launcher", "ray", "--address", "auto",
                 "--data-root", str(cifar_root), "--out", str(tmp_path / "o"), "--no-download", "--quiet",
                 "--device", "cpu", "--set", "train.epochs=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: no Ray cluster at --address auto") and "ray start --head" in err[-1]
    assert _files(tmp_path / "o") == []


def test_a_torchvision_of_another_build_is_a_one_line_error(monkeypatch):
    """torch and torchvision from different indexes: torchvision fails at import with an operator error."""
    import importlib

    from nlbench.training.data import torchvision_module
    from nlbench.errors import UserError
    real = importlib.import_module

    def broken(name, *args):
        if name.startswith("torchvision"):
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *args)
    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(UserError, match="install the two from the same index") as err:
        torchvision_module("transforms")
    assert "\n" not in str(err.value) and "torchvision::nms" in str(err.value)


def test_ray_is_told_to_stay_quiet_unless_the_user_chose_otherwise():
    """No colour codes around the workers' lines in a log file or CI, and no usage-statistics notice
    (the collection choice itself is left to the user); a value the user set is kept."""
    from nlbench.launchers.ray_launcher import quiet_ray_environment
    assert quiet_ray_environment({}, terminal=False) == {"RAY_COLOR_PREFIX": "0", "RAY_USAGE_STATS_PROMPT_ENABLED": "0"}
    assert quiet_ray_environment({}, terminal=True) == {"RAY_USAGE_STATS_PROMPT_ENABLED": "0"}
    assert quiet_ray_environment({"RAY_COLOR_PREFIX": "1"}, terminal=False) == {"RAY_USAGE_STATS_PROMPT_ENABLED": "0"}
    assert "RAY_USAGE_STATS_ENABLED" not in quiet_ray_environment({}, terminal=False)


# --- the fuzz test: bad values for every key a run can be given ---

FUZZ = ("abc", "-1", "[1,", "1e999", "{}")


def every_key():
    """(scenario, strategy, KEY, its default) for every config key of the defaults, every built-in
    strategy's hyperparameters and every scenario's parameters."""
    from nlbench.plugins import load
    from nlbench.registry import AVALANCHE_PREFIX, STRATEGIES

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and prefix + k not in ("scenario", "strategy"):
                yield from flat(v, f"{prefix}{k}.")
            elif prefix + k not in ("scenario", "strategy"):
                yield prefix + k, v
    load()
    keys = [("split-cifar", "adam", k, v) for k, v in flat(config.DEFAULTS)]
    keys += [("split-cifar", name, f"strategy.{k}", v) for name, e in sorted(STRATEGIES.items())
             if not name.startswith(AVALANCHE_PREFIX) for k, v in e.defaults.items()]
    keys += [(sc, "adam", f"scenario.{k}", v) for sc in config.scenario_names()
             for k, v in (config.load_scenario_file(sc)["params"] or {}).items()]
    return keys


def test_every_key_refuses_bad_values_in_one_line_with_exit_2_and_writes_nothing(cifar_root, tmp_path, capsys):
    """Every key of the default config, of every built-in strategy and of every scenario, fed values of
    the wrong kind: each is refused when the config is resolved, or (a value only the run can judge, e.g.
    a period list's length) by the run before it writes anything; never a traceback, never a record."""
    from nlbench.cli import main
    from nlbench.errors import UserError
    at_run = []
    for scenario, strategy, key, default in every_key():
        for bad in FUZZ:
            try:
                config.resolve(scenario, strategy, config.profile_names(scenario)[0], config.parse_sets([f"{key}={bad}"]))
            except UserError as exc:
                assert "\n" not in str(exc), (key, bad, str(exc))
                continue
            at_run.append((scenario, strategy, key, bad))
    assert len(at_run) < 60  # most are caught before anything is loaded
    out = tmp_path / "out"
    for scenario, strategy, key, bad in at_run:
        code = main(["--scenario", scenario, "--strategy", strategy, "--data-root", str(cifar_root), "--out", str(out),
                     "--no-download", "--quiet", "--device", "cpu", "--set", "train.epochs=1", "data.tasks=[0,1]",
                     f"{key}={bad}"])
        err = capsys.readouterr().err.strip()
        assert code == 2, (key, bad, err[-300:])
        assert err.startswith("error: ") and "\n" not in err, (key, bad, err[-300:])
        assert [p for p in _files(out) if p.suffix == ".json"] == [], (key, bad)


def test_every_option_refuses_a_bad_value_in_one_line(tmp_path, capsys):
    from nlbench.cli import main
    base = ["--scenario", "split-cifar", "--strategy", "adam", "--out", str(tmp_path / "out"), "--quiet"]
    for option, bad in (("--seeds", "x"), ("--seeds", "0,1"), ("--jobs", "0"), ("--seed-parallel", "0"),
                        ("--data", "tiny"), ("--device", "tpu"), ("--profile", "nope"), ("--plugin", "nope.py")):
        code = main([*base, option, bad])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and "\n" not in err, (option, bad, err[-300:])
    assert _files(tmp_path / "out") == []
