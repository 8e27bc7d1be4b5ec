"""Figures from the records DataFrame (matplotlib, PNG and PDF)."""
from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")  # no display on benchmark machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nlbench.reporting.layout import scenarios_in_order  # noqa: E402
from nlbench.registry import STRATEGIES, label_of, ordered  # noqa: E402

SETTING_TITLE = {"class_il": "class-IL", "task_il": "task-IL", "domain_il": "domain-IL"}


def setting_title(setting: str) -> str:
    return SETTING_TITLE.get(setting, setting)


LINESTYLES = ("-", "--", ":", "-.")
MARKERS = "osD^v<>PX*"


def series_style(i: int) -> dict:
    """The i-th series' colour, line style and marker: the 10 colours repeat with another line style and
    a shifted marker, so no two of up to 40 series look alike."""
    return {"color": f"C{i % 10}", "linestyle": LINESTYLES[(i // 10) % len(LINESTYLES)],
            "marker": MARKERS[(i + i // 10) % len(MARKERS)], "markersize": 5}


def _save(fig, folder: pathlib.Path, name: str) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{name}.png", dpi=150, bbox_inches="tight")
    fig.savefig(folder / f"{name}.pdf", bbox_inches="tight", metadata={"CreationDate": None})
    plt.close(fig)
    return [f"figures/{name}.png", f"figures/{name}.pdf"]


def write_png(fig, path: pathlib.Path) -> None:
    """One figure as a PNG at ``path`` (its folder made), then closed: the campaign figures' one way out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
        ax.set_title(label_of(run), fontsize=9)
        ax.set_xticks(range(T), [str(j + 1) for j in range(T)], fontsize=7)
        ax.set_yticks(range(T), [str(i + 1) for i in range(T)], fontsize=7)
        ax.set_xlabel("evaluated on task", fontsize=7)
        ax.set_ylabel("after training task", fontsize=7)
    n = sub["seed"].nunique()
    fig.suptitle(f"{scenario}: accuracy matrix, {setting_title(setting)} (%, mean of {n} seeds; {_tag(sub)})", fontsize=10)
    fig.tight_layout()
    name = f"{scenario}-{setting}-matrices{suffix}"
    return [(f, f"Accuracy matrix of every strategy as a heatmap ({scenario}, {setting_title(setting)})")
            for f in _save(fig, folder, name)]


def curves(df: pd.DataFrame, scenario: str, setting: str, folder, suffix: str) -> list[tuple[str, str]]:
    sub = df[(df["scenario"] == scenario) & (df["setting"] == setting) & (df["status"] == "complete")]
    runs = ordered(sub["run"])
    if not runs:
        return []
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    for i, run in enumerate(runs):
        arr = np.array([[np.nan if v is None else v for v in c] for c in sub[sub["run"] == run]["curve"]], dtype=float)
        k = np.arange(1, arr.shape[1] + 1)
        mean = np.nanmean(arr, 0)
        std = np.nanstd(arr, 0, ddof=1) if len(arr) > 1 else np.zeros_like(mean)
        style = series_style(i)
        if np.isnan(mean[:-1]).all():  # one measured point (joint): no line to draw
            style = {**style, "markersize": 10, "linestyle": "none"}
        line, = ax.plot(k, mean, label=label_of(run), **style)
        ax.fill_between(k, mean - std, mean + std, color=line.get_color(), alpha=0.08, linewidth=0)
    ax.set_xlabel("tasks trained")
    ax.set_ylabel(f"average accuracy A_k on tasks seen (%, {setting_title(setting)})")
    ax.set_xticks(k)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=1 if len(runs) <= 12 else 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{scenario}: A_k after each task, mean ± 1 std over {sub['seed'].nunique()} seeds\n({_tag(sub)})",
                 fontsize=10)
    return [(f, f"Average accuracy after each task, all strategies ({scenario}, {setting_title(setting)})")
            for f in _save(fig, folder, f"{scenario}-{setting}-curves{suffix}")]


def standard_bars(df: pd.DataFrame, scenario: str, folder, name: str) -> list[tuple[str, str]]:
    sub = df[(df["scenario"] == scenario) & (df["status"] == "complete")]
    runs = ordered(sub["run"])
    if not runs:
        return []
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    x = np.arange(len(runs))
    for ax, col, ylabel in [(a1, "avg_acc", "test accuracy (%)"), (a2, "peak_memory_mb", "peak memory (MB)")]:
        vals = [sub[sub["run"] == r][col].astype(float) for r in runs]
        means = [v.mean() for v in vals]
        stds = [v.std(ddof=1) if len(v) > 1 else 0 for v in vals]
        bars = ax.bar(x, means, yerr=stds, capsize=4, color=[f"C{i}" for i in range(len(runs))])
        top = max((m + sd for m, sd in zip(means, stds) if m == m), default=1.0)
        for b, m, sd in zip(bars, means, stds):  # above the error bar's cap, never through it
            ax.text(b.get_x() + b.get_width() / 2, m + sd + 0.02 * top, f"{m:.1f}" if col == "avg_acc" else f"{m:.0f}",
                    ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, top * 1.15)
        ax.set_xticks(x, [STRATEGIES[r].standard_label if r in STRATEGIES else r for r in runs], fontsize=8,
                      rotation=35, ha="right")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    kind = ", ".join(sorted(sub["peak_memory_kind"].unique()))
    fig.suptitle(f"Standard CIFAR-10 ({_tag(sub)}; "
                 f"mean ± std over {sub['seed'].nunique()} seeds; memory = {kind})", fontsize=9)
    fig.tight_layout()
    return [(f, "Standard CIFAR-10 comparison: accuracy and peak memory") for f in
            _save(fig, folder, name)]


def make_figures(groups, folder: pathlib.Path) -> list[tuple[str, str]]:
    """groups: (file-name suffix, label, records) per protocol and data set (report.groups)."""
    import warnings
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # nan means of joint's unmeasured rows
    written = []
    for suffix, label, p in groups:
        p = p[p["run"] == p["strategy"]]
        made = []
        for scenario in scenarios_in_order(p):
            sub = p[p["scenario"] == scenario]
            settings = list(dict.fromkeys(s for rec in sub["settings"] for s in rec))
            if settings == ["standard"]:  # one task: bars, not matrices
                made += standard_bars(sub, scenario, folder, f"{scenario}-standard{suffix}")
                continue
            for setting in settings:
                made += heatmaps(sub, scenario, setting, folder, suffix)
                made += curves(sub, scenario, setting, folder, suffix)
        written += [(f, f"{what} ({label})") for f, what in made]
    return written
