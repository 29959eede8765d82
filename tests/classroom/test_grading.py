"""The grader cannot be faked (``minibert/classroom/grading``, ``docs/grading.md``), through the ``.py`` path,
``minibert exercises check`` (nbgrader's path is ``tests/classroom/test_course.py``).

Every cheat of issue 25, and a few more, scores zero on the arrays it produced, with a message that says
why; copies of the reference are flagged; honest solutions written differently get full marks, unflagged;
wrong arrays get their likely mistake in words; zeros alone earn nothing.  Seen failing: with the guards
not installed (``sandbox.install_guards`` returning at once) the six wrapper cheats scored 4/4; with the
audit hook not installed the file-reading cheats scored 4/4.
"""
import re
import time
from pathlib import Path

import numpy as np
import pytest

from minibert.classroom import exercises as X
from minibert.classroom import grader as G

LINEAR = X.source_text("linear")
ATTENTION = X.source_text("attention")
BACKWARD_BODY = re.compile(r"(def linear_backward\(dout, cache\):\n    \"\"\".*?\"\"\"\n)(.*?)(\n\n\ndef )", re.S)


def linear_with_backward(body):
    """The reference linear.py whose backward is ``body`` (indented by 4)."""
    return BACKWARD_BODY.sub(lambda m: m[1] + body.rstrip() + "\n" + m[3], LINEAR, count=1)


def graded(tmp_path, name, text):
    (tmp_path / f"{name}.py").write_text(text)
    [rec] = G.check([name], tmp_path, out=lambda *a: None)
    return rec, {i["item"]: i["points"] for i in rec["items"]}


WRAPPERS = {
    "import as r": "    import minibert.layers.linear as r\n    return r.linear_backward(dout, cache)",
    "through the package": "    import minibert\n    return minibert.layers.linear_backward(dout, cache)",
    "computed import_module": ("    import importlib\n    m = importlib.import_module('minibert.' + 'layers.' + 'lin' + 'ear')\n"
                               "    return getattr(m, 'linear_' + 'backward')(dout, cache)"),
    "a composite's global": "    import minibert.layers.ffn as f\n    return f.linear_backward(dout, cache)",
    "the backend's table": ("    import minibert.backend as b\n    b.set_backend('numpy')\n"
                            "    return b.ops.linear_backward(dout, cache)"),
    "a try around it": ("    import minibert.layers.linear as r\n    try:\n        return r.linear_backward(dout, cache)\n"
                        "    except Exception:\n        return r.linear_backward(dout, cache)"),
}
READERS = {
    "exec of the reference's text": ("    import minibert.layers.linear as r\n    g = {}\n"
                                     "    exec(open(r.__file__).read(), g)\n    return g['linear_backward'](dout, cache)"),
    "inspect.getsource": ("    import inspect, minibert.layers.linear as r\n    g = {'np': np}\n"
                          "    exec(inspect.getsource(r), g)\n    return g['linear_backward'](dout, cache)"),
    "the bytecode in __pycache__": ("    import glob, marshal, os, minibert.layers.linear as r\n"
                                    "    d = os.path.join(os.path.dirname(r.__file__), '__pycache__')\n"
                                    "    data = open(glob.glob(d + '/linear.*.pyc')[0], 'rb').read()\n"
                                    "    g = {}\n    exec(marshal.loads(data[16:]), g)\n"
                                    "    return g['linear_backward'](dout, cache)"),
    "its __code__ copied": ("    import types, minibert.layers.linear as r\n"
                            "    f = types.FunctionType(r.linear_backward.__code__, r.__dict__)\n    return f(dout, cache)"),
    "the numba twin": "    from minibert.kernels.linear import linear_backward as k\n    return k(dout, cache)",
    "the garbage collector": ("    import gc\n    fs = [o for o in gc.get_objects() if getattr(o, '__name__', '') == "
                              "'linear_backward' and o.__module__ == 'minibert.layers.linear']\n"
                              "    return [f for f in fs if f is not linear_backward][0](dout, cache)"),
    "the grader's frames": ("    import sys\n    f = sys._getframe(1)\n    while f and 'case' not in f.f_locals:\n"
                            "        f = f.f_back\n    return f.f_locals['case'].backward(dout, cache)"),
    "torch's autograd": ("    import torch\n    x, w = cache\n    xt = torch.tensor(x, requires_grad=True)\n"
                         "    wt = torch.tensor(w, requires_grad=True)\n"
                         "    bt = torch.zeros(w.shape[0], dtype=torch.float64, requires_grad=True)\n"
                         "    (xt @ wt.T + bt).backward(torch.tensor(dout))\n"
                         "    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()"),
}


@pytest.mark.parametrize("cheat", list(WRAPPERS))
def test_a_wrapper_of_the_graded_reference_scores_zero_and_says_why(tmp_path, cheat):
    rec, pts = graded(tmp_path, "linear", linear_with_backward(WRAPPERS[cheat]))
    assert pts == {"out": 1, "dx": 0, "dw": 0, "db": 0}, (cheat, rec["summary"])
    assert "minibert's own linear_backward" in rec["summary"] or "minibert's own reference" in rec["summary"], rec["summary"]


@pytest.mark.parametrize("cheat", list(READERS))
def test_reading_the_reference_any_other_way_scores_zero(tmp_path, cheat):
    import importlib.util
    import py_compile
    source = X.source_path("linear")
    pyc = Path(importlib.util.cache_from_source(str(source)))
    made = cheat.startswith("the bytecode") and not pyc.exists()
    if made:  # the cheat needs the bytecode there, as an installed package has it
        py_compile.compile(str(source), cfile=str(pyc))
    try:
        rec, pts = graded(tmp_path, "linear", linear_with_backward(READERS[cheat]))
    finally:
        if made:
            pyc.unlink()
    assert pts == {"out": 1, "dx": 0, "dw": 0, "db": 0}, (cheat, rec["summary"])
    assert rec["errors"], rec


def test_a_star_import_of_the_reference_scores_zero(tmp_path):
    rec, pts = graded(tmp_path, "linear", "from minibert.layers.linear import *\n")
    assert set(pts.values()) == {0} and "minibert's own reference" in rec["summary"], rec["summary"]


def test_earlier_exercises_stay_usable_and_an_honest_einsum_attention_gets_full_marks_unflagged(tmp_path):
    """The attention exercise calls linear_backward and softmax_backward (earlier exercises): allowed.
    Written with einsum and in another order, it gets every point and no flag."""
    text = ATTENTION
    old_sdpa = X.source_text("attention").split("### BEGIN SOLUTION", 2)
    honest = {
        "    ddropped = dctx @ v.transpose(0, 1, 3, 2)  # (B, A, T, T)\n    dv = dropped.transpose(0, 1, 3, 2) @ dctx  # (B, A, T, D)":
        "    dv = np.einsum('bhts,bhtd->bhsd', dropped, dctx)\n    ddropped = np.einsum('bhtd,bhsd->bhts', dctx, v)",
        "    dq = dscores @ k  # (B, A, T, D)\n    dk = dscores.transpose(0, 1, 3, 2) @ q  # (B, A, T, D)":
        "    dk = np.einsum('bhts,bhtd->bhsd', dscores, q)\n    dq = np.einsum('bhts,bhsd->bhtd', dscores, k)",
        "    dctx, dwo, dbo = linear_backward(dout, co)":
        "    dctx = dout @ co[1]\n    dwo = np.einsum('btc,bti->ci', dout, co[0])\n    dbo = dout.sum(axis=(0, 1))",
        "    dx, dwq, dbq = linear_backward(merge_heads(dq), cq)\n    dxk, dwk, dbk = linear_backward(merge_heads(dk), ck)\n"
        "    dxv, dwv, dbv = linear_backward(merge_heads(dv), cv)\n    dx += dxk\n    dx += dxv":
        "    grads = [linear_backward(merge_heads(g), c) for g, c in ((dv, cv), (dk, ck), (dq, cq))]\n"
        "    (dxv, dwv, dbv), (dxk, dwk, dbk), (dxq, dwq, dbq) = grads\n    dx = dxq + dxk + dxv",
    }
    for old, new in honest.items():
        assert old in text, old
        text = text.replace(old, new)
    assert old_sdpa
    rec, pts = graded(tmp_path, "attention", text)
    assert rec["points"] == rec["max_points"] > 0, rec["summary"]
    assert rec["integrity"] == [], rec["integrity"]


def test_an_honest_layernorm_written_another_way_gets_full_marks_unflagged(tmp_path):
    """The same maths in another order and with other functions (np.var, einsum, the backward's three
    terms gathered differently): every point, no flag; the reference itself is flagged (the control)."""
    text = X.source_text("layernorm")
    honest = {
        "    mean = x.mean(axis=-1)  # (...,)\n    xc = x - mean[..., None]  # (..., C)\n"
        "    var = (xc * xc).mean(axis=-1)  # (...,) biased variance, as in BERT and PyTorch\n"
        "    rstd = 1.0 / np.sqrt(var + eps)  # (...,)\n    out = xc * rstd[..., None] * w + b  # (..., C)":
        "    mean = np.sum(x, axis=-1) / x.shape[-1]\n    rstd = (np.var(x, axis=-1) + eps) ** -0.5\n"
        "    out = b + w * ((x - mean[..., None]) * rstd[..., None])",
        "    db = dout.reshape(-1, C).sum(axis=0)\n    dw = (dout * norm).reshape(-1, C).sum(axis=0)\n"
        "    dnorm = dout * w  # (..., C)\n":
        "    g = w * dout\n    dw = np.einsum('nc,nc->c', dout.reshape(-1, C), norm.reshape(-1, C))\n    db = np.einsum('nc->c', dout.reshape(-1, C))\n"
        "    a = g.sum(axis=-1, keepdims=True) / C\n    s = (g * norm).sum(axis=-1, keepdims=True) / C\n"
        "    dx = (g - a - norm * s) * rstd[..., None]\n    return dx, dw, db\n",
    }
    rec, _ = graded(tmp_path, "layernorm", text)
    assert rec["integrity"], "the control: the reference is flagged"
    for old, new in honest.items():
        assert old in text, old
        text = text.replace(old, new)
    rec, _ = graded(tmp_path, "layernorm", text)
    assert rec["points"] == rec["max_points"] > 0, rec["summary"]
    assert rec["integrity"] == [], rec["integrity"]


def test_a_copy_of_the_reference_is_flagged_verbatim_and_renamed_but_keeps_its_points(tmp_path):
    rec, _ = graded(tmp_path, "attention", ATTENTION)
    assert rec["points"] == rec["max_points"] and any("copied?" in f for f in rec["integrity"]), rec["integrity"]
    renamed = ATTENTION
    for a, b in [("dscores", "grad_s"), ("ddropped", "g_drop"), ("dctx", "gc"), ("dxk", "from_k"), ("dxv", "from_v"),
                 ("dprobs", "gp")]:
        renamed = re.sub(rf"\b{a}\b", b, renamed)
    rec, _ = graded(tmp_path, "attention", renamed)
    assert rec["points"] == rec["max_points"] and any("copied?" in f for f in rec["integrity"]), rec["integrity"]


def test_short_lines_every_student_writes_alike_are_not_flagged(tmp_path):
    rec, _ = graded(tmp_path, "linear", LINEAR)  # all of linear is short: out = x @ w.T + b, dx = dout @ w ...
    assert rec["points"] == rec["max_points"] and rec["integrity"] == []


def test_introspection_is_flagged(tmp_path):
    rec, _ = graded(tmp_path, "linear", LINEAR + "\nimport gc as _gc_unused  # noqa\n")
    assert any("uses gc" in f for f in rec["integrity"]), rec["integrity"]


def test_all_zeros_earn_nothing_not_even_the_arrays_whose_true_value_is_zero(tmp_path):
    """attention's dbk is exactly 0 for every input: a backward returning zeros must not earn it."""
    zeros = ATTENTION.replace('    cq, ck, cv, cs, co, A = cache\n',
                              '    cq, ck, cv, cs, co, A = cache\n'
                              '    x, w = cq[0], cq[1]\n'
                              '    z = lambda a: np.zeros_like(a)\n'
                              '    return z(x), z(w), z(w[0]), z(w), z(w[0]), z(w), z(w[0]), z(w), z(w[0])\n', 1)
    rec, pts = graded(tmp_path, "attention", zeros)
    assert pts["dbk"] == 0 and pts["dx"] == 0 and pts["dwk"] == 0, pts


def test_the_ninja_steps_whose_true_gradient_is_zero_cannot_pass_with_zeros(tmp_path):
    text = X.source_text("attention_ninja")
    body = re.search(r"def step09_rowmax\(.*?\n(?=\n\ndef )", text, re.S)[0]
    text = text.replace(body, "def step09_rowmax(dZmax, c):\n    return np.zeros_like(c['Z'])\n")
    rec, pts = graded(tmp_path, "attention_ninja", text)
    assert pts["step09_rowmax"] == 0 and pts["step08_shift"] == 1, pts


DIAGNOSES = [
    ("linear", "    dx = dout @ w  # (..., I)", "    dx = -(dout @ w)", "wrong sign"),
    ("linear", "    dx = dout @ w  # (..., I)", "    dx = 2.0 * (dout @ w)", "same factor (about 2"),
    ("attention", "    dscores = dscores * q.dtype.type(scale)", "    dscores = dscores", "same factor"),
]


@pytest.mark.parametrize("name, good, bad, words", [d for d in DIAGNOSES if d[1]])
def test_a_wrong_array_gets_its_likely_mistake_in_words_never_the_expected_value(tmp_path, name, good, bad, words):
    text = X.source_text(name)
    assert good in text, good
    rec, _ = graded(tmp_path, name, text.replace(good, bad))
    wrong = [i["message"] for i in rec["items"] if i["points"] == 0]
    assert any(words in m for m in wrong), wrong


def test_the_diagnoses_on_arrays():
    rng = np.random.default_rng(0)
    want = rng.standard_normal((3, 4, 5))
    assert "transposed" in G.diagnose(want.swapaxes(-1, -2), want)
    assert "all zeros" in G.diagnose(np.zeros_like(want), want)
    assert "same along the last axis" in G.diagnose(want + rng.standard_normal((3, 4, 1)), want)
    assert G.diagnose(rng.standard_normal((3, 4, 5)), want) == ""


def test_the_student_process_has_a_memory_limit(tmp_path):
    rec, pts = graded(tmp_path, "linear", linear_with_backward("    big = np.ones(10**11)\n    return big, big, big"))
    assert pts["dx"] == 0 and "MemoryError" in rec["summary"], rec["summary"]


def test_a_class_is_graded_one_grading_per_core(tmp_path):
    """A small class (3 students, 2 exercises: the 100-student figure is in docs/grading.md)."""
    import csv
    for student, text in [("ada", LINEAR), ("bob", linear_with_backward(WRAPPERS["import as r"])),
                          ("cy", LINEAR.replace("    dx = dout @ w  # (..., I)", "    dx = -(dout @ w)"))]:
        d = tmp_path / "class" / student
        d.mkdir(parents=True)
        (d / "linear.py").write_text(text)
        (d / "softmax.py").write_text(X.source_text("softmax"))
    t = time.perf_counter()
    records = G.check_class(tmp_path / "class", ["linear", "softmax"], csv_path=tmp_path / "c.csv", out=lambda *a: None,
                            jobs=2)
    assert time.perf_counter() - t < 120
    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "c.csv"))}
    assert (rows["ada"]["linear"], rows["bob"]["linear"], rows["cy"]["linear"]) == ("4", "1", "3")
    assert "softmax: copied?" in rows["ada"]["integrity"]
    assert len(records) == 6
