"""The knobs of the published protocols: MIR's replay variant, the training-set fraction, the
[-1, 1] input scaling, and the `online` profile as MIR's code sets it."""
import copy

import torch

from nlbench.training import config as C
from nlbench.training.data import fraction_per_class
from nlbench.training.scenarios import standardize_input
from nlbench.training.strategy import Batch

from test_fast_path import _context

MIR = ["strategy.replay_current_task=false", "strategy.replay_loss=separate", "train.augment=false",
       "train.optimizer=sgd", "train.momentum=0", "strategy.replay_batch_size=4", "strategy.buffer_size=40"]


def feed(ctx, scenario, strat, task_index, steps, bs=8):
    task = scenario.tasks[task_index]
    calls = []
    hook = strat.model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    for s in range(steps):
        idx = task.train_idx[s * bs:(s + 1) * bs]
        raw, y, t = scenario.train_x[idx], scenario.train_y[idx], torch.full_like(idx, task_index)
        strat.observe(Batch(ctx.prepare(raw, t), y, raw, t))
    hook.remove()
    return calls


def test_mir_replay_starts_at_task_two_and_never_replays_the_current_task(cifar_root):
    ctx, scenario, strat = _context(cifar_root, "replay", MIR, graph_capture=False)
    assert feed(ctx, scenario, strat, 0, 5) == [8] * 5  # task 1: the stream's forward only, no replay pass
    for _ in range(20):  # task 2: every replay draw holds task-1 samples only, though task 2 fills the buffer
        pick, valid = strat.buffer.draw(strat.replay_bs, exclude_task=torch.tensor(1))
        assert valid.all() and (strat.buffer["task_ids"][pick] == 0).all()
        feed(ctx, scenario, strat, 1, 1)
    assert (strat.buffer["task_ids"][:40] == 1).any()  # task-2 samples did enter the buffer


def test_mir_step_is_the_sum_of_the_stream_and_replay_mean_losses(cifar_root):
    ctx, scenario, strat = _context(cifar_root, "replay", MIR, graph_capture=False)
    feed(ctx, scenario, strat, 0, 5)  # a buffer of task-1 samples
    model = copy.deepcopy(strat.model)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    gen_state = ctx.generator.get_state()
    pick = strat.buffer.draw(strat.replay_bs, exclude_task=torch.tensor(1))[0][0]  # the one model's draw
    ctx.generator.set_state(gen_state)
    torch.set_rng_state(state)
    idx = scenario.tasks[1].train_idx[:8]
    raw, y, t = scenario.train_x[idx], scenario.train_y[idx], torch.ones_like(idx)
    x = ctx.prepare(raw, t)
    replay_x = ctx.prepare(strat.buffer["images"][pick], strat.buffer["task_ids"][pick])
    replay_y = strat.buffer["labels"][pick].clone()
    strat.observe(Batch(x, y, raw, t))
    ref = torch.optim.SGD(model.parameters(), lr=ctx.train["lr"])
    model.train()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    torch.nn.functional.cross_entropy(model(replay_x), replay_y).backward()
    ref.step()
    for a, b in zip(model.parameters(), strat.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_fraction_keeps_that_share_of_every_class_and_depends_on_the_seed():
    labels = torch.arange(10).repeat_interleave(100)
    keep = fraction_per_class(labels, 0.95, seed=0)
    assert torch.bincount(labels[keep]).tolist() == [95] * 10
    assert not torch.equal(keep, fraction_per_class(labels, 0.95, seed=1))


def test_symmetric_inputs_are_mir_scaling():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 3, 1, 1)
    assert torch.allclose(standardize_input(x, "symmetric").flatten(), torch.tensor([-1.0, 51 / 255 * 2 - 1, 1.0]))


def test_online_profile_is_mirs_code():
    finetune = C.resolve("split-cifar", "finetune", "online", {})
    replay = C.resolve("split-cifar", "replay", "online", C.parse_sets(["strategy.buffer_size=200"]))
    t = finetune["train"]
    assert (t["optimizer"], t["lr"], t["momentum"], t["weight_decay"], t["batch_size"], t["epochs"], t["augment"]) == \
        ("sgd", 0.1, 0.0, 0.0, 10, 1, False)
    assert finetune["backbone"] == {"name": "resnet18", "width": 20, "cms": None, "head": "linear"}
    assert finetune["scenario"]["standardize"] == "symmetric" and finetune["data"]["train_fraction"] == 0.95
    s = replay["strategy"]
    assert (s["buffer_size"], s["replay_batch_size"], s["replay_current_task"], s["replay_loss"]) == (200, 10, False, "separate")


def test_cuda_runs_default_to_a_published_protocol_and_the_old_paper_profile_reads_renamed(tmp_path):
    """Without --profile a CUDA run of split-cifar gets DER's protocol (no scenario has a `paper`
    profile any more: the 2-epoch one is gpu-short); records written as `paper` read as gpu-short."""
    import json
    from nlbench.training.records import read_record
    assert C.default_profile("split-cifar", "cuda") == "der" and C.default_profile("split-cifar", "cpu") == "quick"
    assert C.default_profile("permuted-cifar", "cuda") == "gpu-short"
    assert all("paper" not in C.profile_names(s) and "gpu-short" in C.profile_names(s) for s in C.scenario_names())
    rec = {"scenario": "split-cifar", "strategy": "adam", "seed": 0, "profile": "paper", "status": "complete",
           "config": {}, "acc": {"class_il": [[50.0]]}, "tasks": [[0, 1]], "acc_init": {"class_il": [10.0]},
           "metrics": {}, "train_seconds": 1.0, "images_per_second": 1.0, "peak_memory_mb": 1.0, "device": "cpu",
           "versions": {}}
    path = tmp_path / "seed0.json"
    path.write_text(json.dumps(rec))
    assert read_record(path)["profile"] == "gpu-short"


def test_momentum_zero_is_the_plain_sgd_step_and_augment_off_leaves_images_untouched(cifar_root):
    """DER's and MIR's optimizer: with train.momentum=0 each step is theta - lr * g exactly; with
    train.augment=false and [-1, 1] scaling the network sees (x / 255 - 0.5) * 2 of every image."""
    ctx, scenario, strat = _context(cifar_root, "finetune", ["train.optimizer=sgd", "train.momentum=0", "train.lr=0.1",
                                                              "train.augment=false", "scenario.standardize=symmetric"],
                                    graph_capture=False)
    idx = scenario.tasks[0].train_idx[:8]
    raw, y, t = scenario.train_x[idx], scenario.train_y[idx], torch.zeros_like(idx)
    x = ctx.prepare(raw, t)
    assert torch.equal(x, (raw.float() / 255 - 0.5) * 2)
    for _ in range(3):
        before = [p.detach().clone() for p in strat.model.parameters()]
        strat.observe(Batch(ctx.prepare(raw, t), y, raw, t))
        grads = [p.grad for p in strat.model.parameters()]
        for b, p, g in zip(before, strat.model.parameters(), grads):
            assert g is not None and torch.allclose(p.detach(), b - 0.1 * g, atol=1e-7)


def test_the_der_protocol_dry_runs_on_the_cpu(bench):
    """Every row of der-table2 with a tiny budget (2 tasks, 1 epoch, 20 images per class, width 8): the
    DER profile's per-strategy settings reach the records."""
    from conftest import load_record
    sets = ["scenario.n_tasks=2", "train.epochs=1", "data.train_per_class=20", "data.test_per_class=10",
            "backbone.width=8", "train.eval_batch_size=64"]
    for strategy, extra, name in (("finetune", [], "finetune"), ("ewc", [], "ewc"),
                                  ("replay", ["strategy.buffer_size=200"], "replay@buffer_size=200"),
                                  ("joint", [], "joint"), ("der", [], "der"), ("derpp", [], "derpp"),
                                  ("agem", [], "agem"), ("lwf", [], "lwf"), ("clser", [], "clser")):
        code, out = bench("--scenario", "split-cifar", "--strategy", strategy, "--profile", "der", tiny=False,
                          sets=[*sets, *extra])
        rec = load_record(out, "split-cifar", name, profile="der")
        assert code == 0 and rec["profile"] == "der" and rec["status"] == "complete"
        # mammoth utils/best_args.py seq-cifar10 (CLS-ER: its own repository's): each method's lr
        lrs = {"ewc": 0.03, "der": 0.03, "derpp": 0.03, "agem": 0.03, "lwf": 0.01}
        assert rec["config"]["train"]["lr"] == lrs.get(strategy, 0.1)
        assert rec["config"]["train"]["weight_decay"] == (0.0005 if strategy == "lwf" else 0.0)
        assert rec["config"]["train"]["momentum"] == 0.0 and rec["config"]["backbone"]["name"] == "resnet18"
        if strategy == "ewc":  # mammoth's models/ewc_on.py: online, lambda 10 (x2 for our 1/2), p(y|x)-weighted Fisher
            hp = rec["config"]["strategy"]
            assert (hp["mode"], hp["lam"], hp["gamma"], hp["fisher"]) == ("online", 20.0, 1.0, "confidence-weighted")
