"""Seed-parallel groups (nlbench.training.group): K seeds trained stacked equal the K one-seed runs."""
import json

import pytest
import torch

from conftest import TINY
from nlbench.training import config as C
from nlbench.training import group as G
from nlbench.training import runner
from nlbench.training.checkpoint import Interrupted
from nlbench.training.data import DataChoice
from nlbench.training.runspec import RunSpec

SEEDS = [0, 1, 2]
# A first task of exactly 20 steps: 2 classes x 60 synthetic training images, batches of 6.
TWENTY_STEPS = ["backbone.width=8", "train.epochs=1", "train.batch_size=6", "train.log_every=5",
                "scenario.n_tasks=2", "scenario.shuffle_classes=true"]


def resolve(strategy, sets):
    return C.resolve("split-cifar", strategy, "quick", C.parse_sets(sets))


def capture_models(monkeypatch):
    """Every seed's parameters and buffers at the end of every stage, keyed by (seed, stage)."""
    seen = {}
    real = runner.finish_stage

    def spy(loop, who, t0):
        seed = int(who.rsplit(" ", 1)[1])
        seen[(seed, loop.state.task)] = {k: v.detach().clone() for k, v in loop.strategy.model.state_dict().items()}
        return real(loop, who, t0)
    monkeypatch.setattr(runner, "finish_stage", spy)
    monkeypatch.setattr(G, "finish_stage", spy)
    return seen


def one_seed_runs(cfg, strategy, data, seeds=SEEDS):
    return [runner.run(spec(cfg, strategy, s), device=torch.device("cpu"), data=data, progress=False,
                       log=lambda *a: None) for s in seeds]


def group_run(cfg, strategy, data, seeds=SEEDS, checkpoints=None):
    return G.run_group([spec(cfg, strategy, s) for s in seeds], device=torch.device("cpu"), data=data,
                       checkpoints=checkpoints or [None] * len(seeds), progress=False, log=lambda *a: None)


def spec(cfg, strategy, seed):
    """A planned split-cifar run of the quick profile (no record: these tests compare what runs return)."""
    return RunSpec("split-cifar", strategy, strategy, "quick", seed, cfg, "split")


def relative_difference(a, b) -> float:
    """||a - b|| / ||a|| over every floating-point parameter and buffer of a model's state."""
    names = [n for n, x in a.items() if x.is_floating_point()]
    diff = torch.cat([(a[n] - b[n]).double().flatten() for n in names]).norm()
    return float(diff / torch.cat([a[n].double().flatten() for n in names]).norm())


STRATEGIES = [("adam", []), ("finetune", ["train.optimizer=sgd", "train.lr=0.05"]),
              ("replay", ["strategy.buffer_size=40"]), ("ewc", []), ("nested", ["strategy.periods=[4,2,1]"]),
              ("cms", ["strategy.periods=[4,2,1]"]), ("adam", ["train.levels=nested-blog"]), ("joint", []),
              ("der", ["strategy.buffer_size=40"]), ("derpp", ["strategy.buffer_size=40"]),
              ("er-ace", ["strategy.buffer_size=40"])]


def compare_with_one_seed_runs(cifar_root, monkeypatch, strategy, sets, seeds):
    """(one-seed runs' records, the group's records, per (seed, stage) the relative parameter difference)."""
    data = DataChoice("full", cifar_root / "cifar-10-batches-py")
    cfg = resolve(strategy, TWENTY_STEPS + sets)
    seen = capture_models(monkeypatch)
    alone = one_seed_runs(cfg, strategy, data, seeds)
    alone_models = dict(seen)
    seen.clear()
    together = group_run(cfg, strategy, data, seeds)
    assert set(seen) == set(alone_models)
    return alone, together, {key: relative_difference(alone_models[key], seen[key]) for key in alone_models}


@pytest.fixture
def float64(monkeypatch):
    """Models, states and network inputs in float64: rounding no longer hides a difference."""
    from nlbench.training.scenarios import Scenario
    real = Scenario.prepare
    monkeypatch.setattr(Scenario, "prepare", lambda self, x, t, augment, dtype=None: real(self, x, t, augment,
                                                                                          torch.float64))
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("strategy,extra", STRATEGIES)
def test_each_seed_of_a_group_trains_exactly_as_its_one_seed_run(cifar_root, monkeypatch, float64, strategy, extra):
    """In float64, every seed of a group of 3 (its own class order, data order, augmentation, replay
    draws, EWC Fisher, level state, BatchNorm statistics) ends each task with the parameters and
    buffers of its one-seed run to 1e-9 relative, and with the same record."""
    alone, together, differences = compare_with_one_seed_runs(cifar_root, monkeypatch, strategy, extra, SEEDS)
    assert max(differences.values()) < 1e-9, differences
    for a, b in zip(alone, together):
        assert b["seed_parallel"]["group_size"] == 3 and a["seed_parallel"] is None
        assert b["numerics"]["cuda_graph"] is False and "seed-parallel group" in b["numerics"]["optimizer_impl"]
        assert a["acc"] == b["acc"] and a["config"] == b["config"] and a["tasks"] == b["tasks"]
        assert a["strategy_info"] == b["strategy_info"] and a["optimizers"] == b["optimizers"]
    assert len({json.dumps(r["tasks"]) for r in together}) > 1  # the seeds really had their own class orders


@pytest.mark.parametrize("backbone", ["resnet18", "cnn"])
@pytest.mark.parametrize("strategy", ["adam", "cms"])
def test_gradients_of_the_first_twenty_steps_in_float32(cifar_root, strategy, backbone):
    """fp32, the suite's arithmetic: at each of the first 20 states of each seed's one-seed run, the
    group's stacked forward and backward (vmap'd convolutions, per-model BatchNorm, the summed loss)
    against the one-model computation: within 1e-5 relative at the median step, and never more than
    5e-2 apart. Not every step within 1e-5: the two sum in
    different orders, and where a ReLU's input lies within that rounding of 0, one of them passes the
    gradient and the other does not (measured: most steps 1e-6 to 9e-6, a few 1e-4 to 1.5e-2, the
    largest with one thread; on either side of the float64 gradients). A model mixed with another, or
    BatchNorm over the whole group, would be off at every step. Such differences grow along a run, which is why the whole run is checked in float64
    above and a real run's accuracy in the mini-set test below."""
    data = DataChoice("full", cifar_root / "cifar-10-batches-py")
    cfg = resolve(strategy, TWENTY_STEPS + [f"backbone.name={backbone}", "backbone.width=8"])

    def prepared(seed):
        torch.manual_seed(seed)
        return runner.prepare(spec(cfg, strategy, seed), torch.device("cpu"), data, None, False, lambda *a: None)[0]

    def gradients(model, loss):
        model.zero_grad(set_to_none=True)
        loss(model).backward()
        return {n: p.grad for n, p in model.named_parameters()}
    seeds = [0, 1]
    alone, members = [prepared(s) for s in seeds], [prepared(s) for s in seeds]
    group = G.build_group(members, seeds)
    tasks = [a.stages[0] for a in alone]
    orders = [torch.randperm(len(t.train_idx), generator=a.generator) for a, t in zip(alone, tasks)]
    bs = cfg["train"]["batch_size"]
    differences = []
    for step in range(20):
        for m, a in zip(members, alone):
            m.strategy.load_state_dict(a.strategy.state_dict())
        group.gather()
        picks = [t.train_idx[o[step * bs:(step + 1) * bs]] for t, o in zip(tasks, orders)]
        xs = [a.ctx.prepare(a.scenario.train_x[p], torch.zeros_like(p)) for a, p in zip(alone, picks)]
        ys = [a.scenario.train_y[p] for a, p in zip(alone, picks)]
        stacked = gradients(group.strategy.model,
                            lambda m: group.ctx.loss(m(torch.stack(xs, 1).contiguous()), torch.stack(ys, 1)))
        for k, (a, x, y) in enumerate(zip(alone, xs, ys)):
            one = gradients(a.strategy.model, lambda m: a.ctx.loss(m(x), y))
            differences.append(relative_difference(one, {n: g[k] for n, g in stacked.items()}))
        for a, p in zip(alone, picks):  # on along each seed's own one-seed trajectory
            a.stepper.step(a.scenario.train_x[p], a.scenario.train_y[p], torch.zeros_like(p))
    differences = torch.tensor(differences)
    assert differences.median() <= 1e-5, differences  # measured: at most 6e-6 (one thread)
    assert differences.max() <= 5e-2, differences  # a flipped ReLU moves a few entries, never the whole gradient


def test_the_models_of_a_group_never_mix(cifar_root, monkeypatch):
    """One model made non-finite mid-run diverges alone: its record says so, the others equal their runs."""
    data = DataChoice("full", cifar_root / "cifar-10-batches-py")
    cfg = resolve("adam", TWENTY_STEPS)
    alone = one_seed_runs(cfg, "adam", data, seeds=[0, 2])
    real = G.build_group

    def poisoned(members, seeds):
        if len(seeds) == 3:  # seed 1's model, from the group's first step on
            with torch.no_grad():
                next(members[1].strategy.model.parameters()).fill_(float("nan"))
        return real(members, seeds)
    monkeypatch.setattr(G, "build_group", poisoned)
    together = group_run(cfg, "adam", data)
    assert [r["status"] for r in together] == ["complete", "diverged", "complete"]
    assert "not finite" in together[1]["diverged_at"]
    assert together[0]["acc"] == alone[0]["acc"] and together[2]["acc"] == alone[1]["acc"]


def test_an_interrupted_group_resumes_to_the_uninterrupted_records(cifar_root, tmp_path, monkeypatch):
    data = DataChoice("full", cifar_root / "cifar-10-batches-py")
    cfg = resolve("replay", TINY + ["scenario.n_tasks=3", "strategy.buffer_size=40"])
    reference = group_run(cfg, "replay", data)
    ckpts = [tmp_path / f"seed{s}.ckpt" for s in SEEDS]
    real = G._check_group_loss
    calls = {"n": 0}

    def stop_in_task_2(group, *args):  # SIGINT arriving at a step of the second task
        calls["n"] += 1
        if group.members[0].state.task == 1 and group.guard.signum is None:
            group.guard.signum = 2
        return real(group, *args)
    monkeypatch.setattr(G, "_check_group_loss", stop_in_task_2)
    with pytest.raises(Interrupted):
        group_run(cfg, "replay", data, checkpoints=ckpts)
    assert all(p.exists() for p in ckpts)
    states = [torch.load(p, weights_only=False)["state"] for p in ckpts]
    assert {(s["task"], s["step"]) for s in states} == {(1, states[0]["step"])} and states[0]["step"] > 0
    monkeypatch.setattr(G, "_check_group_loss", real)
    resumed = group_run(cfg, "replay", data, checkpoints=ckpts)
    assert [r["acc"] for r in resumed] == [r["acc"] for r in reference]


def test_checkpoints_at_different_points_do_not_group(cifar_root, tmp_path):
    data = DataChoice("full", cifar_root / "cifar-10-batches-py")
    cfg = resolve("adam", TINY + ["scenario.n_tasks=3"])
    ckpt = tmp_path / "seed1.ckpt"  # a finished run leaves its last stage's checkpoint (task 3 of 3)
    runner.run(spec(cfg, "adam", 1), device=torch.device("cpu"), data=data, checkpoint=ckpt, progress=False,
               log=lambda *a: None)
    with pytest.raises(G.GroupMismatch, match="different points"):
        group_run(cfg, "adam", data, seeds=[0, 1], checkpoints=[tmp_path / "seed0.ckpt", ckpt])


def test_cli_groups_seeds_keeps_finished_ones_and_says_what_cannot_group(bench, tmp_path, capsys):
    out = tmp_path / "runs"
    bench("--scenario", "split-cifar", "--strategy", "adam", "--seeds", "1", out=out)
    done = out / "quick" / "full" / "split-cifar" / "adam" / "seed1.json"
    before = done.read_text()
    capsys.readouterr()
    bench("--scenario", "split-cifar", "--strategy", "adam", "m3", "--seeds", "0", "1", "2", "--seed-parallel", "3",
          out=out)
    printed = capsys.readouterr().out
    assert done.read_text() == before  # a group never overwrites a finished seed
    assert "skip" in printed and "m3 runs one seed per process (M3's Newton-Schulz" in printed
    for seed in (0, 2):
        record = json.loads((out / "quick" / "full" / "split-cifar" / "adam" / f"seed{seed}.json").read_text())
        assert record["seed_parallel"]["seeds"] == [0, 2]
    assert json.loads((out / "quick" / "full" / "split-cifar" / "m3" / "seed0.json").read_text())["seed_parallel"] is None


def test_a_group_of_channels_last_members_holds_standard_layout_tensors():
    """CUDA members are channels-last; their stacked weights must not be (cuDNN asks a tensor's memory
    format inside vmap, which fails on CUDA in fp32), and the group still computes each member's output."""
    members = [torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).to(memory_format=torch.channels_last)
               for _ in range(2)]
    x = torch.randn(5, 2, 3, 8, 8)
    expected = torch.stack([m(x[:, k]) for k, m in enumerate(members)], 1)
    group = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    G.stack_models(group, members)
    assert all(t.is_contiguous() for t in [*group.parameters(), *group.buffers()])
    assert torch.allclose(group(x), expected, atol=1e-5)


def test_stack_and_unstack_states_round_trip():
    states = [{"model": {"w": torch.full((2,), float(k)), "n": torch.tensor(3)},
               "optimizers": {"opt": {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.ones(2) * k}},
                                      "param_groups": [{"lr": 0.1, "params": [0]}]}},
               "extra": {"seen": torch.tensor(7), "per_model": torch.tensor(float(k))}} for k in range(3)]
    stacked = {"model": G.stack_states([s["model"] for s in states], always=True),
               "optimizers": G.stack_states([s["optimizers"] for s in states]),
               "extra": G.stack_states([s["extra"] for s in states])}
    assert stacked["model"]["n"].shape == (3,)  # a model's buffers always stack
    assert stacked["optimizers"]["opt"]["state"][0]["step"].dim() == 0  # equal counters stay shared
    assert stacked["extra"]["per_model"].shape == (3,)  # unequal scalars stack
    for k in range(3):
        back = G.unstack_state(stacked, k)
        for part in states[k]:
            assert json.dumps(back[part], default=lambda t: t.tolist()) == \
                json.dumps(states[k][part], default=lambda t: t.tolist())


def test_mini_set_run_within_seed_noise(tmp_path):
    """A short real run (replay on the embedded mini CIFAR-10, 4 seeds): each seed's group record
    equals its one-seed record within 1 point of final accuracy (10 of the 1000 test images), and
    within the seeds' own spread. Not exact in fp32: rounding differences (see the 20-step test)
    grow over 5 tasks (measured: at most 0.2 points; the seeds' standard deviation: 1.4 points)."""
    from nlbench.cli import main
    args = ["--scenario", "split-cifar", "--strategy", "replay", "--data", "mini", "--quiet", "--device", "cpu",
            "--profile", "quick", "--seeds", "0", "1", "2", "3", "--set", "backbone.width=16", "train.epochs=1",
            "data.train_per_class=200"]
    assert main([*args, "--out", str(tmp_path / "alone")]) == 0
    assert main([*args, "--seed-parallel", "4", "--out", str(tmp_path / "group")]) == 0
    final = {kind: [json.loads((tmp_path / kind / "quick" / "mini" / "split-cifar" / "replay" / f"seed{s}.json").read_text())
                    ["metrics"] for s in range(4)] for kind in ("alone", "group")}
    for setting in ("class_il", "task_il"):
        alone = torch.tensor([m[setting]["avg_acc"] for m in final["alone"]])
        group = torch.tensor([m[setting]["avg_acc"] for m in final["group"]])
        assert (alone - group).abs().max() <= min(1.0, float(alone.std())), (setting, alone, group)


def test_a_campaign_starts_the_seeds_of_a_row_that_cannot_group_one_by_one(tmp_path):
    from nlbench.launchers.campaign import plan, units_of
    from nlbench.reporting.specs import load_campaign
    runs = plan(load_campaign("mir-online"), tmp_path, "mini", seeds=[0, 1, 2])
    sizes = {}
    for unit in units_of(runs, 3):
        sizes.setdefault(unit[0].label, []).append(len(unit))
    assert sizes["Fine-tune"] == [3] and sizes["ER-ACE-200"] == [3]  # they group
    assert sizes["ER-MIR-200"] == [1, 1, 1]  # MIR does not declare seed_parallel
    assert sizes["ER-200"] == [1, 1, 1]  # the online profile's separate replay loss cannot group


def test_a_campaign_starts_up_to_k_seeds_of_a_row_as_one_group(tmp_path):
    from types import SimpleNamespace

    from nlbench.launchers.campaign import child_command, expected_seconds, plan, units_of
    from nlbench.reporting.specs import load_campaign
    runs = plan(load_campaign("verdict-split"), tmp_path, "mini", seeds=[0, 1, 2])
    units = units_of(runs, 2)
    assert [[r.seed for r in u] for u in units if u[0].label == "Fine-tune"] == [[0, 1], [2]]
    assert [[r.seed for r in u] for u in units if u[0].label == "CLS-ER"] == [[0], [1], [2]]  # cannot group
    assert all(len({r.key() for r in u}) == 1 for u in units) and sum(map(len, units)) == len(runs)
    assert [len(u) for u in units_of(runs, 1)] == [1] * len(runs)
    args = SimpleNamespace(device="cpu", data_root=None, no_download=False)
    cmd = child_command(units[0], args, "mini")
    assert cmd[cmd.index("--seeds") + 1:cmd.index("--seeds") + 3] == ["0", "1"]
    assert cmd[cmd.index("--seed-parallel") + 1] == "2"
    assert "--seed-parallel" not in child_command(units_of(runs, 1)[0], args, "mini")
    record = units[0][0].path
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"wall_seconds": 10.0, "seed_parallel": None}))
    assert expected_seconds(units[0][0], runs, 2) == 20.0  # a one-seed run's time, times the group size
    record.write_text(json.dumps({"wall_seconds": 12.0, "seed_parallel": {"group_size": 2}}))
    assert expected_seconds(units[0][0], runs, 2) == 12.0
