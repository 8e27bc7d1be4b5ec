"""Run records -> pandas -> paper-style tables (Markdown, LaTeX) and figures.

``python bench.py report [--runs DIR] [--out DIR]``. Everything written here is regenerated from
the records every time; the tables are byte-for-byte reproducible from the same records.
"""
from __future__ import annotations

import argparse
import pathlib
import re

import pandas as pd

from nlbench.training import config as C
from nlbench.errors import UserError
from nlbench.reporting.layout import SETTING_NAMES, device_kind, device_suffix, scenario_layout, scenarios_in_order
from nlbench.reporting.comparisons import (STUDY_COLUMNS, class_order_table, floor_mark, main_setting, study_runs,
                                           study_specs, study_table, versus_control_caption, versus_control_table)
from nlbench.training.metrics import MEANINGS, chance_acc, old_learning_acc, old_task_acc, summarize
from nlbench.reporting.stats import EXPLORATORY, METHOD, PAIRED_METHOD, cell, mean_std, train_time
from nlbench.plugins import load
from nlbench.training.records import atomic_write_bytes, atomic_write_text, read_record
from nlbench.registry import AVALANCHE_PREFIX, ROOT, STRATEGIES, base_name, label_of, ordered, standard_label_of

# The source blog post's numbers: claimed, with no code behind them (see docs/nested-learning.md).
BLOG_CLAIMS = {"adam": ("92.1", "2.4 GB"), "nested-blog": ("91.8", "1.8 GB"), "nested-cms": ("92.3", "2.1 GB")}
# DER paper (Buzzega et al., NeurIPS 2020), Table 2: ResNet-18, SGD, 50 epochs/task, 10 runs.
STATS_NOTE = (f"cells: mean ± sample std [{METHOD}]; a seed gives every strategy the same initialisation, class "
              "order and data order (paired differences: the vs-control tables); old-task acc: the mean over tasks "
              "1..T-1 of the last row; '(floor)': class-IL old-task accuracy below 1 point in every seed, so that row's "
              "class-IL forgetting is the old tasks' learning accuracy (plasticity, not retention)")
FORGETTING_NOTE = "forgetting: Chaudhry et al. 2018 (max over rows 1..T-1 minus the last row)"


# The committed records: CPU runs in results/runs; CUDA runs of a protocol that also has CPU records in
# results/cuda (a record's path is its run identity, which does not name the device).
DEFAULT_RUNS = ("results/runs", "results/cuda")


def load_records(runs: pathlib.Path | list[pathlib.Path]) -> pd.DataFrame:
    """One row per (run, setting), from one records folder or several (results/runs and results/cuda:
    the same run's identity on two devices needs two folders)."""
    roots = [runs] if isinstance(runs, pathlib.Path) else list(runs)
    paths = sorted(p for root in roots for p in root.rglob("seed*.json"))
    if not paths:
        raise UserError(f"no run records under {', '.join(map(str, roots))}; run bench.py first, or pass --runs DIR")
    rows = []
    for path in paths:
        rec = read_record(path)
        cfg = rec["config"]
        base = {"path": str(path), "scenario": rec["scenario"], "strategy": rec["strategy"],
                "run": C.run_name_without(rec["run_name"], C.CLASS_ORDER_KEY),  # the order is its own column
                "seed": rec["seed"], "profile": rec["profile"],
                "status": rec["status"], "device": rec["device"], "device_kind": device_kind(rec["device"]),
                "backbone": f"{cfg['backbone']['name']} (width {cfg['backbone']['width']})",
                "epochs": cfg["train"]["epochs"], "batch_size": cfg["train"]["batch_size"],
                "optimizer": optimizer_text(rec),
                "train_optimizer": f"{TORCH_NAMES.get(cfg['train']['optimizer'], cfg['train']['optimizer'])}, "
                                   f"lr {cfg['train']['lr']:g}",
                "train_seconds": rec["train_seconds"], "images_per_second": rec["images_per_second"],
                "end_of_task_seconds": rec["end_of_task_seconds"],
                "group_size": (rec["seed_parallel"] or {}).get("group_size", 1),
                "peak_memory_mb": rec["peak_memory_mb"], "peak_memory_kind": rec["peak_memory_kind"],
                "data_set": rec["data_set"],
                "wall_seconds": rec["wall_seconds"],
                "data_source": rec["data_source"], "commit": (rec["versions"].get("git_commit") or "")[:10],
                "memory": rec["memory"], "cuda_graph": (rec["numerics"] or {}).get("cuda_graph", False),
                "settings": tuple(rec["settings"]), "class_order_seed": cfg["scenario"].get("class_order_seed"),
                "displacement": rec["displacement"],
                "level_periods": [lv["period"] for lv in (rec.get("strategy_info") or {}).get("levels") or []],
                "final_row": None}
        for setting, matrix, m in record_settings(rec):
            rows.append({**base, "setting": setting, **{k: m.get(k) for k in
                         ("avg_acc", "forgetting", "bwt", "fwt", "learning_acc")},
                         "old_acc": old_task_acc(matrix) if rec["status"] == "complete" else None,
                         "old_learning_acc": old_learning_acc(matrix) if rec["status"] == "complete" else None,
                         "chance": chance_acc(setting, rec["tasks"]),
                         "curve": _curve(matrix), "matrix": matrix})
    return pd.DataFrame(rows)


def record_settings(rec: dict):
    """(setting, accuracy matrix, its metrics) of a record: each evaluation setting, then the linear
    probe's matrix as the setting ``probe`` where the run has one (nlbench.training.probe)."""
    for setting, matrix in rec["acc"].items():
        yield setting, matrix, (rec["metrics"] or {}).get(setting) or {}
    if rec["probe"] is not None and rec["status"] == "complete":
        yield "probe", rec["probe"], summarize(rec["probe"], rec["probe_init"])


TORCH_NAMES = {"adam": "Adam", "sgd": "SGD"}  # config names as the optimizer classes spell them


def optimizer_text(rec: dict) -> str:
    """What trained the model, from the record's own optimizer list (records before it: the config)."""
    opts = rec["optimizers"]
    if not opts:
        cfg = rec["config"]["train"]
        return f"{TORCH_NAMES.get(cfg['optimizer'], cfg['optimizer'])}, lr {cfg['lr']:g}"
    return "; ".join(sorted({f"{o['type']}, lr {o['lr']:g}" if isinstance(o.get("lr"), (int, float)) else o["type"]
                             for o in opts}))


def _curve(matrix) -> list[float | None]:
    """A_k after each task k (None where the row was not measured)."""
    return [None if row is None else sum(row[: k + 1]) / (k + 1) for k, row in enumerate(matrix)]


def metric_table(df: pd.DataFrame, columns: list[tuple[str, str, str]], label_of) -> pd.DataFrame:
    """columns: (header, setting, metric). Rows = runs; each cell mean ± std [95% interval]. No
    "best" marks: which differences are real is the versus-control table's job."""
    table = []
    for run in ordered(df["run"]):
        sub = df[df["run"] == run]
        ok = sub[sub["status"] == "complete"]
        row = {"Strategy": label_of(run)}
        for header, setting, metric in columns:
            row[header] = cell(ok[ok["setting"] == setting][metric]) + floor_mark(ok, setting, metric)
        n_total, n_div = sub["seed"].nunique(), sub[sub["status"] == "diverged"]["seed"].nunique()
        row["n"] = f"{n_total - n_div}" + (f" ({n_div} diverged)" if n_div else "")
        table.append(row)
    return pd.DataFrame(table)


def caption(df: pd.DataFrame, what: str) -> str:
    def one(col):
        return ", ".join(str(v) for v in sorted(df[col].astype(str).unique()))
    return (f"{what}. Protocol: profile {one('profile')}; backbone {one('backbone')}; {one('epochs')} epochs per task; "
            f"batch size {one('batch_size')}; optimizer (train.optimizer, train.lr) {one('train_optimizer')}, "
            f"levels and strategies' own optimizers as each run's record lists them; device {one('device')}; "
            f"{df['seed'].nunique()} seeds ({one('seed')}), n per row; {STATS_NOTE}; {FORGETTING_NOTE}; "
            f"accuracies in %; data: {one('data_source')}.")


def to_markdown(table: pd.DataFrame, cap: str) -> str:
    return f"{cap}\n\n{table.to_markdown(index=False, disable_numparse=True)}\n"


def latex_escape(text: str) -> str:
    text = str(text)
    bold = re.fullmatch(r"\*\*(.*)\*\*", text)
    if bold:
        return r"\textbf{" + latex_escape(bold.group(1)) + "}"
    for a, b in [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("±", r"$\pm$"), ("→", r"$\to$")]:
        text = text.replace(a, b)
    return text


def to_latex(table: pd.DataFrame, cap: str, label: str) -> str:
    cols = list(table.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\caption{" + latex_escape(cap) + "}", r"\label{tab:" + label + "}",
             r"\begin{tabular}{l" + "r" * (len(cols) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for _, row in table.iterrows():
        lines.append(" & ".join(latex_escape(row[c]) for c in cols) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def in_group(run: str, group: str) -> bool:
    entry = STRATEGIES.get(base_name(run))
    return entry is not None and entry.group == group


def standard_table(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for run in ordered(df["run"]):
        sub = df[(df["run"] == run) & (df["status"] == "complete")]
        claim = BLOG_CLAIMS.get(run, ("-", "-"))
        rows.append({"Model": standard_label_of(run), "Test acc": cell(sub["avg_acc"]),
                     "Peak memory (MB)": mean_std(sub["peak_memory_mb"], 0), "Training time (s)": train_time(sub, 1),
                     "Images/s": mean_std(sub["images_per_second"], 0), "n": str(sub["seed"].nunique()),
                     "Blog claim: acc (claimed, unverified)": claim[0],
                     "Blog claim: memory (claimed, unverified)": claim[1]})
    return pd.DataFrame(rows)


def ablation_label(run: str) -> str:
    return run if "@" in run else f"{run} (defaults)"


def groups(df: pd.DataFrame):
    """(file-name suffix, label, records) per profile, data set and device kind: runs on different data,
    protocols or devices never share a table or a figure. quick on the full set on the CPU has no
    suffix; e.g. ``-paper``, ``-mini``, ``-online-cuda``."""
    for (profile, data_set, kind), p in df.groupby(["profile", "data_set", "device_kind"], sort=True):
        device = device_suffix(df[df["profile"] == profile], kind)
        suffix = ("" if profile == "quick" else f"-{profile}") + ("" if data_set == "full" else f"-{data_set}") + device
        yield suffix, f"{profile} profile, " + ("full CIFAR-10" if data_set == "full" else f"{data_set} set") + \
            (", CUDA" if device else ""), p


def runtime_table(main: pd.DataFrame) -> pd.DataFrame:
    """Wall-clock seconds per run (data loading, training and every evaluation), by scenario."""
    scenarios = scenarios_in_order(main)
    runs = main.drop_duplicates("path")
    rows = []
    for run in ordered(runs["run"]):
        row = {"Strategy": label_of(run)}
        for scenario in scenarios:
            sub = runs[(runs["run"] == run) & (runs["scenario"] == scenario)]
            row[scenario] = mean_std(sub["wall_seconds"], 1) + (f" (max {sub['wall_seconds'].max():.1f})" if len(sub) > 1 else "")
        rows.append(row)
    return pd.DataFrame(rows)


def campaign_profiles() -> set[tuple[str, str]]:
    """(scenario, profile) pairs that a campaign tabulates: its own table replaces the generic ones,
    unless it says ``replaces_profile_tables: false`` (avalanche-parity: a few pairs of the quick profile)."""
    from nlbench.reporting.specs import campaign_names, load_campaign
    return {(s["scenario"], s["profile"]) for s in map(load_campaign, campaign_names())
            if s.get("replaces_profile_tables", True)}


def generic(df: pd.DataFrame) -> pd.DataFrame:
    """The records of the per-profile tables: not a campaign's, not the class-order study's."""
    owned = campaign_profiles()
    return df[[(a, b) not in owned and pd.isna(o) for a, b, o in zip(df["scenario"], df["profile"],
                                                                      df["class_order_seed"])]]


def build_tables(df: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, str, str]]:
    """name -> (table, caption, what it is)."""
    from nlbench.reporting.replication import campaign_tables
    out = campaign_tables(df)
    out.update(class_orders(df))
    for suffix, label, p in groups(generic(df)):
        first_of_group = len(out)
        main = main_rows(p)
        for scenario in scenarios_in_order(main):
            out.update(scenario_table(main[main["scenario"] == scenario], scenario, suffix))
        for scenario in scenarios_in_order(main):
            out.update(versus_control(p[p["scenario"] == scenario], scenario, suffix))
            out.update(studies(p[p["scenario"] == scenario], scenario, suffix))
        out.update(ablations(p, suffix))
        if main["wall_seconds"].notna().any():
            out[f"runtime{suffix}"] = (runtime_table(main), caption(main.drop_duplicates("path"), "Wall-clock seconds per "
                                       "run, mean ± std (max) over seeds, as `bench.py` measures it around one run: "
                                       "training and every evaluation, plus reading the data in a sweep's first run "
                                       "(process start-up and imports not included); one run at a time unless the "
                                       "commands say --jobs, but whatever else the machine ran then slowed it too"), "Wall-clock time per run by strategy and scenario")
        for name in list(out)[first_of_group:]:  # say in results/README.md which protocol and data each is
            table, cap, what = out[name]
            out[name] = (table, cap, f"{what} ({label})")
    return out


def main_rows(p: pd.DataFrame) -> pd.DataFrame:
    """The records of a scenario's main table. Runs with strategy overrides are ablations, in their own
    table; Avalanche strategies need overrides (their constructor arguments) and belong beside ours, as
    does a strategy with only bench.py tune's values (NAME@tuned=PROTOCOL: the tuned row beside the row
    at the profile's settings)."""
    tuned = p["run"] == p["strategy"] + "@tuned=" + p["run"].str.rpartition("@tuned=")[2]
    return p[(p["run"] == p["strategy"]) | p["strategy"].str.startswith(AVALANCHE_PREFIX) | tuned]


def scenario_table(sub: pd.DataFrame, scenario: str, suffix: str) -> dict:
    """The main table of one scenario, laid out as its YAML says (see scenario_layout)."""
    layout = scenario_layout(scenario, sub)
    if layout["layout"] == "standard":
        cap = caption(sub, f"{layout['title']}. Peak memory: " + ", ".join(sorted(sub["peak_memory_kind"].unique())) +
                      ". The blog columns are the source blog post's claimed numbers (ResNet, its own unstated "
                      "protocol), unverified and not comparable")
        return {f"{layout['table']}{suffix}": (standard_table(sub), cap, layout["summary"])}
    pointer = (f"; paired differences to {label_of(layout['control'])}: the vs-control table (exploratory)"
               if layout["control"] in set(sub["run"]) else "")
    cap = caption(sub, f"{layout['title']}{pointer}")
    return {f"{layout['table']}{suffix}": (metric_table(sub, layout["columns"], label_of), cap, layout["summary"])}


def versus_control(sub: pd.DataFrame, scenario: str, suffix: str) -> dict:
    sub = sub[~sub["strategy"].str.startswith(AVALANCHE_PREFIX)]
    table = versus_control_table(sub, scenario)
    if table is None or table.empty:
        return {}
    name = f"vs-control-{scenario_layout(scenario, sub)['table']}{suffix}"
    return {name: (table, versus_control_caption(scenario, sub, caption),
                   f"{scenario}: each strategy minus fine-tuning and minus its architecture-matched twin, "
                   "paired by seed, 95% intervals")}


def studies(sub: pd.DataFrame, scenario: str, suffix: str) -> dict:
    """The paired studies a scenario's YAML declares (``report.studies``), each its own table."""
    out = {}
    for name, spec in study_specs(scenario).items():
        table = study_table(sub, scenario, spec)
        if table is not None:
            cap = caption(sub[sub["run"].isin(study_runs(spec))], f"{spec['title']}: each row minus its control on "
                          f"{SETTING_NAMES.get(main_setting(scenario_layout(scenario, sub)), 'main')} metrics "
                          f"(percentage points), {PAIRED_METHOD}; {EXPLORATORY}; {STUDY_COLUMNS}; forgetting: a "
                          f"negative difference is less forgetting. {spec.get('note', '').strip().rstrip('.')}".rstrip())
            out[f"{name}{suffix}"] = (table, cap, spec["title"])
    return out


def class_orders(df: pd.DataFrame) -> dict:
    """The class-order study: records whose split used scenario.class_order_seed."""
    study = df[df["class_order_seed"].notna()]
    out = {}
    for suffix, label, p in groups(study):
        cap = caption(p, "Class order as its own axis (split CIFAR-10, class-IL final accuracy): every strategy "
                      "over class orders (scenario.class_order_seed) x training seeds; per order mean ± std "
                      "[95% t interval over seeds]; SS share = share of the sum of squares around the grand mean "
                      "explained by the order means, the seed means and the rest (a two-way split, one run per cell)")
        out[f"class-order{suffix}"] = (class_order_table(p), cap, f"Class order vs seed: variance split ({label})")
    return out


def ablations(p: pd.DataFrame, suffix: str) -> dict:
    """Runs of the Nested/CMS strategies with overrides, beside their defaults (split-cifar)."""
    abl = p[(p["scenario"] == "split-cifar") & p["run"].map(lambda r: in_group(r, "nested"))]
    if not abl["run"].str.contains("@").any():
        return {}
    columns = [c for c in scenario_layout("split-cifar", abl)["columns"] if c[2] in ("avg_acc", "forgetting")]
    return {f"ablations{suffix}": (metric_table(abl, columns, ablation_label),
                                   caption(abl, "Ablations of the Nested/CMS knobs on Split CIFAR-10; runs named by "
                                           "their overrides"),
                                   "Ablations: periods, grad_reduce, lr scaling, optimizer-state reset")}


def published_block(table_name: str) -> str:
    """The published numbers a scenario's YAML puts under its tables (``report.published: {campaign: NAME}``:
    that campaign's references, the one file that holds them), labelled."""
    from nlbench.reporting.replication import published_table
    from nlbench.reporting.specs import load_campaign
    for scenario in C.scenario_names():
        layout = (C.load_scenario_file(scenario).get("report") or {})
        pub = layout.get("published")
        base = layout.get("table") or scenario
        if pub and (table_name == base or table_name.startswith(base + "-")):
            spec = load_campaign(pub["campaign"])
            kinds = sorted({r["pm_kind"] for r in spec.get("references") or [] if r["pm_kind"]})
            return (f"\nPublished, different protocol (not our runs): {spec['source']}; ± = {', '.join(kinds)}; "
                    f"their settings: campaign {spec['name']} (scenarios/campaigns/{spec['name']}.yaml).\n\n"
                    f"{published_table(spec).to_markdown(index=False, disable_numparse=True)}\n")
    return ""


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.py report", description="Tables and figures from run records.")
    ap.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), metavar="DIR", help="folders of run records "
                    f"(default {' '.join(DEFAULT_RUNS)}: the committed reference records, CPU and CUDA; a missing "
                    "one of these is skipped)")
    ap.add_argument("--out", help="where tables, figures and README.md go (default: results for results/runs, "
                    "else RUNS/report, so your own runs never overwrite the committed tables)")
    ap.add_argument("--no-figures", action="store_true", help="tables only")
    ap.add_argument("--plugin", nargs="+", default=[], metavar="FILE", help="strategy files whose labels and "
                    "table groups the report should use (records of strategies not loaded are shown by name)")
    args = ap.parse_args(argv)
    load(args.plugin)
    default = args.runs == list(DEFAULT_RUNS)
    runs = [pathlib.Path(r) for r in args.runs if not default or pathlib.Path(r).exists()] or \
        [pathlib.Path(DEFAULT_RUNS[0])]
    out = pathlib.Path(args.out if args.out is not None else "results" if default else runs[0] / "report")
    df = load_records(runs)
    tables = build_tables(df)
    written = []
    for name, (table, cap, what) in tables.items():
        md = to_markdown(table, cap) + published_block(name)
        atomic_write_text(out / "tables" / f"{name}.md", md)
        atomic_write_text(out / "tables" / f"{name}.tex", to_latex(table, cap, name))
        written.append((f"tables/{name}.md, tables/{name}.tex", what))
        print(f"{name}:\n{to_markdown(table, cap)}")
    speed = speed_table(out)
    if speed is not None:
        atomic_write_text(out / "tables" / "speed.md", speed)
        written.append(("tables/speed.md", "Training throughput side by side (from the speed JSON files)"))
        tables["speed"] = speed
    grouped = seed_parallel_table(out)
    if grouped is not None:
        atomic_write_text(out / "tables" / "speed-seed-parallel.md", grouped)
        written.append(("tables/speed-seed-parallel.md", "Seed-parallel groups against separate runs "
                                                        "(from the speed JSON files)"))
        tables["speed-seed-parallel"] = grouped
    from nlbench.reporting.studies import studies_table, study_figures
    tuning = studies_table(runs)
    if tuning is not None:
        atomic_write_text(out / "tables" / "tuning.md", tuning)
        written.append(("tables/tuning.md", "Tuning studies: budget, trials and the values each chose"))
        tables["tuning"] = tuning
    if not args.no_figures:
        from nlbench.reporting.figures import make_figures
        written += make_figures(list(groups(generic(df))), out / "figures")
        written += study_figures(runs, out / "figures")
        from nlbench.reporting.replication import campaign_forest_plots
        written += campaign_forest_plots(df, out / "figures")
    remove_stale(out, written, ("tables",) if args.no_figures else ("tables", "figures"))  # --no-figures: keep them
    write_readme(out, df, written, [str(r) for r in runs], committed=default)
    print(f"report: {len(tables)} tables and {sum(f.endswith('.png') for f, _ in written)} figures from "
          f"{df['path'].nunique()} records in {', '.join(map(str, runs))} -> {out}/ (index: {out / 'README.md'})")
    from nlbench.reporting.replication import campaign_findings
    found = campaign_findings(df)
    if found:
        print("findings (the declared families):\n" + "\n".join(found))
    if out.resolve() == (ROOT / "results"):
        copy_site_figures(out / "figures", ROOT / "docs" / "figures", args.no_figures)
        update_project_readme(tables, found)  # only the committed results feed the project README
    return 0


SITE_FIGURES = ("forest-*.png", "dose-*.png")  # the committed figures the docs site shows (mkdocs reads only docs/)


def copy_site_figures(source: pathlib.Path, site: pathlib.Path, no_figures: bool) -> None:
    """Copy the figures docs/results.md shows into docs/figures/ (byte for byte; stale ones removed)."""
    if no_figures:
        return
    wanted = {p.name: p for pattern in SITE_FIGURES for p in sorted(source.glob(pattern))}
    site.mkdir(parents=True, exist_ok=True)
    for old in site.glob("*.png"):
        if old.name not in wanted:
            old.unlink()
    for name, path in wanted.items():
        target = site / name
        if not target.exists() or target.read_bytes() != path.read_bytes():
            atomic_write_bytes(target, path.read_bytes())


def remove_stale(out: pathlib.Path, written, folders=("tables", "figures")) -> None:
    """Delete tables and figures this report did not write (e.g. of records since removed), so the
    folder holds exactly what the records give."""
    kept = {name.strip() for files, _ in written for name in files.split(",")}
    for folder in folders:
        for path in sorted((out / folder).glob("*")):
            if path.is_file() and f"{folder}/{path.name}" not in kept and path.suffix in (".md", ".tex", ".png", ".pdf"):
                path.unlink()


def speed_rows(path: pathlib.Path, d: dict) -> list[dict]:
    """One row per batch size of a speed file (older files hold one batch size, no graph column)."""
    def num(v, digits=0, scale=1.0):
        return "n/a" if v is None else f"{v * scale:.{digits}f}"
    head = {"File": path.name, "Device": d["device"], "Data": d.get("data_set", "full"),
            "Backbone": f"{d['backbone']} (width {d.get('width')})"}
    if "batches" in d and not d["batches"]:  # a file of seed-parallel groups only (seed_parallel_table)
        return []
    batches = d.get("batches") or [{**d, "best_over_dataloader": d.get("native_over_dataloader"),
                                    "best_over_avalanche": d.get("native_over_avalanche")}]
    rows = []
    for b in batches:
        rows.append({**head, "Batch": str(b["batch_size"]), "Ours eager img/s": num(b.get("native_images_per_s")),
                     "Ours CUDA graph img/s": num(b.get("native_graph_images_per_s")),
                     "DataLoader img/s": num(b.get("dataloader_images_per_s")),
                     "Avalanche img/s": num(b.get("avalanche_images_per_s")),
                     "Best ours / DataLoader": num(b.get("best_over_dataloader"), 2),
                     "Best ours / Avalanche": num(b.get("best_over_avalanche"), 2),
                     "TFLOP/s": num(b.get("achieved_tflops"), 1),
                     "% of bf16 peak": num(b.get("fraction_of_bf16_peak"), 1, 100.0)})
    for n, rate in (d.get("parallel_images_per_s") or {}).items():
        rows.append({**head, "Batch": f"{d['parallel_batch_size']}, {n} runs at once",
                     "Ours CUDA graph img/s": f"{rate:.0f} (sum)", **{k: "" for k in (
                         "Ours eager img/s", "DataLoader img/s", "Avalanche img/s", "Best ours / DataLoader",
                         "Best ours / Avalanche")},
                     "TFLOP/s": num(rate * d["train_flops_per_image"] / 1e12, 1) if d.get("train_flops_per_image") else "n/a",
                     "% of bf16 peak": num(rate * d["train_flops_per_image"] / 1e12 / d["bf16_peak_tflops"], 1, 100.0)
                     if d.get("bf16_peak_tflops") else "n/a"})
    return rows


def speed_table(out: pathlib.Path) -> str | None:
    """The ``bench.py speed`` results found in ``out`` (speed.json, speed-*.json) as one Markdown table."""
    import json
    rows = []
    for path in sorted(out.glob("speed*.json")):
        try:
            rows += speed_rows(path, json.loads(path.read_text()))
        except ValueError as exc:
            raise UserError(f"corrupt speed file {path}; rerun python bench.py speed") from exc
    if not rows:
        return None
    return ("Training throughput, `python bench.py speed` (same backbone, batch size and images for every loop; "
            "ours (eager, and replayed from a CUDA graph) and the DataLoader loop use bf16 autocast + channels_last "
            "on CUDA, Avalanche its default fp32 loop; Adam). TFLOP/s and % of the dense bf16 peak count "
            "the training FLOPs of our fastest loop. Data: training images of the CIFAR-10 set named in the Data "
            "column (files without it predate the mini set and used the full set).\n\n"
            f"{pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)}\n")


def seed_parallel_table(out: pathlib.Path) -> str | None:
    """``bench.py speed --seed-parallel`` results in ``out``'s speed files: each group size against
    K separate runs one after another, as one Markdown table."""
    import json
    rows = []
    for path in sorted(out.glob("speed*.json")):
        d = json.loads(path.read_text())
        for block in d.get("seed_parallel") or []:
            for g in block["groups"]:
                rows.append({"File": path.name, "Device": d["device"], "Data": d.get("data_set", "full"),
                             "Backbone": f"{block['backbone']} (width {block['width']})",
                             "Batch per model": str(block["batch_size"]), "K": str(g["k"]),
                             "One run img/s": f"{block['one_run_images_per_s']:.0f}",
                             "Group img/s (sum)": f"{g['images_per_s']:.0f}",
                             "Per model img/s": f"{g['images_per_s_per_model']:.0f}",
                             "Group / K separate runs": f"{g['over_separate_runs']:.2f}"})
    if not rows:
        return None
    return ("Seed-parallel groups (`python bench.py speed --seed-parallel K ...`, nlbench.training.group): K models of "
            "seeds 0..K-1 trained stacked in one process (strategy adam, eager), against K separate runs one "
            "after another, whose images/s in sum is one run's (on CUDA that run replays a CUDA graph). A ratio "
            "below 1 means separate runs are faster there.\n\n"
            f"{pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)}\n")


def write_readme(out: pathlib.Path, df: pd.DataFrame, written, runs_folders: list[str], committed: bool) -> None:
    runs = df.drop_duplicates("path")
    runs_folder = " ".join(runs_folders)
    origin = ("The records (in `runs/PROFILE/DATA/SCENARIO/RUN/seedK.json`: data `full` is the CIFAR-10 copy, "
              "`mini` the embedded subset) were produced by the commands in `results/reproduce.sh`, one per record "
              "set: CPU for the quick, retention and online profiles; one GPU for gpu-short, der and converge (job "
              "logs in `gpu-logs/`); `cuda/` holds the CUDA runs of a protocol whose CPU runs are in `runs/` "
              "(their tables end in `-cuda`). When and from which commit each set was made is "
              "in the history of the commits "
              "that added it (`git log --stat -- results/runs/PROFILE`); each record names its own commit. "
              "`speed.json` comes from `python bench.py speed` on the CPU, `speed-h100.json` and `speed-h200.json` "
              "from `scripts/gpu_suite.sh` on one H100 / H200. Do not edit these files by hand.") if committed else (
              f"The records are your runs in `{runs_folder}` ({len(runs)} records; strategies "
              f"{', '.join(sorted(runs['run'].unique()))}); the provenance table below says where each group ran.")
    lines = ["# Results", "", "Everything in this folder is regenerated from the run records by", "",
             f"    python bench.py report --runs {runs_folder} --out {out}", "", origin, "",
             "| file | what it is |", "|---|---|"]
    lines += [f"| `{f}` | {w} |" for f, w in written]
    lines += ["", "## What the columns measure", "", "A column names its setting (class-IL, task-IL, domain-IL, "
              "standard) and its metric: acc / Accuracy / Test acc = `avg_acc`, forgetting, learning acc, FWT. "
              "Accuracies in %, differences in percentage points."]
    lines += [f"- `{metric}`: {meaning}." for metric, meaning in MEANINGS.items()]
    lines += ["- `n`: seeds with a complete run; cells are mean ± sample std [" + METHOD + "].",
              "- `vs-control-*` tables, `Δ ...`: the strategy's value minus its control's, " + PAIRED_METHOD +
              f"; {EXPLORATORY}; `pairs`: seeds both have.",
              "- `family-*` tables: a campaign's declared primary comparisons: raw 95% interval, paired t p, "
              "Holm-adjusted p within the family (bold only where it is below 0.05), paired TOST at the declared "
              "margin, and the verdict (higher / lower / equivalent within ±m / inconclusive with the pairs the "
              "margin needs).",
              "- `Probe ...` columns (setting `probe`): the linear probes' accuracy matrix (a logistic regression per "
              "task on the frozen penultimate features, fit on held-out training images of the task, scored on its "
              "test images; Davari et al., CVPR 2022): representation retention; see docs/verdict.md.",
              "- `(floor)`: a class-IL old-task accuracy below 1 point in every seed; `(floor: plasticity)` beside that "
              "row's class-IL forgetting (it equals the old tasks' learning accuracy there).",
              "- `class-order*`, `SS share`: share of the (class order x seed) grid's sum of squares explained by "
              "the class-order means, the seed means, and the rest.",
              "- `runtime*`: wall-clock seconds of a run (training and every evaluation)."]
    lines += ["", "## Provenance", "", "| scenario | profile | data | runs | device | git commit of the records |",
              "|---|---|---|---|---|---|"]
    for (scenario, profile, data_set), g in runs.groupby(["scenario", "profile", "data_set"]):
        lines.append(f"| {scenario} | {profile} | {data_set} | {len(g)} | {', '.join(sorted(g['device'].unique()))} | "
                     f"{', '.join(sorted(g['commit'].unique()))} |")
    lines += ["", "Data: " + "; ".join(sorted(runs["data_source"].unique())) + ".", ""]
    atomic_write_text(out / "README.md", "\n".join(lines))


HEADLINE = "family-verdict-split"  # the README's one table; every other one is in docs/results.md
RESULTS_PAGE_TABLES = (
    "family-verdict-split", "functioning-verdict-split", "family-verdict-permuted", "functioning-verdict-permuted",
    "campaign-verdict-split", "vs-control-campaign-verdict-split",
    "campaign-verdict-permuted", "vs-control-campaign-verdict-permuted", "replication-mir-online",
    "campaign-mir-online", "vs-control-campaign-mir-online", "replication-mir-online-cuda", "campaign-mir-online-cuda",
    "vs-control-campaign-mir-online-cuda", "devices-mir-online", "replication-der-table2", "campaign-der-table2",
    "campaign-avalanche-parity", "vs-control-campaign-avalanche-parity", "campaign-cifar10-converge", "split-cifar",
    "vs-control-split-cifar", "nested-study", "tuned-study", "permuted-cifar",
    "vs-control-permuted-cifar", "cifar10-standard", "vs-control-cifar10-standard", "ablations", "class-order",
    "split-cifar-gpu-short", "cifar10-standard-gpu-short", "split-cifar-mini", "runtime-mini")


def update_project_readme(tables, found: list[str]) -> None:
    """Refresh the generated parts of the project's documents: in README.md (between its markers)
    the findings (the declared families' verdicts) and the headline table; docs/results.md whole."""
    root = ROOT
    readme = root / "README.md"
    if readme.exists():
        text = readme.read_text()
        new = replace_block(text, "findings", "\n".join(
            ["Generated by `python bench.py report` from the declared families (campaign YAML `family`); the only "
             "claims this README makes. Each line: row vs `control` (what the control is), measure, paired mean "
             "difference [95% t interval] over the declared seeds, Holm-adjusted p of the paired t and of the exact "
             "sign-flip test within the family (a verdict needs both), pairs: verdict; in brackets the same "
             "comparison's Δ forgetting (co-primary) and Δ old tasks' learning accuracy (descriptive), and for a "
             "displacement-matched control its measured displacement ratio per level. A comparison whose rows fail "
             "the family's functioning check is listed outside it. The verdicts as figures: "
             + ", ".join(f"[{f.stem}](docs/figures/{f.name})" for f in sorted((root / "docs" / "figures").glob("forest-*.png")))
             + " (docs/verdict.md says how to read them).", *found]))
        if HEADLINE in tables:
            table, cap, _ = tables[HEADLINE]
            new = replace_block(new, "results", to_markdown(table, cap))
        if new != text:
            atomic_write_text(readme, new)
    parts = ["# Results", "", "Generated by `python bench.py report` from the records in `results/runs` and `results/cuda` (their "
             "provenance: `results/README.md`); do not edit by hand. Figures: `results/figures/`."]
    for name in RESULTS_PAGE_TABLES:
        if name in tables:
            table, cap, _ = tables[name]
            parts += ["", f"## {name}", ""]
            figure = root / "docs" / "figures" / f"forest-{name.removeprefix('family-')}.png"
            if name.startswith("family-") and figure.exists():
                parts += [f"![The family {name} as a forest plot](figures/{figure.name})", ""]
            parts += [to_markdown(table, cap).rstrip("\n") + published_block(name)]
    if "speed" in tables:
        parts += ["", "## speed", "", tables["speed"].rstrip("\n")]
    for name in ("speed-seed-parallel", "tuning"):  # Markdown made whole, not (table, caption)
        if name in tables:
            parts += ["", f"## {name}", "", tables[name].rstrip("\n")]
    page = root / "docs" / "results.md"
    text = "\n".join(parts) + "\n"
    if not page.exists() or page.read_text() != text:
        atomic_write_text(page, text)


def replace_block(text: str, name: str, block: str) -> str:
    """``text`` with what lies between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` replaced."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        return text
    return text[: text.index(start) + len(start)] + "\n" + block + "\n" + text[text.index(end):]
