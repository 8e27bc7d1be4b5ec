"""A campaign's declared family of comparisons (campaign YAML ``family``): the only claims the suite makes.

Each declared comparison (row minus control, paired by seed, in one setting) is read on three measures:
- old-task accuracy (the declared metric: primary),
- forgetting (co-primary: whether the old tasks lost more or less since they were learnt),
- the old tasks' learning accuracy (descriptive: what they were learnt to; outside the correction).
Old-task accuracy is learning minus loss, so a lower old-task accuracy with no more forgetting reads
"learns less", never "keeps less".

Statistics, per family: the paired t test and the exact sign-flip permutation test (stats.sign_flip_p),
each Holm-adjusted over every primary and co-primary line (a comparison without records counts as
p = 1); "higher"/"lower" needs both adjusted p < 0.05. The TOST p-values of the same lines are
Holm-adjusted too: "equivalent" only where that survives. Only the campaign's declared seeds enter a
verdict; records of other seeds are counted in a "post hoc seeds" column.

A comparison enters the family only if both its rows pass the declared functioning check in its
setting (``family.functioning``): every task's learning accuracy at least ``learning_over_chance`` times
chance, a rehearsal row's old-task accuracy above the floor, and a row declared in ``keeps_at_least``
not below its reference (e.g. a "strong rehearsal baseline" not below plain replay at the same buffer).
One that fails is shown with the reason, outside the family and outside Holm.

Where the control is displacement-matched (its campaign row has ``calibrate``), the table shows the
evaluation seeds' measured displacement ratio per level (control / row: median over tasks, geometric
mean over seeds), and marks any level outside ±10%.
"""
from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd

from nlbench.errors import UserError
from nlbench.reporting.comparisons import by_seed
from nlbench.reporting.layout import SETTING_NAMES
from nlbench.reporting.specs import row_run_name
from nlbench.reporting.stats import (holm, mean_std, paired_p, paired_text, seeds_for_margin, sign_flip_p, t_interval,
                                     tost_paired)
from nlbench.training.metrics import PLASTICITY_MARK, at_floor

FAMILY_METRICS = {"avg_acc": "final acc", "old_acc": "old-task acc", "forgetting": "forgetting",
                  "learning_acc": "learning acc", "old_learning_acc": "old tasks' learning acc"}
SETTINGS = ("class_il", "task_il", "domain_il", "standard", "probe")
ALPHA = 0.05
DISPLACEMENT_TOLERANCE = 0.10  # a displacement-matched control's ratio must lie within 1 ± this
# The measures each declared old-task comparison is read on: (metric, role)
READINGS = (("old_acc", "primary"), ("forgetting", "co-primary"), ("old_learning_acc", "descriptive"))
FUNCTIONING_KEYS = {"learning_over_chance", "rehearsal", "keeps_at_least", "declared"}


def family(spec: dict) -> dict | None:
    """The campaign's primary comparisons (``family``: margin, comparisons [row, control row, what the
    control is, setting, metric] with rows by label, and the functioning check), checked; None if it
    declares none."""
    fam = spec.get("family")
    if fam is None:
        return None
    labels = {row["label"]: row for row in spec["runs"]}
    runs = {label: row_run_name(spec, row) for label, row in labels.items()}
    margin = fam.get("margin") if isinstance(fam, dict) else None
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or margin <= 0:
        raise UserError(f"campaign {spec['name']}: family needs a positive margin (percentage points), got {margin!r}")
    out = []
    for entry in fam.get("comparisons") or []:
        if not (isinstance(entry, list) and len(entry) == 5 and all(isinstance(v, str) for v in entry)
                and entry[0] in runs and entry[1] in runs and entry[3] in SETTINGS and entry[4] in FAMILY_METRICS):
            raise UserError(f"campaign {spec['name']}: a family comparison is [row label, control row label, what the "
                            f"control is, setting ({', '.join(SETTINGS)}), metric ({', '.join(FAMILY_METRICS)})], both "
                            f"labels among its runs; got {entry!r}")
        out.append({"row": entry[0], "run": runs[entry[0]], "control": runs[entry[1]], "control_label": entry[1],
                    "what": entry[2], "setting": entry[3], "metric": entry[4],
                    "calibrated": labels[entry[1]].get("calibrate") == entry[0]})
    if not out:
        raise UserError(f"campaign {spec['name']}: family declares no comparisons")
    functioning = fam.get("functioning") or {}
    unknown = sorted(set(functioning) - FUNCTIONING_KEYS)
    named = set(functioning.get("rehearsal") or []) | set(functioning.get("keeps_at_least") or {}) \
        | set((functioning.get("keeps_at_least") or {}).values())
    missing = sorted(named - set(runs))
    if unknown or missing:
        raise UserError(f"campaign {spec['name']}: family.functioning has {'unknown keys ' + ', '.join(unknown) if unknown else ''}"
                        f"{'; ' if unknown and missing else ''}{'rows not in the campaign: ' + ', '.join(missing) if missing else ''}"
                        f" (keys: {', '.join(sorted(FUNCTIONING_KEYS))})")
    return {"margin": float(margin), "comparisons": out, "functioning": functioning, "runs": runs,
            "seeds": list(spec["seeds"])}


# --- the functioning check ---

def learning_per_task(df: pd.DataFrame, run: str, setting: str, seeds) -> list[float] | None:
    """Each task's accuracy right after learning it (the diagonal), mean over the run's seeds."""
    rows = df[(df["run"] == run) & (df["setting"] == setting) & (df["status"] == "complete") & df["seed"].isin(seeds)]
    diagonals = [[m[j][j] for j in range(len(m))] for m in rows["matrix"] if m and all(r is not None for r in m)]
    if not diagonals:
        return None
    return [float(np.mean([d[j] for d in diagonals])) for j in range(len(diagonals[0]))]


def functioning(df: pd.DataFrame, fam: dict, label: str, setting: str) -> tuple[bool | None, str]:
    """(passes, why) for a row in a setting under the family's declared check; None: no records."""
    check, run, seeds = fam["functioning"], fam["runs"][label], fam["seeds"]
    if not check:
        return True, "no functioning check declared"
    learnt = learning_per_task(df, run, setting, seeds)
    if learnt is None:
        return None, "no records"
    rows = df[(df["run"] == run) & (df["setting"] == setting) & (df["status"] == "complete") & df["seed"].isin(seeds)]
    chance = float(rows["chance"].iloc[0])
    need = check.get("learning_over_chance", 0) * chance
    low = [(j + 1, v) for j, v in enumerate(learnt) if v < need]
    if low:
        where = ", ".join(f"task {j} {v:.1f}" for j, v in low)
        return False, f"learning acc {where} < {need:.1f} (= {check['learning_over_chance']:g}× chance {chance:.0f}%)"
    if label in (check.get("rehearsal") or []) and at_floor(rows["old_acc"]):
        return False, "a rehearsal method at the old-task floor (below 1 point in every seed)"
    reference = (check.get("keeps_at_least") or {}).get(label)
    if reference is not None:
        ref_rows = df[(df["run"] == fam["runs"][reference]) & (df["setting"] == setting) & (df["status"] == "complete")
                      & df["seed"].isin(seeds)]
        common = set(rows["seed"]) & set(ref_rows["seed"])  # on the seeds both have: like with like
        mine = rows[rows["seed"].isin(common)]["old_acc"].astype(float).mean()
        theirs = ref_rows[ref_rows["seed"].isin(common)]["old_acc"].astype(float).mean()
        if common and mine < theirs:
            return False, (f"old-task acc {mine:.2f} below {reference}'s {theirs:.2f} at the same buffer "
                           f"({len(common)} common seeds)")
    return True, f"every task learnt to ≥ {need:.1f}%"


def functioning_table(df: pd.DataFrame, spec: dict) -> pd.DataFrame | None:
    """Every row of the family in every setting it is compared in: its per-task learning accuracy, old-task
    accuracy, and whether it passes the check (and why not)."""
    fam = family(spec)
    if not fam or not fam["functioning"]:
        return None
    seen, rows = set(), []
    for c in fam["comparisons"]:
        for label in (c["row"], c["control_label"]):
            if (label, c["setting"]) in seen:
                continue
            seen.add((label, c["setting"]))
            ok, why = functioning(df, fam, label, c["setting"])
            if ok is None:
                continue
            learnt = learning_per_task(df, fam["runs"][label], c["setting"], fam["seeds"])
            mine = df[(df["run"] == fam["runs"][label]) & (df["setting"] == c["setting"]) & (df["status"] == "complete")
                      & df["seed"].isin(fam["seeds"])]
            rows.append({"Row": label, "Setting": SETTING_NAMES.get(c["setting"], c["setting"]),
                         "Learning acc per task": ", ".join(f"{v:.1f}" for v in learnt),
                         "Old-task acc": mean_std(mine["old_acc"]), "Passes": "yes" if ok else "**no**", "Why": why})
    return pd.DataFrame(rows) if rows else None


# --- the statistics ---

def paired_differences(df: pd.DataFrame, run: str, control: str, setting: str, metric: str) -> pd.DataFrame:
    """Per seed both have: the difference run - control and whether the two records' code versions
    (git commits) differ."""
    both = pd.concat([by_seed(df, name, setting, key) for key in (metric, "commit") for name in (run, control)],
                     axis=1, join="inner", keys=["row", "control", "commit_row", "commit_control"])
    both = both.dropna(subset=["row", "control"])
    return pd.DataFrame({"d": both["row"].astype(float) - both["control"].astype(float),
                         "mixed": both["commit_row"] != both["commit_control"], "commit": both["commit_row"]})


def displacement_ratio(df: pd.DataFrame, run: str, control: str, seeds) -> dict[str, float] | None:
    """Per level, control / row net displacement: the median over tasks in each seed, the geometric
    mean over the seeds both have (None where records predate the displacement)."""
    per_seed = []
    for seed in seeds:
        recs = [df[(df["run"] == name) & (df["seed"] == seed) & (df["status"] == "complete")]["displacement"]
                for name in (run, control)]
        if any(r.empty or r.iloc[0] is None for r in recs):
            continue
        row, ctrl = recs[0].iloc[0], recs[1].iloc[0]
        if row["groups"] != ctrl["groups"]:
            continue
        per_seed.append({g: statistics.median(c[g]["net"] / r[g]["net"] for r, c in zip(row["tasks"], ctrl["tasks"])
                                              if r[g]["net"] > 0) for g in row["groups"]})
    if not per_seed:
        return None
    return {g: math.exp(float(np.mean([math.log(s[g]) for s in per_seed]))) for g in per_seed[0]}


def ratio_text(ratio: dict[str, float] | None) -> str:
    if ratio is None:
        return "n/a (records predate displacement)"
    off = [g for g, r in ratio.items() if abs(r - 1) > DISPLACEMENT_TOLERANCE]
    text = ", ".join(f"{g} {r:.2f}" for g, r in ratio.items())
    return text + (f" (outside ±{DISPLACEMENT_TOLERANCE:.0%}: {', '.join(off)})" if off else "")


def family_results(df: pd.DataFrame, spec: dict) -> list[dict]:
    """Every declared comparison read on each of its measures (READINGS for an old-task comparison), with
    its paired differences on the declared seeds, raw and Holm-adjusted t, sign-flip and TOST p, and a
    verdict; comparisons failing the functioning check are kept with ``outside`` set and no Holm p."""
    fam = family(spec)
    margin, seeds = fam["margin"], fam["seeds"]
    lines = []
    for comp in fam["comparisons"]:
        readings = READINGS if comp["metric"] == "old_acc" else ((comp["metric"], "primary"),)
        checks = [functioning(df, fam, label, comp["setting"]) for label in (comp["row"], comp["control_label"])]
        outside = "; ".join(f"{label}: {why}" for label, (ok, why) in zip((comp["row"], comp["control_label"]), checks)
                            if ok is False)
        for metric, role in readings:
            pairs = paired_differences(df, comp["run"], comp["control"], comp["setting"], metric)
            extra = sorted(int(s) for s in pairs.index if s not in seeds)
            pairs = pairs[pairs.index.isin(seeds)]
            lines.append({**comp, "metric": metric, "role": role, "pairs": pairs, "post_hoc": extra,
                          "outside": outside, "p": paired_p(pairs["d"]), "p_perm": sign_flip_p(pairs["d"]),
                          "p_tost": tost_paired(pairs["d"], margin)})
    corrected = [i for i, line in enumerate(lines) if line["role"] != "descriptive" and not line["outside"]]
    for key in ("p", "p_perm", "p_tost"):
        # the family is what was declared: a member without records counts as p = 1 in the correction
        adjusted = holm([1.0 if lines[i][key] is None else lines[i][key] for i in corrected])
        for i, value in zip(corrected, adjusted):
            lines[i][key + "_holm"] = value if lines[i][key] is not None else None
    for line in lines:
        for key in ("p_holm", "p_perm_holm", "p_tost_holm"):
            line.setdefault(key, None)
        line["verdict"] = line_verdict(line, margin)
    for line in lines:  # an old-task verdict reads its comparison's forgetting
        if line["metric"] == "old_acc" and not line["outside"]:
            forgetting = next((o for o in lines if o["metric"] == "forgetting" and o["run"] == line["run"]
                               and o["control"] == line["control"] and o["setting"] == line["setting"]), None)
            line["verdict"] = old_task_reading(line, forgetting)
        if line["calibrated"]:
            line["displacement"] = displacement_ratio(df, line["run"], line["control"], seeds)
    return lines


def significant(line: dict) -> bool:
    """Higher / lower: both the Holm-adjusted t and sign-flip p below 0.05."""
    return all(line[k] is not None and line[k] < ALPHA for k in ("p_holm", "p_perm_holm"))


def line_verdict(line: dict, margin: float) -> str:
    d = line["pairs"]["d"]
    if len(d) < 2:
        return "no test (fewer than 2 pairs)"
    if line["outside"]:
        return f"outside the family (fails its functioning check: {line['outside']})"
    if line["role"] == "descriptive":
        ci = t_interval(d)
        shown = ci is not None and (ci[0] > 0 or ci[1] < 0)
        return (f"{'learnt more' if d.mean() > 0 else 'learnt less'} (raw 95% interval excludes 0; descriptive, "
                "outside Holm)" if shown else "no difference shown (descriptive, outside Holm)")
    if significant(line):
        word = ("forgets more" if d.mean() > 0 else "forgets less") if line["metric"] == "forgetting" else \
            ("higher" if d.mean() > 0 else "lower")
        return f"{word} (Holm t and sign-flip p < {ALPHA:.2f})"
    if line["p_tost_holm"] is not None and line["p_tost_holm"] < ALPHA:
        return f"equivalent within ±{margin:g} (Holm TOST p < {ALPHA:.2f})"
    need = seeds_for_margin(d, margin)
    return (f"inconclusive (±{margin:g} needs ~{need} pairs at the observed mean and spread, before Holm)"
            if need is not None else f"inconclusive (observed Δ beyond ±{margin:g}: at the observed mean no number "
                                     "of pairs would show equivalence)")


def old_task_reading(line: dict, forgetting: dict | None) -> str:
    """An old-task difference in words that say whether it is keeping or learning: lower with
    significantly more forgetting is 'keeps less'; lower without it is 'learns less'; and the same upward."""
    verdict = line["verdict"]
    if not significant(line) or forgetting is None or len(line["pairs"]) < 2:
        return verdict
    lower = line["pairs"]["d"].mean() < 0
    forgets = significant(forgetting) and (forgetting["pairs"]["d"].mean() > 0) == lower
    if lower:
        return verdict.replace("lower", "lower: keeps less (forgets more)" if forgets else
                               "lower: learns less (forgetting not shown different)", 1)
    return verdict.replace("higher", "higher: keeps more (forgets less)" if forgets else
                           "higher: learns more (forgetting not shown different)", 1)


def _p(value: float | None) -> str:
    return "n/a" if value is None else ("<0.001" if value < 0.001 else f"{value:.3f}")


def measure_name(line: dict) -> str:
    return f"{SETTING_NAMES.get(line['setting'], line['setting'])} {FAMILY_METRICS[line['metric']]}"


def family_table(df: pd.DataFrame, spec: dict) -> pd.DataFrame | None:
    """The family as a table, a line per comparison and measure: bold only where a corrected verdict holds."""
    rows = []
    for c in family_results(df, spec):
        d = c["pairs"]["d"]
        if d.empty:
            continue
        result = {"n": len(d), "mean": float(d.mean()), "ci": t_interval(d)}
        mine = df[(df["run"] == c["run"]) & (df["setting"] == c["setting"]) & (df["status"] == "complete")
                  & df["seed"].isin(c["pairs"].index)]
        delta = paired_text(result, bold=significant(c) and not c["outside"])
        if c["metric"] == "forgetting" and c["setting"] == "class_il" and any(
                at_floor(by_seed(df, r, "class_il", "old_acc")) for r in (c["run"], c["control"])):
            delta += PLASTICITY_MARK
        rows.append({"Row": c["row"], "Control": c["what"], "Measure": measure_name(c), "Role": c["role"],
                     "Row value": mean_std(mine[c["metric"]]), "Δ [95% CI]": delta,
                     "p (t)": _p(c["p"]), "p (sign-flip)": _p(c["p_perm"]), "Holm p (t)": _p(c["p_holm"]),
                     "Holm p (sign-flip)": _p(c["p_perm_holm"]), "TOST p": _p(c["p_tost"]),
                     "Holm TOST p": _p(c["p_tost_holm"]), "Verdict": c["verdict"], "pairs": str(len(d)),
                     "displacement ratio (control / row)": ratio_text(c.get("displacement")) if c["calibrated"] else "-",
                     "pairs across code versions": str(int(c["pairs"]["mixed"].sum())),
                     "code versions (pairs)": versions_text(c["pairs"]),
                     "post hoc seeds (not in the verdict)": seeds_text(c["post_hoc"])})
    return pd.DataFrame(rows) if rows else None


def versions_text(pairs: pd.DataFrame) -> str:
    """The git commits the row's side of the pairs come from, with how many pairs each: a family whose seeds
    were run by different code versions says so (each pair is within one version unless counted as across)."""
    counts = pairs["commit"].fillna("?").value_counts()
    return ", ".join(f"{commit or '?'}: {n}" for commit, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def seeds_text(seeds: list[int]) -> str:
    return "-" if not seeds else f"{len(seeds)}: " + ", ".join(map(str, seeds))


def findings(df: pd.DataFrame, spec: dict) -> list[str]:
    """One generated line per declared comparison with records, on its primary measure, with its
    forgetting and learning beside it: what the README's findings say."""
    lines = []
    results = family_results(df, spec)
    for c in results:
        d = c["pairs"]["d"]
        if d.empty or c["role"] != "primary":
            continue
        side = [o for o in results if o is not c and o["run"] == c["run"] and o["control"] == c["control"]
                and o["setting"] == c["setting"] and not o["pairs"].empty]
        beside = "; ".join(f"Δ {FAMILY_METRICS[o['metric']]} {o['pairs']['d'].mean():+.2f}{ci_text(o['pairs']['d'])}"
                           for o in side)
        ratio = f"; displacement ratio {ratio_text(c.get('displacement'))}" if c["calibrated"] else ""
        holm_text = "outside the family" if c["outside"] else \
            f"Holm p (t) {_p(c['p_holm'])}, Holm p (sign-flip) {_p(c['p_perm_holm'])}"
        lines.append(f"{c['row']} vs `{c['control_label']}` ({c['what']}), {measure_name(c)}: "
                     f"Δ {d.mean():+.2f}{ci_text(d)}, {holm_text}, n={len(d)}: **{c['verdict']}**"
                     + (f" ({beside}{ratio})" if beside or ratio else ""))
    return lines


def ci_text(d) -> str:
    ci = t_interval(d)
    return "" if ci is None else f" [{ci[0]:+.2f}, {ci[1]:+.2f}]"


# --- the forest plot ---

VERDICT_COLOURS = {"higher": "#1b7837", "lower": "#b2182b", "forgets": "#b2182b", "equivalent": "#2166ac",
                   "inconclusive": "#555555", "learnt": "#999999", "no difference": "#999999", "outside": "#bbbbbb"}


def verdict_colour(verdict: str) -> str:
    if verdict.startswith("forgets less"):
        return VERDICT_COLOURS["higher"]
    return next((c for key, c in VERDICT_COLOURS.items() if verdict.startswith(key)), "#555555")


def forest_plot(df: pd.DataFrame, spec: dict, path) -> bool:
    """One panel per measure (old-task acc, forgetting, old tasks' learning acc): each comparison's Δ with
    its 95% interval, the ±margin equivalence band shaded, the marker coloured by its verdict (hollow:
    outside the family or descriptive). False when no comparison has records."""
    import matplotlib.pyplot as plt

    from nlbench.reporting.figures import write_png  # matplotlib (Agg) only when a figure is drawn
    fam = family(spec)
    lines = [c for c in family_results(df, spec) if len(c["pairs"]) >= 2]
    if not lines:
        return False
    metrics = [m for m, _ in READINGS if any(c["metric"] == m for c in lines)] or sorted({c["metric"] for c in lines})
    comps = list(dict.fromkeys((c["row"], c["control_label"], c["setting"]) for c in lines))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics) + 3.5, 0.42 * len(comps) + 1.6),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.axvspan(-fam["margin"], fam["margin"], color="#dddddd", zorder=0, label=f"±{fam['margin']:g} (equivalence)")
        ax.axvline(0, color="black", lw=0.8)
        for y, comp in enumerate(comps):
            c = next((c for c in lines if (c["row"], c["control_label"], c["setting"]) == comp and c["metric"] == metric), None)
            if c is None:
                continue
            d = c["pairs"]["d"]
            lo, hi = t_interval(d)
            colour = verdict_colour(c["verdict"])
            hollow = bool(c["outside"]) or c["role"] == "descriptive"
            ax.errorbar(d.mean(), y, xerr=[[d.mean() - lo], [hi - d.mean()]], fmt="o", color=colour, ecolor=colour,
                        mfc="white" if hollow else colour, capsize=3, ms=6)
        role = dict(READINGS).get(metric, "primary")
        ax.set_title(f"Δ {FAMILY_METRICS[metric]} ({role})", fontsize=10)
        ax.set_xlabel("row − control (percentage points)")
        ax.grid(axis="x", alpha=0.3)
    names = [f"{row} vs {control} [{SETTING_NAMES.get(setting, setting)}]" for row, control, setting in comps]
    axes[0][0].set_yticks(range(len(comps)), names, fontsize=8)
    axes[0][0].invert_yaxis()
    from matplotlib.lines import Line2D
    legend = [Line2D([], [], marker="o", ls="", color=VERDICT_COLOURS[k], label=text) for k, text in (
        ("higher", "higher / forgets less"), ("lower", "lower / forgets more"), ("equivalent", "equivalent"),
        ("inconclusive", "inconclusive"))]
    legend.append(Line2D([], [], marker="o", ls="", color="#999999", mfc="white",
                         label="hollow: descriptive or outside the family"))
    fig.legend(handles=legend, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(f"Campaign {spec['name']}: each comparison's paired Δ with its 95% interval (declared seeds; "
                 "verdicts Holm-corrected within the family)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    write_png(fig, path)
    return True
