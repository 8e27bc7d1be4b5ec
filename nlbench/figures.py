"""Figures from the records DataFrame (matplotlib, PNG and PDF)."""
from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")  # no display on benchmark machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .report import LABELS, STANDARD_LABELS, groups, ordered  # noqa: E402

MAIN_SETTING = {"split-cifar": "class_il", "permuted-cifar": "domain_il"}
SETTING_TITLE = {"class_il": "class-IL", "task_il": "task-IL", "domain_il": "domain-IL"}


def _save(fig, folder: pathlib.Path, name: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=150, bbox_inches="tight")
    fig.savefig(folder / f"{name}.pdf", bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return [f"figures/{name}.png", f"figures/{name}.pdf"]


def _tag(sub: pd.DataFrame) -> str:
    """Profile and data set of a figure's runs, for its title (one of each: see report.groups)."""
    data = ", ".join(sorted(sub["data_set"].unique()))
    return f"profile {', '.join(sorted(sub['profile'].unique()))}, {data} CIFAR-10"


def _mean_matrix(sub: pd.DataFrame) -> np.ndarray:
    mats = [np.array([[np.nan] * len(m) if row is None else row for row in m], dtype=float) for m in sub["matrix"]]
    return np.nanmean(np.stack(mats), axis=0) if mats else np.zeros((0, 0))


def heatmaps(df: pd.DataFrame, scenario: str, setting: str, folder, suffix: str) -> list[tuple[str, str]]:
    sub = df[(df["scenario"] == scenario) & (df["setting"] == setting) & (df["status"] == "complete")]
    runs = ordered(sub["run"])
    if not runs:
        return []
    cols = min(4, len(runs))
    rows = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.axis("off")
    for ax, run in zip(axes.flat, runs):
        m = _mean_matrix(sub[sub["run"] == run])
        ax.imshow(m, vmin=0, vmax=100, cmap="viridis")
        T = m.shape[0]
        for i in range(T):
            for j in range(T):
                if not np.isnan(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] < 60 else "black")
        ax.set_title(LABELS.get(run, run), fontsize=9)
        ax.set_xticks(range(T), [str(j + 1) for j in range(T)], fontsize=7)
        ax.set_yticks(range(T), [str(i + 1) for i in range(T)], fontsize=7)
        ax.set_xlabel("evaluated on task", fontsize=7)
        ax.set_ylabel("after training task", fontsize=7)
    n = sub["seed"].nunique()
    fig.suptitle(f"{scenario}: accuracy matrix, {SETTING_TITLE[setting]} (%, mean of {n} seeds; {_tag(sub)})", fontsize=10)
    fig.tight_layout()
    name = f"{scenario}-{setting}-matrices{suffix}"
    return [(f, f"Accuracy matrix of every strategy as a heatmap ({scenario}, {SETTING_TITLE[setting]})")
            for f in _save(fig, folder, name)]


def curves(df: pd.DataFrame, scenario: str, setting: str, folder, suffix: str) -> list[tuple[str, str]]:
    sub = df[(df["scenario"] == scenario) & (df["setting"] == setting) & (df["status"] == "complete")]
    runs = ordered(sub["run"])
    if not runs:
        return []
    fig, ax = plt.subplots(figsize=(6.2, 4))
    for run in runs:
        arr = np.array([[np.nan if v is None else v for v in c] for c in sub[sub["run"] == run]["curve"]], dtype=float)
        k = np.arange(1, arr.shape[1] + 1)
        mean = np.nanmean(arr, 0)
        std = np.nanstd(arr, 0, ddof=1) if len(arr) > 1 else np.zeros_like(mean)
        style = dict(marker="*", markersize=10, linestyle="none") if np.isnan(mean[:-1]).all() else dict(marker="o")
        line, = ax.plot(k, mean, label=LABELS.get(run, run), **style)
        ax.fill_between(k, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("tasks trained")
    ax.set_ylabel(f"average accuracy A_k on tasks seen (%, {SETTING_TITLE[setting]})")
    ax.set_xticks(k)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title(f"{scenario}: A_k after each task, mean ± 1 std over {sub['seed'].nunique()} seeds\n({_tag(sub)})",
                 fontsize=10)
    return [(f, f"Average accuracy after each task, all strategies ({scenario}, {SETTING_TITLE[setting]})")
            for f in _save(fig, folder, f"{scenario}-{setting}-curves{suffix}")]


def standard_bars(df: pd.DataFrame, folder, suffix: str) -> list[tuple[str, str]]:
    sub = df[(df["scenario"] == "cifar10") & (df["status"] == "complete")]
    runs = [r for r in ["adam", "nested", "nested-cms", "cms"] if r in set(sub["run"])]
    if not runs:
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    x = np.arange(len(runs))
    for ax, col, ylabel in [(a1, "avg_acc", "test accuracy (%)"), (a2, "peak_memory_mb", "peak memory (MB)")]:
        vals = [sub[sub["run"] == r][col].astype(float) for r in runs]
        means = [v.mean() for v in vals]
        stds = [v.std(ddof=1) if len(v) > 1 else 0 for v in vals]
        bars = ax.bar(x, means, yerr=stds, capsize=4, color=["#777777", "#1f77b4", "#2ca02c", "#ff7f0e"][: len(runs)])
        for b, m in zip(bars, means):
            ax.text(b.get_x() + b.get_width() / 2, m, f"{m:.1f}" if col == "avg_acc" else f"{m:.0f}",
                    ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, [STANDARD_LABELS[r].split(" (")[0] for r in runs], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    kind = ", ".join(sorted(sub["peak_memory_kind"].unique()))
    fig.suptitle(f"Standard CIFAR-10 ({_tag(sub)}; "
                 f"mean ± std over {sub['seed'].nunique()} seeds; memory = {kind})", fontsize=9)
    fig.tight_layout()
    return [(f, "Standard CIFAR-10 comparison: accuracy and peak memory") for f in
            _save(fig, folder, f"cifar10-standard{suffix}")]


def make_figures(df: pd.DataFrame, folder: pathlib.Path) -> list[tuple[str, str]]:
    import warnings
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # nan means of joint's unmeasured rows
    written = []
    for suffix, label, p in groups(df):
        p = p[p["run"] == p["strategy"]]
        made = []
        for scenario, setting in [("split-cifar", "class_il"), ("split-cifar", "task_il"), ("permuted-cifar", "domain_il")]:
            made += heatmaps(p, scenario, setting, folder, suffix)
            made += curves(p, scenario, setting, folder, suffix)
        made += standard_bars(p, folder, suffix)
        written += [(f, f"{what} ({label})") for f, what in made]
    return written
