"""The dose-response of a campaign (YAML ``dose_response``): a multi-timescale row among its period-1
controls at several lr factors (1, 1/sqrt(C), 1/C, the calibrated one), drawn as retention against how
far the control's slowest level moved relative to the row's own, so that a reader sees whether the row
keeps more than a plain model that moves as little.

    dose_response:
      setting: task_il
      groups: {Nested: ["Nested, every period 1", "Nested, per-layer lr η/C", ...], CMS: [...]}

x: per control, its slowest level's net displacement per task over the row's (the level with the row's
longest period; median over tasks in each seed, geometric mean over the seeds both have); the row
itself sits at 1. y: old-task accuracy and forgetting in the setting, mean with a 95% t interval over the
seeds. Only records that hold displacement (made from 2026-12-08) give points.
"""
from __future__ import annotations


import numpy as np
import pandas as pd

from nlbench.errors import UserError
from nlbench.reporting.family import displacement_ratio
from nlbench.reporting.layout import SETTING_NAMES
from nlbench.reporting.specs import row_run_name
from nlbench.reporting.stats import t_interval


def dose_spec(spec: dict) -> dict | None:
    dose = spec.get("dose_response")
    if dose is None:
        return None
    labels = {row["label"] for row in spec["runs"]}
    groups = dose.get("groups") if isinstance(dose, dict) else None
    if not isinstance(groups, dict) or not all(k in labels and isinstance(v, list) and set(v) <= labels
                                               for k, v in groups.items()):
        raise UserError(f"campaign {spec['name']}: dose_response needs a setting and groups {{row label: [control "
                        f"labels]}}, every label a row of the campaign; got {dose!r}")
    return {"setting": dose.get("setting", "task_il"), "groups": groups}


def slowest_level(df: pd.DataFrame, run: str) -> str | None:
    """The name of the run's level with the longest period (from a record that holds displacement)."""
    rows = df[(df["run"] == run) & df["displacement"].notna()]
    if rows.empty:
        return None
    rec = rows.iloc[0]
    return rec["displacement"]["groups"][int(np.argmax(rec["level_periods"]))] if rec["level_periods"] else None


def moved(df: pd.DataFrame, run: str, control: str, level: str) -> float | None:
    """The control's net displacement of ``level`` per task over the row's, as the family table measures it
    (nlbench.reporting.family.displacement_ratio), on the seeds the records have."""
    return (displacement_ratio(df, run, control, sorted(set(df["seed"]))) or {}).get(level)


def dose_plot(df: pd.DataFrame, spec: dict, path) -> bool:
    import matplotlib.pyplot as plt

    from nlbench.reporting.figures import write_png  # matplotlib (Agg) only when a figure is drawn
    dose = dose_spec(spec)
    if dose is None:
        return False
    setting, runs = dose["setting"], {row["label"]: row_run_name(spec, row) for row in spec["runs"]}
    sub = df[(df["setting"] == setting) & (df["status"] == "complete") & df["seed"].isin(spec["seeds"])]
    panels = []
    for label, controls in dose["groups"].items():
        level = slowest_level(sub, runs[label])
        if level is None:
            continue
        points = [(label, 1.0, runs[label])] + [(c, moved(sub, runs[label], runs[c], level), runs[c]) for c in controls]
        panels.append((label, level, [p for p in points if p[1] is not None]))
    panels = [p for p in panels if len(p[2]) > 1]
    if not panels:
        return False
    metrics = (("old_acc", "old-task acc"), ("forgetting", "forgetting"))
    fig, axes = plt.subplots(len(panels), 2, figsize=(11, 3.6 * len(panels)), squeeze=False)
    markers = "sD^vP"
    for (label, level, points), row_axes in zip(panels, axes):
        for ax, (metric, name) in zip(row_axes, metrics):
            for i, (who, x, run) in enumerate(points):
                values = sub[sub["run"] == run][metric].dropna().astype(float)
                if values.empty:
                    continue
                ci = t_interval(values)
                err = None if ci is None else [[values.mean() - ci[0]], [ci[1] - values.mean()]]
                ax.errorbar(x, values.mean(), yerr=err, fmt="*" if i == 0 else markers[(i - 1) % len(markers)],
                            ms=13 if i == 0 else 7, capsize=3, label=f"{who} (n={len(values)})")
            ax.set_xscale("log")
            ax.set_xlabel(f"level '{level}': net displacement per task, control / {label}")
            ax.set_ylabel(f"{SETTING_NAMES.get(setting, setting)} {name} (%)")
            ax.axvline(1.0, color="#999999", lw=0.8, ls="--")
            ax.grid(alpha=0.3)
        row_axes[0].legend(fontsize=7, loc="best")
        row_axes[0].set_title(f"{label} (star) among its period-1 controls", fontsize=10)
    fig.suptitle(f"Campaign {spec['name']}: retention against displacement (declared seeds with displacement "
                 "records; 95% t intervals)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    write_png(fig, path)
    return True
