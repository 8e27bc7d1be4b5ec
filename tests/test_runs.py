"""End-to-end runs through the command line on the synthetic data."""
import json
import os

import pytest
import torch

from conftest import load_record
from nlbench.training.data import Augmenter, normalize
from nlbench.training.records import REQUIRED_KEYS
from nlbench.registry import STRATEGIES

def test_adam_forgets_first_task_in_class_il_while_replay_keeps_much_of_it(bench):
    sets = ["train.epochs=3", "strategy.buffer_size=100"]
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["train.epochs=3"])
    assert code == 0
    code, out = bench("--scenario", "split-cifar", "--strategy", "replay", sets=sets)
    assert code == 0
    adam = load_record(out, "split-cifar", "adam")["acc"]["class_il"]
    replay = load_record(out, "split-cifar", "replay@buffer_size=100")["acc"]["class_il"]
    assert adam[0][0] > 80            # task 1 was learned ...
    assert adam[-1][0] < 10           # ... and forgotten by fine-tuning
    assert replay[-1][0] > 30         # replay keeps much of it
    assert replay[-1][0] > adam[-1][0] + 25


def test_record_has_every_required_key_and_task_il_is_at_least_class_il(bench):
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam")
    rec = load_record(out, "split-cifar", "adam")
    assert code == 0 and all(k in rec for k in REQUIRED_KEYS)
    assert rec["tasks"] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert set(rec["acc"]) == {"class_il", "task_il"} and len(rec["acc"]["class_il"]) == 5
    for ci_row, ti_row in zip(rec["acc"]["class_il"], rec["acc"]["task_il"]):
        assert all(t >= c for c, t in zip(ci_row, ti_row))
    assert rec["config"]["strategy"] == {} and rec["config"]["backbone"]["name"] == "cnn"
    assert rec["versions"]["torch"] == torch.__version__
    assert rec["peak_memory_kind"] == "process_peak_rss"


def test_same_seed_gives_the_same_matrix_and_another_seed_does_not(bench, tmp_path):
    bench("--scenario", "split-cifar", "--strategy", "replay", "--seeds", "0", "1", out=tmp_path / "a")
    bench("--scenario", "split-cifar", "--strategy", "replay", "--seeds", "0", out=tmp_path / "b")
    a0 = load_record(tmp_path / "a", "split-cifar", "replay", 0)["acc"]
    a1 = load_record(tmp_path / "a", "split-cifar", "replay", 1)["acc"]
    b0 = load_record(tmp_path / "b", "split-cifar", "replay", 0)["acc"]
    assert a0 == b0
    assert a0 != a1


def test_nested_with_all_periods_one_equals_adam(bench):
    """The level machinery adds no side effect: Adam is element-wise."""
    bench("--scenario", "split-cifar", "--strategy", "adam")
    bench("--scenario", "split-cifar", "--strategy", "nested", sets=["strategy.periods=1"])
    _, out = bench("--scenario", "split-cifar", "--strategy", "nested")
    adam = load_record(out, "split-cifar", "adam")["acc"]
    ones = load_record(out, "split-cifar", "nested@periods=1")
    assert ones["acc"] == adam
    assert [lv["period"] for lv in ones["strategy_info"]["levels"]] == [1, 1, 1]
    assert load_record(out, "split-cifar", "nested")["acc"] != adam  # and the default schedule matters


@pytest.mark.parametrize("scenario", ["split-cifar", "permuted-cifar", "cifar10"])
@pytest.mark.parametrize("strategy", ["nested", "cms", "nested-cms"])
def test_nested_strategies_run_on_every_scenario(bench, scenario, strategy):
    sets = ["scenario.n_tasks=3"] if scenario != "cifar10" else []
    code, out = bench("--scenario", scenario, "--strategy", strategy, sets=["train.epochs=1", *sets])
    rec = json.loads(next((out / "quick" / "full" / scenario).glob("*/seed0.json")).read_text())
    assert code == 0 and rec["status"] == "complete" and rec["strategy"] == strategy
    levels = rec["strategy_info"]["levels"]
    assert sum(lv["n_params"] for lv in levels) > 0 and all(lv["parameters"] for lv in levels)


def test_level_description_records_periods_and_learning_rates(bench):
    _, out = bench("--scenario", "split-cifar", "--strategy", "nested-blog", sets=["scenario.n_tasks=2"])
    levels = load_record(out, "split-cifar", "nested-blog")["strategy_info"]["levels"]
    assert [lv["name"] for lv in levels] == ["stem", "stage1", "stage2", "head"]
    assert [lv["period"] for lv in levels] == [1, 2, 4, 8]
    assert [lv["lr"] for lv in levels] == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])


def test_joint_is_the_upper_bound(bench):
    bench("--scenario", "split-cifar", "--strategy", "adam", "joint")
    _, out = bench("--scenario", "split-cifar", "--strategy", "joint")
    joint = load_record(out, "split-cifar", "joint")
    adam = load_record(out, "split-cifar", "adam")
    assert joint["acc"]["class_il"][0] is None and joint["metrics"]["class_il"]["forgetting"] is None
    assert joint["metrics"]["class_il"]["avg_acc"] > adam["metrics"]["class_il"]["avg_acc"] + 30


def test_permutations_identical_for_train_and_test_and_different_between_tasks(cifar_root):
    from nlbench.training.config import resolve
    from nlbench.training.data import select_data
    from nlbench.training.splits import build_scenario
    cfg = resolve("permuted-cifar", "adam", "quick", {"data": {"train_per_class": 10, "test_per_class": 5},
                                                      "scenario": {"permute": "pixels", "standardize": "dataset"}})
    sc = build_scenario("permuted-cifar", "permuted", cfg, 0, torch.device("cpu"), select_data("full", cifar_root, False))
    assert len({tuple(p.tolist()) for p in sc.perms}) == len(sc.tasks)
    for p in sc.perms:
        assert sorted(p.tolist()) == list(range(1024))
    raw = sc.test_x[:4]
    for t in range(len(sc.tasks)):
        tid = torch.full((4,), t)
        x = sc.prepare(raw, tid, None)
        # the same pixel moved to the same place in every channel, for test (no augmentation) ...
        flat = raw.flatten(2)[:, :, sc.perms[t]].view_as(raw)
        assert torch.equal(x, normalize(flat))
    # ... and training images go through the same function with the same task index
    g = torch.Generator().manual_seed(0)
    aug = Augmenter(torch.Generator().manual_seed(0))
    xa = sc.prepare(raw, torch.ones(4, dtype=torch.long), aug)
    expected = normalize(Augmenter(g)(raw).flatten(2)[:, :, sc.perms[1]].view_as(raw))
    assert torch.equal(xa, expected)
    # a second permuted scenario with another seed draws other permutations
    sc1 = build_scenario("permuted-cifar", "permuted", cfg, 1, torch.device("cpu"), select_data("full", cifar_root, False))
    assert not torch.equal(sc1.perms, sc.perms)


def test_value_permutations_move_every_input_and_standardise_each_image(cifar_root):
    from nlbench.training.config import resolve
    from nlbench.training.data import select_data
    from nlbench.training.splits import build_scenario
    from nlbench.training.scenarios import standardize_per_image
    cfg = resolve("permuted-cifar", "adam", "quick", {"data": {"train_per_class": 10, "test_per_class": 5}})
    assert cfg["scenario"]["permute"] == "values" and cfg["backbone"]["name"] == "mlp" and not cfg["train"]["augment"]
    sc = build_scenario("permuted-cifar", "permuted", cfg, 0, torch.device("cpu"), select_data("full", cifar_root, False))
    assert sc.perms.shape == (5, 3072) and all(sorted(p.tolist()) == list(range(3072)) for p in sc.perms)
    raw = sc.test_x[:4]
    x = sc.prepare(raw, torch.full((4,), 2), None)
    by_hand = raw.flatten(1)[:, sc.perms[2]].float()
    by_hand = (by_hand - by_hand.mean(1, keepdim=True)) / by_hand.std(1, keepdim=True)
    assert torch.allclose(x.flatten(1), by_hand, atol=1e-5)
    assert torch.allclose(x.flatten(1).mean(1), torch.zeros(4), atol=1e-5)  # brightness gone ...
    assert torch.allclose(standardize_per_image(raw + 0).flatten(1).std(1), torch.ones(4), atol=1e-5)  # ... contrast too


def test_class_order_seed_is_its_own_axis(cifar_root):
    from nlbench.training.config import resolve
    from nlbench.training.data import select_data
    from nlbench.training.splits import build_scenario

    def classes(order_seed, seed):
        cfg = resolve("split-cifar", "adam", "quick", {"data": {"train_per_class": 5, "test_per_class": 5},
                                                       "scenario": {"class_order_seed": order_seed}})
        sc = build_scenario("split-cifar", "split", cfg, seed, torch.device("cpu"), select_data("full", cifar_root, False))
        return [t.classes for t in sc.tasks]
    assert classes(None, 0) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert classes(1, 0) == classes(1, 7) != classes(2, 0)  # the training seed does not move the order
    assert sorted(c for t in classes(1, 0) for c in t) == list(range(10))


def test_plugin_from_a_temporary_file(bench, tmp_path):
    plugin = tmp_path / "my_sgd.py"
    plugin.write_text(
        "import torch, torch.nn.functional as F\n"
        "from nlbench import Strategy, register_strategy\n\n"
        "@register_strategy('my-sgd')\n"
        "class MySGD(Strategy):\n"
        "    '''Plain SGD, from a user's file.'''\n"
        "    defaults = {'lr': 0.05}\n"
        "    def __init__(self, ctx, **hp):\n"
        "        super().__init__(ctx, **hp)\n"
        "        self.opt = torch.optim.SGD(self.model.parameters(), lr=hp['lr'])\n"
        "    def observe(self, batch):\n"
        "        loss = F.cross_entropy(self.model(batch.x), batch.y)\n"
        "        self.opt.zero_grad(); loss.backward(); self.opt.step()\n"
        "        return loss.detach()\n")
    code, out = bench("--scenario", "split-cifar", "--strategy", "my-sgd", "--plugin", str(plugin),
                      sets=["scenario.n_tasks=2", "strategy.lr=0.1"])
    rec = load_record(out, "split-cifar", "my-sgd@lr=0.1")
    assert code == 0 and rec["config"]["strategy"] == {"lr": 0.1}
    assert "my-sgd" in STRATEGIES


def test_existing_record_is_skipped_unless_forced(bench, capsys):
    bench("--scenario", "split-cifar", "--strategy", "adam", sets=["scenario.n_tasks=2"])
    capsys.readouterr()
    bench("--scenario", "split-cifar", "--strategy", "adam", sets=["scenario.n_tasks=2"])
    assert "(exists with the same config; --force reruns it)" in capsys.readouterr().out
    bench("--scenario", "split-cifar", "--strategy", "adam", "--force", sets=["scenario.n_tasks=2"])
    assert "--force reruns it" not in capsys.readouterr().out


@pytest.mark.parametrize("changed", ["train.weight_decay=0.01", "train.epochs=3", "backbone.width=4", "data.train_per_class=30",
                                     "scenario.shuffle_classes=true", "train.augment=false"])
def test_a_changed_config_never_reuses_an_old_record(bench, capsys, changed):
    """Same --out, same strategy, one key changed: exit 2 naming the key, the old record untouched."""
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["scenario.n_tasks=2"])
    path = out / "quick" / "full" / "split-cifar" / "adam" / "seed0.json"
    before = path.read_text()
    capsys.readouterr()
    code, _ = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["scenario.n_tasks=2", changed])
    err = capsys.readouterr().err
    key = changed.split("=")[0]
    assert code == 2 and "holds a run with another config" in err and key in err and err.count("\n") == 1
    assert path.read_text() == before


def test_peak_memory_is_per_run_not_per_process():
    from nlbench.training.device import peak_memory, reset_peak_memory
    cpu = torch.device("cpu")
    big = torch.ones(100_000_000 // 4)  # 100 MB touched
    before = peak_memory(cpu)[0]
    del big
    reset_peak_memory(cpu)
    assert peak_memory(cpu)[0] < before - 50


def test_a_sharded_sweep_gives_the_same_records_as_one_process(bench, tmp_path):
    """--jobs 2 splits the plan over two processes (each with its share of the CPU threads);
    every run still gets its own seed and data, so the matrices equal those of --jobs 1. The
    reference runs single-threaded like each child on 2 cores: CPU sums in another thread count
    round differently, which moves one test image of this tiny set."""
    args = ("--scenario", "split-cifar", "--strategy", "adam", "nested", "--seeds", "0", "1")
    threads = torch.get_num_threads()
    jobs = 2
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    try:
        code, one = bench(*args, out=tmp_path / "one")
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    code, two = bench(*args, "--jobs", str(jobs), out=tmp_path / "two")
    assert code == 0
    for strategy in ("adam", "nested"):
        for seed in (0, 1):
            a, b = (load_record(o, "split-cifar", strategy, seed) for o in (one, two))
            assert a["acc"] == b["acc"] and b["data_set"] == "full"


def test_the_docs_plugin_example_runs(bench, tmp_path):
    """The 'Writing a strategy' example in docs/strategies.md, as a user would paste it into a file."""
    import pathlib
    import re
    readme = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "strategies.md").read_text()
    section = readme[readme.index("## Writing a strategy"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    plugin = tmp_path / "my_strategy.py"
    plugin.write_text(code)
    exit_code, out = bench("--scenario", "split-cifar", "--strategy", "my-finetune", "--plugin", str(plugin))
    assert exit_code == 0 and (out / "quick" / "full" / "split-cifar" / "my-finetune" / "seed0.json").exists()


def test_every_builtin_strategy_starts_from_the_same_network(bench):
    """One model build per run: at the same seed every built-in strategy's untrained network scores
    the same (the CMS head starts as the identity, so cms and nested-cms score as the bare backbone)."""
    names = ["adam", "finetune", "ewc", "replay", "joint", "nested", "nested-blog", "cms", "nested-cms"]
    code, out = bench("--scenario", "split-cifar", "--strategy", *names, sets=["train.epochs=1", "scenario.n_tasks=2"])
    inits = {n: load_record(out, "split-cifar", n)["acc_init"] for n in names}
    assert code == 0 and all(v == inits["adam"] for v in inits.values()), inits


def test_one_sweep_gives_different_strategies_their_own_values(bench):
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam", "ewc", "replay",
                      sets=["scenario.n_tasks=2", "strategy.ewc.lam=5", "strategy.replay.buffer_size=30"])
    assert code == 0
    assert load_record(out, "split-cifar", "ewc@lam=5")["config"]["strategy"]["lam"] == 5
    assert load_record(out, "split-cifar", "replay@buffer_size=30")["config"]["strategy"]["buffer_size"] == 30
    assert load_record(out, "split-cifar", "adam")["config"]["strategy"] == {}


def test_a_method_key_names_its_own_run_beside_the_plain_one(bench):
    """train.lr / train.optimizer / train.levels / backbone.cms make another method: a record of its
    own (strategy@key=value), never an error against the plain run's nor a reuse of it."""
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["scenario.n_tasks=2"])
    code2, _ = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["scenario.n_tasks=2", "train.lr=0.01"])
    assert code == code2 == 0
    assert sorted(p.name for p in (out / "quick" / "full" / "split-cifar").iterdir()) == ["adam", "adam@train.lr=0.01"]
    rec = json.loads((out / "quick" / "full" / "split-cifar" / "adam@train.lr=0.01" / "seed0.json").read_text())
    assert rec["config"]["train"]["lr"] == 0.01 and rec["run_name"] == "adam@train.lr=0.01"


def test_end_of_task_work_is_timed_apart_from_the_steps(bench, tmp_path):
    """after_task's seconds land in the record's end_of_task_seconds (GDumb trains its network there)."""
    plugin = tmp_path / "slow_end.py"
    plugin.write_text(
        "import time\n"
        "from nlbench import PlainStrategy, register_strategy\n\n"
        "@register_strategy('slow-end')\n"
        "class SlowEnd(PlainStrategy):\n"
        "    '''Adam with 0.4 s of work after each task.'''\n"
        "    def after_task(self, task):\n"
        "        time.sleep(0.4)\n")
    code, out = bench("--scenario", "split-cifar", "--strategy", "slow-end", "adam", "--plugin", str(plugin),
                      sets=["scenario.n_tasks=2"])
    slow, adam = load_record(out, "split-cifar", "slow-end"), load_record(out, "split-cifar", "adam")
    assert code == 0
    assert slow["end_of_task_seconds"] >= 0.8                  # two tasks, 0.4 s each
    assert adam["end_of_task_seconds"] < slow["end_of_task_seconds"] - 0.7
