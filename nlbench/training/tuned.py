"""What a tuned run needs from a tuning study, without Optuna: where ``bench.py tune`` wrote the
chosen values (``OUT/tuning/<study>.yaml``), the overrides and run name ``--tuned PROTOCOL`` gives a
run, and the provenance its record carries. A leaf module: the launchers (nlbench.launchers.sweep, the CLI,
campaigns) import it; nlbench.launchers.tuning (the studies themselves) builds on it."""
from __future__ import annotations

import pathlib

import yaml

from nlbench.errors import UserError


def as_sets(values: dict, strategy: str) -> dict:
    """{"train.lr": 0.01, "strategy.lam": 30} -> the nested --set form (strategy keys for this strategy)."""
    sets: dict = {}
    for key, value in values.items():
        section, *rest = key.split(".")
        node = sets.setdefault(section, {})
        if section == "strategy":
            node = node.setdefault(strategy, {})
        for part in rest[:-1]:
            node = node.setdefault(part, {})
        node[rest[-1]] = value
    return sets


def merge_sets(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge_sets(out[key], value)
            else:
                out[key] = value
    return out


def study_name(scenario: str, profile: str, data_kind: str, run_name: str, protocol: str) -> str:
    return f"{scenario}.{profile}.{data_kind}.{run_name}.{protocol}"


def tuned_file(out, scenario: str, profile: str, data_kind: str, run_name: str, protocol: str) -> pathlib.Path:
    return pathlib.Path(out) / "tuning" / f"{study_name(scenario, profile, data_kind, run_name, protocol)}.yaml"


TUNED_MARK = "tuned="


def tuned_sets(out, scenario: str, strategy: str, profile: str, data_kind: str, base_name: str,
               protocol: str) -> tuple[dict, str]:
    """``--tuned PROTOCOL``: the overrides a study chose for this run (and what the protocol adds), and
    the tuned run's name."""
    path = tuned_file(out, scenario, profile, data_kind, base_name, protocol)
    if not path.exists():
        raise UserError(f"no tuned values for {scenario}/{base_name} ({profile} profile, {data_kind} data, {protocol}) "
                        f"at {path}; run bench.py tune --scenario {scenario} --strategy {strategy} --profile {profile} "
                        f"--protocol {protocol} --out {out} first")
    doc = yaml.safe_load(path.read_text())
    sets = merge_sets(as_sets(doc["values"], strategy), doc.get("run_sets") or {})
    return sets, base_name + ("," if "@" in base_name else "@") + TUNED_MARK + protocol


def provenance(name: str, record: dict, out: pathlib.Path) -> dict | None:
    """What a tuned run's record says about its values (None for any other run)."""
    if TUNED_MARK not in name:
        return None
    base, _, protocol = name.rpartition(TUNED_MARK)
    base = base.rstrip("@,")
    path = tuned_file(out, record["scenario"], record["profile"], record["data_set"], base, protocol)
    if not path.exists():
        return {"file": str(path.relative_to(out)), "missing": True}
    doc = yaml.safe_load(path.read_text())
    kept = ("study", "protocol", "budget", "storage", "metric", "trials_finished", "best_trial", "best_value", "values")
    return {"file": str(path.relative_to(out)), **{k: doc.get(k) for k in kept}}
