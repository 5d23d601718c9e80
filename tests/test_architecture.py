"""The import graph of src/sectow, read from the source with `ast`: every import (lazy ones inside
functions included) goes to the same layer or a lower one, and no module reaches itself again."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Lowest first; the README's "Architecture" section shows the same order.
LAYERS = [
    ("base", ("sectow.errors", "sectow.faults", "sectow.atomic", "sectow.jsonl", "sectow.timing", "sectow.paths",
              "sectow.ranks", "sectow.environment")),
    ("config", ("sectow.config",)),
    ("tracking", ("sectow.tracking",)),
    ("data", ("sectow.data",)),
    ("attacks", ("sectow.attacks",)),
    ("world", ("sectow.world",)),
    ("models", ("sectow.models",)),
    ("judges", ("sectow.judges",)),
    ("rewards and monitors", ("sectow.rewards", "sectow.monitors")),
    ("game and pool", ("sectow.game", "sectow.pool")),
    ("training", ("sectow.training",)),
    ("evaluation", ("sectow.evaluation",)),
    ("baselines", ("sectow.baselines",)),
    ("report", ("sectow.report",)),
    ("loop", ("sectow.run_folder", "sectow.tug_of_war")),
    ("ablate", ("sectow.ablate",)),
    ("red team and export", ("sectow.red_team", "sectow.export")),
    ("checks", ("sectow.preflight", "sectow.doctor")),
    ("cli", ("sectow.cli",)),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SRC.joinpath("sectow").rglob("*.py")}


def layer(module: str) -> int:
    ranked = [(len(prefix), rank) for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
              if module == prefix or module.startswith(prefix + ".")]
    assert ranked, f"{module} is in no layer of tests/test_architecture.py"
    return max(ranked)[1]


def imports(module: str) -> set[str]:
    """The sectow modules `module` imports, anywhere in its file."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in MODULES and name not in (module, "sectow")}
    return found


def test_every_module_has_a_layer():
    for module in MODULES:
        if module != "sectow":
            layer(module)


def test_imports_go_down_or_sideways():
    upward = [f"{module} ({LAYERS[layer(module)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
              for module in MODULES if module != "sectow" for target in imports(module) if layer(target) > layer(module)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {module: imports(module) for module in MODULES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                # a package importing its own submodules is how packages work; a cycle through them is not
                cycle = path[path.index(target):] + [target]
                assert all(a.startswith(b + ".") for a, b in zip(cycle[1:], cycle)), " -> ".join(cycle)
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
