"""The seed's applications (minibert/training/applications.py): the three built-in tasks made from the
bundled corpus, their trivial baselines, answer decoding, short fine-tuning runs end to end, and the
frozen-encoder option (bert.* bit for bit unchanged).

What a few steps on a 1-layer, 32-wide random model can show is only that each run goes end to end
and its training loss falls; whether the model beats the baselines is a question for the lesson
(notebooks/src/08b_applications.py) and for longer runs."""
import json
import os

import numpy as np
import pytest

import minibert
from conftest import small_config
from minibert.data.cpython_docs import load_default_corpus
from minibert.layers.cross_entropy import IGNORE_INDEX
from minibert.optim import AdamW
from minibert.training import applications as ap
from minibert.training import finetune as ft
from minibert.training.pretrain import build_vocab


@pytest.fixture(scope="module")
def corpus():
    return load_default_corpus()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, corpus):
    """A 600-piece WordPiece vocabulary trained on the corpus's quoted sentences (fast, and it has '"')."""
    quoted = [[s for s in doc if '"' in s] for doc in corpus.train]
    return build_vocab([d for d in quoted if d], 600, str(tmp_path_factory.mktemp("vocab") / "vocab.txt"), False)


@pytest.fixture(scope="module")
def tasks(corpus):
    return {name: ap.load_application_task(name, corpus) for name in ap.APPLICATION_TASKS}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    """A random 1-layer BERT in minibert's pretraining-output format with the corpus vocabulary."""
    d = tmp_path_factory.mktemp("pretrained")
    tokenizer.save_vocabulary(str(d))
    cfg = small_config(vocab_size=len(tokenizer.vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=48, max_position_embeddings=48, hidden_dropout_prob=0.1,
                       attention_probs_dropout_prob=0.1)
    minibert.BertForPreTraining(cfg, seed=5).save_pretrained(str(d / "model"), tokenizer)
    return str(d)


# -- the tasks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ap.APPLICATION_TASKS)
def test_each_task_builds_deterministically_and_is_split_by_document(name, corpus, tasks):
    task, again = tasks[name], ap.load_application_task(name, corpus)
    assert [t for t, _ in task.train_docs] == [t for t, _ in again.train_docs]
    assert [t for t, _ in task.test_docs] == [t for t, _ in again.test_docs]
    train_titles, test_titles = {t for t, _ in task.train_docs}, {t for t, _ in task.test_docs}
    assert train_titles and test_titles and not train_titles & test_titles
    n_train, n_test = (sum(len(d) for _, d in docs) for docs in (task.train_docs, task.test_docs))
    assert 0.2 < n_test / (n_train + n_test) < 0.35  # about a quarter of the sentences are held out
    if name == "stdlib-same-doc":
        assert task.train_pairs == again.train_pairs and task.test_pairs == again.test_pairs


def test_code_tags_are_the_quote_parity_of_each_piece(tasks, tokenizer):
    """Re-derived independently from the ids: a piece is code iff an odd number of quote marks precede it."""
    task = tasks["stdlib-code-tags"]
    quote = tokenizer.convert_tokens_to_ids(['"'])[0]
    train, test = ap.encode_task(task, tokenizer, 48)
    assert len(train) > 1000 and len(test) > 300
    for ex in train + test:
        ids, labels = np.array(ex["input_ids"]), np.array(ex["labels"])
        parity = np.cumsum(ids == quote) % 2
        words = (ids != quote) & (ids != tokenizer.cls_token_id) & (ids != tokenizer.sep_token_id)
        assert (labels[~words] == IGNORE_INDEX).all()
        assert (labels[words] == parity[words]).all()
    pieces, tags, words = ap.tag_words(tokenizer, 'The "assert expression" form.')
    by_word = [0, IGNORE_INDEX, 1, 1, IGNORE_INDEX, 0, 0]  # the " assert expression " form .
    assert tags == [by_word[w] for w in words] and pieces == tokenizer.tokenize('The "assert expression" form.')


def test_qa_answers_are_the_quoted_span_holding_the_question_word(tasks, tokenizer):
    task = tasks["stdlib-quoted-qa"]
    quote = tokenizer.convert_tokens_to_ids(['"'])[0]
    train, test = ap.encode_task(task, tokenizer, 48)
    assert len(train) > 300 and len(test) > 100
    for ex in train + test:
        ids, s, e = ex["input_ids"], ex["start_positions"], ex["end_positions"]
        q_end = ids.index(tokenizer.sep_token_id)
        question = ids[1:q_end]
        assert ids[s - 1] == quote and ids[e + 1] == quote and quote not in ids[s:e + 1]
        answer = ids[s:e + 1]
        assert any(answer[i:i + len(question)] == question for i in range(len(answer)))  # the word is in it
        assert ex["token_type_ids"][s] == 1 and ex["context"][s] == 1 and ex["context"][q_end] == 0
        assert len(ex["spans"]) >= 2 and (s, e) in ex["spans"]
    text = 'Use "yield" or "await x" here.'
    ex = task.encode(tokenizer, [("t", [text])], 48)
    n = [len(tokenizer.tokenize(w)) for w in ("use", '"', "yield", '"', "or", '"', "await", "x")]
    # question "yield": [CLS] yield [SEP] use " yield ..., answer = the pieces of yield
    q1 = 2 + n[2]
    assert (ex[0]["start_positions"], ex[0]["end_positions"]) == (q1 + n[0] + 1, q1 + n[0] + n[2])
    q2 = 2 + n[6]  # question "await" (longer than "x"): the answer is "await x"
    a2 = q2 + sum(n[:6])
    assert (ex[1]["start_positions"], ex[1]["end_positions"]) == (a2, a2 + n[6] + n[7] - 1)


def test_same_doc_pairs_are_balanced_and_labelled_by_their_document(tasks, tokenizer):
    task = tasks["stdlib-same-doc"]
    doc_of = {}
    for title, doc in task.train_docs + task.test_docs:
        for s in doc:
            doc_of.setdefault(s, set()).add(title)
    for pairs in (task.train_pairs, task.test_pairs):
        labels = np.array([y for _, _, y in pairs])
        assert labels.mean() == 0.5
        for a, b, y in pairs:
            assert bool(doc_of[a] & doc_of[b]) == bool(y) or (not y and doc_of[a] & doc_of[b])  # a shared sentence
    ex = task.encode(tokenizer, task.train_pairs[:4], 48)
    for e in ex:
        sep = e["input_ids"].index(tokenizer.sep_token_id)
        assert set(e["token_type_ids"][:sep + 1]) == {0} and set(e["token_type_ids"][sep + 1:]) == {1}


def test_baselines_are_computed_from_the_data(tasks, tokenizer):
    tag = tasks["stdlib-code-tags"]
    train, test = ap.encode_task(tag, tokenizer, 48)
    b = tag.baselines(train, test)
    gold = np.concatenate([e["labels"] for e in test])
    assert b["majority"]["f1"] == 0 and b["majority"]["token_accuracy"] == pytest.approx((gold == 0).sum() / (gold != -100).sum())
    assert 0 < b["word_lookup"]["f1"] < 1
    qa = tasks["stdlib-quoted-qa"]
    train, test = ap.encode_task(qa, tokenizer, 48)
    b = qa.baselines(train, test)
    assert b["first_token"]["exact_match"] == 0
    share_first = np.mean([e["spans"][0] == (e["start_positions"], e["end_positions"]) for e in test])
    assert b["first_quoted_span"]["exact_match"] == pytest.approx(share_first) and 0.2 < share_first < 0.6
    b = tasks["stdlib-same-doc"].baselines()
    assert b["majority"]["accuracy"] == 0.5 and 0.5 < b["word_overlap"]["accuracy"] < 0.8


# -- answer decoding -------------------------------------------------------------------------------
def test_decoding_picks_the_best_legal_span_on_hand_made_logits():
    #              CLS   q   SEP   c0   c1   c2   c3   SEP
    start = np.array([9., 8., 0., 2., 0., 5., 0., 0.])
    end = np.array([9., 8., 0., 4., 0., 0., 2., 0.])
    ctx = np.array([0, 0, 0, 1, 1, 1, 1, 0], bool)
    # best start alone is c2 (5) and best end alone c0 (4), but end < start is illegal: c2..c3 (5 + 2)
    assert ap.best_spans(start, end, ctx, 30)[:2] == (5, 6)
    # with a length cap of 1 token the span must be one token: c0..c0 (2 + 4 = 6) beats c2..c2 (5 + 0):
    # no tie (issue 25: a tie would be decided by argmax's "first wins", not by the rule being taught)
    s, e, score = ap.best_spans(start, end, ctx, 1)
    assert (s, e, score) == (3, 3, 6.0)
    # [CLS] and the question have the largest logits but are not context
    assert ap.best_spans(start, end, np.ones(8, bool), 30)[:2] == (0, 0)


def test_decoding_equals_a_brute_force_search_on_random_rows():
    rng = np.random.default_rng(0)
    s, e = rng.normal(size=(20, 11)), rng.normal(size=(20, 11))
    ok = rng.random((20, 11)) < 0.6
    ok[:, 4] = True
    starts, ends, scores = ap.best_spans(s, e, ok, 3)
    for b in range(20):
        best = max((s[b, i] + e[b, j], i, j) for i in range(11) for j in range(i, min(11, i + 3)) if ok[b, i] and ok[b, j])
        assert (starts[b], ends[b]) == best[1:] and scores[b] == pytest.approx(best[0], abs=0)


def test_decoding_errors_name_the_problem():
    with pytest.raises(ValueError, match="row 1 of allowed has no allowed position"):
        ap.best_spans(np.zeros((2, 3)), np.zeros((2, 3)), np.array([[1, 0, 0], [0, 0, 0]], bool))
    with pytest.raises(ValueError, match="max_answer_length must be a positive integer"):
        ap.best_spans(np.zeros(3), np.zeros(3), np.ones(3, bool), 0)
    with pytest.raises(ValueError, match="one shape"):
        ap.best_spans(np.zeros(3), np.zeros(4), np.ones(3, bool))


def test_span_scores_are_squads_exact_match_and_token_f1():
    assert ap.span_scores((3, 5), (3, 5)) == (1.0, 1.0)
    assert ap.span_scores((3, 4), (4, 7)) == (0.0, pytest.approx(2 * 0.5 * 0.25 / 0.75))  # 1 shared of 2 and 4
    assert ap.span_scores((0, 0), (4, 7)) == (0.0, 0.0)


# -- the frozen encoder ----------------------------------------------------------------------------
def test_adamw_leaves_parameters_that_are_not_trainable_exactly_as_they_are():
    cfg = small_config(vocab_size=30, hidden_size=12, num_hidden_layers=1, num_attention_heads=3,
                       intermediate_size=20, max_position_embeddings=16, num_labels=3)
    model = minibert.BertForSequenceClassification(cfg, seed=1)
    before = {n: p.copy() for n, p, _ in model.named_parameters()}
    for _, _, g in model.named_parameters():
        g[...] = 0.1  # every parameter has a gradient, and weight decay would move the rest
    opt = AdamW(model, lr=1e-2, weight_decay=0.5, trainable=lambda n: not n.startswith("bert."))
    opt.step()
    for n, p, _ in model.named_parameters():
        assert np.array_equal(p, before[n]) == n.startswith("bert."), n


@pytest.mark.parametrize("name", ap.APPLICATION_TASKS)
def test_a_short_run_goes_end_to_end_with_baselines_and_metrics_written(name, tasks, model_dir, tmp_path):
    task = tasks[name]
    out = tmp_path / name
    m = ft.finetune(ft.FinetuneConfig(task=name, model=model_dir, out=str(out), max_steps=20, batch_size=16,
                                      max_seq_length=48, lr=5e-3, warmup_steps=2, eval_every=20, verbose=False,
                                      backend="numpy"), _smaller(task))
    on_disk = json.load(open(out / "metrics.json"))
    assert on_disk["eval"] == pytest.approx(m["eval"]) and on_disk["baselines"] == m["baselines"]
    assert m["task"] == name and m["steps"] == 20 and np.isfinite(m["eval"]["loss"]) and m["eval"][task.metric] >= 0
    assert os.path.isfile(out / "curves.png") and os.path.isdir(out / "model")
    assert m["eval_history"][0]["step"] == 0
    if name != "stdlib-same-doc":  # tagging and QA learn something in 20 steps (held-out loss falls);
        # the pair task starts at ln 2 and stays there this early (seen: 0.6935 vs 0.6932): no claim
        assert m["eval_history"][-1]["loss"] < m["eval_history"][0]["loss"]


def _smaller(task):
    """The task with its test side cut to 20 documents (tests run in seconds)."""
    import copy
    small = copy.copy(task)
    small.test_docs = task.test_docs[:20]
    if hasattr(task, "test_pairs"):
        small.test_pairs = task.test_pairs[:200]
    return small


def test_freeze_encoder_trains_the_head_only(tasks, model_dir, tmp_path):
    """The encoder of a frozen run is bit for bit the loaded one; the head moved; a full run moves both."""
    from minibert.models.heads import BertForTokenClassification
    loaded = BertForTokenClassification.from_pretrained(os.path.join(model_dir, "model"), num_labels=2, verbose=False)
    task = _smaller(tasks["stdlib-code-tags"])
    runs = {}
    for frozen in (True, False):
        out = tmp_path / str(frozen)
        m = ft.finetune(ft.FinetuneConfig(task=task.name, model=model_dir, out=str(out), max_steps=5, batch_size=8,
                                          max_seq_length=48, lr=5e-3, warmup_steps=1, eval_every=5, verbose=False,
                                          backend="numpy", freeze_encoder=frozen), task)
        runs[frozen] = (m, BertForTokenClassification.from_pretrained(str(out / "model"), verbose=False))
    (m, frozen), (_, full) = runs[True], runs[False]
    assert m["freeze_encoder"] and m["trainable_parameters"] == 2 * 32 + 2
    for n, p, _ in loaded.named_parameters():
        if n.startswith("bert."):
            assert np.array_equal(frozen.state_dict()[n], p), n
    assert not np.array_equal(frozen.state_dict()["classifier.weight"], loaded.state_dict()["classifier.weight"])
    moved = [n for n, p, _ in loaded.named_parameters() if n.startswith("bert.") and not np.array_equal(full.state_dict()[n], p)]
    assert len(moved) > 10


def test_cli_finetune_takes_a_task_and_freeze_encoder(model_dir, tmp_path):
    from minibert.cli import main
    out = tmp_path / "cli"
    code = main(["finetune", "--task", "stdlib-same-doc", "--freeze-encoder", "--model", model_dir, "--out", str(out),
                 "--max-steps", "2", "--eval-every", "2", "--batch-size", "4", "--max-seq-length", "32",
                 "--backend", "numpy", "--quiet"])
    assert code == 0
    m = json.load(open(out / "metrics.json"))
    assert m["task"] == "stdlib-same-doc" and m["freeze_encoder"] and m["steps"] == 2



def test_compare_runs_both_starts_on_an_application_task_too(model_dir, tmp_path):
    """One pipeline for the four tasks: --compare is not only for the classification."""
    from minibert.cli import main
    out = tmp_path / "cmp"
    code = main(["finetune", "--task", "stdlib-code-tags", "--compare", "--model", model_dir, "--out", str(out),
                 "--max-steps", "2", "--eval-every", "2", "--batch-size", "4", "--max-seq-length", "32",
                 "--backend", "numpy", "--quiet"])
    assert code == 0
    summary = json.load(open(out / "comparison.json"))
    assert summary["metric"] == "f1" and set(summary["baselines"]) == {"majority", "word_lookup"}
    for start in ("pretrained", "random"):
        m = json.load(open(out / start / "metrics.json"))
        assert m["start"] == start and m["steps"] == 2 and summary[start]["f1"] == m["eval"]["f1"]
    assert os.path.getsize(out / "comparison.png") > 10_000
