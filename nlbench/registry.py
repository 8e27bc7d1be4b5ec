"""Registries of scenarios builders, backbones and strategies, and plugin loading.

A strategy is registered with ``@register_strategy("name")`` on a small class; the built-in
baselines in ``baselines/`` are loaded by path exactly as a user's ``--plugin`` file is, and an
installed package can register through the entry-point group ``nlbench.strategies``.
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from .errors import UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent
BASELINES_DIR = ROOT / "baselines"


@dataclass
class Entry:
    name: str
    obj: Any
    description: str
    defaults: dict = field(default_factory=dict)


STRATEGIES: dict[str, Entry] = {}
BACKBONES: dict[str, Entry] = {}
BUILDERS: dict[str, Entry] = {}


def _first_line(obj) -> str:
    return ((obj.__doc__ or "").strip().splitlines() or [""])[0]


def register_strategy(name: str, description: str | None = None, **default_overrides):
    """Class decorator: register a strategy under ``name``.

    The class declares ``defaults`` (a dict of its hyperparameters); ``default_overrides`` lets a
    file register a named preset of an existing class (e.g. the blog recipe of ``nested``).
    """
    def wrap(cls):
        defaults = {**getattr(cls, "defaults", {}), **default_overrides}
        STRATEGIES[name] = Entry(name, cls, description or _first_line(cls), defaults)
        return cls
    return wrap


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
    if table is STRATEGIES and name not in table and name.startswith("avalanche:"):
        from .avalanche_bridge import register  # lazy: avalanche-lib is heavy
        return register(name)
    if name not in table:
        raise UserError(f"unknown {kind} '{name}'; valid: {', '.join(sorted(table))}")
    return table[name]


def load_plugin(path: str | pathlib.Path) -> None:
    """Import a Python file by path so that its ``@register_*`` decorators run."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"plugin file not found: {path}; pass an existing .py file to --plugin")
    module_name = f"nlbench_plugin_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a plugin that raises at import is the user's bug: say which file
        del sys.modules[module_name]
        raise UserError(f"plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc


_loaded = False


def load_builtins() -> None:
    """Register everything shipped with the suite, once: library modules, baselines, entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import models, scenarios  # noqa: F401  (register backbones and builders)
    from .strategies import nested, cms, nested_cms, nested_blog  # noqa: F401
    for path in sorted(BASELINES_DIR.glob("*.py")):
        load_plugin(path)
    for ep in entry_points(group="nlbench.strategies"):
        ep.load()
