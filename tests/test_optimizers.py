"""NestedAdam and M3 against steps written out by hand, their degenerate settings against torch's
optimizers, and the level clock's edges (lr-matched control, pending gradients, flush, periods
longer than a task or the run)."""
import pytest
import torch

from conftest import load_record
from nlbench.nested.optimizers import M3, Muon, NestedAdam, newton_schulz

B1, B2, EPS = 0.9, 0.999, 1e-8


def grads(n, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(n)]


def run(opt_cls, p0, gs, **kw):
    p = torch.nn.Parameter(p0.clone())
    opt = opt_cls([p], **kw)
    for g in gs:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def blog_nested_optimizer(p, gs, lr, update_slow_on):
    """The blog's NestedOptimizer as its code reads: m every call, v only when update_slow, bias
    corrections with the optimizer's own call count t."""
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for t, g in enumerate(gs, 1):
        m = B1 * m + (1 - B1) * g
        if update_slow_on(t):
            v = B2 * v + (1 - B2) * g ** 2
        p = p - lr * (m / (1 - B1 ** t)) / ((v / (1 - B2 ** t)).sqrt() + EPS)
    return p


def test_nested_adam_is_the_blogs_optimizer_and_with_period_one_torch_adam():
    p0, gs = torch.randn(4, 3), grads(7, (4, 3))
    slow = run(NestedAdam, p0, gs, lr=0.01, slow_period=3)
    assert torch.allclose(slow, blog_nested_optimizer(p0, gs, 0.01, lambda t: (t - 1) % 3 == 0), atol=1e-6)
    every = run(NestedAdam, p0, gs, lr=0.01, slow_period=1)
    assert torch.allclose(every, run(torch.optim.Adam, p0, gs, lr=0.01, foreach=False), atol=1e-6)
    assert not torch.allclose(slow, every, atol=1e-4)  # the slow second moment changes the path


def test_m3_step_by_hand_and_adam_for_one_dimensional_parameters():
    p0, gs, lr, alpha, b3, C = torch.randn(5, 4), grads(5, (5, 4)), 0.02, 0.5, 0.8, 2
    got = run(M3, p0, gs, lr=lr, betas=(B1, B2, b3), alpha=alpha, period=C)
    p, m1, v, m2, chunk = p0.clone(), torch.zeros(5, 4), torch.zeros(5, 4), torch.zeros(5, 4), torch.zeros(5, 4)
    for t, g in enumerate(gs, 1):
        m1, v, chunk = B1 * m1 + (1 - B1) * g, B2 * v + (1 - B2) * g ** 2, chunk + g
        if t % C == 0:
            m2, chunk = b3 * m2 + (1 - b3) * chunk, torch.zeros_like(chunk)
        direction = newton_schulz(m1 / (1 - B1 ** t)) + (alpha * newton_schulz(m2) if t >= C else 0)
        p = p - lr * direction / ((v / (1 - B2 ** t)).sqrt() + EPS)
    assert torch.allclose(got, p, atol=1e-5)
    bias0, bias_gs = torch.randn(6), grads(4, (6,))
    assert torch.allclose(run(M3, bias0, bias_gs, lr=lr), run(torch.optim.Adam, bias0, bias_gs, lr=lr, foreach=False),
                          atol=1e-6)


def test_newton_schulz_makes_a_matrix_nearly_orthogonal_and_reshapes_conv_weights():
    w = torch.randn(8, 3, 3, 3)
    out = newton_schulz(w).reshape(8, -1)
    s = torch.linalg.svdvals(out.float())
    assert out.shape == (8, 27) and s.min() > 0.5 and s.max() < 1.3  # Muon's iteration: singular values near 1


def test_lr_matched_control_keeps_the_slow_lrs_with_every_period_one(bench):
    code, out = bench("--scenario", "split-cifar", "--strategy", "nested-blog",
                      sets=["scenario.n_tasks=2", "strategy.periods=1", "strategy.lr_periods=powers_of_two"])
    levels = load_record(out, "split-cifar", "nested-blog@lr_periods=powers_of_two,periods=1")["strategy_info"]["levels"]
    assert code == 0 and [lv["period"] for lv in levels] == [1, 1, 1, 1]
    assert [lv["lr"] for lv in levels] == pytest.approx([1e-3, 5e-4, 2.5e-4, 1.25e-4])
    assert all(lv["updates"] == 32 and lv["pending_at_end"] == 0 for lv in levels)  # 2 tasks x 2 epochs x 8 steps


def test_pending_gradients_are_recorded_and_flush_applies_them(bench):
    # 2 tasks x 16 steps; slow level period 5: updates at steps 5, 10, ..., 30, so 2 gradients are pending at the end
    sets = ["scenario.n_tasks=2", "strategy.periods=[5, 2, 1]"]
    code, out = bench("--scenario", "split-cifar", "--strategy", "nested", sets=sets)
    info = load_record(out, "split-cifar", "nested@periods=5-2-1")["strategy_info"]
    slow = info["levels"][0]
    assert code == 0 and (slow["updates"], slow["pending_at_end"]) == (6, 2)
    assert info["clock_warnings"] == []  # 5 <= the 16 steps of a task
    code, out = bench("--scenario", "split-cifar", "--strategy", "nested", sets=[*sets, "strategy.flush=task"])
    slow = load_record(out, "split-cifar", "nested@flush=task,periods=5-2-1")["strategy_info"]["levels"][0]
    # task 1: steps 5, 10, 15, a flush of 1 at its end; task 2 (steps 17..32): 20, 25, 30, a flush of 2: 8, 0 pending
    assert (slow["updates"], slow["pending_at_end"]) == (8, 0)


def test_a_period_longer_than_the_run_is_an_error_and_longer_than_a_task_a_warning(bench, capsys):
    code, _ = bench("--scenario", "split-cifar", "--strategy", "nested", sets=["scenario.n_tasks=2", "strategy.periods=[40, 2, 1]"])
    assert code == 2 and "would never update" in capsys.readouterr().err
    code, out = bench("--scenario", "split-cifar", "--strategy", "nested", sets=["scenario.n_tasks=2", "strategy.periods=[20, 2, 1]"])
    info = load_record(out, "split-cifar", "nested@periods=20-2-1")["strategy_info"]
    assert code == 0 and "exceeds a task's 16 steps" in info["clock_warnings"][0]
    assert "warning: level 'slow': period 20" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["nested-adam", "m3"])
def test_levels_run_with_the_new_level_optimizers(bench, kind):
    code, out = bench("--scenario", "split-cifar", "--strategy", "nested",
                      sets=["scenario.n_tasks=2", "strategy.periods=[4, 2, 1]", f"strategy.level_optimizer={kind}",
                            "strategy.slow_period=2"])
    rec = load_record(out, "split-cifar", f"nested@level_optimizer={kind},periods=4-2-1,slow_period=2")
    assert code == 0 and rec["metrics"]["task_il"]["avg_acc"] > 50
    assert {lv["optimizer"] for lv in rec["strategy_info"]["levels"]} == {"NestedAdam" if kind == "nested-adam" else "M3"}


def test_train_levels_on_adam_reproduces_the_nested_strategy(bench):
    """The preset, as an optimizer schedule of plain fine-tuning, gives nested's matrix exactly."""
    sets = ["scenario.n_tasks=2", "strategy.periods=[4, 2, 1]"]
    _, out = bench("--scenario", "split-cifar", "--strategy", "nested", sets=sets)
    code, out2 = bench("--scenario", "split-cifar", "--strategy", "adam", out=out.parent / "sched",
                       sets=["scenario.n_tasks=2", "train.levels={preset: nested, periods: [4, 2, 1]}"])
    nested = load_record(out, "split-cifar", "nested@periods=4-2-1")
    adam = load_record(out2, "split-cifar", "adam@train.levels=(periods=4-2-1,preset=nested)")
    assert code == 0 and adam["acc"] == nested["acc"]
    assert [lv["period"] for lv in adam["strategy_info"]["levels"]] == [4, 2, 1]


@pytest.mark.parametrize("strategy", ["replay", "ewc"])
def test_any_strategy_runs_with_levels_and_resumes(bench, tmp_path, monkeypatch, strategy):
    import os
    import signal
    from nlbench.training.runner import StepRunner
    sets = ["scenario.n_tasks=2", "train.levels=nested-blog"]
    code, ref = bench("--scenario", "split-cifar", "--strategy", strategy, out=tmp_path / "ref", sets=sets)
    name = f"{strategy}@train.levels=nested-blog"  # the levels name the run: never the plain run's folder
    rec = load_record(ref, "split-cifar", name)
    assert code == 0 and [lv["period"] for lv in rec["strategy_info"]["levels"]] == [1, 2, 4, 8]
    real, calls = StepRunner.step, {"n": 0}

    def step(self, *args):
        calls["n"] += 1
        if calls["n"] == 11:  # task 2, mid-period of the slow levels
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args)
    monkeypatch.setattr(StepRunner, "step", step)
    with pytest.raises(SystemExit):
        bench("--scenario", "split-cifar", "--strategy", strategy, out=tmp_path / "cut", sets=sets)
    monkeypatch.undo()
    code, cut = bench("--scenario", "split-cifar", "--strategy", strategy, out=tmp_path / "cut", sets=sets)
    assert code == 0 and load_record(cut, "split-cifar", name)["acc"] == rec["acc"]


def test_bad_train_levels_are_one_line_errors(bench, capsys):
    code, _ = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["train.levels=adam"])
    assert code == 2 and "not a level preset" in capsys.readouterr().err
    code, _ = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["train.levels={periods: [4, 2]}"])
    assert code == 2 and "strategy.periods" in capsys.readouterr().err


def test_muon_is_torchs_muon_and_reshapes_conv_weights():
    """On 2-D parameters our Muon is torch.optim.Muon step for step; a conv weight moves as its
    (C_out, C_in k k) matrix would under torch's."""
    gs = grads(5, (6, 4, 3, 3), seed=3)
    p0 = torch.randn(6, 4, 3, 3)
    ours = run(Muon, p0, gs, lr=0.02)
    flat = torch.nn.Parameter(p0.reshape(6, -1).clone())
    theirs = torch.optim.Muon([flat], lr=0.02, weight_decay=0.0, momentum=0.95, nesterov=True)
    for g in gs:
        flat.grad = g.reshape(6, -1).clone()
        theirs.step()
    assert torch.equal(ours.reshape(6, -1), flat.detach())
    with pytest.raises(ValueError, match="2 or more dimensions"):
        Muon([torch.nn.Parameter(torch.zeros(3))])


def test_muon_strategy_gives_the_head_and_1d_parameters_to_adam(bench):
    code, out = bench("--scenario", "split-cifar", "--strategy", "muon", sets=["scenario.n_tasks=2"])
    rec = load_record(out, "split-cifar", "muon")
    kinds = {o["type"]: o["parameters"] for o in rec["optimizers"]}
    assert code == 0 and set(kinds) == {"Muon", "Adam"} and rec["metrics"]["task_il"]["avg_acc"] > 50
    from nlbench.training.models import cnn
    net = cnn(width=8)  # the tiny runs' backbone: Muon takes its three conv weights, Adam the rest
    convs = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert kinds["Muon"] == convs and kinds["Adam"] == sum(p.numel() for p in net.parameters()) - convs


def test_cms_head_on_adam_reproduces_the_cms_strategy(bench):
    """backbone.cms on plain fine-tuning gives the cms strategy's matrix exactly, and its levels."""
    _, out = bench("--scenario", "split-cifar", "--strategy", "cms", sets=["scenario.n_tasks=2", "strategy.periods=[4, 2, 1]"])
    code, out2 = bench("--scenario", "split-cifar", "--strategy", "adam", out=out.parent / "head",
                       sets=["scenario.n_tasks=2", "backbone.cms=[4, 2, 1]"])
    cms = load_record(out, "split-cifar", "cms@periods=4-2-1")
    adam = load_record(out2, "split-cifar", "adam@backbone.cms=4-2-1")
    assert code == 0 and adam["acc"] == cms["acc"]
    assert [(lv["name"], lv["period"]) for lv in adam["strategy_info"]["levels"]] == [
        ("backbone", 1), ("cms1", 4), ("cms2", 2), ("cms3", 1)]


def test_cms_head_with_replay_and_with_levels(bench):
    sets = ["scenario.n_tasks=2", "backbone.cms=[2, 1]", "train.levels={preset: nested, periods: [4, 2, 1]}"]
    code, out = bench("--scenario", "split-cifar", "--strategy", "replay", sets=sets)
    rec = load_record(out, "split-cifar", "replay@backbone.cms=2-1,train.levels=(periods=4-2-1,preset=nested)")
    levels = [(lv["name"], lv["period"]) for lv in rec["strategy_info"]["levels"]]
    assert code == 0 and levels == [("slow", 4), ("middle", 2), ("fast", 1), ("cms1", 2), ("cms2", 1)]
    assert rec["metrics"]["task_il"]["learning_acc"] > 50


def test_cms_head_is_refused_where_a_strategy_places_its_own_levels(bench, capsys):
    code, _ = bench("--scenario", "split-cifar", "--strategy", "nested", sets=["backbone.cms=[2, 1]"])
    assert code == 2 and "backbone.cms is for strategies without levels" in capsys.readouterr().err
    code, _ = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["backbone.cms=[0, 1]"])
    assert code == 2 and "backbone.cms" in capsys.readouterr().err
