"""Tables that make claims: each strategy minus its controls, paired by seed, and the class-order
study (how much of a strategy's spread is the class order and how much the seed).

These tables are exploratory (stats.EXPLORATORY: nothing bold); claims come from a campaign's
declared family (nlbench.reporting.replication.family_table). Learning accuracy and old-task accuracy sit
beside final accuracy and forgetting, so that less forgetting from learning less shows as what it
is, and a class-IL forgetting difference between rows at the floor is marked as plasticity.
"""
from __future__ import annotations

import pandas as pd

from nlbench.training import config as C
from nlbench.errors import UserError
from nlbench.reporting.layout import SETTING_NAMES, scenario_layout
from nlbench.registry import STRATEGIES, base_name, label_of, ordered
from nlbench.training.metrics import FLOOR_MARK, PLASTICITY_MARK, at_floor
from nlbench.reporting.stats import EXPLORATORY, PAIRED_METHOD, cell, paired, paired_text, variance_split

METRICS = (("Δ final acc", "avg_acc"), ("Δ old-task acc", "old_acc"), ("Δ forgetting", "forgetting"),
           ("Δ learning acc", "learning_acc"))


def floor_mark(ok: pd.DataFrame, setting: str, metric: str) -> str:
    """' (floor)' beside a class-IL old-task accuracy below 1 point in every seed, ' (floor: plasticity)'
    beside that row's class-IL forgetting (it then equals the old tasks' learning accuracy)."""
    if setting != "class_il" or metric not in ("old_acc", "forgetting"):
        return ""
    if not at_floor(ok[ok["setting"] == "class_il"]["old_acc"]):
        return ""
    return FLOOR_MARK if metric == "old_acc" else PLASTICITY_MARK


def main_setting(layout: dict) -> str:
    """The setting a scenario's claims are made in: the first of its table's columns."""
    return layout["columns"][0][1]


def by_seed(sub: pd.DataFrame, run: str, setting: str, metric: str) -> pd.Series:
    rows = sub[(sub["run"] == run) & (sub["setting"] == setting) & (sub["status"] == "complete")]
    return rows.set_index("seed")[metric]


def control_pairs(runs: list[str], control: str) -> list[tuple[str, str, str]]:
    """(strategy run, control run, what the control is) for every plain run: fine-tuning for every
    strategy, and the architecture-matched twins a strategy declares (``matched_controls``)."""
    pairs = []
    for run in ordered(runs):
        if "@" in run or run == control:
            continue
        pairs.append((run, control, "fine-tune"))
        entry = STRATEGIES.get(base_name(run))
        for what, overrides in (entry.obj.matched_controls(entry.defaults) if entry else {}).items():
            twin = C.run_name(run, {"strategy": overrides})
            if twin in runs:
                pairs.append((run, twin, what))
    return pairs


def versus_control_table(sub: pd.DataFrame, scenario: str) -> pd.DataFrame | None:
    layout = scenario_layout(scenario, sub)
    setting, control = main_setting(layout), layout["control"]
    runs = sorted(set(sub["run"]))
    if control not in runs:
        return None
    rows = []
    for run, ctrl, what in control_pairs(runs, control):
        row = {"Strategy": label_of(run), "Control": label_of(ctrl) if what == "fine-tune" else f"{ctrl} ({what})"}
        row.update(paired_cells(sub, run, ctrl, setting))
        rows.append(row)
    return one_task_columns(pd.DataFrame(rows), setting)


def paired_cells(sub: pd.DataFrame, run: str, ctrl: str, setting: str) -> dict:
    """The METRICS columns of one comparison (exploratory text) and its pairs; a class-IL forgetting
    difference where either side is at the floor is marked as plasticity."""
    results = [paired(by_seed(sub, run, setting, m), by_seed(sub, ctrl, setting, m)) for _, m in METRICS]
    cells = {header: paired_text(result) for (header, _), result in zip(METRICS, results)}
    if setting == "class_il" and cells["Δ forgetting"] != "n/a" and any(
            at_floor(by_seed(sub, r, setting, "old_acc")) for r in (run, ctrl)):
        cells["Δ forgetting"] += PLASTICITY_MARK
    cells["pairs"] = str(max((r["n"] for r in results if r), default=0))
    cells["pairs across code versions"] = str(mixed_pairs(sub, run, ctrl, setting))
    return cells


def mixed_pairs(sub: pd.DataFrame, run: str, ctrl: str, setting: str) -> int:
    """How many seeds pair two records made by different git commits (a code change inside the pair)."""
    commits = [by_seed(sub, name, setting, "commit") for name in (run, ctrl)]
    both = pd.concat(commits, axis=1, join="inner")
    return int((both.iloc[:, 0] != both.iloc[:, 1]).sum())


def one_task_columns(table: pd.DataFrame, setting: str) -> pd.DataFrame:
    """One task has no forgetting or old task and its learning accuracy is its final accuracy: drop those."""
    return table.drop(columns=["Δ old-task acc", "Δ forgetting", "Δ learning acc"]) if setting == "standard" else table


def versus_control_caption(scenario: str, sub: pd.DataFrame, caption) -> str:
    layout = scenario_layout(scenario, sub)
    return caption(sub, f"{layout['title']}: each strategy minus its control on "
                   f"{SETTING_NAMES.get(main_setting(layout), main_setting(layout))} metrics (percentage points), "
                   f"{PAIRED_METHOD}; {EXPLORATORY}; forgetting: lower is better, so a negative difference is "
                   "less forgetting; '(floor: plasticity)': a side's class-IL old-task accuracy is below 1 point in every seed. "
                   f"Controls: fine-tuning ({label_of(layout['control'])}), and for the Nested/CMS strategies the "
                   "same model with every period 1 (architecture-matched)")


def study_specs(scenario: str) -> dict:
    """A scenario's declared studies (YAML ``report.studies``): name -> {title, note, rows}, each row
    [label, run, control run, what the control is]; checked, so a typo fails loudly."""
    spec = C.scenario_spec_or_none(scenario) or {}
    found = (spec.get("report") or {}).get("studies") or {}
    for name, study in found.items():
        rows = study.get("rows") if isinstance(study, dict) else None
        if not study.get("title") or not isinstance(rows, list) or not all(
                isinstance(r, list) and len(r) == 4 and all(isinstance(v, str) for v in r) for r in rows):
            raise UserError(f"scenarios/{scenario}.yaml report.studies.{name} needs a title and rows of "
                            "[label, run, control run, what the control is]")
    return found


def study_runs(spec: dict) -> set[str]:
    return {run for row in spec["rows"] for run in row[1:3]}


# What a study table's own columns are over: a row may have seeds its control lacks (more seeds added later)
STUDY_COLUMNS = "'Row:' columns: the row over all its seeds; 'pairs': the seeds both sides have"


def study_table(sub: pd.DataFrame, scenario: str, spec: dict) -> pd.DataFrame | None:
    """One line per declared comparison whose two runs both have records: the row's own final and
    learning accuracy, then its paired differences to the control. None when no line has both."""
    setting = main_setting(scenario_layout(scenario, sub))
    rows = []
    for label, run, control, what in spec["rows"]:
        cells = paired_cells(sub, run, control, setting)
        if cells["pairs"] == "0":
            continue
        pairs, mixed = cells.pop("pairs"), cells.pop("pairs across code versions")
        row = {"Row": label, "Control": what, **cells}
        mine = sub[(sub["run"] == run) & (sub["setting"] == setting) & (sub["status"] == "complete")]
        row["Row: final acc"] = cell(mine["avg_acc"])
        row["Row: learning acc"] = cell(mine["learning_acc"])
        row["pairs"], row["pairs across code versions"] = pairs, mixed
        rows.append(row)
    if not rows:
        return None
    return one_task_columns(pd.DataFrame(rows), setting)


def class_order_table(sub: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: final class-IL accuracy over (class order x seed), its mean, and the shares of
    its sum of squares that the order, the seed and the rest explain."""
    rows = []
    ok = sub[(sub["setting"] == "class_il") & (sub["status"] == "complete")]
    for run in ordered(ok["run"]):
        mine = ok[ok["run"] == run]
        grid = mine.pivot_table(index="class_order_seed", columns="seed", values="avg_acc")
        row = {"Strategy": label_of(run), "Class-IL acc (all cells)": cell(mine["avg_acc"])}
        for order, values in grid.iterrows():
            row[f"order {int(order)}"] = cell(values)
        shares = variance_split(grid.dropna(axis=1)) if grid.notna().all().any() else None
        for key, header in (("order", "SS share: order"), ("seed", "SS share: seed"), ("rest", "SS share: rest")):
            row[header] = "n/a" if shares is None else f"{100 * shares[key]:.0f}%"
        row["cells"] = f"{grid.shape[0]} orders x {grid.shape[1]} seeds"
        rows.append(row)
    return pd.DataFrame(rows)
