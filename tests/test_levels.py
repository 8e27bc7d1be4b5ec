"""The multi-timescale level machinery does what Eq. 71 says, and nothing else."""
import copy

import pytest
import torch
from torch import nn

from nlbench.nested.levels import build_levels
from nlbench.nested.cms import CMSModel
from nlbench.training.models import cnn


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2))


def sgd(params, lr):
    return torch.optim.SGD(params, lr=lr, momentum=0.0)


def data(steps):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(5, 4, generator=g), torch.randint(0, 2, (5,), generator=g)) for _ in range(steps)]


def loss_fn(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def schedule(model, period, reduce, lr=0.1, make=sgd):
    groups = [("slow", ["0"]), ("fast", ["2"])]
    return build_levels(model, groups, [period, 1], lr, "none", reduce, make)


def run_levels(model, sched, batches):
    """Train with the schedule; return the slow level's weight after every step."""
    history = []
    for x, y in batches:
        loss_fn(model, x, y).backward()
        sched.step()
        history.append(model[0].weight.detach().clone())
    return history


REDUCE = {"sum": lambda gs: sum(gs), "mean": lambda gs: sum(gs) / len(gs), "drop": lambda gs: gs[-1]}


@pytest.mark.parametrize("reduce", ["sum", "mean", "drop"])
def test_slow_level_updates_every_C_steps_with_the_reduced_gradients(reduce):
    """Compared with a hand-written loop: plain SGD, the fast layer steps every batch, the slow
    layer collects its gradients and steps once every C batches with their sum (Eq. 71), mean,
    or the last one alone."""
    C, lr = 4, 0.1
    batches = data(2 * C)
    model, ref = tiny_model(), tiny_model()
    start = model[0].weight.detach().clone()
    collected, expected = [], []
    for x, y in batches:
        ref.zero_grad()
        loss_fn(ref, x, y).backward()
        collected.append([p.grad.clone() for p in ref[0].parameters()])
        with torch.no_grad():
            for p in ref[2].parameters():
                p -= lr * p.grad
            if len(collected) == C:
                for i, p in enumerate(ref[0].parameters()):
                    p -= lr * REDUCE[reduce]([g[i] for g in collected])
                collected = []
        expected.append(ref[0].weight.detach().clone())
    history = run_levels(model, schedule(model, C, reduce, lr), batches)
    for step, (got, want) in enumerate(zip(history, expected), 1):
        assert torch.allclose(got, want, atol=1e-6), f"step {step}"
        if step % C:  # on the C-1 steps in between the slow level does not change at all
            assert torch.equal(got, start if step < C else history[C - 1])
    assert not torch.equal(history[C - 1], start)


def test_sum_mean_and_drop_differ():
    batches = data(4)
    finals = {}
    for reduce in ("sum", "mean", "drop"):
        model = tiny_model()
        finals[reduce] = run_levels(model, schedule(model, 4, reduce), batches)[-1]
    assert not torch.allclose(finals["sum"], finals["mean"])
    assert not torch.allclose(finals["sum"], finals["drop"])
    assert not torch.allclose(finals["mean"], finals["drop"])


def test_gradients_of_a_level_not_due_are_kept_not_applied_early():
    model = tiny_model()
    sched = schedule(model, 3, "sum")
    before = model[0].weight.detach().clone()
    x, y = data(1)[0]
    loss_fn(model, x, y).backward()
    g = model[0].weight.grad.clone()
    sched.step()
    slow = sched.levels[0]
    assert torch.equal(model[0].weight, before)          # not applied early
    assert torch.allclose(slow.accum[0], g)               # not lost
    assert model[0].weight.grad is None                   # and not left to leak into the next step
    assert slow.count == 1 and sched.step_count == 1


def test_period_one_levels_equal_one_optimizer():
    """Adam is element-wise: one Adam per level with period 1 equals one Adam on all parameters."""
    batches = data(6)
    a, b = tiny_model(), tiny_model()
    opt = torch.optim.Adam(a.parameters(), lr=0.01)
    sched = build_levels(b, [("slow", ["0"]), ("fast", ["2"])], [1, 1], 0.01, "none", "sum",
                         lambda p, lr: torch.optim.Adam(p, lr=lr))
    for x, y in batches:
        opt.zero_grad()
        loss_fn(a, x, y).backward()
        opt.step()
        loss_fn(b, x, y).backward()
        sched.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_every_parameter_in_exactly_one_level():
    from nlbench.errors import UserError
    model = tiny_model()
    with pytest.raises(UserError, match="in no level"):
        build_levels(model, [("slow", ["0"])], [2], 0.1, "none", "sum", sgd)
    with pytest.raises(UserError, match="two levels"):
        build_levels(model, [("a", ["0"]), ("b", ["0", "2"])], [2, 1], 0.1, "none", "sum", sgd)


def test_lr_scaling_by_period():
    model = tiny_model()
    sched = build_levels(model, [("slow", ["0"]), ("fast", ["2"])], [8, 1], 0.1, "period", "sum", sgd)
    assert [lv.lr for lv in sched.levels] == [pytest.approx(0.1 / 8), 0.1]


def test_optimizer_state_survives_unless_reset():
    model = tiny_model()
    sched = build_levels(model, [("slow", ["0"]), ("fast", ["2"])], [1, 1], 0.01, "none", "sum",
                         lambda p, lr: torch.optim.Adam(p, lr=lr))
    x, y = data(1)[0]
    loss_fn(model, x, y).backward()
    sched.step()
    state = copy.deepcopy(sched.levels[0].optimizer.state_dict()["state"])
    assert state  # Adam moments exist
    sched.reset_optimizers()
    assert sched.levels[0].optimizer.state_dict()["state"] == {}


def test_cms_head_is_identity_at_initialisation_and_never_gated():
    torch.manual_seed(0)
    backbone = cnn(width=8)
    model = CMSModel(backbone, 3, 2).eval()
    x = torch.randn(4, 3, 32, 32)
    feats = backbone.features(x)
    assert torch.equal(model.cms(feats), feats)
    with torch.no_grad():
        for block in model.cms:
            block.w1.weight.normal_()
        first = model(x)
        for _ in range(5):
            model(x)
        assert torch.equal(model(x), first)  # output does not depend on how often it was called
