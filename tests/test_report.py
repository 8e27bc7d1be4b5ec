"""Report: golden Markdown table, LaTeX sanity, aggregation by hand, clear errors."""
import json

import pytest

from nlbench.errors import UserError
from nlbench.reporting.report import build_tables, load_records, main, to_latex, to_markdown

CFG = {"scenario": {}, "backbone": {"name": "cnn", "width": 8}, "train": {"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 0.001}}


def record(strategy, seed, class_il, task_il, run=None, status="complete"):
    from nlbench.training import metrics
    acc = {"class_il": class_il, "task_il": task_il}
    init = {"class_il": [10.0, 10.0], "task_il": [50.0, 50.0]}
    return {"scenario": "split-cifar", "strategy": strategy, "run_name": run or strategy, "seed": seed,
            "profile": "quick", "status": status, "config": CFG, "tasks": [[0, 1], [2, 3]], "acc": acc,
            "acc_init": init, "metrics": {s: metrics.summarize(acc[s], init[s]) for s in acc},
            "train_seconds": 1.0, "images_per_second": 100.0, "peak_memory_mb": 10.0,
            "peak_memory_kind": "process_peak_rss", "device": "cpu:2 cores", "data_source": "synthetic",
            "versions": {"git_commit": "abc"}}


def write(runs, rec):
    path = runs / rec["profile"] / rec.get("data_set", "full") / rec["scenario"] / rec["run_name"].replace(":", "-") / f"seed{rec['seed']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    write(runs, record("adam", 0, [[90.0, 0.0], [0.0, 95.0]], [[90.0, 50.0], [60.0, 95.0]]))
    write(runs, record("adam", 1, [[80.0, 0.0], [10.0, 85.0]], [[80.0, 50.0], [70.0, 85.0]]))
    write(runs, record("replay", 0, [[90.0, 0.0], [40.0, 80.0]], [[90.0, 50.0], [85.0, 80.0]]))
    write(runs, record("joint", 0, [None, [90.0, 90.0]], [None, [97.0, 97.0]]))
    return runs


# By hand: adam class-IL forgetting 90 and 70 (mean 80, sample std 14.14, sem 10, t(0.975, 1) = 12.706:
# [-47.1, 207.1]); A = 47.5 both seeds (std 0: the interval is the point); learning accuracy (90 + 95) / 2
# and (80 + 85) / 2 = 87.5 ± 7.07, half width 12.706 * 5 = 63.5; task-IL forgetting 30 and 10; task-IL
# FWT = R[0][1] - b[1] = 50 - 50 = 0; replay A = (40 + 80) / 2 = 60, forgetting 90 - 40 = 50, learning
# (90 + 80) / 2 = 85; joint has only a last row, so forgetting, learning accuracy and FWT are n/a. No bold.
# Old-task accuracy = the last row without its last task: adam class-IL 0 and 10 (5.00 ± 7.07, half width
# 12.706 * 5 = 63.5: not at the floor, seed 1 keeps 10), task-IL 60 and 70; replay 40 / 85; joint 90 / 97.
GOLDEN = """\
| Strategy            | Class-IL acc              | Class-IL old-task acc     | Class-IL forgetting          | Class-IL learning acc      | Task-IL acc               | Task-IL old-task acc      | Task-IL forgetting            | Task-IL learning acc       | Task-IL FWT            | n   |
|:--------------------|:--------------------------|:--------------------------|:-----------------------------|:---------------------------|:--------------------------|:--------------------------|:------------------------------|:---------------------------|:-----------------------|:----|
| Adam (fine-tune)    | 47.50 ± 0.00 [47.5, 47.5] | 5.00 ± 7.07 [-58.5, 68.5] | 80.00 ± 14.14 [-47.1, 207.1] | 87.50 ± 7.07 [24.0, 151.0] | 77.50 ± 0.00 [77.5, 77.5] | 65.00 ± 7.07 [1.5, 128.5] | 20.00 ± 14.14 [-107.1, 147.1] | 87.50 ± 7.07 [24.0, 151.0] | 0.00 ± 0.00 [0.0, 0.0] | 2   |
| Replay              | 60.00                     | 40.00                     | 50.00                        | 85.00                      | 82.50                     | 85.00                     | 5.00                          | 85.00                      | 0.00                   | 1   |
| Joint (upper bound) | 90.00                     | 90.00                     | n/a                          | n/a                        | 97.00                     | 97.00                     | n/a                           | n/a                        | n/a                    | 1   |
"""


def test_golden_markdown_table(runs):
    table, cap, _ = build_tables(load_records(runs))["split-cifar"]
    md = to_markdown(table, cap)
    assert md.split("\n\n", 1)[1] == GOLDEN
    assert "2 seeds (0, 1)" in cap and "profile quick" in cap and "Chaudhry" in cap


def test_aggregation_matches_hand_computation(runs):
    df = load_records(runs)
    adam = df[(df["run"] == "adam") & (df["setting"] == "class_il")]["avg_acc"]
    # seed 0: (0 + 95) / 2 = 47.5 ; seed 1: (10 + 85) / 2 = 47.5
    assert sorted(adam.tolist()) == [47.5, 47.5]
    task = df[(df["run"] == "adam") & (df["setting"] == "task_il")]["avg_acc"]
    # (60 + 95) / 2 = 77.5 and (70 + 85) / 2 = 77.5; std of forgetting: |30 - 10| / sqrt(2) = 14.14
    assert sorted(task.tolist()) == [77.5, 77.5]


def test_latex_is_balanced_and_escaped(runs):
    table, cap, _ = build_tables(load_records(runs))["split-cifar"]
    tex = to_latex(table, cap, "split-cifar")
    for env in ("table", "tabular"):
        assert tex.count(r"\begin{" + env) == tex.count(r"\end{" + env) == 1
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    body = tex.replace(r"\_", "").replace(r"\label{tab:split-cifar}", "")
    assert "_" not in body and "±" not in tex and "**" not in tex
    assert r"60.00" in tex and tex.count("{") == tex.count("}")


def test_diverged_runs_are_shown_not_averaged(runs):
    bad = record("replay", 1, [[90.0, 0.0], [0.0, 0.0]], [[90.0, 50.0], [50.0, 50.0]], status="diverged")
    bad["metrics"] = None
    write(runs, bad)
    table, _, _ = build_tables(load_records(runs))["split-cifar"]
    replay = table[table["Strategy"] == "Replay"].iloc[0]
    assert replay["n"] == "1 (1 diverged)" and replay["Class-IL acc"] == "60.00"


def test_report_writes_tables_and_readme(runs, tmp_path):
    out = tmp_path / "results"
    assert main(["--runs", str(runs), "--out", str(out), "--no-figures"]) == 0
    assert (out / "tables" / "split-cifar.md").read_text().count("Published, different protocol") == 1
    assert (out / "tables" / "split-cifar.tex").exists() and "python bench.py report" in (out / "README.md").read_text()
    first = (out / "tables" / "split-cifar.md").read_bytes()
    main(["--runs", str(runs), "--out", str(out), "--no-figures"])
    assert (out / "tables" / "split-cifar.md").read_bytes() == first


def test_empty_folder_and_bad_records_name_the_problem(tmp_path, runs):
    with pytest.raises(UserError, match="no run records under"):
        load_records(tmp_path / "nothing")
    old = runs / "quick" / "full" / "split-cifar" / "ewc" / "seed0.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"scenario": "split-cifar", "acc": {}}))
    with pytest.raises(UserError, match=f"run record {old} lacks keys strategy"):
        load_records(runs)
    old.write_text("{ truncated")
    with pytest.raises(UserError, match=f"corrupt run record {old}"):
        load_records(runs)


def test_speed_results_become_a_table(runs, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "speed.json").write_text(json.dumps({
        "device": "cpu:2 cores", "backbone": "cnn", "width": 32, "batch_size": 32, "native_images_per_s": 2000.0,
        "dataloader_images_per_s": 1000.0, "avalanche_images_per_s": 800.0, "native_over_dataloader": 2.0,
        "native_over_avalanche": 2.5}))
    main(["--runs", str(runs), "--out", str(out), "--no-figures"])
    table = (out / "tables" / "speed.md").read_text()
    assert "| speed.json | cpu:2 cores | full   | cnn (width 32) | 32      | 2000" in table and "| 2.50 " in table


def test_runs_on_different_data_never_share_a_table(runs, tmp_path):
    """A mini-set run of the same strategy and seed lands in its own table, with its own data in the caption;
    the full-data table (records without data_set predate the mini set) is exactly as before."""
    mini = record("adam", 0, [[50.0, 0.0], [0.0, 60.0]], [[50.0, 50.0], [55.0, 60.0]])
    mini.update({"data_set": "mini", "data_source": "nlbench mini CIFAR-10 (test)", "wall_seconds": 12.0})
    mini_runs = tmp_path / "mini-runs"
    write(mini_runs, mini)
    both = tmp_path / "both"
    for folder in (runs, mini_runs):
        for path in folder.rglob("seed*.json"):
            target = both / folder.name / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text())
    tables = build_tables(load_records(both))
    full_table, full_cap, _ = tables["split-cifar"]
    assert to_markdown(full_table, full_cap).split("\n\n", 1)[1] == GOLDEN and "data: synthetic." in full_cap
    mini_table, mini_cap, _ = tables["split-cifar-mini"]
    assert list(mini_table["Strategy"]) == ["Adam (fine-tune)"] and mini_table.iloc[0]["Class-IL acc"] == "30.00"
    assert "data: nlbench mini CIFAR-10 (test)." in mini_cap and "synthetic" not in mini_cap
    runtime, _, _ = tables["runtime-mini"]
    assert runtime.iloc[0]["split-cifar"] == "12.0"


def test_a_campaign_table_needs_a_recorded_pair_and_never_mixes_data_sets(runs, tmp_path):
    """avalanche-parity (profile quick, split-cifar) pairs adam with avalanche:Naive by seed. Adam alone
    makes no campaign table (and the quick profile keeps its own tables: replaces_profile_tables false);
    the pair on the full set and on the mini set makes one table each, with that set's seeds only:
    Δ = ours - theirs, by hand 47.5 - 40 = +7.50 (full, one pair) and 30 - 35 = -5.00 (mini)."""
    assert not [name for name in build_tables(load_records(runs)) if "avalanche-parity" in name]
    write(runs, record("avalanche:Naive", 0, [[80.0, 0.0], [0.0, 80.0]], [[80.0, 50.0], [50.0, 80.0]]))
    for strategy, diagonal in (("adam", 60.0), ("avalanche:Naive", 70.0)):
        mini = record(strategy, 0, [[50.0, 0.0], [0.0, diagonal]], [[50.0, 50.0], [55.0, 60.0]])
        mini.update({"data_set": "mini", "data_source": "nlbench mini CIFAR-10 (test)"})
        write(tmp_path / "runs" / "mini", mini)
    tables = build_tables(load_records(runs))
    assert "split-cifar" in tables and "campaign-avalanche-parity" in tables and "campaign-avalanche-parity-mini" in tables
    full, _, _ = tables["vs-control-campaign-avalanche-parity"]
    mini, _, _ = tables["vs-control-campaign-avalanche-parity-mini"]
    assert full.iloc[0]["Δ final acc"] == "+7.50 (n=1)" and mini.iloc[0]["Δ final acc"] == "-5.00 (n=1)"


def test_interval_is_the_student_t_interval_by_hand():
    import pandas as pd
    from nlbench.reporting.replication import interval, mean_std
    # 1, 2, 3: mean 2, sample std 1, t(0.975, 2) = 4.3027: half width 4.3027 / sqrt(3) = 2.4841
    assert interval(pd.Series([1.0, 2.0, 3.0])) == "[-0.48, 4.48]"
    assert mean_std(pd.Series([1.0, 2.0, 3.0])) == "2.00 ± 1.00"
    assert interval(pd.Series([5.0])) == "n=1: no interval"


def test_train_time_adds_the_end_of_task_work_and_marks_records_without_it():
    import pandas as pd
    from nlbench.reporting.stats import train_time
    runs = pd.DataFrame({"path": ["a", "a", "b"], "train_seconds": [10.0, 10.0, 20.0],
                         "end_of_task_seconds": [5.0, 5.0, None]})  # "a" twice: one row per setting
    # 10 + 5 and 20 (+ nothing timed): mean 17.5, sample std 3.54
    assert train_time(runs, 1) == "17.5 ± 3.5 (1 of 2: steps only)"
    assert train_time(runs.iloc[:2]) == "15"
    assert train_time(runs.iloc[2:]) == "20 (steps only)"
    grouped = runs.assign(group_size=[15, 15, 1])  # "a" trained in a seed-parallel group of 15
    assert train_time(grouped.iloc[:2]) == "15 (a seed-parallel group's time, K = 15)"


def test_old_records_read_end_of_task_time_as_unknown_except_avalanche_whose_loop_was_timed_whole():
    from nlbench.training.records import upgrade
    base = {"acc": {"class_il": []}, "profile": "quick"}
    assert upgrade({**base, "strategy": "gdumb"})["end_of_task_seconds"] is None
    assert upgrade({**base, "strategy": "avalanche:GDumb"})["end_of_task_seconds"] == 0.0
    assert upgrade({**base, "strategy": "gdumb", "end_of_task_seconds": 3.5})["end_of_task_seconds"] == 3.5
    # a seed-parallel group's record stepped eagerly, whatever an older record copied from a member
    grouped = {**base, "strategy": "adam", "seed_parallel": {"group_size": 15},
               "numerics": {"cuda_graph": True, "bf16_autocast": True}}
    assert upgrade(grouped)["numerics"]["cuda_graph"] is False and upgrade(grouped)["numerics"]["bf16_autocast"]
    alone = {**base, "strategy": "adam", "seed_parallel": None, "numerics": {"cuda_graph": True}}
    assert upgrade(alone)["numerics"]["cuda_graph"] is True


def test_campaign_table_puts_the_published_numbers_beside_ours(tmp_path):
    """der-table2's SGD row: our two seeds (mean, interval, learning accuracy) next to the paper's."""
    from nlbench.reporting.replication import campaign_tables
    runs = tmp_path / "runs"
    for seed, (a, b) in enumerate([(20.0, 18.0), (22.0, 20.0)]):
        rec = record("finetune", seed, [[96.0, 0.0], [a, b]], [[96.0, 50.0], [70.0, 90.0]])
        rec["profile"] = "der"
        write(runs, rec)
    tables = campaign_tables(load_records(runs))
    table, cap, _ = tables["campaign-der-table2"]
    sgd = table[table["Row"] == "SGD"].iloc[0]
    # class-IL A_T: seed 0 (20 + 18) / 2 = 19, seed 1 21: mean 20, std 1.414; t(0.975, 1) = 12.706
    assert sgd["Class-IL ours"] == "20.00 ± 1.41" and sgd["Class-IL ours 95% CI"] == "[7.29, 32.71]"
    assert sgd["Class-IL published"] == "19.62 ± 0.05" and sgd["Task-IL published"] == "61.02 ± 3.33"
    # learning accuracy = mean of the diagonal: (96 + 18) / 2 = 57 and (96 + 20) / 2 = 58
    assert sgd["Learning acc (class-IL)"] == "57.5 ± 0.7" and sgd["n"] == "2"
    assert table[table["Row"] == "JOINT"].iloc[0]["n"] == "0" and "Buzzega" in cap
    rep = tables["replication-der-table2"][0]
    line = rep[(rep["Row"] == "SGD") & (rep["Metric"] == "Class-IL final acc")].iloc[0]
    # ours 20.00 (19, 21); published 19.62 ± 0.05 (std, 10 runs): difference +0.38, its interval as wide as
    # ours (the published se 0.05 / sqrt(10) is tiny): not shown either way at the default margin of 2
    assert line["Ours − published [95% CI]"].startswith("+0.38 [") and line["Verdict"] == "not shown either way"
    assert line["Published"] == "19.62 ± 0.05 (std), 10 runs" and line["n"] == "2"


def test_a_published_number_without_a_plus_minus_is_shown_without_one(tmp_path):
    """mir-online's ER-ACE-200 reference (42.6, Caccia et al. Table 1) has no ± in our source: its cell
    is the value alone, never '± 0.00'; MIR's ER-200 keeps its printed ± 1.2."""
    from nlbench.reporting.replication import campaign_tables
    runs = tmp_path / "runs"
    for strategy, name in (("er-ace", "er-ace@buffer_size=200"), ("replay", "replay@buffer_size=200")):
        rec = record(strategy, 0, [[90.0, 0.0], [30.0, 40.0]], [[90.0, 50.0], [70.0, 80.0]])
        rec.update({"profile": "online", "run_name": name})
        write(runs, rec)
    table = campaign_tables(load_records(runs))["campaign-mir-online"][0]
    assert table[table["Row"] == "ER-ACE-200"].iloc[0]["Class-IL published"] == "42.60"
    assert table[table["Row"] == "ER-200"].iloc[0]["Class-IL published"] == "27.50 ± 1.20"


def test_replication_interval_of_the_difference_and_its_equivalence_verdict_by_hand(tmp_path):
    """MIR's ER-200 (27.5 ± 1.2 as 2se over 15 runs: se 0.6): ours minus published with the two standard
    errors combined (Welch-Satterthwaite df) and TOST at mir-online's margin of 2 points, computed here by
    hand: 27.4 / 27.5 / 27.6 replicate within ±2, 25 / 26 / 27 are not shown either way, 20 / 21 / 22
    differ. A row the campaign lists without any reference says so rather than borrowing a neighbour's."""
    import math
    import numpy as np
    from scipy import stats
    from nlbench.reporting.replication import campaign_tables, published_se
    for accs, expected in (((27.4, 27.5, 27.6), "replicated within ±2"), ((25, 26, 27), "not shown either way"),
                           ((20, 21, 22), "differs")):
        runs = tmp_path / f"runs{accs[0]}"
        for seed, a in enumerate(accs):
            rec = record("replay", seed, [[90.0, 0.0], [2 * a - 90.0, 90.0]], [[90.0, 50.0], [80.0, 90.0]],
                         run="replay@buffer_size=200")
            rec["profile"] = "online"
            write(runs, rec)
        rep = campaign_tables(load_records(runs))["replication-mir-online"][0]
        mir = rep[(rep["Row"] == "ER-200") & rep["Source"].str.startswith("Aljundi")
                  & (rep["Metric"] == "Class-IL final acc")].iloc[0]
        x = np.array(accs, dtype=float)
        a_var, b_var = x.var(ddof=1) / 3, 0.6 ** 2
        se = math.sqrt(a_var + b_var)
        df = (a_var + b_var) ** 2 / (a_var ** 2 / 2 + b_var ** 2 / 14)
        d = x.mean() - 27.5
        half = stats.t.ppf(0.975, df) * se
        p = max(stats.t.sf((d + 2) / se, df), stats.t.cdf((d - 2) / se, df))
        assert mir["Ours − published [95% CI]"] == f"{d:+.2f} [{d - half:+.2f}, {d + half:+.2f}]"
        assert mir["TOST p (±2)"] == f"{p:.3f}" and mir["Verdict"] == expected
    assert set(rep[rep["Row"] == "ER-200"]["Source"].str.split(" ").str[0]) == {"Aljundi", "Mai", "Shim", "Caccia"}
    assert published_se({"pm": 0.27, "pm_kind": "std", "runs": 10}) == pytest.approx(0.27 / np.sqrt(10))
    assert published_se({"pm": 1.2, "pm_kind": "2se", "runs": 15}) == pytest.approx(0.6)
    assert published_se({"pm": 0.3, "pm_kind": "se", "runs": 10}) == pytest.approx(0.3)
    assert published_se({"pm": 1.1, "pm_kind": "printed", "runs": 10}) == pytest.approx(1.1)
    assert published_se({"pm": None, "pm_kind": None, "runs": 15}) == 0.0
    # ER-ACE's columns are memory slots per class: its 26.7 is ER-200's, 36.1 ER-500's, 38.7 / 41.5 ER-1000's
    caccia = rep[rep["Source"].str.startswith("Caccia")]
    assert sorted(caccia[caccia["Row"] == "ER-500"]["Published"].str[:5]) == ["36.10"]
    assert sorted(caccia[caccia["Row"] == "ER-1000"]["Published"].str[:5]) == ["38.70", "41.50"]
    assert not rep["Published"].str.startswith("19.70").any()  # ER-ACE's 50-image buffer: no row of ours
    fine = rep[rep["Row"] == "Fine-tune"].iloc[0]
    assert fine["n"] == "0" and fine["Ours"] == "n/a" and fine["Source"].startswith("Caccia")
    nested = rep[rep["Row"] == "Nested (SGD levels)"]
    assert len(nested) == 1 and nested.iloc[0]["Source"] == "no published counterpart"


def test_campaign_comparisons_are_paired_by_seed_and_a_bad_one_names_itself(tmp_path):
    """mir-online declares ER-200 minus Fine-tune: class-IL final accuracies 20/21/22 (fine-tune) and
    30/33/33 (ER-200) differ by 10, 12, 11 per seed: scipy's t interval of those, not bold (outside a
    declared family every interval is exploratory). A comparison naming a row the campaign lacks is a
    one-line error."""
    import numpy as np
    from scipy import stats
    from nlbench.reporting.replication import campaign_tables, comparisons
    runs = tmp_path / "runs"
    for seed, (ft, er) in enumerate([(20, 30), (21, 33), (22, 33)]):
        for strategy, run, a in (("finetune", "finetune", ft), ("replay", "replay@buffer_size=200", er)):
            rec = record(strategy, seed, [[90.0, 0.0], [2 * a - 90.0, 90.0]], [[90.0, 50.0], [80.0, 90.0]], run=run)
            rec["profile"] = "online"
            write(runs, rec)
    table, cap, _ = campaign_tables(load_records(runs))["vs-control-campaign-mir-online"]
    assert list(table["Row"]) == ["ER-200"] and "paired by seed" in cap
    d = np.array([10.0, 12.0, 11.0])
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert table.iloc[0]["Δ final acc"] == f"+11.00 [{lo:+.2f}, {hi:+.2f}]" and table.iloc[0]["pairs"] == "3"
    assert "exploratory" in cap
    with pytest.raises(UserError, match="a comparison is"):
        comparisons({"name": "x", "runs": [{"label": "A", "strategy": "adam"}], "comparisons": [["A", "B", "w"]]})


def test_records_carry_a_schema_version_and_old_ones_are_read_as_such(tmp_path, bench):
    from nlbench.training.records import SCHEMA_VERSION, read_record
    code, out = bench("--scenario", "split-cifar", "--strategy", "adam", sets=["scenario.n_tasks=2"])
    new = json.loads((out / "quick" / "full" / "split-cifar" / "adam" / "seed0.json").read_text())
    assert new["schema_version"] == SCHEMA_VERSION and len(new["versions"]["git_commit"] or "x" * 40) == 40
    old = tmp_path / "old.json"
    old.write_text(json.dumps(record("adam", 0, [[90.0]], [[90.0]])))
    upgraded = read_record(old)
    assert upgraded["schema_version"] == 1 and upgraded["memory"] is None
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**record("adam", 0, [[90.0]], [[90.0]]), "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(UserError, match="newer than this nlbench"):
        read_record(future)


def test_versus_control_is_the_paired_t_interval_and_never_bold(tmp_path):
    """Three seeds; replay - adam differences 10, 12, 14 (CI excludes 0, yet not bold: these tables are
    exploratory, claims come from a declared family); nested - adam 5, -5, 3; nested's twins are paired
    too. Checked against scipy directly."""
    import numpy as np
    from scipy import stats
    runs = tmp_path / "runs"
    for seed, (a, r, n, twin) in enumerate([(40, 50, 45, 41), (42, 54, 37, 40), (44, 58, 47, 43)]):
        for name, run, acc in (("adam", "adam", a), ("replay", "replay", r), ("nested", "nested", n),
                               ("nested", "nested@periods=1", twin)):
            class_il = [[90.0, 0.0], [2 * acc - 90.0, 90.0]]  # final average = acc
            write(runs, record(name, seed, class_il, [[90.0, 50.0], [80.0, 90.0]], run=run))
    table, cap, _ = build_tables(load_records(runs))["vs-control-split-cifar"]
    rows = {(r["Strategy"], r["Control"]): r for _, r in table.iterrows()}

    def by_scipy(d):
        d = np.array(d, dtype=float)
        lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        return f"{d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]"
    assert rows[("Replay", "Adam (fine-tune)")]["Δ final acc"] == by_scipy([10, 12, 14])
    assert rows[("Nested", "Adam (fine-tune)")]["Δ final acc"] == by_scipy([5, -5, 3])
    assert rows[("Nested", "nested@periods=1 (every period 1 (architecture-matched, lr-matched))")][
        "Δ final acc"] == by_scipy([4, -3, 4])
    assert "**" not in table.to_string() and "exploratory" in cap
    assert rows[("Replay", "Adam (fine-tune)")]["pairs"] == "3" and "paired by seed" in cap


def test_variance_split_matches_a_hand_computed_two_way_table():
    import pandas as pd
    from nlbench.reporting.stats import variance_split
    # orders are rows, seeds columns: grand mean 5; order means 2, 5, 8 -> SS 3 * (9 + 0 + 9) = 54;
    # seed means 4, 5, 6 -> SS 3 * (1 + 0 + 1) = 6; total SS 60, so rest 0
    grid = pd.DataFrame([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert variance_split(grid) == pytest.approx({"order": 0.9, "seed": 0.1, "rest": 0.0, "total_ss": 60.0})


def test_declared_study_pairs_each_row_with_its_own_control(tmp_path):
    """split-cifar.yaml's nested-study: replay with levels minus replay (differences 3, 5, 4; not bold:
    a study outside a family is exploratory),
    and a study row whose runs have no records is left out, not matched to a neighbour."""
    import numpy as np
    from scipy import stats
    runs = tmp_path / "runs"
    for seed, (r, lv) in enumerate([(50, 53), (54, 59), (58, 62)]):
        for name, run, acc in (("replay", "replay", r), ("replay", "replay@train.levels=nested", lv)):
            write(runs, record(name, seed, [[90.0, 0.0], [2 * acc - 90.0, 90.0]], [[90.0, 50.0], [80.0, 90.0]], run=run))
    table, cap, _ = build_tables(load_records(runs))["nested-study"]
    d = np.array([3, 5, 4], dtype=float)
    lo, hi = stats.t.interval(0.95, 2, loc=d.mean(), scale=stats.sem(d))
    assert list(table["Row"]) == ["Replay + Nested levels"]
    assert table.iloc[0]["Δ final acc"] == f"{d.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]"
    assert table.iloc[0]["pairs"] == "3" and "paired by seed" in cap


def test_every_study_row_names_runs_the_command_line_can_make():
    """A study's run names must be what bench.py names those runs (a typo would silently drop a row)."""
    import re
    from nlbench.training import config as C
    from nlbench.reporting.comparisons import study_specs
    from nlbench.plugins import load
    load()
    for spec in study_specs("split-cifar").values():
        for run in {r for row in spec["rows"] for r in row[1:3]}:
            from nlbench.launchers.tuning import PROTOCOLS, TUNED_MARK
            if TUNED_MARK in run:  # NAME@tuned=PROTOCOL is what --tuned PROTOCOL names the run NAME
                run, _, protocol = run.rpartition(TUNED_MARK)
                run = run.rstrip("@,")
                assert protocol in PROTOCOLS
            strategy, _, rest = run.partition("@")
            sets = []
            for part in re.split(r",(?![^()]*\))", rest) if rest else []:
                key, value = part.split("=", 1)
                value = value.replace("-", ",") if re.fullmatch(r"\d+(-\d+)+", value) else value
                value = f"[{value}]" if "," in value and not value.startswith("(") else value
                sets.append(f"{key if '.' in key else 'strategy.' + key}={value}")
            assert C.run_name(strategy, C.parse_sets(sets)) == run
            C.resolve("split-cifar", strategy, "quick", C.parse_sets(sets))


def test_cuda_runs_of_a_protocol_with_cpu_runs_get_their_own_table(runs, tmp_path):
    """The same run identity on two devices lives in two records folders; the report reads both and
    keeps the CUDA records apart (table suffix -cuda), while a protocol on one device keeps its name."""
    cuda = tmp_path / "cuda"
    rec = record("adam", 0, [[50.0, 0.0], [0.0, 60.0]], [[50.0, 50.0], [55.0, 60.0]])
    write(cuda, {**rec, "device": "cuda:NVIDIA H200"})
    tables = build_tables(load_records([runs, cuda]))
    assert "split-cifar" in tables and "split-cifar-cuda" in tables
    cpu_table, cuda_table = tables["split-cifar"][0], tables["split-cifar-cuda"][0]
    assert list(cuda_table["n"]) == ["1"] and "2" in list(cpu_table["n"])  # adam: 2 CPU seeds, 1 CUDA seed
    assert "split-cifar" in build_tables(load_records(cuda)) and "split-cifar-cuda" not in build_tables(load_records(cuda))


def test_a_campaign_on_two_devices_gets_the_welch_difference_of_its_rows(tmp_path):
    """devices-NAME: CUDA mean minus CPU mean with the Welch interval, checked against scipy by hand."""
    import numpy as np
    from scipy import stats

    from nlbench.reporting.replication import campaign_tables
    cpu_runs, cuda_runs = tmp_path / "runs", tmp_path / "cuda"
    finals = {"cpu": [18.0, 19.0, 20.0], "cuda": [17.0, 17.5]}
    for kind, root in (("cpu", cpu_runs), ("cuda", cuda_runs)):
        for seed, final in enumerate(finals[kind]):
            rec = record("finetune", seed, [[90.0, 0.0], [0.0, 2 * final]], [[90.0, 50.0], [60.0, 95.0]])
            write(root, {**rec, "profile": "online", "device": "cuda:X" if kind == "cuda" else "cpu:2 cores"})
    table = campaign_tables(load_records([cpu_runs, cuda_runs]))["devices-mir-online"][0]
    line = table.set_index("Row").loc["Fine-tune"]
    a, b = np.array(finals["cuda"]), np.array(finals["cpu"])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    d = a.mean() - b.mean()  # -1.75
    assert line["CUDA − CPU [95% CI]"] == f"{d:+.2f} [{d - half:+.2f}, {d + half:+.2f}]"
    assert line["n CPU"] == "3" and line["n CUDA"] == "2"
