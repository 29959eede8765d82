"""The capstone trains on what the student wrote (``minibert/classroom/capstone.py``, issue 25 item 4).

A directory of exercise files, some finished and one not: every finished function is used -- counted
call by call, including the ones the student's own ``encoder_layer.py`` and the library's composites make
-- the reference runs for the unfinished one, the run says which is which, and nothing crashes.  Run
against the capstone before this change, the same files sent 0 calls to the student's
``attention_backward`` and ``sdpa_backward`` (``encoder_layer.py`` imports minibert's, which won) and
``linear_backward`` got only the model's own calls, not attention's.
"""
import builtins

import numpy as np

from minibert.classroom import capstone
from minibert.classroom import exercises as X

COUNTER = '''
import builtins as _b, inspect as _i
_C = _b.__dict__.setdefault("_capstone_test_counts", {})
def _count(f):
    def counted(*a, **k):
        _C[f.__name__] = _C.get(f.__name__, 0) + 1
        return f(*a, **k)
    counted.__name__ = f.__name__
    return counted
for _n, _f in list(globals().items()):
    if (isinstance(_f, type(_count)) and _f.__module__ == __name__ and not _n.startswith("_")
            and "NotImplementedError" not in _i.getsource(_f)):
        globals()[_n] = _count(_f)
'''


def test_the_capstone_trains_on_every_finished_function_and_says_which(tmp_path):
    names = ["linear", "softmax", "layernorm", "gelu", "attention", "encoder_layer"]
    X.make(tmp_path / "stubs", names=["softmax"])
    for name in names:
        text = (tmp_path / "stubs" / "softmax.py").read_text() if name == "softmax" else X.source_text(name)
        (tmp_path / f"{name}.py").write_text(text + COUNTER)
    (tmp_path / "broken.py").write_text("this is not python\n")
    builtins.__dict__.pop("_capstone_test_counts", None)
    run = capstone.train_side_by_side(tmp_path, steps=3)
    counts = builtins.__dict__.pop("_capstone_test_counts")
    assert run.coincide, run
    assert "softmax_forward" in run.references and "softmax_backward" in run.references
    assert "softmax_backward" not in run.yours and "attention_backward" in run.yours
    assert any("broken.py" in s for s in run.skipped)
    which = run.which()
    assert "yours" in which and "softmax_backward" in which
    for fn in ["linear_forward", "linear_backward", "layernorm_forward", "layernorm_backward", "gelu_forward",
               "gelu_backward", "attention_backward", "sdpa_backward", "encoder_layer_forward",
               "encoder_layer_backward"]:
        assert counts.get(fn, 0) > 0, (fn, counts)
    assert not any(k.startswith("softmax") for k in counts), counts


def test_a_wrong_student_function_parts_the_curves(tmp_path):
    text = X.source_text("layernorm").replace("    db = dout.reshape(-1, C).sum(axis=0)",
                                              "    db = dout.reshape(-1, C).mean(axis=0)")
    (tmp_path / "layernorm.py").write_text(text)
    run = capstone.train_side_by_side(tmp_path, steps=3)
    assert run.yours == ["layernorm_backward", "layernorm_forward"]
    assert not run.coincide and np.isfinite(run.student).all()
