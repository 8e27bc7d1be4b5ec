"""The fast path's pieces on the CPU: the static-buffer step, device-side replay, the lr schedule,
protocol profiles and the memory breakdown. Graph capture itself runs in tests/test_cuda.py."""
import copy

import pytest
import torch

from nlbench.training import config as C
from nlbench.training.data import Augmenter
from nlbench.registry import BACKBONES, STRATEGIES
from nlbench.training.runner import StepRunner, lr_factor
from nlbench.training.device import amp_context
from nlbench.training.splits import build_scenario
from nlbench.training.strategy import Batch, RunContext
from nlbench.training.data import select_data

from conftest import TINY, load_record


def _context(cifar_root, strategy="finetune", sets=(), graph_capture=True):
    cfg = C.resolve("split-cifar", strategy, "quick", C.parse_sets([*TINY, *sets]))
    data = select_data("full", str(cifar_root), False)
    device = torch.device("cpu")
    scenario = build_scenario("split-cifar", "split", cfg, 0, device, data)
    g = torch.Generator().manual_seed(0)
    make = lambda: BACKBONES["cnn"].obj(num_classes=10, width=8)  # noqa: E731
    ctx = RunContext(cfg, scenario, device, g, make, Augmenter(g), graph_capture=graph_capture)
    torch.manual_seed(0)
    return ctx, scenario, STRATEGIES[strategy].obj(ctx, **cfg["strategy"])


@pytest.mark.parametrize("strategy", ["finetune", "replay", "ewc"])
def test_static_buffer_step_equals_the_eager_step(cifar_root, strategy):
    """What a CUDA graph replays (the step on static input buffers, randomness from the default
    generator) gives the same parameters as calling observe directly."""
    params = []
    for static in (False, True):
        ctx, scenario, strat = _context(cifar_root, strategy)
        torch.manual_seed(1)
        stepper = StepRunner(strat, ctx, amp_context(ctx.device, ctx.cfg), graphs=static)
        task = scenario.tasks[0]
        for i in range(6):
            idx = task.train_idx[i * 16:(i + 1) * 16]
            stepper.step(scenario.train_x[idx], scenario.train_y[idx], torch.zeros_like(idx))
        params.append([p.detach().clone() for p in strat.model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*params))
    assert stepper.static is not None and stepper.graph is None  # static buffers used, nothing recorded on the CPU


def _algorithm_r(stream_len, size, uniforms):
    """Sequential reservoir sampling with the given uniforms (one per sample): slot of each kept sample."""
    buf = [None] * size
    for n in range(stream_len):
        slot = n if n < size else min(int(uniforms[n] * (n + 1)), n)
        if slot < size:
            buf[slot] = n
    return buf


def test_device_reservoir_equals_sequential_algorithm_r(cifar_root):
    ctx, scenario, strat = _context(cifar_root, "replay", ["strategy.buffer_size=20"], graph_capture=False)
    g = torch.Generator().manual_seed(5)
    ctx.generator = g
    uniforms = []
    for b in range(12):  # 12 batches of 8: 96 samples through a 20-slot buffer
        ids = torch.arange(b * 8, (b + 1) * 8)
        state = g.get_state()
        uniforms += torch.rand(8, generator=g).tolist()
        g.set_state(state)
        raw = ids.view(-1, 1, 1, 1).expand(-1, 3, 32, 32).to(torch.uint8)
        strat.buffer.add(Batch(None, ids, raw, torch.zeros_like(ids)))
    expected = _algorithm_r(96, 20, uniforms)
    assert strat.buffer["images"][:20, 0, 0, 0].tolist() == expected and int(strat.buffer.seen) == 96


def test_reservoir_keeps_every_sample_with_equal_probability(cifar_root):
    ctx, scenario, strat = _context(cifar_root, "replay", ["strategy.buffer_size=10"], graph_capture=False)
    counts = torch.zeros(100)
    for trial in range(300):
        ctx.generator = torch.Generator().manual_seed(trial)
        strat.buffer.seen.zero_()
        for b in range(10):
            ids = torch.arange(b * 10, (b + 1) * 10)
            strat.buffer.add(Batch(None, ids, ids.view(-1, 1, 1, 1).expand(-1, 3, 32, 32).to(torch.uint8),
                                       torch.zeros_like(ids)))
        counts[strat.buffer["images"][:10, 0, 0, 0].long()] += 1
    rate = counts / 300  # expected 10/100 for every sample; 300 trials: sd about 0.017
    assert (rate - 0.1).abs().max() < 0.08 and abs(rate[:50].mean() - rate[50:].mean()) < 0.02


def test_replay_draws_distinct_filled_slots_and_masks_the_rest(cifar_root):
    ctx, scenario, strat = _context(cifar_root, "replay", ["strategy.buffer_size=50", "strategy.replay_batch_size=16"],
                                    graph_capture=False)
    for filled, n_valid in ((0, 0), (5, 5), (40, 16)):
        strat.buffer.seen.fill_(filled)
        pick, valid = strat.buffer.draw(strat.replay_bs)
        assert int(valid.sum()) == n_valid
        chosen = pick[valid]
        assert len(set(chosen.tolist())) == n_valid and all(i < filled for i in chosen.tolist())


def test_replay_with_an_empty_buffer_is_plain_finetuning_on_the_stream(cifar_root):
    """The masked replay half adds nothing: the first step's gradient is the stream's alone."""
    ctx, scenario, strat = _context(cifar_root, "replay", ["train.augment=false", "train.optimizer=sgd", "train.momentum=0"],
                                    graph_capture=False)
    model = copy.deepcopy(strat.model)
    idx = scenario.tasks[0].train_idx[:16]
    raw, y = scenario.train_x[idx], scenario.train_y[idx]
    x = ctx.prepare(raw, torch.zeros_like(idx))
    empty_x, empty_y = ctx.prepare(strat.buffer["images"][:16], strat.buffer["task_ids"][:16]), strat.buffer["labels"][:16].clone()
    strat.observe(Batch(x, y, raw, torch.zeros_like(idx)))
    reference = torch.optim.SGD(model.parameters(), lr=ctx.train["lr"])
    model.train()
    loss = torch.nn.functional.cross_entropy(model(torch.cat([x, empty_x])), torch.cat([y, empty_y]),
                                             reduction="none")[:16].mean()
    loss.backward()
    reference.step()
    for a, b in zip(model.parameters(), strat.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_triangle_schedule_matches_hand_values():
    t = {"lr_schedule": "triangle", "warmup_epochs": 2, "epochs": 6}
    assert [lr_factor(t, s, 10) for s in (0, 10, 20, 40, 60)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert lr_factor({**t, "lr_schedule": "constant"}, 33, 10) == 1.0


def test_lr_schedule_reaches_every_optimizer(cifar_root):
    ctx, _, strat = _context(cifar_root, "nested", graph_capture=False)
    ctx.scale_lr(0.25)
    lrs = [g["lr"] for lv in strat.levels.levels for g in lv.optimizer.param_groups]
    assert lrs and all(abs(lr - 0.25 * lv.lr) < 1e-12 for lr, lv in zip(lrs, strat.levels.levels))


def test_der_profile_takes_each_strategys_own_settings():
    sgd = C.resolve("split-cifar", "finetune", "der", {})
    ewc = C.resolve("split-cifar", "ewc", "der", {})
    er = C.resolve("split-cifar", "replay", "der", C.parse_sets(["strategy.buffer_size=200"]))
    assert (sgd["train"]["lr"], sgd["train"]["momentum"], sgd["train"]["weight_decay"]) == (0.1, 0.0, 0.0)
    assert sgd["train"]["batch_size"] == 32 and sgd["train"]["epochs"] == 50 and sgd["train"]["optimizer"] == "sgd"
    assert ewc["train"]["lr"] == 0.03
    assert (ewc["strategy"]["mode"], ewc["strategy"]["lam"], ewc["strategy"]["gamma"]) == ("online", 20.0, 1.0)
    assert er["strategy"]["buffer_size"] == 200 and er["strategy"]["replay_batch_size"] == 32 and er["train"]["lr"] == 0.1
    # the command line still wins over the profile's per-strategy value
    assert C.resolve("split-cifar", "ewc", "der", C.parse_sets(["train.lr=0.01"]))["train"]["lr"] == 0.01


def test_unknown_profile_names_the_valid_ones():
    from nlbench.errors import UserError
    with pytest.raises(UserError, match="has no profile 'der'; valid: quick, gpu-short, converge"):
        C.resolve("cifar10", "adam", "der", {})


def test_memory_breakdown_matches_parameter_counts(bench):
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam", "nested", "finetune",
                      sets=["train.optimizer=sgd", "train.momentum=0"])
    assert code == 0
    n_bytes = sum(p.numel() for p in BACKBONES["cnn"].obj(num_classes=10, width=8).parameters()) * 4
    mb = n_bytes / 2**20
    adam = load_record(out, "split-cifar", "adam@train.optimizer=sgd")["memory"]["model_mb"]  # adam ignores it
    nested = load_record(out, "split-cifar", "nested@train.optimizer=sgd")["memory"]["model_mb"]
    sgd = load_record(out, "split-cifar", "finetune@train.optimizer=sgd")["memory"]["model_mb"]
    assert adam["parameters"] == pytest.approx(mb) and adam["gradients"] == pytest.approx(mb)
    assert adam["optimizer_states"] == pytest.approx(2 * mb)       # Adam: two moments per parameter
    assert sgd["optimizer_states"] == 0                              # plain SGD keeps nothing
    assert adam["level_accumulators"] == 0 and nested["level_accumulators"] > 0
    head = sum(p.numel() for n, p in BACKBONES["cnn"].obj(num_classes=10, width=8).named_parameters()
               if n.startswith("head")) * 4 / 2**20
    assert nested["level_accumulators"] == pytest.approx(mb - head)  # every level but the period-1 head
    assert adam["activations_one_batch"] > 0
    assert adam["total"] == pytest.approx(sum(v for k, v in adam.items() if k != "total"))
