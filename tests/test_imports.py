"""The import graph: imports flow one way, as docs/architecture.md says, with no cycle.

Each module's imports of autoaccel (at any depth in the module, except under
``if TYPE_CHECKING:``, which only annotations read) go to its own part or a lower layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "autoaccel"

# Bottom to top; a part imports only its own part or parts of lower layers.
LAYERS: list[set[str]] = [
    {"_version", "errors", "states", "atomic", "redact"},
    {"config", "probe", "budget"},
    {"process", "progress", "schedule", "curves", "export", "launchers", "reference"},
    {"measure", "scoring"},
    {"runtime"},  # runtime.data, runtime.run
    {"trials"},
    {"runtime.prepare"},  # hands a tuner's trial to trials.session
    {"lightning", "hf"},  # the Lightning and HF Trainers: prepare()'s pieces through them
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


def test_the_tests_import_no_private_names() -> None:
    """Tests use what the package offers (``_name`` is free to change without them)."""
    tests = Path(__file__).resolve().parent
    private = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("autoaccel"):
                names = [a.name for a in node.names if a.name.startswith("_")]
                private += [f"{path.relative_to(tests)}: {node.module}.{n}" for n in names]
    assert private == []


def documented_modules() -> set[str]:
    """The modules docs/architecture.md's tree names, as paths below autoaccel/."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    tree = text.split("```")[1]
    folders: dict[int, str] = {}
    found = set()
    for line in tree.splitlines():
        indent = len(line) - len(line.lstrip())
        words = line.split()
        if not words or indent == 0:
            continue
        depth = indent // 2
        folder = "/".join(folders[d] for d in range(1, depth) if d in folders)
        if words[0].endswith("/"):
            folders = {d: f for d, f in folders.items() if d < depth}
            folders[depth] = words[0].rstrip("/")
            continue
        # "name.py   what it does", or a line of names only ("probe.py  show.py  ...")
        names = words if all(w.endswith(".py") for w in words) else words[:1]
        found |= {f"{folder}/{name}".lstrip("/") for name in names if name.endswith(".py")}
    return found


def test_the_architecture_doc_lists_every_module() -> None:
    modules = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py" or p.parent == PACKAGE or p.parent.name == "cli"
    }
    assert sorted(modules - documented_modules()) == []


def test_the_core_never_imports_lightning_or_transformers() -> None:
    """Lightning and transformers are optional extras: importing autoaccel, its CLI and
    every module but ``autoaccel.lightning`` and ``autoaccel.hf`` leaves them unloaded."""
    modules = [
        ".".join(("autoaccel", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.name != "__main__.py"
    ]
    core = [m for m in modules if m.split(".")[1:2] not in (["lightning"], ["hf"])]
    code = (
        "import importlib, sys\n"
        f"for m in {core!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'transformers')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
