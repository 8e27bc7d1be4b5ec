"""The package's shape: no import cycles (lazy imports inside functions count too), a leaf
registry, and no module that registers things as a side effect of a lookup."""
import ast
import pathlib

import nlbench

PACKAGE = pathlib.Path(nlbench.__file__).parent


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path) -> set[str]:
    """Every nlbench module a file imports, at the top or inside a function."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            for alias in node.names:  # `from . import config` imports the module nlbench.training.config
                candidate = ".".join(base + [alias.name])
                is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                found.add(candidate if is_module else ".".join(base))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nlbench"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nlbench")}
    found.discard(module_name(path))
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules, by depth-first search; None if the graph has none."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_cycle():
    edges = graph()
    assert "nlbench.reporting.report" in edges and "nlbench.reporting.figures" in edges["nlbench.reporting.report"]  # lazy imports are seen
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges))


def test_the_registry_is_a_leaf_and_lookup_registers_nothing():
    assert graph()["nlbench.registry"] <= {"nlbench.errors"}
    from nlbench.errors import UserError
    from nlbench.registry import STRATEGIES, lookup
    before = set(STRATEGIES)
    try:
        lookup(STRATEGIES, "strategy", "avalanche:Naive")
    except UserError:
        pass
    assert set(STRATEGIES) == before


# The package's layers, lowest first; a module may import its own layer and those below, never above
# (lazy imports inside functions count). Every module is placed, so a new one has to be.
LAYERS = {
    "foundation": ["errors", "registry", "training.metrics", "reporting.stats", "training.memory",
                   "nested.optimizers", "training.probe", "training.data", "training.tuned", "training.buffer",
                   "strategies", "training", "nested", "reporting", "launchers", "bridges"],
    "a run's parts": ["nlbench", "training.config", "training.models", "training.scenarios", "nested.levels",
                      "nested.cms", "training.strategy", "training.checkpoint", "training.records",
                      "reporting.layout", "reporting.specs", "training.runspec", "strategies.levelled",
                      "strategies.m3", "strategies.muon", "strategies.nested", "strategies.nested_blog",
                      "strategies.cms", "strategies.nested_cms", "training.displacement", "training.splits",
                      "training.evaluation", "training.device"],
    "training and bridges": ["training.runner", "training.group", "bridges.avalanche", "plugins"],
    "reporting": ["reporting.comparisons", "reporting.family", "reporting.dose", "reporting.figures",
                  "reporting.replication", "reporting.studies", "reporting.report"],
    "launchers": ["launchers.sweep", "launchers.campaign", "launchers.ray_launcher", "launchers.tuning",
                  "launchers.speed", "launchers.calibrate"],
    "entry points": ["cli", "__main__", "mini.draw_mini"],
}


def test_no_module_imports_from_a_layer_above_its_own():
    level = {("nlbench" if m == "nlbench" else f"nlbench.{m}"): i
             for i, members in enumerate(LAYERS.values()) for m in members}
    edges = graph()
    assert sorted(set(edges) - set(level)) == [], "place every module in LAYERS"
    upward = [f"{m} ({list(LAYERS)[level[m]]}) imports {d} ({list(LAYERS)[level[d]]})"
              for m, deps in edges.items() for d in deps if d in level and level[d] > level[m]]
    assert upward == []
    assert level["nlbench.reporting.report"] < level["nlbench.launchers.campaign"]  # the report reads campaigns, never schedules them
