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


def train_time(runs: pd.DataFrame, digits: int = 0) -> str:
    """Training seconds a run, mean ± std: its steps plus the strategy's end-of-task work (GDumb trains
    its network there). Records made before that work was timed hold their steps only: marked. A
    seed-parallel record holds its group's time (K models trained at once): marked with K."""
    runs = runs.drop_duplicates("path")
    untimed = runs["end_of_task_seconds"].isna()
    text = mean_std(runs["train_seconds"].astype(float) + runs["end_of_task_seconds"].fillna(0.0).astype(float), digits)
    if text == "n/a":
        return text
    if untimed.any():
        text += " (steps only)" if untimed.all() else f" ({int(untimed.sum())} of {len(runs)}: steps only)"
    sizes = sorted({int(k) for k in runs.get("group_size", pd.Series([1] * len(runs))).fillna(1)} - {1})
    if sizes:
        text += f" (a seed-parallel group's time, K = {', '.join(map(str, sizes))})"
    return text


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


# Outside a declared family (campaign YAML ``family``) a paired interval is exploratory: no correction
# for the many intervals read at once, so nothing is bold (about 1 in 20 would exclude 0 by chance).
EXPLORATORY = ("exploratory: raw 95% intervals, no multiplicity correction, nothing bold (claims: the family "
               "tables, Holm-corrected, with equivalence tests)")


def paired_text(result: dict | None, digits: int = 2, bold: bool = False) -> str:
    """'+1.23 [+0.40, +2.06]'; bold only when asked (a family member that survives its correction);
    no interval below 2 pairs."""
    if result is None:
        return "n/a"
    if result["ci"] is None:
        return f"{result['mean']:+.{digits}f} (n=1)"
    lo, hi = result["ci"]
    text = f"{result['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return f"**{text}**" if bold else text


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


# --- claims that survive many comparisons: a family's Holm-adjusted p-values and equivalence tests ---

def paired_p(d) -> float | None:
    """Two-sided p-value of the paired t test that the mean difference is 0 (scipy.stats.ttest_1samp)."""
    d = values(d)
    if len(d) < 2:
        return None
    if d.std(ddof=1) == 0:
        return 1.0 if d.mean() == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


EXACT_UP_TO = 16      # pairs: up to here the sign-flip test enumerates all 2^n sign patterns
RESAMPLES = 100_000  # beyond: this many random sign patterns (a fixed generator: the same p on every report)


def sign_flip_p(d) -> float | None:
    """Two-sided p of the paired sign-flip permutation test that the mean difference is 0: the share of
    sign patterns of the differences whose mean is at least as far from 0 as the observed one
    (scipy.stats.permutation_test, permutation_type 'samples' on one sample = sign flips); exact for
    n <= 16, else 100,000 random patterns. It assumes only that each difference is symmetric about 0
    under the null, not that it is normal, so a verdict that needs it is not an artefact of the t
    test's assumption at 10 pairs. None below 2 pairs."""
    d = values(d)
    if len(d) < 2:
        return None
    if np.all(d == 0):
        return 1.0
    exact = len(d) <= EXACT_UP_TO
    result = stats.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                                    n_resamples=np.inf if exact else RESAMPLES,
                                    rng=None if exact else np.random.default_rng(0))
    return float(result.pvalue)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment within one family (statsmodels.stats.multitest.multipletests);
    None (no test: fewer than 2 pairs) stays None and does not count as a member."""
    from statsmodels.stats.multitest import multipletests
    present = [i for i, p in enumerate(pvalues) if p is not None]
    out: list[float | None] = [None] * len(pvalues)
    if present:
        adjusted = multipletests([pvalues[i] for i in present], alpha=1 - LEVEL, method="holm")[1]
        for i, p in zip(present, adjusted):
            out[i] = float(p)
    return out


def tost_paired(d, margin: float) -> float | None:
    """p-value of the paired two one-sided tests (TOST) that the mean difference lies inside
    (-margin, +margin) (statsmodels.stats.weightstats.ttost_paired); None below 2 pairs."""
    from statsmodels.stats.weightstats import ttost_paired
    d = values(d)
    if len(d) < 2:
        return None
    if d.std(ddof=1) == 0:
        return 0.0 if abs(d.mean()) < margin else 1.0
    return float(ttost_paired(d, np.zeros_like(d), -margin, margin)[0])


def seeds_for_margin(d, margin: float, alpha: float = 1 - LEVEL, most: int = 1000) -> int | None:
    """Pairs the equivalence test would need at the observed mean and spread: the smallest n whose
    90% interval (TOST at alpha 0.05) at this mean and sample std fits inside +-margin; None when
    the observed mean is itself outside the margin (no number of seeds shows equivalence then)."""
    d = values(d)
    if len(d) < 2 or abs(d.mean()) >= margin:
        return None
    sd, room = d.std(ddof=1), margin - abs(d.mean())
    for n in range(2, most + 1):
        if stats.t.ppf(1 - alpha, n - 1) * sd / math.sqrt(n) < room:
            return n
    return None


def verdict(d, p_adjusted: float | None, margin: float) -> str:
    """A primary comparison's verdict: 'better' / 'worse' where the Holm-adjusted p < 0.05 (the sign
    says which way the difference goes, not whether it is good), 'equivalent within ±m' where TOST
    at the margin passes, else 'inconclusive' with the pairs the margin would need."""
    d = values(d)
    if len(d) < 2:
        return "no test (fewer than 2 pairs)"
    if p_adjusted is not None and p_adjusted < 1 - LEVEL:
        return f"{'higher' if d.mean() > 0 else 'lower'} (Holm p < {1 - LEVEL:.2f})"
    p_eq = tost_paired(d, margin)
    if p_eq is not None and p_eq < 1 - LEVEL:
        return f"equivalent within ±{margin:g}"
    need = seeds_for_margin(d, margin)
    return (f"inconclusive (±{margin:g} needs ~{need} pairs at the observed mean and spread)" if need is not None
            else f"inconclusive (observed Δ beyond ±{margin:g}: at the observed mean no number of pairs would "
                 "show equivalence)")
