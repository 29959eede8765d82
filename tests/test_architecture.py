"""The package's map (docs/architecture.md) held against its code: imports run one way, downwards.

Every ``import`` of ``minibert/`` is read from the source (those inside functions too, which run late
but are dependencies all the same), resolved to the module it names, and checked:
no import cycle; no import from a folder above; layers import nothing of minibert but ``gradcheck``;
at most 12 modules at the package root.  ``minibert/__init__.py`` (the package's face, which re-exports
the public names) and ``__main__.py`` are not part of the map.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minibert"

# The floors of docs/architecture.md, bottom first.  A module may import from a lower floor, or from
# its own folder; a root module is a folder of its own.
FLOORS = {
    "gradcheck": 0,
    "layers": 1,
    "kernels": 2, "config": 2,
    "files": 3, "backend": 3,
    "models": 4, "optim": 4, "data": 4,
    "training": 5,
    "classroom": 6,
    "cli": 7,
}
FACE = {"minibert", "minibert.__main__"}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name, source, is_package, known):
    """The minibert modules that module ``name`` (whose text is ``source``) imports, anywhere in it."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "minibert"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "minibert":
                continue
            for alias in node.names:  # `from . import backend` imports the module minibert.backend
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != name}


def folder(name):
    """``minibert.models.bert`` -> ``models``; ``minibert.cli`` -> ``cli``."""
    return name.split(".")[1]


@pytest.fixture(scope="module")
def graph():
    known = modules()
    return {n: imports_of(n, p.read_text(), p.name == "__init__.py", known) for n, p in known.items()
            if n not in FACE}


def find_cycle(graph):
    """A list of modules forming a cycle, or None (depth-first search)."""
    state, stack = {}, []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m in FACE:
                continue
            if state.get(m) == "open":
                return stack[stack.index(m):] + [m]
            if m not in state:
                cycle = visit(m)
                if cycle:
                    return cycle
        state[n] = "done"
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            cycle = visit(n)
            if cycle:
                return cycle
    return None


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_sits_on_a_floor_of_the_map(graph):
    unplaced = {folder(n) for n in graph} - set(FLOORS)
    assert not unplaced, f"add {sorted(unplaced)} to docs/architecture.md's map and to FLOORS"


def test_imports_run_downwards_only(graph):
    upward = [f"{n} imports {m}" for n, targets in graph.items() for m in targets if m not in FACE
              and folder(m) != folder(n) and FLOORS[folder(m)] >= FLOORS[folder(n)]]
    assert not upward, "imports that do not run downwards: " + "; ".join(sorted(upward))


def test_layers_import_nothing_of_minibert_but_gradcheck(graph):
    extra = {n: sorted(m for m in t if folder(m) not in ("layers", "gradcheck"))
             for n, t in graph.items() if folder(n) == "layers"}
    assert not any(extra.values()), extra


def test_no_module_imports_the_package_face_or_the_cli(graph):
    offenders = sorted(n for n, t in graph.items() if ({"minibert", "minibert.cli"} & t) and n != "minibert.cli")
    assert not offenders, f"these import the package face or the CLI: {offenders}"


def test_at_most_twelve_modules_at_the_package_root():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= 12, root


def test_the_checks_see_a_cycle_and_an_upward_import():
    assert find_cycle({"minibert.a.x": {"minibert.b.y"}, "minibert.b.y": {"minibert.a.x"}})
    # a layer that imports the models inside a function is seen
    source = "def f():\n    from ..models.bert import BertModel\n    from .. import backend\n"
    found = imports_of("minibert.layers.linear", source, False, modules())
    assert found == {"minibert.models.bert", "minibert.backend"}


FLAT_LAYOUT = ["model", "heads", "tokenizer", "wordpiece", "pretraining_data", "corpus", "train", "finetune", "inference", "plots",
               "checkpoint", "pretrained", "exercises", "attention_ninja", "lessons", "demo"]


@pytest.mark.parametrize("old", FLAT_LAYOUT)
def test_the_modules_of_the_flat_layout_are_gone(old):
    """No import shim: ``minibert.train`` (the layout before the folders) is not a module any more, and the
    package adds no finder to ``sys.meta_path``."""
    import importlib
    import sys
    import minibert  # noqa: F401 (importing the package is what once installed the shim)
    assert not any(type(f).__module__.startswith("minibert") for f in sys.meta_path)
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"minibert.{old}")


MAX_LINES = 600  # a file of one idea fits in a sitting; grader.py (972 lines, five ideas) was split


def test_no_file_of_the_package_is_over_600_lines():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines (split them into modules of one idea each): {long}"


def test_the_reference_holds_no_trace_of_the_heads_rows_shortcut():
    """layers/ and models/ are BERT as transformers defines it: the loss-only fast path lives in
    kernels/heads_rows.py, and nothing of it is in the reference (the model's docstring may say where it is)."""
    words = ("rows_only", "rows_layer", "rows_attention", "RowsLayer", "RowsAttention", "LossOnly")
    found = [(str(p.relative_to(PACKAGE.parent)), w) for folder in ("layers", "models")
             for p in (PACKAGE / folder).rglob("*.py") for w in words if w in p.read_text(encoding="utf-8")]
    assert not found, found


def test_the_tests_mirror_the_package_s_folders():
    """tests/layers/ holds the tests of minibert/layers/, and so on; the root of tests/ holds what spans the
    package (the map, the docs, the book, the lessons, the CLI's errors, the backend switch)."""
    tests = PACKAGE.parent / "tests"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    mirrored = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert mirrored == folders, f"tests/ folders {sorted(mirrored)} != minibert/ folders {sorted(folders)}"
