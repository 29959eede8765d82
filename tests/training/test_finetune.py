"""Fine-tuning end to end: the built-in task's split, the loop's outputs, exact resume, the CLI, and
the inference helpers (fill-mask, sentence embeddings, attention maps)."""
import argparse
import json
import os

import numpy as np
import pytest

import minibert
from conftest import small_config
from minibert.cli import add_config_options, config_from_args
from minibert.training import finetune as ft
from minibert.data.synthetic import SYNTHETIC_TOPICS, synthetic_corpus, synthetic_vocabulary
from minibert.training.inference import attention_maps, cosine_similarity, fill_mask, mean_pool, sentence_embeddings

TOPICS = ("kitchen", "farm", "sea", "space")


def topic_task():
    """Sentence -> topic on the synthetic language (4 classes), split by document."""
    noun_topic = {n: t for t, nouns in SYNTHETIC_TOPICS.items() for n in nouns}
    corpus = synthetic_corpus(num_docs=120, seed=3)
    task = ft.ClassificationTask("synthetic-topics", list(TOPICS), [], [], [], [], [], [])
    for d, doc in enumerate(corpus.train + corpus.heldout):
        for sentence in doc:
            topic = next(noun_topic[w] for w in sentence.rstrip(".").split() if w in noun_topic)
            if topic not in TOPICS:
                continue
            test = d % 4 == 0
            (task.test_texts if test else task.train_texts).append(sentence)
            (task.test_labels if test else task.train_labels).append(TOPICS.index(topic))
            (task.test_groups if test else task.train_groups).append(f"doc{d}")
    task.train_labels, task.test_labels = np.array(task.train_labels), np.array(task.test_labels)
    return task


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A (random) minibert pretraining-format directory with the synthetic language's vocabulary."""
    d = tmp_path_factory.mktemp("pretrained")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + synthetic_vocabulary()
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = minibert.BertTokenizer(str(d / "vocab.txt"))
    cfg = small_config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=48, max_position_embeddings=32, hidden_dropout_prob=0.1,
                       attention_probs_dropout_prob=0.1)
    minibert.BertForPreTraining(cfg, seed=11).save_pretrained(str(d / "model"), tok)
    return str(d)


def _cfg(model_dir, out, **kw):
    base = dict(model=model_dir, out=str(out), max_steps=60, batch_size=16, max_seq_length=24, lr=5e-3,
                warmup_steps=6, eval_every=30, checkpoint_every=30, verbose=False, backend="numpy")
    base.update(kw)
    return ft.FinetuneConfig(**base)


def test_builtin_task_is_split_by_module_deterministically_with_every_class_on_both_sides():
    task = ft.stdlib_package_task()
    assert task.label_names == list(ft.STDLIB_PACKAGES)
    assert not set(task.train_groups) & set(task.test_groups), "a module on both sides of the split"
    for k, package in enumerate(task.label_names):
        n_train, n_test = (task.train_labels == k).sum(), (task.test_labels == k).sum()
        assert n_train >= 100 and n_test >= 30, (package, n_train, n_test)
        assert 0.15 < n_test / (n_train + n_test) < 0.5, package
        assert all(g.split(".")[0] == package for g, y in zip(task.test_groups, task.test_labels) if y == k)
    assert len(task.train_texts) == len(task.train_labels) == len(task.train_groups) > 2000
    again = ft.stdlib_package_task()
    assert again.test_texts == task.test_texts and (again.test_labels == task.test_labels).all()
    assert 1 / 6 < task.majority_baseline() < 0.4


def test_finetune_writes_log_checkpoint_metrics_curves_and_a_model_transformers_can_read(tiny_model_dir, tmp_path):
    task = topic_task()
    metrics = ft.finetune(_cfg(tiny_model_dir, tmp_path), task)
    on_disk = json.load(open(tmp_path / "metrics.json"))
    assert on_disk["eval"] == metrics["eval"] and on_disk["start"] == "pretrained" and on_disk["steps"] == 60
    assert {"accuracy", "balanced_accuracy", "loss", "per_class_accuracy", "confusion"} <= set(metrics["eval"])
    assert [e["step"] for e in metrics["eval_history"]] == [0, 30, 60]
    assert np.sum(metrics["eval"]["confusion"]) == len(task.test_texts)
    log = [json.loads(l) for l in open(tmp_path / "log.jsonl")]
    assert [r["step"] for r in log] == list(range(1, 61))
    assert os.path.getsize(tmp_path / "curves.png") > 10_000
    assert os.path.isfile(tmp_path / "checkpoint.safetensors")
    # the task is learnable from words alone: even a random start beats the majority class in 60 steps
    assert metrics["eval"]["accuracy"] > metrics["majority_baseline"] + 0.15, (metrics["eval"], metrics["majority_baseline"])
    assert log[-1]["loss"] < log[0]["loss"]
    # model/ is a transformers-format classifier with label names
    model = minibert.BertForSequenceClassification.from_pretrained(str(tmp_path / "model"), verbose=False)
    assert model.missing_keys == [] and model.config.num_labels == 4
    config = json.load(open(tmp_path / "model" / "config.json"))
    assert config["id2label"] == {"0": "kitchen", "1": "farm", "2": "sea", "3": "space"}
    tok = minibert.BertTokenizer(str(tmp_path / "model" / "vocab.txt"))
    preds = ft.classify(model, tok, task.test_texts, task.label_names, max_length=24)
    assert all(0.25 <= p <= 1 for _, p in preds)  # the top probability of 4 classes is at least 1/4
    accuracy = np.mean([task.label_names[y] == name for (name, _), y in zip(preds, task.test_labels)])
    assert accuracy == pytest.approx(metrics["eval"]["accuracy"])  # the saved model is the evaluated one


def test_a_run_interrupted_and_resumed_ends_exactly_where_an_uninterrupted_run_ends(tiny_model_dir, tmp_path,
                                                                                   monkeypatch):
    task = topic_task()
    full = ft.finetune(_cfg(tiny_model_dir, tmp_path / "full", max_steps=12, checkpoint_every=4, eval_every=6), task)

    import minibert.training.loop as train  # training_step, shared with pretraining, does the clipping
    calls = {"n": 0}
    real_clip = train.clip_grad_norm

    def crash_on_step_7(model, max_norm):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt("simulated crash during step 7")
        return real_clip(model, max_norm)

    monkeypatch.setattr(train, "clip_grad_norm", crash_on_step_7)
    cfg = _cfg(tiny_model_dir, tmp_path / "killed", max_steps=12, checkpoint_every=4, eval_every=6)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(cfg, task)
    monkeypatch.setattr(train, "clip_grad_norm", real_clip)
    resumed = ft.finetune(ft.FinetuneConfig(**{**cfg.__dict__, "resume": True}), task)  # resumes at step 4
    assert resumed["eval"] == full["eval"]
    a = minibert.BertForSequenceClassification.from_pretrained(str(tmp_path / "full" / "model"), verbose=False)
    b = minibert.BertForSequenceClassification.from_pretrained(str(tmp_path / "killed" / "model"), verbose=False)
    for n, p in a.state_dict().items():
        np.testing.assert_array_equal(p, b.state_dict()[n], err_msg=n)
    log = [json.loads(l) for l in open(tmp_path / "killed" / "log.jsonl")]
    assert [r["step"] for r in log] == list(range(1, 13))  # the lines of the lost steps 5-6 were rewritten


def test_random_start_keeps_architecture_and_vocabulary_but_not_the_weights(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path, random_init=True)
    model, tok, start = ft.build_model(cfg, 4, log=lambda *a: None)
    pre, _, start_pre = ft.build_model(_cfg(tiny_model_dir, tmp_path), 4, log=lambda *a: None)
    assert (start, start_pre) == ("random", "pretrained")
    assert model.config == pre.config and len(tok.vocab) == model.config.vocab_size
    w = "bert.encoder.layer.0.attention.self.query.weight"
    assert not np.allclose(model.state_dict()[w], pre.state_dict()[w])


def test_fine_tuning_keeps_the_dropout_the_model_was_pretrained_with_unless_told(tmp_path):
    """minibert pretrains with dropout 0 and writes that into config.json; fine-tuning keeps it unless told
    otherwise (a random start with that architecture too).  Measured (docs/applications.md): fine-tuning
    our pretrained Tiny with BERT's 0.1 instead of its own 0 cost span QA 0.19 exact match (0.348 vs 0.537)."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + synthetic_vocabulary()
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    cfg = small_config(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=24, max_position_embeddings=32, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    tok = minibert.BertTokenizer(str(tmp_path / "vocab.txt"))
    minibert.BertForPreTraining(cfg, seed=1).save_pretrained(str(tmp_path / "model"), tok)
    for kw, expected in [({}, 0.0), ({"dropout": None}, 0.0), ({"dropout": 0.3}, 0.3), ({"dropout": 0.1}, 0.1),
                         ({"random_init": True}, 0.0)]:
        model, _, _ = ft.build_model(_cfg(str(tmp_path), tmp_path / "out", **kw), 4, log=lambda *a: None)
        assert (model.config.hidden_dropout_prob, model.config.attention_probs_dropout_prob) == (expected, expected), kw


def test_cli_finetune_compare_runs_both_starts_and_plots_them(tiny_model_dir, tmp_path, capsys):
    from minibert.cli import main
    out = tmp_path / "cmp"
    code = main(["finetune", "--model", tiny_model_dir, "--compare", "--out", str(out), "--max-steps", "2",
                 "--eval-every", "2", "--batch-size", "8", "--max-seq-length", "16", "--backend", "numpy", "--quiet"])
    assert code == 0
    for start in ("pretrained", "random"):
        m = json.load(open(out / start / "metrics.json"))
        assert m["start"] == start and m["task"] == "stdlib-packages" and m["steps"] == 2
    summary = json.load(open(out / "comparison.json"))
    assert set(summary) >= {"pretrained", "random", "majority_baseline", "chance"}
    assert os.path.getsize(out / "comparison.png") > 10_000


def test_cli_and_config_errors_name_the_problem(tmp_path, capsys):
    from minibert.cli import main
    assert main(["finetune", "--model", str(tmp_path / "nope"), "--quiet"]) == 2
    assert "model directory not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["finetune", "--model", str(tmp_path / "empty"), "--quiet"]) == 2
    assert "the model/ folder of a `minibert pretrain` output" in capsys.readouterr().err
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        ft.FinetuneConfig(max_steps=0).validate()
    with pytest.raises(ValueError, match="task must be one of"):
        ft.FinetuneConfig(task="glue").validate()
    with pytest.raises(ValueError, match="compare_starts needs cfg.model"):
        ft.compare_starts(ft.FinetuneConfig(model=None))


def test_span_qa_fine_tunes_for_1000_steps_by_default_and_the_other_tasks_for_300():
    """A pretrained Tiny grows the span-QA attention between steps 300 and 600 (docs/applications.md)."""
    assert ft.FinetuneConfig(task="stdlib-quoted-qa").max_steps == 1000
    assert {ft.FinetuneConfig(task=t).max_steps for t in ft.TASKS if t != "stdlib-quoted-qa"} == {300}
    assert ft.FinetuneConfig(task="stdlib-quoted-qa", max_steps=20).max_steps == 20   # --max-steps wins
    parser = argparse.ArgumentParser()                                                    # and so does the CLI
    add_config_options(parser, ft.FinetuneConfig)
    assert config_from_args(ft.FinetuneConfig, parser.parse_args(["--task", "stdlib-quoted-qa"])).max_steps == 1000


# -- inference helpers -----------------------------------------------------------------------------
def test_fill_mask_gives_sorted_top_k_probabilities_of_the_mlm_head(tiny_model_dir):
    model = minibert.BertForPreTraining.from_pretrained(os.path.join(tiny_model_dir, "model"), verbose=False)
    tok = minibert.BertTokenizer(os.path.join(tiny_model_dir, "model", "vocab.txt"))
    model.train()
    [(position, top)] = fill_mask(model, tok, "the red [MASK] holds the blue bowl.", top_k=4)
    assert position == 3 and len(top) == 4
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1
    enc = tok("the red [MASK] holds the blue bowl.", return_tensors="np")
    z = model.eval()(enc["input_ids"]).prediction_logits[0, 3].astype(np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert top[0] == (tok.convert_ids_to_tokens(int(p.argmax())), pytest.approx(p.max(), rel=1e-6))
    assert model.training is False  # fill_mask restores the mode it found (eval here)


def test_sentence_embeddings_are_masked_means_and_ignore_padding(tiny_model_dir):
    model = minibert.BertModel.from_pretrained(os.path.join(tiny_model_dir, "model"), verbose=False, dtype=np.float64)
    tok = minibert.BertTokenizer(os.path.join(tiny_model_dir, "model", "vocab.txt"))
    sentences = ["the red cup holds the blue bowl.", "a cow.", "the green fox sees the yellow owl."]
    batched = sentence_embeddings(model, tok, sentences, batch_size=3)  # padded together
    alone = np.concatenate([sentence_embeddings(model, tok, s) for s in sentences])  # no padding
    np.testing.assert_allclose(batched, alone, atol=1e-12)
    enc = tok(sentences[0], return_tensors="np")
    h = model(enc["input_ids"]).last_hidden_state
    np.testing.assert_allclose(batched[0], h[0].mean(0), atol=1e-12)
    unit = sentence_embeddings(model, tok, sentences, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-12)
    h = np.random.default_rng(0).standard_normal((2, 4, 3))
    np.testing.assert_allclose(mean_pool(h, np.array([[1, 1, 0, 0], [1, 1, 1, 1]]))[0], h[0, :2].mean(0))


def test_cosine_similarity_of_vectors():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(cosine_similarity(a, a), [[1, 2 ** -0.5], [2 ** -0.5, 1]], atol=1e-15)
    np.testing.assert_allclose(cosine_similarity([3.0, 0.0], [[-1.0, 0.0], [0.0, 5.0]]), [[-1, 0]], atol=1e-15)
    with pytest.raises(ValueError, match="different sizes"):
        cosine_similarity(np.ones(3), np.ones(4))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_attention_maps_are_one_probability_row_per_query_for_every_layer_and_head(tiny_model_dir, backend):
    previous = minibert.get_backend()
    minibert.set_backend(backend)
    try:
        model = minibert.BertForSequenceClassification.from_pretrained(os.path.join(tiny_model_dir, "model"), verbose=False, num_labels=3)
        tok = minibert.BertTokenizer(os.path.join(tiny_model_dir, "model", "vocab.txt"))
        model.train()
        tokens, probs = attention_maps(model, tok, "the red cup", "a blue whale.")
    finally:
        minibert.set_backend(previous)
    assert tokens == ["[CLS]", "the", "red", "cup", "[SEP]", "a", "blue", "whale", ".", "[SEP]"]
    assert probs.shape == (1, 2, 10, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert model.training  # restored


def test_a_nan_gradient_stops_fine_tuning_with_the_step_named(tiny_model_dir, tmp_path, monkeypatch):
    """Fine-tuning runs the same loop and training_step as pretraining, so it has the same non-finite guards."""
    import minibert.training.loop as train
    monkeypatch.setattr(train, "clip_grad_norm", lambda model, max_norm: float("nan"))
    with pytest.raises(FloatingPointError, match=r"non-finite gradient norm at step 1; no checkpoint was written yet"):
        ft.finetune(_cfg(tiny_model_dir, tmp_path / "nan", max_steps=4, checkpoint_every=2, eval_every=2), topic_task())
