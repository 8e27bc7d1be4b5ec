"""Campaign YAML files (scenarios/campaigns/NAME.yaml): finding, reading and checking them, and the run
name of a row. The scheduler (nlbench.launchers.campaign) and the report (nlbench.reporting.report, nlbench.reporting.replication)
both read campaigns; this module lets the report do so without importing the scheduler."""
from __future__ import annotations

import json
import pathlib

from nlbench.training import config as C
from nlbench.errors import UserError

CAMPAIGN_DIR = C.SCENARIO_DIR / "campaigns"


def campaign_names() -> list[str]:
    return sorted(p.stem for p in CAMPAIGN_DIR.glob("*.yaml"))


def load_campaign(name: str) -> dict:
    path = pathlib.Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        if name not in campaign_names():
            raise UserError(f"unknown campaign '{name}'; valid: {', '.join(campaign_names())} (or a path to a .yaml file)")
        path = CAMPAIGN_DIR / f"{name}.yaml"
    spec = C.read_yaml(path)
    for key in ("scenario", "profile", "seeds", "runs"):
        if key not in spec:
            raise UserError(f"campaign {path} lacks the key '{key}'")
    for row in spec["runs"]:
        if not isinstance(row, dict) or "label" not in row or "strategy" not in row:
            raise UserError(f"campaign {path}: every run needs a label and a strategy, got {row!r}")
    spec["name"] = path.stem
    return spec


def row_sets(spec: dict, row: dict, extra: list[str] = ()) -> list[str]:
    """A row's KEY=VALUE overrides: the campaign's, then the row's, then the command line's."""
    merged = {**(spec.get("set") or {}), **(row.get("set") or {}), **dict(s.split("=", 1) for s in extra)}
    return [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in merged.items()]


def row_run_name(spec: dict, row: dict) -> str:
    """The run name (records folder) of a campaign row, without command-line overrides."""
    return C.run_name(row["strategy"], C.parse_sets(row_sets(spec, row)))
