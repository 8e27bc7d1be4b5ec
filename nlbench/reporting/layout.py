"""How reports lay out a scenario: one place, read from the scenario's YAML ``report`` section, with
defaults for a scenario file that has none (so a new scenario gets tables and figures unedited)."""
from __future__ import annotations

import pandas as pd

from nlbench.training import config as C
SETTING_NAMES = {"class_il": "Class-IL", "task_il": "Task-IL", "domain_il": "Domain-IL", "standard": "Standard",
                 "probe": "Probe"}  # probe: the linear probes' accuracy on the frozen features (nlbench.training.probe)


# The linear probes' columns (nlbench.training.probe), added to a scenario's table where its records have them.
PROBE_COLUMNS = [("Probe acc", "probe", "avg_acc"), ("Probe old-task acc", "probe", "old_acc"),
                 ("Probe forgetting", "probe", "forgetting"), ("Probe learning acc", "probe", "learning_acc")]


def scenario_layout(scenario: str, records: pd.DataFrame) -> dict:
    """How to table a scenario: its YAML's ``report`` section (title, summary, columns, table name,
    layout, order, control), else defaults from its description and the settings its records hold:
    per setting, final accuracy, forgetting and learning accuracy, and FWT where it can be other
    than minus the untrained accuracy (not class-IL: a task's classes are never predicted before
    it is trained)."""
    spec = C.scenario_spec_or_none(scenario) or {}
    layout = dict(spec.get("report") or {})
    settings = list(dict.fromkeys(s for rec in records["settings"] for s in rec))
    default_columns = [[f"{SETTING_NAMES.get(s, s)} {what}", s, metric] for s in settings
                       for what, metric in (("acc", "avg_acc"), ("forgetting", "forgetting"),
                                            ("learning acc", "learning_acc"), ("FWT", "fwt"))
                       if metric != "fwt" or s not in ("class_il", "standard")]  # class-IL FWT: see metrics.MEANINGS
    columns = [tuple(c) for c in layout.get("columns") or default_columns]
    if "setting" in records and (records["setting"] == "probe").any():  # runs with the linear probes
        columns += PROBE_COLUMNS
    title = layout.get("title") or spec.get("description") or scenario
    return {"title": title, "summary": layout.get("summary") or title, "table": layout.get("table") or scenario,
            "layout": layout.get("layout") or ("standard" if settings == ["standard"] else "continual"),
            "columns": columns,
            "order": layout.get("order", 100),
            "control": layout.get("control", "adam")}  # the fine-tune every strategy is paired with


def scenarios_in_order(df: pd.DataFrame) -> list[str]:
    names = sorted(set(df["scenario"]))
    return sorted(names, key=lambda n: (scenario_layout(n, df[df["scenario"] == n])["order"], n))


def device_kind(device: str) -> str:
    """'cuda' or 'cpu' (a record's device reads e.g. 'cuda:NVIDIA H200' or 'cpu:2 cores')."""
    return device.split(":", 1)[0]


def device_suffix(records: pd.DataFrame, kind: str) -> str:
    """'-cuda' for the CUDA records of a protocol that also has CPU records (MIR's online rows run on
    both: the GPU rows are their own table, and their agreement with the CPU rows is a result), else
    ''. A protocol recorded on one device alone keeps its plain table name."""
    return f"-{kind}" if kind != "cpu" and records["device_kind"].nunique() > 1 else ""
