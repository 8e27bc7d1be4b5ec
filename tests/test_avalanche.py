"""The Avalanche bridge on the synthetic data: its strategies on our scenarios, ours inside Avalanche."""
import pytest
import torch

from conftest import load_record

from nlbench.bridges.avalanche import avalanche_problem

_REASON = avalanche_problem()  # any failure to import (a broken torchvision raises RuntimeError), with its reason
if _REASON:
    pytest.skip(_REASON, allow_module_level=True)

# Constructor arguments Avalanche requires, small enough for the tiny data.
REQUIRED = {"EWC": ["strategy.ewc_lambda=1.0"], "SynapticIntelligence": ["strategy.si_lambda=1.0"],
            "LwF": ["strategy.alpha=1.0", "strategy.temperature=2.0"], "AGEM": ["strategy.patterns_per_exp=20"],
            "Replay": ["strategy.mem_size=60"], "GDumb": ["strategy.mem_size=60"], "ER_ACE": ["strategy.mem_size=60"],
            "DER": ["strategy.mem_size=60"], "ICaRL": ["strategy.memory_size=60"]}


@pytest.mark.parametrize("name", ["Naive", "EWC", "SynapticIntelligence", "LwF", "Replay", "GDumb", "AGEM",
                                  "MAS", "ER_ACE", "DER", "Cumulative", "ICaRL"])
def test_listed_avalanche_strategies_run_on_our_scenario(bench, name):
    from nlbench.bridges.avalanche import KNOWN_WORKING
    assert name in KNOWN_WORKING
    sets = ["scenario.n_tasks=2", "train.epochs=1", *REQUIRED.get(name, [])]
    code, out = bench("--scenario", "split-cifar", "--strategy", f"avalanche:{name}", sets=sets)
    folder = next((out / "quick" / "full" / "split-cifar").iterdir())
    rec = load_record(out, "split-cifar", folder.name)
    assert code == 0 and rec["strategy"] == f"avalanche:{name}"
    assert len(rec["acc"]["class_il"]) == 2 and rec["metrics"]["class_il"]["avg_acc"] is not None


def test_the_network_avalanche_trains_is_the_one_evaluated(bench):
    """Avalanche's GDumb trains a copy of the initial network on each experience (it replaces
    strategy.model): the evaluation must read that copy. Evaluating the network first handed to
    Avalanche read one never trained: its accuracy on a task just learned stayed at chance."""
    code, out = bench("--scenario", "split-cifar", "--strategy", "avalanche:GDumb",
                      sets=["scenario.n_tasks=2", "train.epochs=6", "strategy.mem_size=200"])
    rec = load_record(out, "split-cifar", "avalanche-GDumb@mem_size=200")
    assert code == 0 and rec["acc"]["task_il"][1][1] > 75  # the second task, just learned (chance: 50)


def test_avalanche_icarl_is_evaluated_by_its_nearest_mean_of_exemplars(bench):
    """Before the first task ends there are no class means: the network's own head (the untrained row
    equals our icarl's). After it, Avalanche's NCM classifier predicts: on a task just learned, task-IL
    accuracy well above chance (50), and the record names the memory it kept."""
    code, out = bench("--scenario", "split-cifar", "--strategy", "avalanche:ICaRL",
                      sets=["scenario.n_tasks=2", "train.epochs=6", "strategy.memory_size=100"])
    bench("--scenario", "split-cifar", "--strategy", "icarl",
          sets=["scenario.n_tasks=2", "train.epochs=6", "strategy.buffer_size=100"])
    theirs = load_record(out, "split-cifar", "avalanche-ICaRL@memory_size=100")
    ours = load_record(out, "split-cifar", "icarl@buffer_size=100")
    assert code == 0 and theirs["acc_init"] == ours["acc_init"]
    assert theirs["config"]["strategy"]["fixed_memory"] is True
    assert theirs["acc"]["task_il"][1][1] > 75 and theirs["acc"]["task_il"][0][0] > 75


def test_a_batch_is_prepared_once_for_the_model_and_the_copy_avalanche_keeps(cifar_root):
    """LwF's and iCaRL's previous model is a deep copy of the model Avalanche trains: handed the same
    raw batch, it must see the same augmented images (in Avalanche the dataset augments, once), and
    the copy must not duplicate the run's data."""
    import copy

    from nlbench.bridges.avalanche import PreparedInput

    class Context:
        scenario = torch.zeros(1000)  # stands for the run's data: must be shared, not copied

        def prepare(self, x, task, augment):
            return x.float() + (torch.rand(len(x), 1, 1, 1) if augment else 0)

    model = PreparedInput(torch.nn.Flatten(), Context())
    old = copy.deepcopy(model)
    raw = torch.randint(0, 255, (4, 4, 32, 32), dtype=torch.uint8)
    assert torch.equal(model(raw), old(raw))
    assert not torch.equal(model(raw.clone()), model(raw))  # another batch: a fresh draw
    assert old.preparation is model.preparation


def test_permuted_replay_keeps_each_samples_own_permutation(bench):
    code, out = bench("--scenario", "permuted-cifar", "--strategy", "avalanche:Replay",
                      sets=["scenario.n_tasks=2", "train.epochs=1", "strategy.mem_size=60"])
    assert code == 0


@pytest.mark.slow
def test_adam_and_avalanche_naive_agree(bench):
    """Same backbone, initialisation (seed), optimizer, batch size, epochs and augmentation; only the
    sample order and the augmentation draws differ (Avalanche's DataLoader shuffles with its own
    generator). On this tiny data, changing only the order moves single matrix entries a lot (a
    task of 40 test images), so we compare what is stable: the untrained row exactly, learning
    accuracy and final average accuracy within 12 points (adam's own spread across seeds here is
    of that order), and the qualitative result: both forget the first task in class-IL."""
    sets = ["train.epochs=3"]
    bench("--scenario", "split-cifar", "--strategy", "adam", sets=sets)
    _, out = bench("--scenario", "split-cifar", "--strategy", "avalanche:Naive", sets=sets)
    ours = load_record(out, "split-cifar", "adam")
    theirs = load_record(out, "split-cifar", "avalanche-Naive")
    assert ours["acc_init"] == theirs["acc_init"]  # same initial model: same seed, same backbone
    for setting in ("class_il", "task_il"):
        for metric in ("avg_acc", "learning_acc"):
            assert abs(ours["metrics"][setting][metric] - theirs["metrics"][setting][metric]) <= 12, (setting, metric)
    assert ours["acc"]["class_il"][-1][0] < 10 and theirs["acc"]["class_il"][-1][0] < 10  # both forget


def test_unknown_or_unrunnable_avalanche_strategy_is_a_clear_error(bench, capsys):
    code, _ = bench("--scenario", "split-cifar", "--strategy", "avalanche:Nope")
    assert code == 2 and "unknown Avalanche strategy 'Nope'; working ones: avalanche:Naive" in capsys.readouterr().err
    code, _ = bench("--scenario", "split-cifar", "--strategy", "avalanche:GEM")
    assert code == 2 and "quadprog" in capsys.readouterr().err
    code, _ = bench("--scenario", "split-cifar", "--strategy", "avalanche:EWC")
    assert code == 2 and "avalanche:EWC needs strategy.ewc_lambda" in capsys.readouterr().err
    code, _ = bench("--scenario", "permuted-cifar", "--strategy", "avalanche:ICaRL", sets=["strategy.memory_size=60"])
    assert code == 2 and "avalanche:ICaRL needs a class-incremental scenario" in capsys.readouterr().err


def test_our_nested_strategy_inside_plain_avalanche(cifar_root):
    """Export: our scenario as an Avalanche benchmark, our nested levels as a model + optimizer
    that Avalanche's Naive accepts; the slow level moves only every C optimizer steps."""
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.supervised import Naive

    from nlbench.bridges.avalanche import PreparedInput, levelled_model_and_optimizer, to_avalanche_benchmark
    from nlbench.training.config import resolve
    from nlbench.training.data import Augmenter
    from nlbench.training.data import select_data
    from nlbench.training.splits import build_scenario
    from nlbench.training.strategy import RunContext

    cfg = resolve("split-cifar", "adam", "quick", {"scenario": {"n_tasks": 2}, "data": {"train_per_class": 16}})
    scenario = build_scenario("split-cifar", "split", cfg, 0, torch.device("cpu"), select_data("full", cifar_root, False))
    g = torch.Generator().manual_seed(0)
    ctx = RunContext(cfg, scenario, torch.device("cpu"), g, None, Augmenter(g))
    benchmark = to_avalanche_benchmark(scenario)
    model, optimizer = levelled_model_and_optimizer("nested", backbone="cnn", width=8, periods=[4, 2, 1])
    slow = optimizer.schedule.levels[0]
    start = slow.params[0].detach().clone()
    strategy = Naive(model=PreparedInput(model, ctx), optimizer=optimizer, train_mb_size=8, train_epochs=1,
                     eval_mb_size=64,
                     evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]))
    strategy.train(benchmark.train_stream[0], num_workers=0)   # 32 images / 8 = 4 steps
    assert optimizer.schedule.step_count == 4
    assert not torch.equal(slow.params[0], start)               # stepped once, at step 4
    strategy.train(benchmark.train_stream[1], num_workers=0)
    assert optimizer.schedule.step_count == 8                   # counter carries across experiences
    results = strategy.eval(benchmark.test_stream)
    assert any("Top1_Acc_Stream" in k for k in results)
