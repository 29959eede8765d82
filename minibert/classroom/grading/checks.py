"""The grading flow of each exercise: the library's table of gradient checks, then what an exercise
checks beyond it (``EXTRA_CHECKS``: softmax on huge logits, the embedding's padding row, the backprop
ninja step by step, AdamW over a schedule, the masking's statistics, the capstone's loss curve).

Each flow is written once against a ``judge.Grader`` and runs in both processes: in the student's it only
calls the student's functions (``g.judges`` is False there, so no reference answer is computed in it), in
the grader's it computes the references and judges.  ``run_checks(name, g)`` is the whole flow.
"""
import importlib
import types

import numpy as np

from ..exercises import EXERCISES
from .judge import FORWARD_TOL


def _softmax_huge_logits(g):
    g.section("huge logits [1000, 1000, -1000]: no overflow")
    ok, res = g.call("softmax_forward", g.student("softmax_forward"), np.array([[1000.0, 1000.0, -1000.0]]))
    if ok:
        with np.errstate(all="ignore"):
            g.compare("p", res[0], [[0.5, 0.5, 0.0]], tol=FORWARD_TOL)


def _embedding_padding_row(g):
    """``padding_idx`` is a convention (that row's gradient is kept at 0), not a derivative: compared
    with the library's backward only."""
    from ...layers import embedding as L
    g.section("padding_idx=0: that row's gradient stays 0")
    ids = np.array([[3, 1, 0, 3, 0], [0, 4, 4, 2, 3]])
    cache = (ids, 6)  # what embedding_forward keeps for a (6, 12) table: the ids and V
    dout = g.randn(*ids.shape, 12)
    ok, got = g.call("embedding_backward", g.student("embedding_backward"), dout, cache, 0)
    if ok and g.judges:
        g.compare("dw", got, L.embedding_backward(dout, cache, 0))


# (step function, upstream gradient names, names of what it returns) -- the order of the backward
NINJA_STEPS = [
    ("step01_output", ["out"], ["Ctx", "wo", "bo"]),
    ("step02_merge", ["Ctx"], ["ctx"]),
    ("step03_context", ["ctx"], ["P", "v"]),
    ("step04_normalise", ["P"], ["E (direct path)", "Einv"]),
    ("step05_reciprocal", ["Einv"], ["Esum"]),
    ("step06_rowsum", ["Esum"], ["E (via the row sum)"]),
    ("step07_exp", ["E"], ["Zc"]),
    ("step08_shift", ["Zc"], ["Z (direct path)", "Zmax"]),
    ("step09_rowmax", ["Zmax"], ["Z (via the max)"]),
    ("step10_scale_mask", ["Z"], ["S"]),
    ("step11_scores", ["S"], ["q", "k"]),
    ("step12_split", ["q", "k", "v"], ["Q", "K", "V"]),
    ("step13_projections", ["Q", "K", "V"], ["x", "wq", "bq", "wk", "bk", "wv", "bv"]),
]
NINJA_ZEROS = {"Zmax", "bk"}  # exactly 0 for every input: softmax ignores a row's shift
# steps whose true upstream gradient is 0 get a random one instead, so that returning zeros cannot pass
NINJA_RANDOM_UPSTREAM = {"step09_rowmax"}
_ATT_NAMES = ["dx", "dwq", "dbq", "dwk", "dbk", "dwv", "dbv", "dwo", "dbo"]


def _grade_attention_ninja(g):
    from ...layers import attention as L
    from ...layers.softmax import attention_mask_to_additive
    from .. import attention_ninja as ref
    B, T, C, A = 2, 5, 12, 3
    x = g.randn(B, T, C)
    params = [g.randn(*s, scale=0.5) for s in [(C, C), (C,)] * 4]
    mask = attention_mask_to_additive(np.array([[1] * T, [1, 1, 1] + [0] * (T - 3)]), np.float64)
    out, cache = ref.attention_steps_forward(x, *params, mask, A)
    dout = g.randn(*out.shape)
    up = ref.attention_steps_backward(dout, cache)  # the correct upstream gradient of every step
    up["out"] = dout
    # part 1: every step on its own, fed the correct upstream gradient
    all_done = True
    for fname, inputs, outputs in NINJA_STEPS:
        g.section(f"{fname}")
        given = [g.randn(*np.shape(up[n])) if fname in NINJA_RANDOM_UPSTREAM else up[n] for n in inputs]
        ok, got = g.call(fname, g.student(fname), *given, cache)
        if not ok:
            all_done = False
            continue
        if not g.judges:
            continue
        want = getattr(ref, fname)(*given, cache)
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        if len(got) != len(want):
            g.r.errors.append(f"{fname} returned {len(got)} value(s), expected {len(want)}")
            g.r.say(f"  {fname}: returned {len(got)} value(s), expected {len(want)}: d{', d'.join(outputs)}")
            continue
        for name, a, b in zip(outputs, got, want):
            g.compare("d" + name, a, b, zero=name in NINJA_ZEROS,
                      upstream=given[0] if len(given) == 1 else None)
    # the whole backward, chained by the given code, against the library and finite differences
    g.section("attention_steps_backward: the whole chain vs minibert.layers.attention and finite differences")
    if not all_done:
        g.r.say("  (skipped until every step is implemented)")
    else:
        ok, res = g.call("attention_steps_forward", g.student("attention_steps_forward"), x, *params, mask, A)
        if ok:
            lib_out, lib_cache = L.attention_forward(x, *params, mask, A) if g.judges else (None, None)
            if g.judges:
                g.compare("out", res[0], lib_out, tol=FORWARD_TOL)
            ok, grads = g.call("attention_steps_backward", g.student("attention_steps_backward"), dout, res[1])
            if ok and g.judges:
                lib = L.attention_backward(dout, lib_cache)
                inputs = [x] + params
                fwd = lambda: L.attention_forward(x, *params, mask, A)[0]  # noqa: E731
                for i, (name, want) in enumerate(zip(_ATT_NAMES, lib)):
                    zero = name[1:] in NINJA_ZEROS
                    num = None if zero else g.numerical(fwd, inputs[i], dout)
                    g.compare(name, grads.get(name[1:]) if isinstance(grads, dict) else None, want, num, zero=zero)
    # part 2: the fused softmax backward
    g.section("softmax_fused_backward: steps 4-9 in one line")
    ok, got = g.call("softmax_fused_backward", g.student("softmax_fused_backward"), up["P"], cache["P"])
    if ok:
        g.compare("dZ (fused)", got, up["Z"])


def _grade_adamw(g):
    """Six steps of the student's ``adamw_update`` under BERT's schedule (``optim.linear_warmup_decay``:
    warmup over 2 steps, then linear decay), each step compared with the reference update: the
    parameter, ``m`` and ``v``, for a weight (decayed) and a bias (not decayed)."""
    from ...layers import adamw as ref
    from ...optim import linear_warmup_decay
    fn = g.student("adamw_update")
    lrs = [linear_warmup_decay(s, 6, 2, 1e-2) for s in range(6)]
    params, grads, lrs = ref.adamw_cases(g.rng, lrs)
    g.section(f"6 steps, learning rates {', '.join(f'{lr:g}' for lr in lrs)} (linear_warmup_decay(s, 6, 2, 1e-2))")
    # the update works in place: run on the (copied) inputs by the reference's loop of steps
    ok, got = g.call("adamw_update", fn and (lambda p, gs, ls: ref.adamw_steps(fn, p, gs, ls)), params, grads, lrs)
    if not ok or not g.judges:
        return
    want = ref.adamw_steps(ref.adamw_update, params, grads, lrs)
    names = {"weight": "weight (decayed)", "bias": "bias (not decayed)"}
    for (t, mine), (_, ref_t) in zip(got, want):
        g.case = f"step {t}"
        for n, label in names.items():
            for what, a, b in zip(("p", "m", "v"), mine[n], ref_t[n]):
                g.compare(f"{what} of the {label}", a, b, tol=1e-12)


def _grade_masking(g):
    """``masking_statistics`` (``minibert/data/pretraining.py``) on the student's
    ``create_masked_lm_predictions``: exact properties of every draw, and the 80/10/10 split and the
    choice of positions within 5 binomial standard errors over 4000 draws."""
    from ...data import pretraining as ref
    fn = g.student("create_masked_lm_predictions")
    g.section(f"{ref.MASKING_DRAWS} draws on [CLS] + 10 words + [SEP] + 8 words + [SEP] + 2 [PAD], masked_lm_prob 0.15")
    # the student's process only draws (every draw's tokens, positions and labels); the statistics are
    # computed here, by masking_statistics replaying those draws in order
    ok, draws = g.call("create_masked_lm_predictions", fn and (lambda: _masking_draws(ref, fn)))
    if ok and g.judges:
        replay = iter(draws if isinstance(draws, list) else [])
        rows = ref.masking_statistics(lambda *args: next(replay))
        for item, good, message in rows:
            g.verdict(item, good, message)


def _masking_draws(ref, fn):
    """[(tokens, positions, labels)] of ``fn`` over the draws of ``masking_statistics``, as plain lists."""
    draws = []

    def record(*args):
        out = fn(*args)
        tokens, positions, labels = out
        draws.append([list(tokens), [int(p) for p in positions], list(labels)])
        return out
    ref.masking_statistics(record)
    return draws


def _capstone_curve(g):
    """The capstone: a tiny BERT pretrained for ``capstone.CHECK_STEPS`` steps on the student's encoder
    layer (``set_backend`` with their pair) must give the reference's loss curve (``COINCIDE_TOL``)."""
    from .. import capstone
    fwd, bwd = g.student("encoder_layer_forward"), g.student("encoder_layer_backward")
    g.section(f"BERT pretrained for {capstone.CHECK_STEPS} steps on your encoder layer, next to the reference")
    if fwd is None or bwd is None:
        return
    mine = types.SimpleNamespace(encoder_layer_forward=fwd, encoder_layer_backward=bwd, __name__="your encoder layer")
    # the student's process trains on the student's layer only; the reference curve is trained here
    ok, curve = g.call("train_side_by_side", lambda: capstone.train_curve(mine, capstone.CHECK_STEPS))
    if ok and g.judges:
        reference = capstone.train_curve(None, capstone.CHECK_STEPS)
        try:
            g.r.say(f"  {capstone.SideBySide(reference, np.asarray(curve, dtype=np.float64), 'your encoder layer')!r}")
        except (TypeError, ValueError):
            pass
        g.compare("loss_curve", curve, reference, tol=capstone.COINCIDE_TOL / 10)


# exercise -> what it checks beyond its table of gradient checks (the ninja has no table: all of it)
EXTRA_CHECKS = {
    "softmax": _softmax_huge_logits,
    "embedding": _embedding_padding_row,
    "attention_ninja": _grade_attention_ninja,
    "encoder_layer": _capstone_curve,
    "adamw": _grade_adamw,
    "masking": _grade_masking,
}


def run_checks(name, g):
    """The grading flow of exercise ``name`` on the grader ``g``: the library's table, then the extras."""
    reference = importlib.import_module(EXERCISES[name].module)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if hasattr(reference, "gradcheck_cases"):  # the library's table, hidden cases included
            for case in reference.gradcheck_cases(g.rng):
                g.grade_case(case)
        if name in EXTRA_CHECKS:
            EXTRA_CHECKS[name](g)
