"""Campaign tables: our runs of a named campaign beside the numbers it was built to test.

For a literature protocol (``published`` holds a paper's mean ± std) the table shows ours and
theirs per row, with our 95% interval (Student t over seeds) and the learning accuracy (accuracy
on each task right after learning it) beside the final accuracy, so that less forgetting from
learning less is visible. For the blog's claims (``published`` holds ``claim``/``acc``/
``memory_gb``) it shows our accuracy, measured CUDA memory and the computed memory breakdown.
"""
from __future__ import annotations

import pandas as pd

from . import config as C
from .campaign import campaign_names, load_campaign, row_sets
from .stats import interval_text, mean_std


def interval(values: pd.Series, digits: int = 2) -> str:
    """Mean's 95% t-interval over seeds ('n=1: no interval' with one seed)."""
    return interval_text(values, digits)


def _published(pair) -> str:
    return f"{pair[0]:.2f} ± {pair[1]:.2f}"


def _rows_of(df: pd.DataFrame, spec: dict):
    """(row spec, that row's records) for every row of the campaign, in its order."""
    for row in spec["runs"]:
        name = C.run_name(row["strategy"], C.parse_sets(row_sets(spec, row)))
        yield row, df[(df["scenario"] == spec["scenario"]) & (df["profile"] == spec["profile"]) & (df["run"] == name)]


def _n(sub: pd.DataFrame) -> str:
    done = sub.drop_duplicates("path")
    diverged = int((done["status"] == "diverged").sum())
    return str(len(done) - diverged) + (f" ({diverged} diverged)" if diverged else "")


def literature_table(df: pd.DataFrame, spec: dict) -> pd.DataFrame:
    rows = []
    for row, sub in _rows_of(df, spec):
        ok = sub[sub["status"] == "complete"]
        pub = (spec.get("published") or {}).get(row["label"], {})
        out = {"Row": row["label"], "run": sub["run"].iloc[0] if len(sub) else row["strategy"]}
        for setting, head in (("class_il", "Class-IL"), ("task_il", "Task-IL")):
            s = ok[ok["setting"] == setting]
            out[f"{head} ours"] = mean_std(s["avg_acc"])
            out[f"{head} ours 95% CI"] = interval(s["avg_acc"])
            out[f"{head} published"] = _published(pub[setting]) if setting in pub else "-"
        cls = ok[ok["setting"] == "class_il"]
        out["Learning acc (class-IL)"] = mean_std(cls["learning_acc"], 1)
        out["Forgetting (class-IL)"] = mean_std(cls["forgetting"], 1)
        out["Train s / run"] = mean_std(sub.drop_duplicates("path")["train_seconds"], 0)
        out["n"] = _n(sub)
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
            "Train s": mean_std(runs["train_seconds"], 0), "Images/s": mean_std(runs["images_per_second"], 0),
            "n": _n(sub),
        })
    return pd.DataFrame(rows)


def campaign_tables(df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """name -> (table, caption, what it is) for every campaign with records in ``df``."""
    out = {}
    for name in campaign_names():
        spec = load_campaign(name)
        mine = df[(df["profile"] == spec["profile"]) & (df["scenario"] == spec["scenario"])]
        if mine.empty:
            continue
        claims = any("claim" in v for v in (spec.get("published") or {}).values())
        table = claims_table(mine, spec) if claims else literature_table(mine, spec)
        seeds = ", ".join(str(s) for s in sorted(mine["seed"].unique()))
        devices = ", ".join(sorted(mine["device"].unique()))
        cap = (f"Campaign `{name}` ({spec['description']}): profile {spec['profile']} (settings and their sources in "
               f"scenarios/{spec['scenario']}.yaml), seeds {seeds}, device {devices}; accuracies in %, mean ± sample "
               f"std over seeds and a 95% Student-t interval (none with one seed). Times and images/s were measured "
               f"while other runs of the campaign shared the device (bench.py campaign --jobs), so they are upper "
               f"bounds of a run alone. Published / claimed numbers: "
               f"{spec['source']}; they are the authors' runs, not ours. Data: "
               + "; ".join(sorted(mine["data_source"].unique())) + ".")
        out[f"campaign-{name}"] = (table.drop(columns=["run"]), cap, f"Campaign {name}: ours beside the published numbers")
    return out
