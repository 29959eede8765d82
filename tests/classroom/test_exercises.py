"""The classroom exercises: the markers in the library's layers, the student copy, the grader.

* the exercise sources are ``minibert/layers/*.py`` themselves (plus ``minibert/classroom/attention_ninja.py``):
  each carries well-formed markers, and neither the markers nor the student copy break an import;
* the reference solutions pass every check; the generated student copy fails every check;
* planted bugs (a missing transpose, a mean instead of a sum, a forgotten accumulation, ...) are each
  caught, and the wrong gradient is named;
* the backprop-ninja steps compose to the library's attention, and every intermediate gradient equals
  PyTorch autograd's (float64).
"""
import ast
import importlib
import json
import math
import re

import numpy as np
import pytest

from minibert.classroom import exercises as X
from minibert.classroom import grader as G
from minibert import layers as L
from minibert.cli import main as cli_main
from minibert.layers.softmax import attention_mask_to_additive

NAMES = list(X.EXERCISES)
REQUIRED = {"linear", "softmax", "layernorm", "gelu", "attention", "cross_entropy", "embedding",
            "attention_ninja", "encoder_layer"}


def src(name):
    """The module holding exercise ``name``'s solutions: ``minibert.layers.NAME`` or the ninja."""
    return importlib.import_module(X.EXERCISES[name].module)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("students") / "alice"
    X.make(d)
    return d


# ---- markers and the student copy -----------------------------------------------------------------

def test_the_required_exercises_exist():
    assert REQUIRED <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_sources_are_the_library_files_and_the_markers_are_only_comments(name, tmp_path):
    path = X.source_path(name)
    want = {"attention_ninja": "classroom/attention_ninja.py", "masking": "data/pretraining.py"}.get(
        name, f"layers/{name}.py")
    assert path.as_posix().endswith(f"minibert/{want}") and path.is_file()
    text = path.read_text()
    kinds = {r.kind for r in X.parse_regions(text, name)}
    assert kinds == {"solution", "hidden"}, kinds
    # without its marker lines the file is the same program: the markers and TODOs are comments
    markers = (X.BEGIN_SOLUTION, X.END_SOLUTION, X.BEGIN_HIDDEN, X.END_HIDDEN)
    stripped = "\n".join(l for l in text.splitlines() if l.strip() not in markers)
    assert ast.dump(ast.parse(stripped)) == ast.dump(ast.parse(text))
    # the standalone source and the student copy both import outside the package, and define the
    # same functions as the library module
    module = src(name)
    library = {n for n, v in vars(module).items() if callable(v) and getattr(v, "__module__", "") == module.__name__}
    for kind, copy in (("source", X.source_text(name)), ("student", X.student_version(X.source_text(name)))):
        (tmp_path / f"{kind}_{name}.py").write_text(copy)
        copied = G.load_module(tmp_path / f"{kind}_{name}.py", f"{kind}_{name}")
        assert library <= set(vars(copied)), (kind, library - set(vars(copied)))


def test_the_copies_import_the_other_layers_from_the_library(student_dir):
    for name in NAMES:
        text = (student_dir / f"{name}.py").read_text()
        assert not re.search(r"^\s*from\s+\.", text, re.M), name  # no relative import left
    attention = (student_dir / "attention.py").read_text()
    assert "from minibert.layers.softmax import softmax_backward, softmax_forward" in attention
    assert "from scipy.special import erf" in (student_dir / "gelu.py").read_text()
    module = G.load_module(student_dir / "attention.py", "attention")
    assert module.softmax_backward is L.softmax_backward and module.linear_backward is L.linear_backward


@pytest.mark.parametrize("name", NAMES)
def test_markers_are_nbgrader_markers_alone_on_their_line_with_a_todo_above(name):
    text = X.source_path(name).read_text()
    regions = X.parse_regions(text, name)
    kinds = [r.kind for r in regions]
    assert "solution" in kinds and "hidden" in kinds, kinds
    lines = text.splitlines()
    for r in regions:
        assert lines[r.begin].strip() in (X.BEGIN_SOLUTION, X.BEGIN_HIDDEN)
        assert lines[r.end].strip() in (X.END_SOLUTION, X.END_HIDDEN)
        if r.kind == "solution":
            assert r.todo and r.function != "<module>", (name, r)
    for i, line in enumerate(lines):  # any marker-looking line is exactly a marker (nbgrader strips, compares)
        if "### BEGIN" in line or "### END" in line:
            assert line.strip() in (X.BEGIN_SOLUTION, X.END_SOLUTION, X.BEGIN_HIDDEN, X.END_HIDDEN), (name, i)


@pytest.mark.parametrize("bad, message", [
    ("    x = 1  ### BEGIN SOLUTION\n", "alone on its line"),
    ("    # TODO: x\n    ### BEGIN SOLUTION\n    x = 1\n", "never closed"),
    ("    ### BEGIN SOLUTION\n    x = 1\n    ### END SOLUTION\n", "TODO"),
    ("    # TODO: x\n    ### BEGIN SOLUTION\n    ### BEGIN HIDDEN TESTS\n", "cannot nest"),
    ("    ### END HIDDEN TESTS\n", "without a matching BEGIN"),
])
def test_malformed_markers_are_refused_with_the_line(bad, message):
    with pytest.raises(ValueError, match=message):
        X.parse_regions("def f():\n" + bad, "f.py")


def test_student_copy_keeps_todos_and_hints_and_removes_solutions_and_hidden_tests(student_dir):
    for name in NAMES:
        ref = X.source_text(name)
        text = (student_dir / f"{name}.py").read_text()
        ast.parse(text)  # valid Python
        for marker in (X.BEGIN_SOLUTION, X.END_SOLUTION, X.BEGIN_HIDDEN, X.END_HIDDEN):
            assert marker not in text
        regions = X.parse_regions(ref, name)
        n_solutions = sum(r.kind == "solution" for r in regions)
        assert sum(l.strip().startswith("raise NotImplementedError(") for l in text.splitlines()) == n_solutions
        for r in regions:  # the solution and hidden lines are gone, the TODO and hints stay
            body = ref.splitlines()[r.begin + 1:r.end]
            for line in body:
                if line.strip() and not line.strip().startswith("#") and ref.count(line) == 1:
                    assert line not in text, (name, line)
            if r.kind == "solution":
                assert f"TODO ({r.function}): {r.todo}" in text
        todo_lines = [l for l in ref.splitlines() if l.strip().startswith(("# TODO", "#   hint"))]
        assert todo_lines and all(l in text.splitlines() for l in todo_lines)
    assert "np.add.at" not in (student_dir / "embedding.py").read_text().split("def embedding_backward")[1] \
        .split("hint: np.add.at")[1]
    marker = json.loads((student_dir / X.MARKER_FILE).read_text())
    assert marker["exercises"] == NAMES
    assert "minibert exercises check" in (student_dir / "README.md").read_text()


def test_make_refuses_to_overwrite_student_work(student_dir, capsys):
    assert cli_main(["exercises", "make", str(student_dir)]) == 2
    assert "--force" in capsys.readouterr().err
    X.make(student_dir, names=["linear"], force=True)  # explicit: allowed


# ---- grading ---------------------------------------------------------------------------------------

def test_the_reference_solutions_pass_every_check():
    results = [G.grade(n) for n in NAMES]
    failed = {r.name: r.summary() for r in results if not r.passed}
    assert not failed, failed
    assert all(r.checked >= 3 for r in results)
    records = G.check(out=lambda *a: None)
    assert all(r["points"] == r["max_points"] > 0 for r in records)


@pytest.mark.parametrize("name", [n for n in NAMES if hasattr(src(n), "gradcheck_cases")])
def test_the_grader_runs_the_layers_own_table_and_the_copy_keeps_its_visible_part(name, student_dir):
    """One table per layer: the grader grades every case of ``gradcheck_cases``, hidden ones included;
    the student's copy holds the same table without the hidden cases (which come last)."""
    cases = src(name).gradcheck_cases(np.random.default_rng(0))
    lines = G.grade(name).lines
    assert all(f" {case.name}" in lines for case in cases), [c.name for c in cases]
    copy = G.load_module(student_dir / f"{name}.py", name).gradcheck_cases(np.random.default_rng(0))
    assert 0 < len(copy) <= len(cases) and [c.name for c in copy] == [c.name for c in cases[:len(copy)]]


def test_the_student_copy_fails_every_check_and_says_what_is_left(student_dir, capsys):
    results = G.check(directory=student_dir, out=lambda *a: None)
    assert [r["exercise"] for r in results] == NAMES
    for r in results:
        assert not r["passed"] and r["todo"] and not r["errors"], r["summary"]
        assert "not implemented yet" in r["summary"] and r["points"] == 0 < r["max_points"]
    assert cli_main(["exercises", "check", "--dir", str(student_dir), "--brief"]) == 1
    out = capsys.readouterr().out
    assert f"0/{len(NAMES)} exercise(s) pass" in out


def test_the_python_checks_in_the_student_files_fail_until_done(student_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(student_dir))
    module = G.load_module(student_dir / "linear.py", "linear")
    with pytest.raises(NotImplementedError, match="TODO \\(linear_forward\\)"):
        module.test_linear()


@pytest.mark.parametrize("name", NAMES)
def test_the_visible_and_hidden_checks_of_each_reference_source_pass(name, capsys):
    getattr(src(name), f"test_{name}")()
    out = capsys.readouterr().out
    if name == "masking":  # statistics, each next to its expected value and tolerance
        assert "expected 0.8000 +- " in out and "WRONG" not in out
    else:
        assert "rel_error" in out and "(expect < " in out and "WRONG" not in out


PLANTED_BUGS = [
    # (exercise, the correct line, the bug, arrays that must be named wrong)
    ("attention", "    dk = dscores.transpose(0, 1, 3, 2) @ q  # (B, A, T, D)",
     "    dk = dscores @ q  # (B, A, T, D)", {"dk", "dwk", "dx"}),                   # missing transpose
    ("attention_ninja", '    dk = dS.transpose(0, 1, 3, 2) @ c["q"]',
     '    dk = dS @ c["q"]', {"dk"}),                                                 # missing transpose
    ("attention", "    dx += dxk\n", "", {"dx"}),                                     # a forgotten path into x
    ("attention", "    dv = dropped.transpose(0, 1, 3, 2) @ dctx",
     "    dv = probs.transpose(0, 1, 3, 2) @ dctx", {"dv", "dwv", "dx"}),              # probs before dropout
    ("layernorm", "    db = dout.reshape(-1, C).sum(axis=0)",
     "    db = dout.reshape(-1, C).mean(axis=0)", {"db"}),                            # mean instead of sum
    ("layernorm", "    dw = (dout * norm).reshape(-1, C).sum(axis=0)",
     "    dw = (dout * norm).reshape(-1, C).mean(axis=0)", {"dw"}),                   # mean instead of sum
    ("embedding", "    np.add.at(dw, ids.reshape(-1), dout.reshape(-1, C))",
     "    dw[ids.reshape(-1)] += dout.reshape(-1, C)", {"dw"}),                       # forgotten accumulation
    ("linear", "    dw = dout2.T @ x.reshape(-1, I)",
     "    dw = x.reshape(-1, I).T @ dout2", {"dw"}),                                  # transposed weight grad
    ("cross_entropy", "    dlogits *= (counted[:, None] * (dloss / max(count, 1))).astype(probs.dtype)",
     "    dlogits *= (counted[:, None] * (dloss / len(safe))).astype(probs.dtype)", {"dlogits"}),  # mean over all rows
    ("gelu", "    dx = dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)",
     "    dx = dout * (0.5 * (1.0 + erf(x * _SQRT_HALF)) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x))",
     {"dx"}),                                                                         # the other form's derivative
    ("softmax", "    z = z - z.max(axis=-1, keepdims=True)\n", "", {"p"}),            # overflows on huge logits
    ("softmax", "    dx = p * (dp - (dp * p).sum(axis=-1, keepdims=True))",
     "    dx = p * (dp - (dp * p).sum(axis=-1, keepdims=True)) * (1 - p)", {"dx"}),
    ("attention_ninja", '    dEinv = (dP * c["E"]).sum(axis=-1, keepdims=True)',
     '    dEinv = dP * c["E"]', {"dEinv"}),                                            # broadcast not summed
    # the optimiser: checked over six steps of BERT's schedule against the reference update
    ("adamw", "    v += (1 - beta2) * g * g", "    v += (1 - beta2) * g",
     {"v of the weight (decayed)", "p of the bias (not decayed)"}),                # g, not g squared
    ("adamw", "    if weight_decay:\n        p *= 1 - lr * weight_decay\n", "",
     {"p of the weight (decayed)"}),                                               # the decay forgotten
    # the masking: statistics over 4000 draws (5 binomial standard errors, see masking_statistics)
    ("masking", "            if rng.random() < 0.8:", "            if rng.random() < 0.9:",
     {"80% [MASK]", "10% unchanged", "10% random"}),                               # 90/5/5
    ("masking", "        if token in (CLS, SEP, PAD):\n            continue\n", "",
     {"special tokens", "positions uniform"}),                                     # [CLS]/[SEP] predicted
    ("masking", "            elif rng.random() < 0.5:", "            elif rng.random() < 0.0:",
     {"10% unchanged", "10% random"}),                                             # 80/0/20
    ("encoder_layer", "    dh = dh + dsum2  # the residual: h also went straight into the sum",
     "    dh = dh", {"dx", "dwq", "dln1_w", "dln1_b", "loss_curve"}),                  # a forgotten residual
    ("encoder_layer", "    df = K.dropout_backward(dsum2, cache.ffn_dropout)  # (B, T, C)",
     "    df = dsum2", {"dw1", "db1", "dw2", "loss_curve"}),                            # dropout's mask forgotten
]


@pytest.mark.parametrize("name, good, bad, expected", PLANTED_BUGS,
                         ids=[f"{b[0]}:{'+'.join(sorted(b[3]))}" for b in PLANTED_BUGS])
def test_planted_bugs_are_caught_and_named(tmp_path, name, good, bad, expected):
    text = X.source_text(name)
    assert text.count(good) == 1, f"the line to break is no longer in {name}.py: {good!r}"
    (tmp_path / f"{name}.py").write_text(text.replace(good, bad))
    lines = []
    [result] = G.check([name], tmp_path, out=lines.append)
    out = "\n".join(lines)
    assert not result["passed"]
    assert expected <= set(result["wrong"]), (expected, result["wrong"])
    assert 0 < result["points"] < result["max_points"]  # partial credit: only the broken arrays lose points
    for array in expected:  # a `name | exact | approx | maxdiff ... WRONG` line for each
        assert re.search(rf"^  {re.escape(array)}\s+\|.*WRONG$", out, re.M), array
    assert f"FAIL  {name}: wrong: " in out


def test_a_student_error_is_reported_with_its_line(tmp_path):
    text = X.source_text("linear").replace("    db = dout2.sum(axis=0)", "    db = dout3.sum(axis=0)")
    (tmp_path / "linear.py").write_text(text)
    r = G.grade("linear", tmp_path)
    assert not r.passed and any("NameError" in e and "linear.py:" in e for e in r.errors), r.errors


def test_a_file_that_does_not_import_is_a_failed_grade(tmp_path):
    (tmp_path / "gelu.py").write_text("def gelu_forward(x):\n    return (\n")
    r = G.grade("gelu", tmp_path)
    assert not r.passed and "SyntaxError" in r.summary()


def test_cli_list_and_unknown_names(capsys):
    assert cli_main(["exercises", "list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in NAMES)
    assert cli_main(["exercises", "check", "nosuch"]) == 2
    assert "unknown exercise" in capsys.readouterr().err


def test_check_grades_the_reference_when_no_student_directory_is_given(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_main(["exercises", "check", "embedding"]) == 0
    assert "grading the reference solutions" in capsys.readouterr().out


# ---- the backprop-ninja exercise ---------------------------------------------------------------------

rng = np.random.default_rng(7)


def randn(*shape):
    return rng.standard_normal(shape)


def test_the_ninja_steps_compose_to_the_library_attention():
    ninja = src("attention_ninja")
    assert ninja.split_heads is L.split_heads and ninja.merge_heads is L.merge_heads  # reused, not copied
    mask = attention_mask_to_additive(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), np.float64)
    x, d = randn(2, 5, 12), randn(2, 5, 12)
    params = [randn(12, 12) * 0.5 if i % 2 == 0 else randn(12) for i in range(8)]
    out, cache = ninja.attention_steps_forward(x, *params, mask, 3)
    lib_out, lib_cache = L.attention_forward(x, *params, mask, 3)
    np.testing.assert_allclose(out, lib_out, rtol=1e-13, atol=1e-14)
    g = ninja.attention_steps_backward(d, cache)
    lib = L.attention_backward(d, lib_cache)
    for name, want in zip(["x", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"], lib):
        np.testing.assert_allclose(g[name], want, rtol=1e-11, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(ninja.softmax_fused_backward(g["P"], cache["P"]), g["Z"], rtol=1e-12, atol=1e-15)


def test_every_ninja_intermediate_gradient_equals_pytorch_autograd():
    torch = pytest.importorskip("torch")
    ninja = src("attention_ninja")
    mask = attention_mask_to_additive(np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]), np.float64)
    x, d = randn(2, 5, 12), randn(2, 5, 12)
    params = [randn(12, 12) * 0.5 if i % 2 == 0 else randn(12) for i in range(8)]
    out, cache = ninja.attention_steps_forward(x, *params, mask, 3)
    g = ninja.attention_steps_backward(d, cache)

    t = {n: torch.tensor(a, requires_grad=True) for n, a in
         zip(["x", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"], [x] + params)}
    m = torch.tensor(mask)
    v = {}

    def keep(name, value):
        value.retain_grad()
        v[name] = value
        return value

    def split(a):
        return a.reshape(2, 5, 3, 4).transpose(1, 2)

    Q = keep("Q", t["x"] @ t["wq"].T + t["bq"])
    K = keep("K", t["x"] @ t["wk"].T + t["bk"])
    V = keep("V", t["x"] @ t["wv"].T + t["bv"])
    q, k, vv = keep("q", split(Q)), keep("k", split(K)), keep("v", split(V))
    S = keep("S", q @ k.transpose(-1, -2))
    Z = keep("Z", S * (1 / math.sqrt(4)) + m)
    Zmax = keep("Zmax", Z.max(dim=-1, keepdim=True).values)
    Zc = keep("Zc", Z - Zmax)
    E = keep("E", Zc.exp())
    Esum = keep("Esum", E.sum(-1, keepdim=True))
    Einv = keep("Einv", 1.0 / Esum)
    P = keep("P", E * Einv)
    ctx = keep("ctx", P @ vv)
    Ctx = keep("Ctx", ctx.transpose(1, 2).reshape(2, 5, 12))
    o = Ctx @ t["wo"].T + t["bo"]
    np.testing.assert_allclose(o.detach().numpy(), out, rtol=1e-12)
    o.backward(torch.tensor(d))
    grads = {**{n: a.grad.numpy() for n, a in v.items()}, **{n: a.grad.numpy() for n, a in t.items()}}
    assert set(grads) == set(g)
    for name, want in grads.items():
        if name in ("Zmax", "bk"):  # exactly 0 in exact arithmetic: both sides are rounding noise
            assert np.abs(g[name]).max() < 1e-12 and np.abs(want).max() < 1e-12, name
        else:
            np.testing.assert_allclose(g[name], want, rtol=1e-10, atol=1e-12, err_msg=name)


# ---- the hardened .py path: subprocess, time limit, own code only, points, JSON/CSV, a class ---------

def test_a_reexport_of_the_library_reference_scores_zero_with_a_clear_message(tmp_path):
    (tmp_path / "linear.py").write_text("from minibert.layers.linear import *  # the reference itself\n")
    [rec] = G.check(["linear"], tmp_path, out=lambda *a: None)
    assert rec["points"] == 0 and not rec["passed"]
    assert any("minibert's own reference" in e and "scores zero" in e for e in rec["errors"]), rec["errors"]


def test_a_function_from_another_file_scores_zero(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "helper.py").write_text(X.source_text("linear"))
    (tmp_path / "linear.py").write_text("from helper import linear_forward, linear_backward\n")
    r = G.grade("linear", tmp_path)
    assert not r.passed and any("not in your file linear.py" in e for e in r.errors), r.errors


def test_an_endless_loop_is_stopped_by_the_time_limit(tmp_path):
    text = X.source_text("linear").replace("    dx = dout @ w  # (..., I)", "    while True:\n        pass")
    (tmp_path / "linear.py").write_text(text)
    [rec] = G.check(["linear"], tmp_path, out=lambda *a: None, timeout=5)
    assert rec["points"] == 0 and "timed out after 5 s" in rec["summary"]


def test_monkeypatching_the_grader_does_not_reach_the_caller(tmp_path):
    """The student's file runs in its own process: patching rel_error there leaves ours untouched."""
    import minibert.gradcheck as gc
    before = gc.rel_error
    text = X.source_text("linear") + "\nimport minibert.gradcheck\nminibert.gradcheck.rel_error = lambda a, b: 0.0\n"
    (tmp_path / "linear.py").write_text(text)
    G.check(["linear"], tmp_path, out=lambda *a: None)
    assert gc.rel_error is before



# A wrong db (a mean, not a sum) plus, at import time, patches that would hide it if the comparisons ran
# next to the student's code: the grader's rel_error, numpy's comparisons, the references themselves.
_WRONG_DB = ("    db = dout2.sum(axis=0)", "    db = dout2.mean(axis=0)")
_CHEATS = {
    "rel_error": """
import sys, minibert.gradcheck, minibert.classroom.grader
minibert.gradcheck.rel_error = lambda a, b: 0.0
for _m in (minibert.classroom.grader, sys.modules["__main__"]):  # the grader, imported or run with -m
    _m.rel_error = lambda a, b: 0.0
""",
    "numpy and the references": """
import sys, numpy, minibert.layers.linear, minibert.gradcheck, minibert.classroom.grader
numpy.allclose = lambda *a, **k: True
minibert.layers.linear.linear_backward = linear_backward          # the reference is now the wrong db
minibert.layers.linear.linear_forward = linear_forward
minibert.gradcheck.numerical_gradient = lambda f, x, dout: None   # no finite differences either
for _m in (minibert.classroom.grader, sys.modules["__main__"]):
    _m.numerical_gradient = lambda f, x, dout: None
""",
}


@pytest.mark.parametrize("cheat", list(_CHEATS))
def test_a_submission_that_patches_the_grader_still_loses_the_points_of_its_wrong_arrays(tmp_path, cheat):
    """The student's process only computes the student's arrays; the references, the finite differences
    and every comparison run in the grader's process, which never imports the student's file, so no
    patch made there (the grader's rel_error, numpy's allclose, the reference layer and the finite
    differences) can turn a wrong db into a right one.  Seen to fail (4/4 points, for both cheats) when the
    comparisons ran in the student's process as before."""
    text = X.source_text("linear").replace(*_WRONG_DB) + _CHEATS[cheat]
    (tmp_path / "linear.py").write_text(text)
    [rec] = G.check(["linear"], tmp_path, out=lambda *a: None)
    assert not rec["passed"] and "db" in rec["wrong"], rec["summary"]
    assert {i["item"]: i["points"] for i in rec["items"]} == {"out": 1, "dx": 1, "dw": 1, "db": 0}


def test_a_submission_that_changes_the_graders_inputs_is_not_graded(tmp_path):
    """The student's process must call the student's functions on the grader's inputs (a digest of every
    call's inputs is compared): a file that swaps the library's table of cases for its own scores zero."""
    text = X.source_text("linear") + """
import numpy as np, minibert.layers.linear as L
_cases = L.gradcheck_cases
L.gradcheck_cases = lambda rng: _cases(np.random.default_rng(12345))
"""
    (tmp_path / "linear.py").write_text(text)
    [rec] = G.check(["linear"], tmp_path, out=lambda *a: None)
    assert rec["points"] == 0 and not rec["passed"]
    assert any("other inputs than the grader's" in e for e in rec["errors"]), rec["errors"]


def test_the_student_file_runs_only_in_the_student_process(tmp_path):
    import os
    import tempfile
    # a graded program may write only to temporary files (grading/sandbox.py): the marker goes there
    with tempfile.TemporaryDirectory(prefix="pid-") as where:
        marker = os.path.join(where, "pid.txt")
        text = X.source_text("linear") + f"\nimport os\nopen({marker!r}, 'a').write(str(os.getpid()) + '\\n')\n"
        (tmp_path / "linear.py").write_text(text)
        [rec] = G.check(["linear"], tmp_path, out=lambda *a: None)
        assert rec["points"] == rec["max_points"] == 4
        pids = open(marker).read().split()
    assert len(pids) == 1 and pids[0] != str(os.getpid())

def test_check_writes_points_per_array_as_json_and_csv(tmp_path, capsys):
    import csv
    text = X.source_text("layernorm").replace("    db = dout.reshape(-1, C).sum(axis=0)",
                                              "    db = dout.reshape(-1, C).mean(axis=0)")
    (tmp_path / "layernorm.py").write_text(text)
    code = cli_main(["exercises", "check", "layernorm", "--dir", str(tmp_path), "--json", str(tmp_path / "g.json"),
                     "--csv", str(tmp_path / "g.csv")])
    assert code == 1
    [rec] = json.loads((tmp_path / "g.json").read_text())
    assert {i["item"]: i["points"] for i in rec["items"]} == {"out": 1, "dx": 1, "dw": 1, "db": 0}
    rows = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert [(r["item"], r["points"]) for r in rows] == [("out", "1"), ("dx", "1"), ("dw", "1"), ("db", "0")]
    assert "[0/1] db: WRONG" in capsys.readouterr().out


def test_check_class_grades_one_folder_per_student_into_one_csv(tmp_path):
    import csv
    for student, bug in [("ada", False), ("bob", True)]:
        d = tmp_path / "class" / student
        d.mkdir(parents=True)
        text = X.source_text("linear")
        if bug:
            text = text.replace("    db = dout2.sum(axis=0)", "    db = dout2.mean(axis=0)")
        (d / "linear.py").write_text(text)
    code = cli_main(["exercises", "check", "linear", "--class", str(tmp_path / "class"),
                     "--csv", str(tmp_path / "class.csv"), "--json", str(tmp_path / "class.json")])
    assert code == 1  # not everyone passed
    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "class.csv"))}
    assert rows["ada"]["linear"] == rows["ada"]["total"] == rows["ada"]["max_points"] == "4"
    assert rows["bob"]["linear"] == "3" and rows["bob"]["max_points"] == "4"
    records = json.loads((tmp_path / "class.json").read_text())
    assert {(r["student"], r["points"]) for r in records} == {("ada", 4), ("bob", 3)}


# ---- the optimiser and the data exercises ----------------------------------------------------------------

def test_the_adamw_reference_equals_the_papers_formula_and_the_optimizer():
    """``adamw_update`` under ``adamw_steps`` is what ``minibert.optim.AdamW`` does, and it equals the paper's
    m-hat/v-hat formula (to float64 rounding): the reference the exercise is graded against is right."""
    from minibert.layers import adamw as A
    from minibert.optim import linear_warmup_decay
    assert A.SCHEDULE == [linear_warmup_decay(s, 6, 2, 1e-2) for s in range(6)]
    params, grads, lrs = A.adamw_cases(np.random.default_rng(1))
    for (_, ours), (_, book) in zip(A.adamw_steps(A.adamw_update, params, grads, lrs),
                                    A.textbook_adamw(params, grads, lrs)):
        for n in params:
            for a, b in zip(ours[n], book[n]):
                assert G.rel_error(a, b) < 1e-12


def test_the_masking_statistics_tolerance_is_five_binomial_standard_errors():
    """4000 draws of 3 predictions: the [MASK] share has standard error sqrt(0.8 * 0.2 / 12000) = 0.00365,
    so the tolerance is 0.018; the reference lands within it, and so does a correct implementation that
    draws with another seed (the false-alarm rate of 5 sigma is ~6e-7 per check)."""
    from minibert.data import pretraining as P
    for seed in (0, 1, 2):
        rows = {item: (ok, msg) for item, ok, msg in P.masking_statistics(seed=seed)}
        assert all(ok for ok, _ in rows.values()), rows
    assert "0.8000 +- 0.0183" in rows["80% [MASK]"][1]
