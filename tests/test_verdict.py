"""The verdict's machinery: old-task accuracy and the class-IL floor, the linear probes on the mini set,
the formula control's displacement under a constant gradient, and the family's statistics (Holm, TOST) against
statsmodels and hand computations."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from conftest import load_record
from test_report import write
from nlbench.training import metrics
from nlbench.cli import main
from nlbench.nested.levels import budget_lr_factor, build_levels
from nlbench.strategies.levelled import LevelledStrategy
from nlbench.registry import STRATEGIES
from nlbench.reporting.stats import holm, paired_p, seeds_for_margin, tost_paired, verdict


# --- old-task accuracy and the floor ---

def test_old_task_accuracy_is_the_last_row_without_its_last_task():
    R = [[90.0, 0.0, 0.0], [0.0, 80.0, 0.0], [10.0, 20.0, 70.0]]
    assert metrics.old_task_acc(R) == 15.0
    assert metrics.old_task_acc([[50.0]]) is None  # one task: no old task
    assert metrics.at_floor([0.0, 0.0]) and metrics.at_floor([0.0, 0.5]) and not metrics.at_floor([0.0, 1.0]) and not metrics.at_floor([])


def test_a_row_at_the_floor_is_marked_and_its_forgetting_called_plasticity(tmp_path):
    from test_report import record, write
    from nlbench.reporting.report import build_tables, load_records
    runs = tmp_path / "runs"
    for seed in (0, 1):
        write(runs, record("adam", seed, [[90.0, 0.0], [0.0, 95.0]], [[90.0, 50.0], [60.0, 95.0]]))
        write(runs, record("replay", seed, [[90.0, 0.0], [40.0 + seed, 80.0]], [[90.0, 50.0], [85.0, 80.0]]))
    tables = build_tables(load_records(runs))
    main_table = tables["split-cifar"][0].set_index("Strategy")
    assert main_table.loc["Adam (fine-tune)", "Class-IL old-task acc"].endswith("(floor)")
    assert main_table.loc["Adam (fine-tune)", "Class-IL forgetting"].endswith("(floor: plasticity)")
    assert "floor" not in main_table.loc["Replay", "Class-IL old-task acc"]
    assert "floor" not in main_table.loc["Adam (fine-tune)", "Task-IL old-task acc"]  # task-IL keeps 60
    vs = tables["vs-control-split-cifar"][0].set_index("Strategy")
    assert vs.loc["Replay", "Δ forgetting"].endswith("(floor: plasticity)")  # its control is at the floor


# --- the linear probes (Davari et al. 2022) on the embedded mini set ---

PROBE = ["data.probe_per_class=100", "data.train_per_class=300", "data.test_per_class=100"]


def probe_run(tmp_path, scenario, sets):
    out = tmp_path / "runs"
    code = main(["--scenario", scenario, "--strategy", "adam", "--data", "mini", "--out", str(out), "--quiet",
                 "--device", "cpu", "--set", *PROBE, *sets])
    assert code == 0
    return load_record(out, scenario, "adam", data="mini")


def test_a_probe_fit_after_training_on_a_task_beats_the_untrained_networks(tmp_path):
    rec = probe_run(tmp_path, "split-cifar", ["backbone.width=16", "train.epochs=4"])
    P, init = rec["probe"], rec["probe_init"]
    assert len(P) == 5 and all(len(row) == 5 for row in P) and len(init) == 5
    gains = [P[j][j] - init[j] for j in range(5)]
    # training task j makes its own features more separable (measured here: +6.0 +2.0 +7.0 +1.5 +3.0 points)
    assert sum(gains) / 5 > 1.0 and max(gains) > 3.0, gains
    assert all(0.0 <= v <= 100.0 for row in P for v in row)


def test_fine_tuning_on_the_permuted_stream_lowers_task_ones_probe_accuracy(tmp_path):
    rec = probe_run(tmp_path, "permuted-cifar", ["backbone.width=128", "train.epochs=3"])
    P = rec["probe"]
    # later permutations overwrite task 1's features (measured here: 39.4 after task 1, 36.1 at the end)
    assert P[-1][0] < P[0][0] - 1.0, [row[0] for row in P]


def test_the_probe_needs_images_the_run_does_not_train_on(tmp_path, capsys):
    code = main(["--scenario", "split-cifar", "--strategy", "adam", "--data", "mini", "--out", str(tmp_path),
                 "--quiet", "--device", "cpu", "--set", "data.probe_per_class=100", "data.train_per_class=450"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "probe_per_class=100 needs" in err[0] and "only 50 are left" in err[0]
    assert not list(tmp_path.rglob("seed*.json"))


def test_probe_images_are_outside_the_training_set_and_the_same_for_every_seed():
    from nlbench.training.splits import probe_images
    labels = torch.arange(10).repeat(50)
    trained = torch.arange(0, 300)
    a, b = probe_images(labels, trained, 10), probe_images(labels, trained, 10)
    assert torch.equal(a, b) and not set(a.tolist()) & set(trained.tolist())
    assert torch.bincount(labels[a], minlength=10).tolist() == [10] * 10


# --- the formula control (per-layer lr η/C), under a constant gradient ---

def displacement(period, lr, grad_reduce, kind, steps, factor=1.0, g=0.5):
    """A one-parameter level under a constant gradient g: how far it moves in ``steps`` steps."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)

    def make(params, level_lr):
        return torch.optim.SGD(params, lr=level_lr) if kind == "sgd" else torch.optim.Adam(params, lr=level_lr)
    schedule = build_levels(model, [("w", ["weight"])], [period], lr, "none", grad_reduce, make, None, [factor])
    for _ in range(steps):
        model.weight.grad = torch.full_like(model.weight, g)
        schedule.step()
    return -model.weight.item()


@pytest.mark.parametrize("kind,grad_reduce", [("sgd", "sum"), ("sgd", "mean"), ("sgd", "drop"),
                                              ("adam", "sum"), ("adam", "mean"), ("adam", "drop")])
def test_the_budget_matched_control_moves_as_far_as_the_slow_level(kind, grad_reduce):
    C, k, lr = 8, 5, 0.01
    slow = displacement(C, lr, grad_reduce, kind, k * C)
    control = displacement(1, lr, grad_reduce, kind, k * C, factor=budget_lr_factor(C, grad_reduce, kind))
    assert control == pytest.approx(slow, rel=1e-4)
    # by hand: SGD sum k*C*lr*g (factor 1), SGD mean/drop k*lr*g (factor 1/C), Adam k*lr (factor 1/C)
    expected = {"sum": k * C * lr * 0.5, "mean": k * lr * 0.5, "drop": k * lr * 0.5}[grad_reduce] if kind == "sgd" \
        else k * lr
    assert slow == pytest.approx(expected, rel=1e-4)


def test_the_levelled_strategies_declare_their_controls():
    nested = STRATEGIES["nested"]
    controls = nested.obj.matched_controls(nested.defaults)  # Adam levels, sum: periods 1 is also lr-matched
    assert controls == {"every period 1 (architecture-matched, lr-matched)": {"periods": 1},
                        "every period 1, per-layer lr η/C (the formula control)": {"periods": 1, "budget_of": [16, 4, 1]}}
    sgd = nested.obj.matched_controls({**nested.defaults, "level_optimizer": "sgd"})  # SGD sum: factor 1
    assert list(sgd) == ["every period 1 (architecture-matched, lr-matched, budget-matched)"]
    blog = STRATEGIES["nested-blog"]
    controls = blog.obj.matched_controls(blog.defaults)
    assert controls["every period 1, slow lrs (lr-matched)"] == {"periods": 1, "lr_periods": "powers_of_two"}
    assert controls["every period 1, per-layer lr η/C (the formula control)"] == {"periods": 1, "budget_of": "powers_of_two"}
    cms = STRATEGIES["cms"]
    assert cms.obj.matched_controls(cms.defaults)["every period 1, per-layer lr η/C (the formula control)"] == {
        "periods": 1, "budget_of": [16, 4, 1]}
    assert issubclass(nested.obj, LevelledStrategy)


def test_a_budget_matched_run_steps_every_level_at_its_slow_movement(bench):
    code, out = bench("--scenario", "split-cifar", "--strategy", "nested",
                      sets=["scenario.n_tasks=2", "strategy.periods=1", "strategy.budget_of=[16,4,1]"])
    assert code == 0
    rec = load_record(out, "split-cifar", "nested@budget_of=16-4-1,periods=1")
    levels = {lv["name"]: (lv["period"], lv["lr"]) for lv in rec["strategy_info"]["levels"]}
    assert levels == {"slow": (1, pytest.approx(1e-3 / 16)), "middle": (1, pytest.approx(1e-3 / 4)),
                      "fast": (1, pytest.approx(1e-3))}


# --- the family's statistics ---

def test_holm_matches_statsmodels_and_a_hand_example():
    from statsmodels.stats.multitest import multipletests
    # by hand: sorted 0.01, 0.03, 0.04 -> 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, 1 x 0.04 = 0.04 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.01, None, 0.04]) == [pytest.approx(0.02), None, pytest.approx(0.04)]
    p = [0.001, 0.2, 0.013, 0.04, 0.5]
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))


def test_tost_matches_statsmodels_and_the_two_one_sided_t_tests_by_hand():
    from statsmodels.stats.weightstats import ttost_paired
    d = np.array([0.5, -0.2, 0.3, 0.1, 0.4])
    se = d.std(ddof=1) / math.sqrt(len(d))
    by_hand = max(stats.t.sf((d.mean() + 1) / se, 4), stats.t.cdf((d.mean() - 1) / se, 4))
    assert tost_paired(d, 1.0) == pytest.approx(by_hand)
    assert tost_paired(d, 1.0) == pytest.approx(ttost_paired(d, np.zeros(5), -1.0, 1.0)[0])
    assert paired_p(d) == pytest.approx(stats.ttest_1samp(d, 0).pvalue)


def test_verdicts_say_higher_lower_equivalent_or_how_many_seeds_the_margin_needs():
    assert verdict([3.0, 4.0, 5.0, 4.5], 0.01, 1.0).startswith("higher")
    assert verdict([-3.0, -4.0, -5.0, -4.5], 0.01, 1.0).startswith("lower")
    assert verdict([0.1, -0.1, 0.05, 0.0, -0.05, 0.1], 0.9, 1.0) == "equivalent within ±1"
    wide = [2.0, -2.0, 1.0, -1.5]
    need = seeds_for_margin(wide, 1.0)
    assert verdict(wide, 0.9, 1.0) == f"inconclusive (±1 needs ~{need} pairs at the observed mean and spread)"
    # by hand: the smallest n with t(0.95, n-1) * sd / sqrt(n) < 1 - |mean|
    sd, room = np.std(wide, ddof=1), 1 - abs(np.mean(wide))
    assert stats.t.ppf(0.95, need - 1) * sd / math.sqrt(need) < room
    assert stats.t.ppf(0.95, need - 2) * sd / math.sqrt(need - 1) >= room
    assert verdict([1.5, 2.0, 2.5], 0.2, 1.0).startswith("inconclusive (observed Δ beyond ±1")


PERMUTED_TASKS = [list(range(10)), list(range(10))]  # domain-IL: every task holds the 10 classes (chance 10%)


def permuted_record(strategy, run, seed, learnt, final, commit="abc"):
    """A two-task domain-IL record of verdict-permuted: task 1 learnt to ``learnt``, ``final`` at the end."""
    acc = {"domain_il": [[learnt, 10.0], [final, 50.0]]}
    return {"scenario": "permuted-cifar", "profile": "retention", "tasks": PERMUTED_TASKS, "settings": ["domain_il"],
            "config": {"scenario": {}, "backbone": {"name": "mlp", "width": 8},
                       "train": {"epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 0.001}},
            "acc_init": {"domain_il": [10.0, 10.0]}, "train_seconds": 1.0, "images_per_second": 1.0,
            "peak_memory_mb": 1.0, "device": "cpu", "data_source": "synthetic", "status": "complete",
            "strategy": strategy, "run_name": run, "seed": seed, "acc": acc,
            "metrics": {"domain_il": metrics.summarize(acc["domain_il"], [10.0, 10.0])},
            "versions": {"git_commit": commit}}


def family_of(runs):
    from nlbench.reporting.replication import campaign_tables
    from nlbench.reporting.report import load_records
    table, cap, _ = campaign_tables(load_records(runs))["family-verdict-permuted"]
    return {(r["Row"], r["Control"], r["Measure"]): r for _, r in table.iterrows()}, cap


TWIN = "every period 1 (architecture- and lr-matched)"


def test_a_family_table_corrects_within_the_family_and_bolds_only_survivors(tmp_path):
    """verdict-permuted's family: Nested minus its every-period-1 twin keeps 3-5 points more of task 1 with the
    same learning (so it forgets 3-5 less) in all 10 seeds: higher, keeps more, with Holm over every primary and
    co-primary line (those without records counting as p = 1) for the t and the exact sign-flip p alike; CMS
    minus its twin by +-0.1 (equivalent within ±1 after Holm over the TOST p-values)."""
    runs = tmp_path / "runs"
    gain = [3, 4, 5, 3, 4, 5, 4, 3, 5, 4]
    cms_d = [0.1, -0.2, 0.1, 0.0, 0.1, -0.1, 0.05, -0.05, 0.0, 0.1]
    for seed in range(10):
        write(runs, permuted_record("nested", "nested", seed, 60.0, 30.0 + gain[seed]))
        write(runs, permuted_record("nested", "nested@periods=1", seed, 60.0, 30.0, commit="abc" if seed else "def"))
        write(runs, permuted_record("cms", "cms", seed, 60.0, 30.0 + cms_d[seed]))
        write(runs, permuted_record("cms", "cms@periods=1", seed, 60.0, 30.0))
    rows, cap = family_of(runs)
    nested = rows[("Nested", TWIN, "Domain-IL old-task acc")]
    d = np.array(gain, dtype=float)
    from statsmodels.stats.multitest import multipletests
    from nlbench.reporting.specs import load_campaign
    declared = 2 * len(load_campaign("verdict-permuted")["family"]["comparisons"])  # old-task and forgetting lines
    raw_t, raw_cms = stats.ttest_1samp(d, 0).pvalue, stats.ttest_1samp(cms_d, 0).pvalue
    adjusted = multipletests([raw_t, raw_t, raw_cms, raw_cms] + [1] * (declared - 4), method="holm")[1]
    assert nested["Holm p (t)"] == ("<0.001" if adjusted[0] < 0.001 else f"{adjusted[0]:.3f}")
    exact = 2 / 2 ** 10  # every difference positive: only the all-plus and all-minus patterns are as extreme
    assert nested["p (sign-flip)"] == f"{exact:.3f}"
    assert nested["Holm p (sign-flip)"] == f"{multipletests([exact, exact] + [1] * (declared - 2), method='holm')[1][0]:.3f}"
    assert nested["Δ [95% CI]"].startswith("**+4.00") and nested["Verdict"].startswith("higher: keeps more")
    assert nested["pairs"] == "10" and nested["pairs across code versions"] == "1"
    forgetting = rows[("Nested", TWIN, "Domain-IL forgetting")]
    assert forgetting["Δ [95% CI]"].startswith("**-4.00") and forgetting["Verdict"].startswith("forgets less")
    learning = rows[("Nested", TWIN, "Domain-IL old tasks' learning acc")]
    assert learning["Role"] == "descriptive" and learning["Holm p (t)"] == "n/a"
    cms_row = rows[("CMS", TWIN, "Domain-IL old-task acc")]
    assert cms_row["Verdict"].startswith("equivalent within ±1") and "**" not in cms_row["Δ [95% CI]"]
    assert "Holm" in cap and "sign-flip" in cap


def test_a_lower_old_task_acc_without_more_forgetting_reads_learns_less(tmp_path):
    """Nested learns task 1 to 4 points less than its twin and loses the same: lower old-task acc, forgetting
    not different, so the verdict says it learns less, never that it keeps less."""
    runs = tmp_path / "runs"
    loss = [20.0, 21.0, 19.0, 20.5, 19.5, 20.0, 21.0, 19.0, 20.0, 20.0]
    for seed in range(10):
        learnt = 60.0 + seed % 3
        write(runs, permuted_record("nested", "nested", seed, learnt - 4.0 - 0.1 * (seed % 2), learnt - 4.0 - loss[seed]))
        write(runs, permuted_record("nested", "nested@periods=1", seed, learnt, learnt - loss[(seed + 3) % 10]))
    rows, _ = family_of(runs)
    old = rows[("Nested", TWIN, "Domain-IL old-task acc")]
    assert old["Verdict"].startswith("lower: learns less (forgetting not shown different)")
    assert "keeps less" not in old["Verdict"]


def test_equivalence_needs_holm_over_the_tost_p_values(tmp_path):
    """One comparison inside ±1 with a raw TOST p just below 0.05: alone in the family it would be
    'equivalent', but Holm over the family's TOST p-values (the rest without records: p = 1) leaves it
    inconclusive."""
    runs = tmp_path / "runs"
    d = [0.9, -0.4, 1.6, -0.9, 1.3, -0.6, 1.5, -0.8, 1.2, -0.4]
    for seed in range(10):
        write(runs, permuted_record("cms", "cms", seed, 60.0, 30.0 + d[seed]))
        write(runs, permuted_record("cms", "cms@periods=1", seed, 60.0, 30.0))
    raw = tost_paired(np.array(d), 1.0)
    assert raw < 0.05
    rows, _ = family_of(runs)
    line = rows[("CMS", TWIN, "Domain-IL old-task acc")]
    assert line["TOST p"] == f"{raw:.3f}" and float(line["Holm TOST p"]) >= 0.05
    assert line["Verdict"].startswith("inconclusive")


def test_a_row_that_does_not_learn_leaves_the_family_with_its_reason(tmp_path):
    """A control that learns task 1 to 12% (chance 10%: below 1.5x chance) fails the functioning check: its
    comparison is shown with the reason, outside Holm, never bold."""
    runs = tmp_path / "runs"
    for seed in range(10):
        write(runs, permuted_record("nested", "nested", seed, 60.0, 40.0 + seed % 2))
        write(runs, permuted_record("nested", "nested@periods=1", seed, 12.0, 11.0))
    rows, _ = family_of(runs)
    line = rows[("Nested", TWIN, "Domain-IL old-task acc")]
    assert line["Verdict"].startswith("outside the family (fails its functioning check: Nested, every period 1: "
                                      "learning acc task 1 12.0 < 15.0")
    assert line["Holm p (t)"] == "n/a" and "**" not in line["Δ [95% CI]"]


def test_seeds_beyond_the_declared_ones_stay_out_of_the_verdict(tmp_path):
    runs = tmp_path / "runs"
    for seed in list(range(10)) + [10, 11]:
        write(runs, permuted_record("nested", "nested", seed, 60.0, 35.0 if seed < 10 else 80.0))
        write(runs, permuted_record("nested", "nested@periods=1", seed, 60.0, 35.0))
    rows, _ = family_of(runs)
    line = rows[("Nested", TWIN, "Domain-IL old-task acc")]
    assert line["pairs"] == "10" and line["Δ [95% CI]"].startswith("+0.00")
    assert line["post hoc seeds (not in the verdict)"] == "2: 10, 11"


def test_the_sign_flip_p_is_the_exact_enumeration_by_hand():
    import itertools
    from nlbench.reporting.stats import sign_flip_p
    d = np.array([1.2, -0.3, 0.8, 2.1, 0.5, -0.1, 1.1, 0.9])
    extreme = sum(abs(np.mean(d * np.array(signs))) >= abs(d.mean()) - 1e-12
                  for signs in itertools.product([1, -1], repeat=len(d)))
    assert sign_flip_p(d) == pytest.approx(extreme / 2 ** len(d))
    big = np.linspace(0.1, 2.0, 20)  # beyond exact enumeration: random patterns, a fixed generator
    assert sign_flip_p(big) == sign_flip_p(big) < 0.001
