"""``minibert trace --html``: one self-contained page that steps through the step-through, checked in a
real headless Chromium (Debian's, driven by Playwright as ``book/browser_check.py`` does): the arrow keys
move through the steps in order, and the numbers the page shows are the Python trace's, exactly (the page
carries float64 values in their shortest round-trip form, and a hover prints them back)."""
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from minibert.classroom.stepthrough import step_through
from minibert.classroom.toy import toy_batch_of, toy_config, toy_tokenizer
from minibert.classroom.trace_html import trace_json, write_html
from minibert.models.bert import BertForPreTraining

ROOT = Path(__file__).resolve().parents[2]  # tests/<folder>/ -> the repository
sys.path.insert(0, str(ROOT / "book"))
import browser_check  # noqa: E402


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """An untrained toy-sized BERT (float64), one sentence, its step-through and its page."""
    tok = toy_tokenizer()
    model = BertForPreTraining(toy_config(), seed=3, dtype=np.float64).eval()
    batch = toy_batch_of(tok, "now the dog [MASK] .", "barks")
    tokens = batch.pop("tokens")
    walk = step_through(model, **batch, tokens=tokens, sentence="now the dog [MASK] .",
                        words=tok.convert_ids_to_tokens(list(range(17))))
    path = write_html(walk, tmp_path_factory.mktemp("page") / "trace.html")
    return walk, path


def embedded(path):
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="minibert-trace">(.*?)</script>', text, re.S)
    assert m, "no embedded trace"
    return json.loads(m.group(1)), text


def test_the_page_embeds_the_trace_as_json_with_the_contract_s_names(page):
    walk, path = page
    data, text = embedded(path)
    assert data["sentence"] == "now the dog [MASK] ." and data["loss"] == walk.loss
    assert [(s["name"], s["phase"]) for s in data["steps"]] == [(s.name, s.phase) for s in walk.steps]
    assert {s["phase"] for s in data["steps"]} == {"forward", "backward"}
    soft = next(s for s in data["steps"] if s["name"].endswith("softmax") and s["phase"] == "forward")
    probs = next(t for t in soft["tensors"] if t["name"] == "P")
    assert np.array_equal(np.array(probs["data"]).reshape(probs["shape"]),
                          walk["bert.encoder.layer.0.attention.self.softmax"].out)
    assert "http://" not in text and "https://" not in text and "<link" not in text  # nothing from a network


def test_a_sentence_cannot_close_the_data_script_and_big_tensors_keep_their_first_rows(page, tmp_path):
    walk, _ = page
    walk.sentence = "a </script><script>alert(1)</script> [MASK]"
    try:
        data, _ = embedded(write_html(walk, tmp_path / "t.html"))
    finally:
        walk.sentence = "now the dog [MASK] ."
    assert data["sentence"] == "a </script><script>alert(1)</script> [MASK]"
    small = trace_json(walk, max_values=20, max_param_values=20)
    emb = next(t for t in small["steps"][0]["tensors"] if t["name"] == "E")  # (17, 8): 2 rows of 8 fit in 20
    assert emb["rows_shown"] == 2 and emb["data"] == walk[0].inputs["E"][:2].ravel().tolist()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_html(walk, tmp_path / "no" / "such" / "t.html")


def _need_chromium():
    if not os.access(browser_check.CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {browser_check.CHROMIUM}: apt-get install -y chromium (.ci/run does)")


def _cells(pg):
    """[(tensor name, index tuple, hover text, cell text)] of every cell of the step on screen."""
    return pg.evaluate("""() => Array.from(document.querySelectorAll('#tensors .tensor')).flatMap(box =>
        Array.from(box.querySelectorAll('td')).map(td => [box.querySelector('h4').textContent.split(' ').filter(x => x)[1],
            td.dataset.index, td.title, td.textContent]))""")


def test_chromium_steps_through_with_the_arrow_keys_and_shows_the_trace_s_numbers(page):
    _need_chromium()
    from playwright.sync_api import sync_playwright
    walk, path = page
    checked = 0
    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=browser_check.CHROMIUM,
                                                        headless=True, args=browser_check.FLAGS)
        pg = browser.new_page()
        errors = []
        pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.on("request", lambda r: errors.append(f"request {r.url}") if not r.url.startswith(("file:", "data:")) else None)
        pg.goto(path.as_uri())
        assert pg.inner_text("#step-name") == walk[0].name
        for i in range(1, len(walk)):
            pg.keyboard.press("ArrowRight")
            step = walk[i]
            assert pg.inner_text("#step-name") == step.name, i
            assert f"step {i + 1} of {len(walk)}" in pg.inner_text("#position")
            assert pg.inner_text("#formula") == step.formula
            assert step.source in pg.inner_text("#links")
            tensors = {**step.inputs, **step.outputs}
            for name, index, title, shown in _cells(pg):
                want = np.asarray(tensors[name])[tuple(int(k) for k in index.split(",") if k != "")]
                got = float(title.rsplit(" = ", 1)[1])
                assert got == float(want), (step.name, name, index)  # the hover: the exact number
                if shown:  # the number printed in the cell: 3 significant digits
                    assert abs(float(shown) - float(want)) <= 5e-3 * abs(float(want)) + 1e-300, (step.name, name)
                checked += 1
        pg.keyboard.press("ArrowRight")  # past the end: stays on the last step
        assert pg.inner_text("#step-name") == walk[len(walk) - 1].name
        pg.keyboard.press("ArrowLeft")
        assert pg.inner_text("#step-name") == walk[len(walk) - 2].name
        # hovering shows the value in the status bar; the derivation link is a page of docs/backward
        pg.goto(path.as_uri() + "#step-11")
        assert pg.inner_text("#step-name") == walk[11].name == "bert.encoder.layer.0.attention.self.softmax"
        pg.hover("#tensors .tensor:last-child td >> nth=3")
        want = walk[11].out[0, 0, 0, 3]
        assert float(pg.inner_text("#hover").rsplit(" = ", 1)[1]) == want
        href = pg.get_attribute("#doc-link", "href")
        assert href.endswith("docs/backward/softmax.md") and Path(href[len("file://"):]).is_file()
        browser.close()
    assert not errors, errors
    assert checked > 3000  # every cell of every step (a toy model: about 5000 numbers)


def test_cli_writes_the_page_for_a_saved_model(tmp_path):
    tok = toy_tokenizer()
    model = BertForPreTraining(toy_config(), seed=0, dtype=np.float64)
    model.save_pretrained(tmp_path / "toy", tok)
    out = tmp_path / "trace.html"
    r = subprocess.run([sys.executable, "-m", "minibert", "trace", "--model", str(tmp_path / "toy"), "--html", str(out),
                        "the cat [MASK] .", "--answer", "meows"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data, _ = embedded(out)
    assert data["sentence"] == "the cat [MASK] ." and len(data["steps"]) == 68
    labels = next(t for t in data["steps"] if t["name"] == "cls.predictions.loss")["tensors"][1]
    assert labels["data"] == [tok.vocab["meows"]]
    r = subprocess.run([sys.executable, "-m", "minibert", "trace", "--model", str(tmp_path / "toy"), "--html",
                        str(tmp_path), "the cat [MASK] ."], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "is a folder" in r.stderr


def test_cli_toy_trains_lesson_11_s_model_and_writes_its_page(tmp_path):
    out = tmp_path / "toy.html"
    r = subprocess.run([sys.executable, "-m", "minibert", "trace", "--toy", "--html", str(out), "the cat often [MASK] ."],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "toy BERT" in r.stdout and "34 forward and 34 backward steps" in r.stdout
    data, _ = embedded(out)
    decoder = next(s for s in data["steps"] if s["name"] == "cls.predictions.decoder" and s["phase"] == "forward")
    logits = next(t for t in decoder["tensors"] if t["name"] == "logits")["data"]
    assert data["words"][int(np.argmax(logits))] == "meows"  # the model's own guess, and the right one
    r = subprocess.run([sys.executable, "-m", "minibert", "trace", "--toy", "--model", str(tmp_path), "the [MASK] ."],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--toy or --model" in r.stderr
