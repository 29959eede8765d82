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


OLD_NAMES = {  # module of the flat layout -> names users imported from it
    "model": ["BertModel", "BertForPreTraining", "BertModelOutput", "IGNORE_INDEX", "Module"],
    "heads": ["BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering"],
    "tokenizer": ["BertTokenizer", "BasicTokenizer", "SPECIAL_TOKENS"], "wordpiece": ["train_wordpiece"],
    "pretraining_data": ["PretrainingDataset", "create_masked_lm_predictions", "IGNORE_INDEX"],
    "corpus": ["load_default_corpus", "synthetic_corpus", "read_text_corpus"],
    "train": ["PretrainConfig", "pretrain", "PRESETS", "training_step", "save_training_state", "fill_mask"],
    "finetune": ["FinetuneConfig", "finetune", "compare_starts", "resolve_model_dir", "stdlib_package_task"],
    "inference": ["fill_mask", "sentence_embeddings", "cosine_similarity", "attention_maps",
                  "next_sentence_probability", "load_pretraining_model"],
    "plots": ["plot_curves", "plot_attention"],
    "checkpoint": ["save_checkpoint", "load_checkpoint", "atomic_write_bytes"],
    "pretrained": ["save_pretrained", "read_config", "read_weights"],
    "exercises": ["EXERCISES", "make", "check", "grade", "check_gradients", "student_version"],
    "attention_ninja": ["attention_steps_forward", "attention_steps_backward"],
    "lessons": ["show"], "demo": ["main"], "optim": ["AdamW", "adamw_update", "clip_grad_norm"],
}


@pytest.mark.parametrize("old", sorted(OLD_NAMES))
def test_the_modules_of_the_flat_layout_still_import(old):
    """``from minibert.train import pretrain`` (the layout before the folders) keeps working."""
    import importlib
    module = importlib.import_module(f"minibert.{old}")
    missing = [n for n in OLD_NAMES[old] if not hasattr(module, n)]
    assert not missing, f"minibert.{old} lost {missing}"
    with pytest.raises(AttributeError, match="has no attribute"):
        module.no_such_name
