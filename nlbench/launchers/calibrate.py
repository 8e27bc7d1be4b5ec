"""``bench.py calibrate CAMPAIGN``: the displacement-matched controls' lr factors, found by measurement.

A campaign row with ``calibrate: LABEL`` is a period-1 control of the row LABEL (its slow version):
each of its levels runs every step, at the profile's lr times a factor chosen so that, per task, the
level ends as far from where it started (net displacement, nlbench.training.displacement) as the slow
version's level does. The formula control (``budget_of``: lr / C) matches that only under a constant
gradient; under noisy Adam gradients it moves 0.3-0.7x as far (docs/verdict.md), so the factors are
measured here instead, on seeds disjoint from the campaign's evaluation seeds
(``calibration.seeds``, default 100 and 101).

For each such row: run the slow version once per calibration seed; start the control at the formula's
factors; run it; per level, the ratio control / slow of the net displacement of each task, its median
over tasks, the geometric mean over seeds; then move each factor (a level of slow period 1 keeps
factor 1) by the secant in log-log (the first move assumes displacement proportional to the lr)
until every ratio is within ``--tolerance`` of 1 or ``--iterations`` runs are spent. Every
iteration's factors and ratios are written to ``scenarios/campaigns/calibration/CAMPAIGN.yaml`` with
the command and the commit, and the campaign's planning reads the factors from there
(nlbench.reporting.specs.row_sets). The evaluation seeds' own ratios are printed by the family table.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile

import yaml

from nlbench.training import config as C
from nlbench.errors import UserError
from nlbench.reporting.specs import calibration_path, load_campaign, row_sets

DEFAULT_SEEDS = [100, 101]
MOVE_LIMIT = 8.0  # one iteration changes a factor by at most this ratio (a noisy first ratio cannot fling it)


def calibrated_rows(spec: dict) -> list[dict]:
    """The campaign's rows that take their factors from calibration, each checked against its slow row."""
    labels = {row["label"]: row for row in spec["runs"]}
    rows = []
    for row in spec["runs"]:
        target = row.get("calibrate")
        if target is None:
            continue
        if target not in labels:
            raise UserError(f"campaign {spec['name']}: row '{row['label']}' calibrates against '{target}', which is "
                            f"not one of its rows ({', '.join(labels)})")
        rows.append(row)
    return rows


def level_ratios(control: dict, slow: dict) -> dict[str, float]:
    """Per level: the median over tasks of control net / slow net (one seed's records)."""
    out = {}
    for name in slow["displacement"]["groups"]:
        ratios = [c[name]["net"] / s[name]["net"] for c, s in zip(control["displacement"]["tasks"],
                                                                  slow["displacement"]["tasks"]) if s[name]["net"] > 0]
        out[name] = statistics.median(ratios) if ratios else float("nan")
    return out


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def next_factors(factors: list[float], ratios: list[float], history: list[tuple[list[float], list[float]]],
                 frozen: list[bool]) -> list[float]:
    """Each free level's next factor: f / r at first (displacement proportional to the lr), then the
    secant through the last two points in log-log (slope clamped to [0.25, 4])."""
    out = []
    for i, (f, r) in enumerate(zip(factors, ratios)):
        if frozen[i]:
            out.append(f)
            continue
        slope = 1.0
        if len(history) >= 2:
            (f0, r0), (f1, r1) = (history[-2][0][i], history[-2][1][i]), (history[-1][0][i], history[-1][1][i])
            if f0 != f1 and r0 > 0 and r1 > 0:
                slope = min(max(math.log(r1 / r0) / math.log(f1 / f0), 0.25), 4.0)
        move = min(max(r ** (-1.0 / slope), 1 / MOVE_LIMIT), MOVE_LIMIT)
        out.append(f * move)
    return out


class Calibrator:
    """Runs a campaign's rows in process (no records kept: the calibration file holds what they measured)."""

    def __init__(self, spec: dict, device, data, seeds: list[int], say=print):
        self.spec, self.device, self.data, self.seeds, self.say = spec, device, data, seeds, say
        self.out = tempfile.mkdtemp(prefix="nlbench-calibrate-")

    def run(self, row: dict, factors: list[float] | None = None) -> list[dict]:
        from nlbench.training.runner import run
        from nlbench.training.runspec import make_spec
        records = []
        for seed in self.seeds:
            sets = C.parse_sets(row_sets(self.spec, row, factors=factors))
            spec = make_spec(self.out, self.spec["scenario"], row["strategy"], self.spec["profile"], sets, seed,
                             self.data.kind)
            record = run(spec, device=self.device, data=self.data, progress=False, log=lambda *_: None)
            if record["status"] != "complete":
                raise UserError(f"calibration: {row['label']} seed {seed} diverged ({record['diverged_at']})")
            records.append(record)
        return records

    def calibrate(self, row: dict, slow_row: dict, tolerance: float, iterations: int) -> dict:
        slow = self.run(slow_row)
        levels = slow[0]["strategy_info"]["levels"]
        names = [lv["name"] for lv in levels]
        frozen = [lv["period"] == 1 for lv in levels]  # same period in both: factor 1, its ratio reported

        def measure(factors: list[float]) -> list[float]:
            control = self.run(row, factors)
            if [lv["name"] for lv in control[0]["strategy_info"]["levels"]] != names:
                raise UserError(f"calibration: {row['label']} and {slow_row['label']} have different levels")
            per_seed = [level_ratios(c, s) for c, s in zip(control, slow)]
            ratios = [geometric_mean([r[n] for r in per_seed]) for n in names]
            self.say(f"  {row['label']}: factors " + ", ".join(f"{n} {f:.4g}" for n, f in zip(names, factors))
                     + " -> displacement ratio " + ", ".join(f"{n} {r:.3f}" for n, r in zip(names, ratios)))
            return ratios
        start = [1.0 if fz else 1.0 / lv["period"] for fz, lv in zip(frozen, levels)]  # the formula's factors
        found = search_factors(measure, start, frozen, tolerance, iterations)
        return {"match": slow_row["label"], "levels": names, **found}


def search_factors(measure, start: list[float], frozen: list[bool], tolerance: float, iterations: int) -> dict:
    """Find per-level factors whose measured ratios (``measure(factors)`` -> one ratio per level) are all
    within ``tolerance`` of 1 (frozen levels keep their factor): at most ``iterations`` measurements;
    the best one found (the smallest worst miss) and every one tried."""
    factors, history = list(start), []
    for _ in range(iterations):
        ratios = measure(factors)
        history.append((list(factors), list(ratios)))
        if worst_miss(ratios, frozen) <= tolerance:
            break
        factors = next_factors(factors, ratios, history, frozen)
    best = min(history, key=lambda h: worst_miss(h[1], frozen))
    return {"factors": [round(f, 6) for f in best[0]], "ratio": [round(r, 4) for r in best[1]],
            "within_tolerance": worst_miss(best[1], frozen) <= tolerance,
            "iterations": [{"factors": [round(f, 6) for f in f_], "ratio": [round(r, 4) for r in r_]}
                           for f_, r_ in history]}


def worst_miss(ratios: list[float], frozen: list[bool]) -> float:
    return max((abs(r - 1) for r, fz in zip(ratios, frozen) if not fz), default=0.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py calibrate", description="Find the lr factors of a campaign's "
                                "displacement-matched controls (rows with `calibrate: LABEL`) on calibration seeds.")
    p.add_argument("campaign")
    p.add_argument("--rows", nargs="+", metavar="LABEL", help="only these calibrated rows (default: all)")
    p.add_argument("--seeds", type=int, nargs="+", help="calibration seeds (default: the campaign's "
                   f"calibration.seeds, else {DEFAULT_SEEDS}); must not be among its evaluation seeds")
    p.add_argument("--tolerance", type=float, default=0.05, help="stop when every ratio is within this of 1 "
                   "(default 0.05, so that the evaluation seeds land within the family's ±10%%)")
    p.add_argument("--iterations", type=int, default=6, help="control runs per row at most (default 6)")
    p.add_argument("--data", default="full", help="full (default), mini or auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--device", default="auto")
    return p


def main(argv: list[str]) -> int:
    from nlbench.plugins import load
    args = build_parser().parse_args(argv)
    spec = load_campaign(args.campaign)
    load((), [row["strategy"] for row in spec["runs"]])  # the built-in strategies
    rows = calibrated_rows(spec)
    if args.rows:
        unknown = sorted(set(args.rows) - {r["label"] for r in rows})
        if unknown:
            raise UserError(f"campaign {spec['name']} has no calibrated row {', '.join(unknown)}; its calibrated "
                            f"rows: {', '.join(r['label'] for r in rows) or 'none'}")
        rows = [r for r in rows if r["label"] in args.rows]
    if not rows:
        raise UserError(f"campaign {spec['name']} has no row with `calibrate: LABEL`; nothing to calibrate")
    seeds = args.seeds or (spec.get("calibration") or {}).get("seeds") or DEFAULT_SEEDS
    clash = sorted(set(seeds) & set(spec["seeds"]))
    if clash:
        raise UserError(f"calibration seeds {clash} are evaluation seeds of campaign {spec['name']}; use others "
                        "(e.g. --seeds 100 101)")
    if not (0 < args.tolerance < 1) or args.iterations < 1:
        raise UserError("--tolerance must be in (0, 1) and --iterations a positive integer")
    from nlbench.training.data import select_data
    from nlbench.training.device import resolve_device
    from nlbench.training.records import versions
    device = resolve_device(args.device)
    commit = versions()["git_commit"]  # the code this process loaded: read now, not when a row is written
    data = select_data(args.data, args.data_root, not args.no_download)
    print(data.announce())
    path = calibration_path(spec)
    stored = (C.read_yaml(path) if path.exists() else {}) or {}
    labels = {row["label"]: row for row in spec["runs"]}
    calibrator = Calibrator(spec, device, data, seeds)
    for row in rows:
        print(f"calibrating {row['label']} against {row['calibrate']} on seeds {seeds}")
        found = calibrator.calibrate(row, labels[row["calibrate"]], args.tolerance, args.iterations)
        found.update({"seeds": list(seeds), "data": data.kind, "device": str(device), "commit": commit,
                      "command": "python bench.py calibrate " + " ".join(argv)})
        stored.setdefault("rows", {})[row["label"]] = found
        stored["campaign"], stored["profile"] = spec["name"], spec["profile"]
        write_calibration(path, stored)  # after each row: a stop keeps what is done
        print(f"  -> {found['factors']} (ratio {found['ratio']}); written to {path}")
    return 0


HEADER = ("# Written by `python bench.py calibrate` (nlbench.launchers.calibrate): per calibrated row, the lr\n"
          "# factors at which its net displacement per task matches its slow version's (median over tasks,\n"
          "# geometric mean over the calibration seeds), every iteration tried, and the command that wrote it.\n"
          "# Do not edit by hand: rerun the command.\n")


def write_calibration(path, data: dict) -> None:
    import os
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(HEADER + yaml.safe_dump(data, sort_keys=False, width=110, default_flow_style=None))
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
