"""The one module that loads what registers into ``nlbench.registry``: the library's own backbones,
scenario builders and Nested strategies, the baselines in ``baselines/`` (by path, exactly as a
user's ``--plugin`` file), installed packages' entry points (group ``nlbench.strategies``), and the
Avalanche bridge for ``avalanche:NAME`` strategies (only when such a name is asked for: importing
avalanche-lib takes seconds).
"""
from __future__ import annotations

import importlib.util
import pathlib
import sys
from importlib.metadata import entry_points

from nlbench.errors import UserError
from nlbench.registry import AVALANCHE_PREFIX, STRATEGIES, shipped

BASELINES_DIR = shipped("baselines")

_loaded = False


def load_plugin(path: str | pathlib.Path) -> None:
    """Import a Python file by path so that its ``@register_*`` decorators run."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"plugin file not found: {path}; pass an existing .py file to --plugin")
    if path.suffix != ".py":
        raise UserError(f"plugin {path} is not a Python file (.py); --plugin takes the .py file that registers "
                        "your strategy")
    module_name = f"nlbench_plugin_{path.stem.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a plugin that raises at import is the user's bug: say which file
        del sys.modules[module_name]
        raise UserError(f"plugin {path} failed to import: {type(exc).__name__}: {exc}") from exc


def load_builtins() -> None:
    """Register everything shipped with the suite, once: library modules, baselines, entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from nlbench.training import models, scenarios  # noqa: F401  (register backbones and builders)
    from nlbench.strategies import nested, cms, nested_cms, nested_blog, m3, muon  # noqa: F401
    for path in sorted(BASELINES_DIR.glob("*.py")):
        load_plugin(path)
    for ep in entry_points(group="nlbench.strategies"):
        ep.load()


def load(plugin_files=(), strategies=()) -> None:
    """Built-ins, then the given plugin files, then the Avalanche strategies among ``strategies``."""
    load_builtins()
    for path in plugin_files:
        load_plugin(path)
    for name in strategies:
        if name.startswith(AVALANCHE_PREFIX) and name not in STRATEGIES:
            from nlbench.bridges.avalanche import register  # registers avalanche:NAME, or says why it cannot
            register(name)
