"""Campaign tables: our runs of a named campaign beside the numbers it was built to test.

For a literature protocol (``references``: the papers' numbers as data, one entry per row, setting,
metric and source) the campaign table shows ours and the first reference per row, with our 95%
interval (Student t over seeds) and the learning accuracy (accuracy on each task right after
learning it) beside the final accuracy, so that less forgetting from learning less is visible; the
replication table has one line per reference: published, ours, the difference with its interval,
and an equivalence verdict at the campaign's declared margin (TOST). For
the blog's claims (``published`` holds ``claim``/``acc``/``memory_gb``) it shows our accuracy,
measured CUDA memory and the computed memory breakdown.
"""
from __future__ import annotations

import math

import pandas as pd
from scipy import stats as st

from nlbench.reporting.comparisons import STUDY_COLUMNS, floor_mark, main_setting, study_table
from nlbench.reporting.family import SETTINGS, family, family_table, findings, functioning_table
from nlbench.errors import UserError
from nlbench.reporting.layout import SETTING_NAMES, device_suffix, scenario_layout
from nlbench.reporting.specs import campaign_names, load_campaign, row_run_name
from nlbench.reporting.stats import EXPLORATORY, PAIRED_METHOD, interval_text, mean_std, train_time

REFERENCE_KEYS = ("row", "setting", "metric", "value", "pm", "pm_kind", "runs", "source")
PM_KINDS = (None, "2se", "se", "std", "ci95", "printed")
METRIC_NAMES = {"avg_acc": "final acc", "forgetting": "forgetting", "learning_acc": "learning acc"}


def interval(values: pd.Series, digits: int = 2) -> str:
    """Mean's 95% t-interval over seeds ('n=1: no interval' with one seed)."""
    return interval_text(values, digits)


def _published(pair) -> str:
    """'value ± pm', or the value alone where the source gives no ± (never a made-up ± 0.00)."""
    value, pm = pair
    return f"{value:.2f}" + ("" if pm is None else f" ± {pm:.2f}")


def _rows_of(df: pd.DataFrame, spec: dict):
    """(row spec, that row's records) for every row of the campaign, in its order."""
    for row in spec["runs"]:
        name = row_run_name(spec, row)
        yield row, df[(df["scenario"] == spec["scenario"]) & (df["profile"] == spec["profile"]) & (df["run"] == name)]


def _n(sub: pd.DataFrame) -> str:
    done = sub.drop_duplicates("path")
    diverged = int((done["status"] == "diverged").sum())
    return str(len(done) - diverged) + (f" ({diverged} diverged)" if diverged else "")


def comparisons(spec: dict) -> list[list[str]]:
    """The campaign's declared paired comparisons (``comparisons``: [row, control row, what the control
    is], rows named by label) as study rows [label, run, control run, what]; a bad entry fails loudly."""
    runs = {row["label"]: row_run_name(spec, row) for row in spec["runs"]}
    out = []
    for entry in spec.get("comparisons") or []:
        if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, str) for v in entry)
                and entry[0] in runs and entry[1] in runs):
            raise UserError(f"campaign {spec['name']}: a comparison is [row label, control row label, what the control "
                            f"is], both labels among its runs ({', '.join(runs)}); got {entry!r}")
        out.append([entry[0], runs[entry[0]], runs[entry[1]], entry[2]])
    return out


def _p(value: float | None) -> str:
    return "n/a" if value is None else ("<0.001" if value < 0.001 else f"{value:.3f}")


def references(spec: dict) -> list[dict]:
    """The campaign's published numbers, checked (a malformed entry names itself)."""
    refs = spec.get("references") or []
    for ref in refs:
        if not isinstance(ref, dict) or set(ref) != set(REFERENCE_KEYS) or ref["pm_kind"] not in PM_KINDS:
            raise UserError(f"campaign {spec['name']}: a reference needs exactly the keys {', '.join(REFERENCE_KEYS)} "
                              f"(pm_kind one of {', '.join(map(str, PM_KINDS))}), got {ref!r}")
    return refs


def first_references(spec: dict) -> dict:
    """label -> {setting: [value, pm]}: each row's first final-accuracy reference per setting (pm None
    where the source gives no ±)."""
    out: dict = {}
    for ref in references(spec):
        if ref["metric"] == "avg_acc":
            out.setdefault(ref["row"], {}).setdefault(ref["setting"], [ref["value"], ref["pm"]])
    return out


def published_table(spec: dict) -> pd.DataFrame:
    """A campaign's published final accuracies, one line per row (in the YAML's order), a column per
    setting: 'value ± pm' as the source prints them (what the ± is: the references' pm_kind)."""
    settings = [s for s in SETTINGS if any(r["setting"] == s and r["metric"] == "avg_acc" for r in references(spec))]
    rows: dict = {}
    for ref in references(spec):
        if ref["metric"] == "avg_acc":
            text = f"{ref['value']:.2f}" + (f" ± {ref['pm']:.2f}" if ref["pm"] is not None else "")
            rows.setdefault(ref["row"], {}).setdefault(SETTING_NAMES[ref["setting"]], text)
    return pd.DataFrame([{"Method": row, **{SETTING_NAMES[s]: cells.get(SETTING_NAMES[s], "-") for s in settings}}
                         for row, cells in rows.items()])


def published_se(ref: dict) -> float:
    """The published mean's standard error from its ± and the ± 's kind: 2se / 2; se itself; std /
    sqrt(runs); a 95% interval / 1.96; a ± of unstated kind taken as a standard error (the widest
    of the usual readings, so that neither 'replicated' nor 'differs' is claimed from a guess); 0
    without a ± (the published mean is then treated as exact)."""
    pm, kind, runs = ref["pm"], ref["pm_kind"], ref["runs"]
    if pm is None:
        return 0.0
    if kind == "2se":
        return pm / 2
    if kind == "std":
        return pm / math.sqrt(runs) if runs else float(pm)
    if kind == "ci95":
        return pm / 1.96
    return float(pm)


def difference_to_published(ours: pd.Series, ref: dict, margin: float) -> dict | None:
    """Ours minus published: the difference, its 95% interval (our standard error and the published
    one combined, Welch-Satterthwaite degrees of freedom), and the TOST p that it lies inside
    +-margin; None below 2 seeds of ours."""
    x = ours.astype(float).to_numpy()
    if len(x) < 2:
        return None
    ours_var, pub_var = x.var(ddof=1) / len(x), published_se(ref) ** 2
    se = math.sqrt(ours_var + pub_var)
    pub_df = (ref["runs"] - 1) if ref["runs"] and ref["runs"] > 1 else None
    df = len(x) - 1 if pub_var == 0 or pub_df is None or se == 0 else \
        (ours_var + pub_var) ** 2 / (ours_var ** 2 / (len(x) - 1) + pub_var ** 2 / pub_df)
    d = float(x.mean() - ref["value"])
    if se == 0:
        return {"d": d, "ci": (d, d), "p_tost": 0.0 if abs(d) < margin else 1.0}
    half = float(st.t.ppf(0.975, df)) * se
    p_tost = max(1 - st.t.cdf((d + margin) / se, df), st.t.cdf((d - margin) / se, df))
    return {"d": d, "ci": (d - half, d + half), "p_tost": float(p_tost)}


def replication_verdict(diff: dict | None, margin: float) -> str:
    if diff is None:
        return "no test (fewer than 2 seeds)"
    if diff["p_tost"] < 0.05:
        return f"replicated within ±{margin:g}"
    lo, hi = diff["ci"]
    return "differs" if lo > 0 or hi < 0 else "not shown either way"


def replication_margin(spec: dict) -> float:
    margin = spec.get("replication_margin", 2.0)
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or margin <= 0:
        raise UserError(f"campaign {spec['name']}: replication_margin must be a positive number of points, got {margin!r}")
    return float(margin)


def declared_seeds(sub: pd.DataFrame, spec: dict) -> tuple[pd.DataFrame, list[int]]:
    """A row's records of the campaign's declared seeds, and the other seeds it has records of (post
    hoc: added after the campaign was declared, e.g. once a result was known)."""
    seeds = set(spec["seeds"])
    extra = sorted({int(s) for s in sub["seed"]} - seeds)
    return sub[sub["seed"].isin(seeds)], extra


def post_hoc_text(extra: list[int]) -> str:
    return "-" if not extra else f"{len(extra)}: " + ", ".join(map(str, extra))


def replication_table(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """One line per published reference and per campaign row without one: ours beside it, ours minus
    published with its interval, and the equivalence verdict at the campaign's margin, on the
    campaign's declared seeds (the primary verdict); where a row also has post hoc seeds, the
    verdict with them too, beside it."""
    refs = references(spec)
    margin = replication_margin(spec)
    lines = []
    post_hoc = any(declared_seeds(sub, spec)[1] for _, sub in _rows_of(df, spec))
    for row, every in _rows_of(df, spec):
        sub, extra = declared_seeds(every, spec)
        ok = sub[sub["status"] == "complete"]
        mine = [r for r in refs if r["row"] == row["label"]] or [None]
        for ref in mine:
            setting, metric = (ref["setting"], ref["metric"]) if ref else ("class_il", "avg_acc")
            ours = ok[ok["setting"] == setting][metric].dropna()
            line = {"Row": row["label"], "Metric": f"{SETTING_NAMES.get(setting, setting)} {METRIC_NAMES[metric]}",
                    "Published": "-", "Source": "no published counterpart", "Ours": mean_std(ours),
                    "Ours 95% CI": interval(ours), "n": str(len(ours)), "Ours − published [95% CI]": "-",
                    f"TOST p (±{margin:g})": "-", "Verdict": "-"}
            if ref:
                pm = "" if ref["pm"] is None else f" ± {ref['pm']:.2f} ({ref['pm_kind']})"
                line.update({"Published": f"{ref['value']:.2f}{pm}" + (f", {ref['runs']} runs" if ref["runs"] else ""),
                             "Source": ref["source"]})
                diff = difference_to_published(ours, ref, margin)
                if diff is not None:
                    line["Ours − published [95% CI]"] = f"{diff['d']:+.2f} [{diff['ci'][0]:+.2f}, {diff['ci'][1]:+.2f}]"
                    line[f"TOST p (±{margin:g})"] = f"{diff['p_tost']:.3f}"
                elif len(ours):
                    line["Ours − published [95% CI]"] = f"{ours.mean() - ref['value']:+.2f}"
                line["Verdict"] = replication_verdict(diff, margin)
            if post_hoc:
                line["Post hoc seeds (not in the verdict)"] = post_hoc_text(extra)
                line["With post hoc seeds: ours − published, verdict"] = "-"
                if ref and extra:
                    allk = every[(every["status"] == "complete") & (every["setting"] == setting)][metric].dropna()
                    diff_all = difference_to_published(allk, ref, margin)
                    if diff_all is not None:
                        line["With post hoc seeds: ours − published, verdict"] = (
                            f"{diff_all['d']:+.2f} [{diff_all['ci'][0]:+.2f}, {diff_all['ci'][1]:+.2f}] (n {len(allk)}): "
                            f"{replication_verdict(diff_all, margin)}")
            lines.append(line)
    return pd.DataFrame(lines)


def literature_table(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    rows = []
    firsts = first_references(spec)
    for row, every in _rows_of(df, spec):
        sub, extra = declared_seeds(every, spec)
        ok = sub[sub["status"] == "complete"]
        pub = firsts.get(row["label"], {})
        out = {"Row": row["label"], "run": sub["run"].iloc[0] if len(sub) else row["strategy"]}
        for setting, head in (("class_il", "Class-IL"), ("task_il", "Task-IL")):
            s = ok[ok["setting"] == setting]
            out[f"{head} ours"] = mean_std(s["avg_acc"])
            out[f"{head} ours 95% CI"] = interval(s["avg_acc"])
            out[f"{head} published"] = _published(pub[setting]) if setting in pub else "-"
        cls = ok[ok["setting"] == "class_il"]
        out["Old-task acc (class-IL)"] = mean_std(cls["old_acc"], 1) + floor_mark(ok, "class_il", "old_acc")
        out["Learning acc (class-IL)"] = mean_std(cls["learning_acc"], 1)
        out["Forgetting (class-IL)"] = mean_std(cls["forgetting"], 1) + floor_mark(ok, "class_il", "forgetting")
        out["Train s / run"] = train_time(sub)
        out["n"] = _n(sub) + (f" (+{len(extra)} post hoc seeds left out: {', '.join(map(str, extra))})" if extra else "")
        rows.append(out)
    return pd.DataFrame(rows)


def layout_table(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """A campaign without published numbers: its rows in the scenario's own columns (old-task and
    probe columns included, the class-IL floor marked)."""
    columns = scenario_layout(spec["scenario"], df)["columns"]
    rows = []
    for row, every in _rows_of(df, spec):
        sub, extra = declared_seeds(every, spec)
        ok = sub[sub["status"] == "complete"]
        out = {"Row": row["label"], "run": row_run_name(spec, row)}
        for header, setting, metric in columns:
            out[header] = mean_std(ok[ok["setting"] == setting][metric]) + floor_mark(ok, setting, metric)
        out["Train s / run"] = train_time(sub)
        out["n"] = _n(sub) + (f" (+{len(extra)} post hoc seeds left out: {', '.join(map(str, extra))})" if extra else "")
        rows.append(out)
    return pd.DataFrame(rows)


def _memory(sub: pd.DataFrame, key: str, part: str) -> pd.Series:
    return sub["memory"].map(lambda m: ((m or {}).get(part) or {}).get(key))


def claims_table(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    rows = []
    for row, sub in _rows_of(df, spec):
        runs = sub.drop_duplicates("path")
        ok = runs[runs["status"] == "complete"]
        claim = (spec.get("published") or {}).get(row["label"], {})
        model = lambda k: mean_std(_memory(runs, k, "model_mb"), 0)  # noqa: E731
        rows.append({
            "Row": row["label"], "run": runs["run"].iloc[0] if len(runs) else row["strategy"],
            "Test acc": mean_std(ok["avg_acc"]), "95% CI": interval(ok["avg_acc"]),
            "Blog claim": f"{claim['claim']}: {claim['acc']}" if claim else "-",
            "CUDA peak alloc / reserved (MB)": (mean_std(_memory(runs, "cuda_max_allocated", "measured_mb"), 0) + " / " +
                                                mean_std(_memory(runs, "cuda_max_reserved", "measured_mb"), 0)),
            "Blog memory claim": f"{claim['memory_gb']} GB" if claim else "-",
            "Params + grads + optimizer (MB)": mean_std(
                _memory(runs, "parameters", "model_mb") + _memory(runs, "gradients", "model_mb")
                + _memory(runs, "optimizer_states", "model_mb"), 0),
            "Level accumulators (MB)": model("level_accumulators"),
            "Activations, one batch (MB)": model("activations_one_batch"),
            "CUDA graph": ", ".join(sorted({str(g) for g in runs["cuda_graph"]})) or "-",
            "Train s": train_time(runs), "Images/s": mean_std(runs["images_per_second"], 0),
            "n": _n(sub),
        })
    return pd.DataFrame(rows)


def campaign_tables(df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """name -> (table, caption, what it is) for every campaign with records in ``df``."""
    out = {}
    for spec in map(load_campaign, campaign_names()):
        for suffix, mine in campaign_records(df, spec):
            out.update(one_campaign_tables(mine, spec, suffix))
        out.update(device_agreement(df, spec))
    return out


def device_agreement(df: pd.DataFrame, spec: dict) -> dict:
    """``devices-NAME``: where a campaign's rows ran on the CPU and on CUDA (the same protocol, seeds
    and data), the CUDA mean minus the CPU mean of each row's class-IL final accuracy, its Welch 95%
    interval and the two one-sided tests at the campaign's replication margin (statsmodels
    CompareMeans). Unpaired: a seed draws other random numbers on the two devices."""
    from statsmodels.stats.weightstats import CompareMeans, DescrStatsW
    margin = replication_margin(spec)
    full = df[(df["data_set"] == "full") & (df["setting"] == "class_il") & (df["status"] == "complete")
              & df["class_order_seed"].isna()]
    lines, devices = [], set()
    for row, sub in _rows_of(full, spec):
        cpu = sub.loc[sub["device_kind"] == "cpu", "avg_acc"].dropna().astype(float)
        cuda = sub.loc[sub["device_kind"] == "cuda", "avg_acc"].dropna().astype(float)
        if not len(cpu) or not len(cuda):
            continue
        devices.update(sub["device"])
        line = {"Row": row["label"], "CPU": mean_std(cpu), "n CPU": str(len(cpu)), "CUDA": mean_std(cuda),
                "n CUDA": str(len(cuda)), "CUDA − CPU [95% CI]": f"{cuda.mean() - cpu.mean():+.2f}",
                f"TOST p (±{margin:g})": "-", "Verdict": "no test (fewer than 2 seeds on a device)"}
        if len(cpu) > 1 and len(cuda) > 1:
            both = CompareMeans(DescrStatsW(cuda.to_numpy()), DescrStatsW(cpu.to_numpy()))
            lo, hi = both.tconfint_diff(usevar="unequal")
            p = float(both.ttost_ind(-margin, margin, usevar="unequal")[0])
            line.update({"CUDA − CPU [95% CI]": f"{cuda.mean() - cpu.mean():+.2f} [{lo:+.2f}, {hi:+.2f}]",
                         f"TOST p (±{margin:g})": f"{p:.3f}",
                         "Verdict": f"same within ±{margin:g}" if p < 0.05 else
                         "differs" if lo > 0 or hi < 0 else "not shown either way"})
        lines.append(line)
    if not lines:
        return {}
    cap = (f"Campaign `{spec['name']}` on two devices (profile {spec['profile']}, full data; "
           f"{', '.join(sorted(devices))}): each row's "
           "class-IL final accuracy (%) on CUDA (results/cuda) minus on the CPU (results/runs), mean ± sample std "
           "over seeds; Welch 95% interval of the difference and two one-sided tests at the campaign's "
           f"replication margin ±{margin:g} (statsmodels CompareMeans, unequal variances); unpaired, since a seed "
           "draws other random numbers on the two devices and the numerics differ (bf16 on CUDA); the CUDA rows "
           "of seed-parallel groups trained stacked. Verdict: 'same within' where the TOST p < 0.05, 'differs' "
           "where the interval excludes 0. Exploratory: no multiplicity correction.")
    return {f"devices-{spec['name']}": (pd.DataFrame(lines), cap,
                                         f"Campaign {spec['name']}: CUDA rows against CPU rows")}


def campaign_records(df: pd.DataFrame, spec: dict):
    """(table-name suffix, records) of a campaign per data set, as the profile tables split them (runs on
    different data never share a table): no suffix on the full set, else ``-mini`` and the like, and
    ``-cuda`` for the CUDA records of a campaign that also has CPU ones (layout.device_suffix). Only
    data sets where the campaign shows something: a row with a published reference, or one of its
    declared comparisons (``comparisons``, ``family``) with both sides, or (a campaign without any) any
    row, recorded; the profile's records made for other tables (one side of a pair alone, say) make no
    campaign table."""
    mine = df[(df["profile"] == spec["profile"]) & (df["scenario"] == spec["scenario"])
              & df["class_order_seed"].isna()]  # the class-order study's runs are its own
    fam = family(spec)
    pairs = [(run, control) for _, run, control, _ in comparisons(spec)] + \
        [(c["run"], c["control"]) for c in (fam["comparisons"] if fam else [])]
    labels = {r["row"] for r in references(spec)}
    referenced = {row_run_name(spec, row) for row in spec["runs"] if row["label"] in labels}
    for (data_set, kind), records in mine.groupby(["data_set", "device_kind"], sort=True):
        recorded = set(records.loc[records["status"] == "complete", "run"])
        paired = any(run in recorded and control in recorded for run, control in pairs)
        shown = bool(referenced & recorded) or paired or (
            not pairs and any(row_run_name(spec, row) in recorded for row in spec["runs"]))
        if shown:
            yield ("" if data_set == "full" else f"-{data_set}") + device_suffix(mine, kind), records


def one_campaign_tables(mine: pd.DataFrame, spec: dict, suffix: str) -> dict:
    """name -> (table, caption, what it is) for one campaign's records on one data set."""
    out, name = {}, spec["name"]
    claims = any("claim" in v for v in (spec.get("published") or {}).values())
    table = claims_table(mine, spec) if claims else literature_table(mine, spec) if references(spec) else \
        layout_table(mine, spec)
    seeds = ", ".join(str(s) for s in sorted(mine["seed"].unique()))
    devices = ", ".join(sorted(mine["device"].unique()))
    cap = (f"Campaign `{name}` ({spec['description']}): profile {spec['profile']} (settings and their sources in "
           f"scenarios/{spec['scenario']}.yaml), seeds {seeds}, device {devices}; accuracies in %, mean ± sample "
           f"std over seeds and a 95% Student-t interval (none with one seed). Train s: the training steps "
           f"plus the strategy's end-of-task work (GDumb's training on its memory, EWC's Fisher, iCaRL's "
           f"herding), without evaluation; '(steps only)': records made before that work was timed "
           f"(2026-11-29). Times and images/s (the stream's images over the steps' seconds) were measured while "
           f"other runs of the campaign shared the device (bench.py campaign --jobs), so they are upper bounds "
           f"of a run alone. "
           + f"Rows over the campaign's declared seeds ({', '.join(map(str, spec['seeds']))}); records of other seeds "
           "(post hoc) are counted in n and left out. "
           + (f"Published / claimed numbers: {spec['source']}; they are the authors' runs, not ours. "
              if claims or references(spec) else "Old-task acc: mean over tasks 1..T-1 of the last row; '(floor)': "
              "class-IL old-task accuracy below 1 point in every seed; Probe: linear probes on the frozen features "
              "(nlbench.training.probe). ")
           + "Data: "
           + "; ".join(sorted(mine["data_source"].unique())) + ".")
    out[f"campaign-{name}{suffix}"] = (table.drop(columns=["run"]), cap, f"Campaign {name}: ours beside the published numbers")
    if not claims and references(spec):
        margin = replication_margin(spec)
        rep_cap = (f"Replication `{name}` ({spec['description']}): every published number beside ours, profile "
                   f"{spec['profile']}, seeds {seeds}, device {devices}; ours: mean ± sample std and 95% Student-t "
                   "interval over seeds; published: value ± as printed, with its kind (2se: 2·std/√runs; se; "
                   "std: over the runs; printed: kind not stated, read as a standard error); ours − published: "
                   "the difference with a 95% interval combining our standard error and the published one "
                   "(Welch-Satterthwaite df; a published mean without ± counts as exact); verdict: 'replicated "
                   f"within ±{margin:g}' where the two one-sided tests at ±{margin:g} points (declared in the "
                   "campaign's replication_margin) give p < 0.05, else 'differs' where the interval excludes 0, "
                   "else 'not shown either way'; a row without a published counterpart is listed without one. "
                   f"Ours and the verdict use the campaign's declared seeds ({', '.join(map(str, spec['seeds']))}); "
                   "records of other seeds (post hoc: added after the campaign was declared) are listed and give "
                   "a second verdict beside the primary one, never instead of it. "
                   f"Differences of protocol: scenarios/{spec['scenario']}.yaml (profile {spec['profile']}) and "
                   "docs/protocols.md. Data: JPEG-75 re-encoded CIFAR-10, not the official files.")
        out[f"replication-{name}{suffix}"] = (replication_table(mine, spec), rep_cap,
                                              f"Replication {name}: each published number, ours, the difference")
    out.update(campaign_comparisons(mine, spec, seeds, devices, suffix))
    out.update(campaign_family(mine, spec, seeds, devices, suffix))
    return out


def campaign_family(mine: pd.DataFrame, spec: dict, seeds: str, devices: str, suffix: str = "") -> dict:
    """The campaign's declared family (``family-NAME``) and its functioning check (``functioning-NAME``),
    if it declares one and any pair has records."""
    fam = family(spec)
    table = family_table(mine, spec) if fam else None
    if table is None:
        return {}
    margin = fam["margin"]
    declared = ", ".join(map(str, fam["seeds"]))
    corrected = sum(2 if c["metric"] == "old_acc" else 1 for c in fam["comparisons"])
    cap = (f"Campaign `{spec['name']}`, its primary comparisons (the family declared in "
           f"scenarios/campaigns/{spec['name']}.yaml; profile {spec['profile']}, declared seeds {declared}, device "
           f"{devices}): each row minus its control in percentage points, {PAIRED_METHOD}; every old-task comparison "
           "is read three ways: old-task acc (primary), forgetting (co-primary: lower is less forgetting) and the old "
           "tasks' learning acc (descriptive, outside the correction), since old-task acc is learning minus loss. "
           "p (t): paired t test; p (sign-flip): exact sign-flip permutation test (scipy permutation_test, all 2^n "
           f"sign patterns); Holm p: Holm's step-down adjustment over the family's {corrected} primary and "
           "co-primary lines (statsmodels multipletests; one without records counts as p = 1; a comparison failing "
           "its functioning check is outside); bold = higher / lower, which needs both Holm p < 0.05; TOST p: "
           f"paired two one-sided tests that the difference lies inside ±{margin:g} points, Holm-adjusted over the "
           "same lines: 'equivalent' only where the adjusted TOST p < 0.05; else inconclusive with the pairs whose 90% "
           "interval would fit inside the margin at the observed mean and spread; a lower old-task acc whose "
           "forgetting is not significantly higher reads 'learns less', never 'keeps less'; displacement ratio: "
           "for a displacement-matched control, its net displacement per task over the row's, per level (median "
           "over tasks, geometric mean over the evaluation seeds; its lr factors were calibrated on other seeds: "
           "scenarios/campaigns/calibration/); old-task acc: mean over tasks 1..T-1 of the last row; Probe: linear "
           "probes on the frozen features, fit on held-out training images of each task (nlbench.training.probe); "
           "'(floor: plasticity)': a side's class-IL old-task acc is below 1 point in every seed; pairs across code "
           "versions: pairs whose two records come from different git commits; code versions (pairs): the commits "
           "the pairs were run at (the row's side), with how many pairs each; post hoc seeds: records of seeds "
           f"beyond the declared ones, left out of every verdict here. The figure: docs/figures/forest-{spec['name']}.png.")
    out = {f"family-{spec['name']}{suffix}": (table, cap, f"Campaign {spec['name']}: the primary comparisons, "
                                              "Holm-corrected, with equivalence tests")}
    check = functioning_table(mine, spec)
    if check is not None:
        f = fam["functioning"]
        out[f"functioning-{spec['name']}{suffix}"] = (check, (
            f"Campaign `{spec['name']}`: the functioning check a row passes before any comparison of it enters the "
            f"family (declared in the campaign's family.functioning: {f.get('declared', 'no date given')}): every "
            f"task's learning acc (accuracy right after learning it, mean over the declared seeds) at least "
            f"{f.get('learning_over_chance', 0):g}× chance in the setting; a rehearsal row's old-task acc above the "
            "floor (not below 1 point in every seed); a row declared in keeps_at_least not below its reference's "
            "mean old-task acc. A row that fails is shown in the family table with its reason, outside Holm."),
            f"Campaign {spec['name']}: which rows learn in the family's profile")
    return out


def campaign_forest_plots(df: pd.DataFrame, folder) -> list[tuple[str, str]]:
    """``forest-NAME.png`` for every campaign with a family and records: (file, what it is) for the index."""
    from nlbench.reporting.dose import dose_plot
    from nlbench.reporting.family import forest_plot
    written = []
    for spec in map(load_campaign, campaign_names()):
        if not family(spec):
            continue
        for suffix, mine in campaign_records(df, spec):
            name = f"forest-{spec['name']}{suffix}.png"
            if forest_plot(mine, spec, folder / name):
                written.append((f"figures/{name}", f"Campaign {spec['name']}: the family's verdicts as a forest plot"))
            name = f"dose-{spec['name']}{suffix}.png"
            if dose_plot(mine, spec, folder / name):
                written.append((f"figures/{name}", f"Campaign {spec['name']}: retention against displacement "
                                                   "(the dose-response of the period-1 controls)"))
    return written


def campaign_findings(df: pd.DataFrame) -> list[str]:
    """The README's findings: every declared family's comparisons with records, one line each."""
    lines = []
    for name in campaign_names():
        spec = load_campaign(name)
        fam = family(spec)
        if not fam:
            continue
        for suffix, mine in campaign_records(df, spec):
            found = findings(mine, spec)
            if found:
                seeds = ", ".join(str(s) for s in sorted(mine["seed"].unique()))
                lines += ["", f"Campaign `{name}` ({spec['description']}; seeds {seeds}; table `family-{name}{suffix}`; "
                              f"equivalence margin ±{fam['margin']:g} points):", ""]
                lines += [f"- {line}" for line in found]
    return lines


def campaign_comparisons(mine: pd.DataFrame, spec: dict, seeds: str, devices: str, suffix: str = "") -> dict:
    """The campaign's declared comparisons as a paired table (``vs-control-campaign-NAME``), if any has records."""
    rows = comparisons(spec)
    table = study_table(mine, spec["scenario"], {"rows": rows}) if rows else None
    if table is None:
        return {}
    setting = main_setting(scenario_layout(spec["scenario"], mine))
    cap = (f"Campaign `{spec['name']}`, each row minus its control under the same protocol (profile {spec['profile']}, "
           f"seeds {seeds}, device {devices}) on {SETTING_NAMES[setting]} metrics (percentage points), "
           f"{PAIRED_METHOD}; {EXPLORATORY}; {STUDY_COLUMNS}; forgetting: a negative difference is less "
           "forgetting; '(floor: plasticity)': a side's class-IL old-task accuracy is below 1 point in every seed. The "
           "comparisons are declared "
           f"in scenarios/campaigns/{spec['name']}.yaml (comparisons).")
    return {f"vs-control-campaign-{spec['name']}{suffix}": (table, cap, f"Campaign {spec['name']}: each row minus its control, "
                                                    "paired by seed, 95% intervals")}
