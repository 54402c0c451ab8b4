"""The import graph: imports flow one way, as docs/architecture.md says, with no cycle.

Each module's imports of autoaccel (at any depth in the module, except under
``if TYPE_CHECKING:``, which only annotations read) go to its own part or a lower layer."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "autoaccel"

# Bottom to top; a part imports only its own part or parts of lower layers.
LAYERS: list[set[str]] = [
    {"_version", "errors", "states", "atomic", "redact"},
    {"config", "probe", "budget"},
    {"process", "progress", "schedule", "curves", "export", "reference"},
    {"measure", "scoring"},
    {"runtime"},  # runtime.data, runtime.run
    {"trials"},
    {"runtime.prepare"},  # hands a tuner's trial to trials.session
    {"search"},
    {"confirm", "record"},  # record reads the study's storage (search) when it is asked
    {"time_to_loss"},
    {"advice"},
    {"pipeline"},
    {"frontends"},
    {"report"},
    {"cli", "__init__"},
]


def part(module: str) -> str:
    """The part of the package a module belongs to: its first name below autoaccel
    (runtime.prepare on its own)."""
    names = module.split(".")[1:]
    if names[:2] == ["runtime", "prepare"]:
        return "runtime.prepare"
    return names[0] if names else "__init__"


def layer(name: str) -> int:
    for i, parts in enumerate(LAYERS):
        if name in parts:
            return i
    raise AssertionError(f"{name} is in no layer of tests/test_imports.py: place it there")


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(tree: ast.AST) -> list[str]:
    found: list[str] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        found.extend(imports_of(node))
    return [m for m in found if m == "autoaccel" or m.startswith("autoaccel.")]


def edges() -> list[tuple[str, str, str]]:
    """(module, its part, the imported part) for every import across parts."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("autoaccel", *path.relative_to(PACKAGE).with_suffix("").parts))
        module = module.removesuffix(".__init__")
        for imported in imports_of(ast.parse(path.read_text())):
            if part(module) != part(imported):
                found.append((module, part(module), part(imported)))
    return found


def test_imports_flow_one_way() -> None:
    upward = [f"{m} imports {b}" for m, a, b in edges() if layer(b) >= layer(a)]
    assert upward == []


def test_the_layers_name_every_part_of_the_package() -> None:
    parts = {
        part(".".join(("autoaccel", *p.relative_to(PACKAGE).parts))) for p in PACKAGE.iterdir()
    }
    parts = {p.removesuffix(".py") for p in parts if not p.startswith("__pycache__")}
    for name in parts:
        layer(name)
