"""Statistics of the tables, in one place: mean ± sample std, the 95% Student-t interval of a mean
over seeds, and paired differences to a control (scipy.stats for the t distribution).

Why t: tables hold 3 to 10 seeds; the t interval is exact for normal per-seed values and the usual
choice at such n. Bounded, skewed metrics (forgetting near 0) make it approximate; we say so in the
captions rather than switch methods per cell.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
METHOD = "95% Student-t interval over seeds"
PAIRED_METHOD = "paired by seed (same initialisation, class order and data order); 95% Student-t interval of the mean difference"


def values(series) -> np.ndarray:
    return pd.Series(series, dtype="object").dropna().astype(float).to_numpy()


def t_interval(x) -> tuple[float, float] | None:
    """The 95% t interval of the mean of ``x``; None with fewer than 2 values."""
    x = values(x)
    if len(x) < 2:
        return None
    sem = x.std(ddof=1) / math.sqrt(len(x))
    if sem == 0:
        return float(x.mean()), float(x.mean())
    lo, hi = stats.t.interval(LEVEL, len(x) - 1, loc=x.mean(), scale=sem)
    return float(lo), float(hi)


def mean_std(x, digits: int = 2) -> str:
    x = values(x)
    if len(x) == 0:
        return "n/a"
    return f"{x.mean():.{digits}f}" if len(x) == 1 else f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}"


def interval_text(x, digits: int = 2) -> str:
    ci = t_interval(x)
    n = len(values(x))
    if ci is None:
        return "n=1: no interval" if n == 1 else "n/a"
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def cell(x, digits: int = 2) -> str:
    """A table cell: mean ± std and, from two values on, the 95% interval (one digit less)."""
    x = values(x)
    if len(x) < 2:
        return mean_std(x, digits)
    lo, hi = t_interval(x)
    d = max(digits - 1, 0)
    return f"{mean_std(x, digits)} [{lo:.{d}f}, {hi:.{d}f}]"


def paired(strategy: pd.Series, control: pd.Series) -> dict | None:
    """Paired difference strategy - control over the seeds both have (series indexed by seed):
    n, mean difference, its 95% t interval, and whether that interval excludes 0."""
    both = pd.concat([strategy.rename("s"), control.rename("c")], axis=1).dropna()
    if both.empty:
        return None
    d = (both["s"].astype(float) - both["c"].astype(float)).to_numpy()
    ci = t_interval(d)
    return {"n": len(d), "mean": float(d.mean()), "ci": ci,
            "excludes_zero": ci is not None and (ci[0] > 0 or ci[1] < 0)}


def paired_text(result: dict | None, digits: int = 2) -> str:
    """'+1.23 [0.40, 2.06]', bold when the interval excludes 0; no interval below 2 pairs."""
    if result is None:
        return "n/a"
    if result["ci"] is None:
        return f"{result['mean']:+.{digits}f} (n=1)"
    lo, hi = result["ci"]
    text = f"{result['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return f"**{text}**" if result["excludes_zero"] else text


def variance_split(grid: pd.DataFrame) -> dict:
    """Two-way split of a (class order x seed) grid with one value per cell: the sums of squares of
    the order means, the seed means and the rest, as shares of the total."""
    x = grid.to_numpy(dtype=float)
    grand = x.mean()
    total = ((x - grand) ** 2).sum()
    order = x.shape[1] * ((x.mean(1) - grand) ** 2).sum()
    seed = x.shape[0] * ((x.mean(0) - grand) ** 2).sum()
    if total == 0:
        return {"order": 0.0, "seed": 0.0, "rest": 0.0, "total_ss": 0.0}
    return {"order": order / total, "seed": seed / total, "rest": (total - order - seed) / total, "total_ss": total}
