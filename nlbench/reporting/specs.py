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
    spec["folder"] = path.parent  # where its calibration lives (calibration/NAME.yaml beside it)
    return spec


def row_sets(spec: dict, row: dict, extra: list[str] = (), factors: list[float] | None = None) -> list[str]:
    """A row's KEY=VALUE overrides: the campaign's, then the row's, then the command line's. A row with
    ``calibrate: LABEL`` also gets its levels' lr factors: ``factors`` where given (the calibration's
    trials), else those stored by ``bench.py calibrate`` (UserError when there are none yet)."""
    merged = {**(spec.get("set") or {}), **(row.get("set") or {}), **dict(s.split("=", 1) for s in extra)}
    if row.get("calibrate") is not None:
        found = factors if factors is not None else calibrated_factors(spec, row)
        if isinstance(merged.get("train.levels"), dict):  # a strategy with train.levels: the factors go in there
            merged["train.levels"] = {**merged["train.levels"], "lr_factors": found}
        else:
            merged["strategy.lr_factors"] = found
    return [f"{k}={json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in merged.items()]


def calibrated_factors(spec: dict, row: dict) -> list[float]:
    """The lr factors ``bench.py calibrate`` measured for a calibrated row (scenarios/campaigns/calibration/)."""
    path = calibration_path(spec)
    found = calibration_of(spec).get(row["label"])
    if not found or not found.get("factors"):
        raise UserError(f"campaign {spec['name']}: row '{row['label']}' takes its lr factors from calibration, and "
                        f"{path.name} has none for it yet; run `python bench.py calibrate {spec['name']}` first")
    return [float(v) for v in found["factors"]]


def calibration_of(spec: dict) -> dict:
    """The campaign's stored calibration (row label -> what bench.py calibrate measured); {} if none."""
    path = calibration_path(spec)
    return ((C.read_yaml(path) if path.exists() else {}) or {}).get("rows") or {}


def calibration_path(spec: dict) -> pathlib.Path:
    return pathlib.Path(spec.get("folder") or CAMPAIGN_DIR) / "calibration" / f"{spec['name']}.yaml"


UNCALIBRATED = "uncalibrated"  # the run name's factors of a calibrated row before its calibration: matches no record


def row_run_name(spec: dict, row: dict) -> str:
    """The run name (records folder) of a campaign row, without command-line overrides."""
    try:
        return C.run_name(row["strategy"], C.parse_sets(row_sets(spec, row)))
    except UserError:
        if row.get("calibrate") is None:
            raise
        return row["strategy"] + "@lr_factors=" + UNCALIBRATED
