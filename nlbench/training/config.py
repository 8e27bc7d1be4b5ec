"""Config: defaults < scenario YAML (its profile section, then the profile's per-strategy overrides)
< command line. Unknown keys are errors.

The resolved config is a plain nested dict with five sections, saved whole in every run record:
``scenario`` (builder parameters), ``backbone``, ``data``, ``train`` and ``strategy``.
"""
from __future__ import annotations

import copy
import os
import pathlib

import yaml

from nlbench.errors import UserError
from nlbench.registry import BACKBONES, BUILDERS, STRATEGIES, lookup, shipped

SCENARIO_DIR = shipped("scenarios")
PROFILES = ("quick", "gpu-short")  # every scenario has these two; a scenario file may name more (e.g. der)
RENAMED_PROFILES = {"paper": "gpu-short"}  # 2026-11-26: the 2-epoch GPU profile was no paper's protocol


def default_profile(scenario: str, device_type: str) -> str:
    """Without --profile: quick on the CPU; on CUDA the scenario's ``cuda_profile`` (a published
    protocol where one exists), else gpu-short."""
    if device_type != "cuda":
        return "quick"
    return load_scenario_file(scenario).get("cuda_profile") or "gpu-short"

DEFAULTS = {
    "backbone": {"name": "cnn", "width": 32,
                 "cms": None,  # a CMS head for any strategy: its blocks' periods, slowest first, e.g. [16, 4, 1]
                 "head": "linear"},  # linear | cosine (ER-ACE's authors' distLinear: nlbench.training.models.CosineHead)
    "data": {"train_per_class": None, "test_per_class": None,
             "train_fraction": None,   # e.g. 0.95: a seeded random 95% of each class's training images (MIR)
             "probe_per_class": None,  # linear probes (nlbench.training.probe) on this many held-out images a class; null: off
             # tuning's validation stream (nlbench.launchers.tuning): this fraction of each class's training images is held
             # out and evaluated in place of the test set, which the run then never reads; null: the test set
             "validation_fraction": None,
             "tasks": None},  # [first, stop]: only these tasks of the stream (tuning's first-tasks protocol); null: all
    "train": {
        "epochs": 1, "batch_size": 32, "lr": 1e-3, "optimizer": "adam",
        "eval_batch_size": 256, "log_every": 25,
        "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,   # SGD only (Adam: weight_decay too)
        "augment": True,          # random crop (4-pixel padding) + horizontal flip
        "label_smoothing": 0.0,
        "lr_schedule": "constant",  # constant | triangle (linear 0 -> lr over warmup_epochs, then -> 0; per task)
        "warmup_epochs": 0,
        "cuda_graph": "auto",     # capture the training step in a CUDA graph: auto = on for CUDA and graph-safe strategies
        "amp": "auto",            # bf16 autocast: auto = on for CUDA, off on the CPU
        "channels_last": "auto",  # auto = on for CUDA
        "compile": False,
        "levels": None,           # multi-timescale levels for any strategy's optimizer: null | nested | nested-blog |
                                  # {preset: nested, periods: ..., grad_reduce: ..., ...} (see docs/nested-learning.md)
    },
}
HEADS = ("linear", "cosine")  # the classifier a backbone ends in (nlbench.training.models.with_head)
SECTIONS = ("scenario", "backbone", "data", "train", "strategy")


def scenario_dirs() -> list[pathlib.Path]:
    """Where scenario files are found: the suite's scenarios/, then the folders in $NLBENCH_SCENARIOS
    (os.pathsep-separated), so that a new scenario needs no edit of the suite."""
    extra = [pathlib.Path(d) for d in os.environ.get("NLBENCH_SCENARIOS", "").split(os.pathsep) if d]
    return [SCENARIO_DIR, *extra]


def scenario_files() -> dict[str, pathlib.Path]:
    """name -> YAML file; the first folder of scenario_dirs() that has a name wins."""
    found: dict[str, pathlib.Path] = {}
    for folder in scenario_dirs():
        for path in sorted(folder.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def scenario_names() -> list[str]:
    return sorted(scenario_files())


def read_yaml(path: pathlib.Path) -> dict:
    try:
        with open(path) as f:
            loaded = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"malformed YAML in {where}: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(loaded, dict):
        raise UserError(f"{path} must hold a mapping at the top level")
    return loaded


def load_scenario_file(name: str) -> dict:
    files = scenario_files()
    if name not in files:
        raise UserError(f"unknown scenario '{name}'; valid: {', '.join(sorted(files))} (more folders: "
                        "$NLBENCH_SCENARIOS)")
    spec = read_yaml(files[name])
    for key in ("builder", "params", "profiles"):
        if key not in spec:
            raise UserError(f"{files[name]} lacks the key '{key}'")
    return spec


def scenario_spec_or_none(name: str) -> dict | None:
    """The scenario's YAML if it is found now (a report may read records of scenarios it has not)."""
    return load_scenario_file(name) if name in scenario_files() else None


def merge(base: dict, override: dict, where: str) -> dict:
    """Copy of ``base`` with ``override`` applied; keys not in ``base`` are errors."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        path = f"{where}.{key}" if where else key  # command-line keys have no file prefix
        if key not in out:
            raise UserError(f"unknown config key '{path}'; valid: {', '.join(sorted(out))}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge(out[key], value, path)
        else:
            out[key] = coerce(value, out[key], path)
    return out


def coerce(value, default, key: str):
    """Check ``value`` against the type of the default it replaces."""
    if default is None or value is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
        if isinstance(default, str):  # e.g. amp: auto | true | false
            return value
        raise UserError(f"{key} must be {type(default).__name__}, got {value!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, (list, str)) and isinstance(value, (int, str, list)):
        return value  # e.g. periods=1 or powers_of_two or [16, 4, 1]: the strategy's check() decides
    if not isinstance(value, type(default)):
        raise UserError(f"{key} must be {type(default).__name__}, got {value!r}")
    return value


def parse_sets(items: list[str]) -> dict:
    """``["strategy.lam=400", "train.epochs=2"]`` -> nested dict, values parsed as YAML."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got '{item}'")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] not in SECTIONS or len(parts) < 2:
            raise UserError(f"unknown config key '{key}'; keys start with one of: {', '.join(SECTIONS)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def profile_names(scenario: str) -> list[str]:
    return list((load_scenario_file(scenario)["profiles"] or {}))


def resolve(scenario: str, strategy: str, profile: str, sets: dict) -> dict:
    """The fully resolved config of one run."""
    spec = load_scenario_file(scenario)
    if profile not in (spec["profiles"] or {}):
        raise UserError(f"scenario '{scenario}' has no profile '{profile}'; valid: {', '.join(profile_names(scenario))}")
    entry = lookup(STRATEGIES, "strategy", strategy)
    base = copy.deepcopy(DEFAULTS)
    base["scenario"] = copy.deepcopy(spec["params"] or {})
    base["strategy"] = copy.deepcopy(entry.defaults)
    prof = copy.deepcopy(spec["profiles"][profile] or {})
    per_strategy = prof.pop("strategies", None) or {}  # a protocol's own lr / strength per strategy
    cfg = merge(base, prof, scenario)
    if strategy in per_strategy:
        cfg = merge(cfg, per_strategy[strategy], f"{scenario}.{profile}.strategies.{strategy}")
    own = {k: v for k, v in sets.items() if k in SECTIONS and k != "strategy"}
    for key, value in (sets.get("strategy") or {}).items():  # a mapping is strategy.NAME.KEY=VALUE's, nothing else
        if isinstance(value, dict) and key not in STRATEGIES:
            raise UserError(f"strategy.{key}={value!r} is a mapping; a hyperparameter takes a value "
                            f"(strategy.{key}=VALUE), and strategy.NAME.KEY=VALUE sets one for strategy NAME only")
    unknown = sorted(set(strategy_overrides(sets, strategy)) - set(cfg["strategy"]))
    if unknown:
        valid = ", ".join(sorted(cfg["strategy"])) or "none"
        raise UserError(f"strategy '{strategy}' has no hyperparameter {', '.join(unknown)} (its keys: {valid}); "
                        "to set a key for some strategies of a sweep only, write strategy.NAME.KEY=VALUE")
    own["strategy"] = strategy_overrides(sets, strategy)
    cfg = merge(cfg, own, "")
    validate(cfg)
    check_scenario_params(scenario, spec["builder"], cfg["scenario"])
    lookup(BACKBONES, "backbone", cfg["backbone"]["name"])
    check = getattr(entry.obj, "check", None)
    if check:
        try:
            check(cfg["strategy"])
        except UserError:
            raise
        except Exception as exc:  # a plugin's own bug or plain raise: still one line, exit 2, named
            raise UserError(f"strategy '{strategy}' rejected its settings in check(): {type(exc).__name__}: {exc} "
                            "(raise nlbench.require / UserError there for a message of your own)") from exc
    check_observes(strategy, entry.obj)
    return cfg


MAX_SEED = 2 ** 63 - 1  # torch.manual_seed takes a signed 64-bit integer's range on every device


def check_seeds(seeds: list[int]) -> None:
    """--seeds: integers a generator takes (a negative one would also name a record seed-1.json)."""
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise UserError(f"--seeds must be integers from 0 to 2^63 - 1, got {bad[0]}")


def check_scenario_params(scenario: str, builder: str, params: dict) -> None:
    """Every scenario.* parameter must be one its builder takes (a misspelling names the valid ones)."""
    import inspect
    entry = BUILDERS.get(builder)
    if entry is None:
        return  # an unknown builder is reported where the scenario is built, with the valid names
    accepted = [n for n in inspect.signature(entry.obj).parameters if n not in ("data", "seed")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UserError(f"scenario '{scenario}' has no parameter {', '.join(unknown)} (builder {builder} takes: "
                        f"{', '.join(accepted)}); check the YAML's params and --set scenario.*")


def check_observes(name: str, cls) -> None:
    """A strategy must train: ``observe`` (or, with ``own_loop``, ``train_task``) of its own."""
    from nlbench.training.strategy import Strategy  # torch: only when resolving a run
    if not issubclass(cls, Strategy):
        return
    own = cls.train_task is not Strategy.train_task if cls.own_loop else cls.observe is not Strategy.observe
    if not own:
        raise UserError(f"strategy '{name}' ({cls.__name__}) defines no {'train_task' if cls.own_loop else 'observe'}"
                        "; a strategy's observe(batch) does the whole update and returns the detached loss")


def _positive(value, key: str, kind=int, allow_none=False):
    if value is None and allow_none:
        return
    if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
        raise UserError(f"{key} must be a positive {kind.__name__}, got {value!r}")


def validate(cfg: dict) -> None:
    order = cfg["scenario"].get("class_order_seed")
    if order is not None and (not isinstance(order, int) or isinstance(order, bool) or not 0 <= order <= MAX_SEED):
        raise UserError(f"scenario.class_order_seed must be null or an integer from 0 to 2^63 - 1 (as --seeds), "
                        f"got {order!r}")
    t = cfg["train"]
    _positive(t["epochs"], "train.epochs")
    _positive(t["batch_size"], "train.batch_size")
    _positive(t["eval_batch_size"], "train.eval_batch_size")
    _positive(t["log_every"], "train.log_every")
    _positive(t["lr"], "train.lr", float)
    if t["optimizer"] not in ("adam", "sgd"):
        raise UserError(f"train.optimizer must be adam or sgd, got {t['optimizer']!r}")
    if t["lr_schedule"] not in ("constant", "triangle"):
        raise UserError(f"train.lr_schedule must be constant or triangle, got {t['lr_schedule']!r}")
    if not isinstance(t["warmup_epochs"], int) or not 0 <= t["warmup_epochs"] <= t["epochs"]:
        raise UserError(f"train.warmup_epochs must be an integer from 0 to train.epochs, got {t['warmup_epochs']!r}")
    for key in ("momentum", "weight_decay", "label_smoothing"):
        if not isinstance(t[key], (int, float)) or isinstance(t[key], bool) or not 0 <= t[key] < 1:
            raise UserError(f"train.{key} must be a number in [0, 1), got {t[key]!r}")
    for key in ("nesterov", "augment"):
        if not isinstance(t[key], bool):
            raise UserError(f"train.{key} must be true or false, got {t[key]!r}")
    if t["nesterov"] and t["momentum"] == 0:
        raise UserError("train.nesterov needs train.momentum > 0")
    for key in ("amp", "channels_last", "cuda_graph"):
        if t[key] not in ("auto", True, False):
            raise UserError(f"train.{key} must be auto, true or false, got {t[key]!r}")
    from nlbench.nested.levels import level_spec  # heavy (torch): only when validating a run's config
    level_spec(t["levels"])
    _positive(cfg["backbone"]["width"], "backbone.width")
    if cfg["backbone"]["head"] not in HEADS:
        raise UserError(f"backbone.head must be one of {', '.join(HEADS)}, got {cfg['backbone']['head']!r}")
    if cfg["backbone"]["cms"] is not None:
        from nlbench.nested.cms import check_cms_periods
        check_cms_periods(cfg["backbone"]["cms"], "backbone.cms")
    for key in ("train_per_class", "test_per_class", "probe_per_class"):
        _positive(cfg["data"][key], f"data.{key}", allow_none=True)
    frac = cfg["data"]["train_fraction"]
    if frac is not None and (not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 < frac <= 1):
        raise UserError(f"data.train_fraction must be null or a number in (0, 1], got {frac!r}")
    frac = cfg["data"]["validation_fraction"]
    if frac is not None and (not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 < frac < 1):
        raise UserError(f"data.validation_fraction must be null or a number in (0, 1), got {frac!r}")
    span = cfg["data"]["tasks"]
    if span is not None and not (isinstance(span, list) and len(span) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in span) and 0 <= span[0] < span[1]):
        raise UserError(f"data.tasks must be null or [first, stop] with 0 <= first < stop (e.g. [0, 2]: the first "
                        f"two tasks), got {span!r}")


def strategy_overrides(sets: dict, strategy: str) -> dict:
    """The strategy.* overrides that apply to ``strategy``: plain ``strategy.KEY`` ones, then its own
    ``strategy.NAME.KEY`` ones (which let one sweep give different strategies different values)."""
    given = sets.get("strategy") or {}
    plain = {k: v for k, v in given.items() if not isinstance(v, dict)}  # no hyperparameter is a mapping
    return {**plain, **(given.get(strategy) if isinstance(given.get(strategy), dict) else {})}


# Overrides outside ``strategy`` that make a different method (``replay@train.levels=nested``) or another
# stream (``adam@scenario.class_order_seed=1``: another class order) rather than another protocol: they name
# the run, so that its record never shares a folder with the plain run's.
CLASS_ORDER_KEY = "scenario.class_order_seed"
NAMING_KEYS = ("train.levels", "backbone.cms", "backbone.head", "train.optimizer", "train.lr", CLASS_ORDER_KEY)


def run_name(strategy: str, sets: dict) -> str:
    """Runs with strategy overrides (and those of NAMING_KEYS) are stored apart, named by them:
    ``nested@periods=1``, ``finetune@train.lr=0.01,train.optimizer=sgd``."""
    overrides = strategy_overrides(sets, strategy)
    design = {key: sets[key.split(".")[0]][key.split(".")[1]] for key in NAMING_KEYS
              if key.split(".")[1] in (sets.get(key.split(".")[0]) or {})}
    if not overrides and not design:
        return strategy
    parts = [f"{k}={_short(v)}" for k, v in sorted(overrides.items())]
    parts += [f"{k}={_short(v)}" for k, v in sorted(design.items())]
    return strategy + "@" + ",".join(parts)


def run_name_without(name: str, key: str) -> str:
    """The run's name without one naming key's part: ``adam@scenario.class_order_seed=1`` -> ``adam`` (the
    class-order study's table keeps the order as its own column)."""
    strategy, _, parts = name.partition("@")
    kept = [part for part in parts.split(",") if part and not part.startswith(key + "=")]
    return strategy + ("@" + ",".join(kept) if kept else "")


def _short(value) -> str:
    if isinstance(value, list):
        return "-".join(str(v) for v in value)
    if isinstance(value, dict):  # e.g. train.levels={preset: nested, periods: 1} -> (periods=1,preset=nested)
        return "(" + ",".join(f"{k}={_short(v)}" for k, v in sorted(value.items())) + ")"
    return str(value)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def identity_defaults(scenario: str, strategy: str) -> dict:
    """What a key a record predates meant: the suite's defaults, the strategy's own defaults and the
    scenario file's parameters (a new key's default is the behaviour before it existed)."""
    spec = scenario_spec_or_none(scenario) or {}
    entry = STRATEGIES.get(strategy)
    return {**DEFAULTS, "scenario": spec.get("params") or {}, "strategy": entry.defaults if entry else {}}


def identity_diff(stored: dict, asked: dict, defaults: dict | None = None) -> list[str]:
    """How a stored run's config differs from the one asked for, as 'key: stored -> asked' lines.

    A run's identity is its whole resolved config (and its data set, checked beside this): a record
    is reused only when this is empty. Keys a record predates count as their default value then
    (``defaults``: identity_defaults; the suite's DEFAULTS if not given)."""
    old, new = _flatten(stored), _flatten(asked)
    defaults = _flatten(defaults if defaults is not None else DEFAULTS)
    diff = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, defaults.get(key)), new.get(key, defaults.get(key))
        if a != b:
            diff.append(f"{key}: {a!r} -> {b!r}")
    return diff
