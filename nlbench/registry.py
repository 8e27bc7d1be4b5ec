"""Registries of scenario builders, backbones and strategies: plain tables and the decorators that
fill them. A leaf module: it imports nothing of the suite but its errors, and registers nothing
itself (``nlbench.plugins`` loads the modules that register).

A strategy is registered with ``@register_strategy("name")`` on a small class. Its entry carries
what the report needs to show it: a label, the group of rows it belongs to in a table, and its
place in that group; each comes from the ``register_strategy`` arguments, else from the class's
attributes of the same name (``nlbench.Strategy`` has defaults, so a plugin needs none).
"""
from __future__ import annotations

import pathlib
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from nlbench.errors import UserError

# The project root: the one place that computes it. In a checkout (or an editable install) it holds
# bench.py, baselines/ and scenarios/; a non-editable install (pip install .) ships those two folders
# inside the package instead (pyproject.toml: nlbench._shipped_baselines, nlbench._shipped_scenarios).
ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = pathlib.Path(__file__).resolve().parent
IN_CHECKOUT = (ROOT / "bench.py").is_file()
# The command line, for child processes (campaign runs, --jobs shards, tuning workers).
BENCH = [sys.executable, str(ROOT / "bench.py")] if IN_CHECKOUT else [sys.executable, "-m", "nlbench"]


def shipped(folder: str) -> pathlib.Path:
    """The suite's own ``baselines`` or ``scenarios`` folder: the checkout's, else the installed copy."""
    return ROOT / folder if IN_CHECKOUT else PACKAGE / f"_shipped_{folder}"
AVALANCHE_PREFIX = "avalanche:"  # avalanche:NAME: Avalanche's strategy NAME, through nlbench.bridges.avalanche
# Table sections, in the order tables list them; a strategy names one as its ``group``.
GROUPS = ("baseline", "nested", "plugin", "avalanche", "upper bound")


@dataclass
class Entry:
    name: str
    obj: Any
    description: str
    defaults: dict = field(default_factory=dict)
    label: str = ""          # how tables and figures name it (default: the registered name)
    group: str = "plugin"    # one of GROUPS
    order: int = 100         # place within the group (ties: by name)
    standard_label: str = ""  # its name in the standard (one-task) comparison (default: label)


STRATEGIES: dict[str, Entry] = {}
BACKBONES: dict[str, Entry] = {}
BUILDERS: dict[str, Entry] = {}


def _first_line(obj) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def register_strategy(name: str, description: str | None = None, *, label: str | None = None,
                      group: str | None = None, order: int | None = None, standard_label: str | None = None,
                      **default_overrides):
    """Class decorator: register a strategy under ``name``.

    The class declares ``defaults`` (a dict of its hyperparameters); ``default_overrides`` lets a
    file register a named preset of an existing class (e.g. the blog recipe of ``nested``), and
    ``label``, ``group``, ``order`` and ``standard_label`` give that preset its own place in tables.
    """
    def wrap(cls):
        def pick(value, attr, default):
            return value if value is not None else (getattr(cls, attr, None) or default)
        chosen_group = pick(group, "group", "plugin")
        if chosen_group not in GROUPS:
            raise UserError(f"strategy '{name}': group must be one of {', '.join(GROUPS)}, got {chosen_group!r}")
        chosen_label = pick(label, "label", name)
        taken = STRATEGIES.get(name)  # a built-in name is not a plugin's to replace
        if taken is not None and _defined_in(taken.obj).startswith(str(ROOT) + "/") and \
                _defined_in(taken.obj) != _defined_in(cls):
            raise UserError(f"strategy name '{name}' is already registered by {_defined_in(taken.obj)}; register "
                            f"yours ({_defined_in(cls)}) under another name")
        STRATEGIES[name] = Entry(name, cls, description or _first_line(cls),
                                 {**getattr(cls, "defaults", {}), **default_overrides}, chosen_label, chosen_group,
                                 pick(order, "order", 100), pick(standard_label, "standard_label", chosen_label))
        return cls
    return wrap


def _defined_in(cls) -> str:
    """The file that defines a class (a plugin re-registering its own names is no clash), read from
    its methods' code: a file loaded by path under another module name is still the same file."""
    for value in vars(cls).values():
        code = getattr(value, "__code__", None) or getattr(getattr(value, "__func__", None), "__code__", None)
        if code is not None:
            return str(pathlib.Path(code.co_filename).resolve())
    return f"{cls.__module__}.{cls.__qualname__}"


def register_backbone(name: str):
    def wrap(fn: Callable):
        BACKBONES[name] = Entry(name, fn, _first_line(fn))
        return fn
    return wrap


def register_builder(name: str):
    def wrap(fn: Callable):
        BUILDERS[name] = Entry(name, fn, _first_line(fn))
        return fn
    return wrap


def lookup(table: dict[str, Entry], kind: str, name: str) -> Entry:
    """The entry named ``name``; a one-line error listing the valid names otherwise."""
    if name not in table:
        raise UserError(f"unknown {kind} '{name}'; valid: {', '.join(sorted(table))}")
    return table[name]


def base_name(run: str) -> str:
    """The strategy a run name belongs to: ``nested@periods=1`` -> ``nested``."""
    return run.split("@", 1)[0]


def label_of(run: str) -> str:
    """A run's label in tables and figures: its strategy's label for a plain run, else the run name
    (runs with overrides are named by them; strategies not loaded now, by their name)."""
    base, tuned, protocol = run.partition("@tuned=")  # a plain strategy run with bench.py tune's values
    if tuned and base in STRATEGIES:
        return f"{STRATEGIES[base].label}, tuned ({protocol})"
    entry = STRATEGIES.get(run)
    return entry.label if entry else run


def standard_label_of(run: str) -> str:
    """A run's row name in the one-task comparison: e.g. 'Standard (adam)', 'Nested (nested)'."""
    entry = STRATEGIES.get(run)
    return f"{entry.standard_label} ({run})" if entry else run


def _sort_key(run: str) -> tuple:
    base = base_name(run)
    entry = STRATEGIES.get(base)
    if entry is not None:
        group, order = entry.group, entry.order
    else:  # a record of a strategy not loaded now (a plugin, an Avalanche strategy)
        group, order = ("avalanche" if base.startswith("avalanche:") else "plugin"), 100
    return GROUPS.index(group), order, base, run != base, run


def ordered(runs) -> list[str]:
    """Runs in table order: by their strategy's group (GROUPS), its order and name; a strategy's
    runs with overrides right after its plain run."""
    return sorted(dict.fromkeys(runs), key=_sort_key)
