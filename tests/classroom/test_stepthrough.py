"""The step-through (``minibert.classroom.stepthrough``) is the model, one operation at a time, and the toy
BERT of lesson 11 learns its language.

Equality with the model is tested in float64 with parameters moved away from their initialisation (so
no gradient is accidentally zero) on a padded batch of two rows, three masked positions, both losses.
Tolerance 1e-12 relative to the largest entry of each array: the step-through calls the same NumPy
references as the model, in the same order, except that it sums the four paths into a layer's input in
one expression (the model adds them one by one), which moves the last bits (seen: 8e-16).  The key bias's
gradient is zero in exact arithmetic (softmax ignores a shift of a row), so both sides are rounding noise
there: it is compared absolutely (1e-12).
"""
import os
import tempfile

import numpy as np
import pytest

from minibert import backend
from minibert.classroom.stepthrough import step_through
from minibert.classroom.toy import (TOY_SOUNDS, TOY_WORDS, check_by_hand, toy_batch_of, toy_tokenizer,
                                   train_toy_bert)
from minibert.config import BertConfig
from minibert.layers.cross_entropy import IGNORE_INDEX
from minibert.models.bert import BertForPreTraining
from conftest import padded_two_sequence_batch

B, T, V, C, A = 2, 7, 31, 12, 3
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/<folder>/ -> the repository


def rel(a, b):
    return float(np.abs(a - b).max() / max(1e-300, np.abs(b).max()))


@pytest.fixture(scope="module")
def case():
    cfg = BertConfig(vocab_size=V, hidden_size=C, num_hidden_layers=2, num_attention_heads=A, intermediate_size=20,
                     max_position_embeddings=16)
    model = BertForPreTraining(cfg, seed=1, dtype=np.float64).eval()
    rng = np.random.default_rng(0)
    for _, p, _ in model.named_parameters():
        p += rng.normal(0, 0.3, p.shape)  # gains away from 1, biases away from 0
    batch = padded_two_sequence_batch(rng, T, V)
    walk = step_through(model, **batch)
    return model, batch, walk


def test_every_parameter_gradient_equals_the_models_backward(case):
    model, batch, walk = case
    model.zero_grad()
    out = model(**batch)
    model.backward()
    assert abs(walk.loss - float(out.loss)) <= 1e-12 * abs(float(out.loss))
    assert abs(walk.mlm_loss - float(out.mlm_loss)) <= 1e-12 and abs(walk.nsp_loss - float(out.nsp_loss)) <= 1e-12
    for name, _, grad in model.named_parameters():
        mine = walk.param_grad(name)
        if "key.bias" in name:
            assert np.abs(mine - grad).max() < 1e-12, name
        else:
            assert rel(mine, grad) < 1e-12, name


def test_forward_tensors_are_the_models(case):
    model, batch, walk = case
    out = model.bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], output_attentions=True)
    for layer in range(2):
        assert rel(walk[f"bert.encoder.layer.{layer}.attention.self.softmax"].out, out.attentions[layer]) < 1e-12
    assert rel(walk["bert.encoder.layer.1.output.LayerNorm"].out, out.last_hidden_state) < 1e-12
    assert rel(walk["bert.pooler.tanh"].out, out.pooler_output) < 1e-12
    full = model(**batch)
    logits = full.prediction_logits  # (P, V) at the labelled positions, or (B, T, V)
    positions = np.flatnonzero(batch["labels"].reshape(-1) != IGNORE_INDEX)
    if logits.ndim == 3:
        logits = logits.reshape(-1, V)[positions]
    assert rel(walk["cls.predictions.decoder"].out, logits) < 1e-12
    assert rel(walk["cls.seq_relationship"].out, full.seq_relationship_logits) < 1e-12


def test_glue_is_a_step_and_every_step_names_its_source_line_and_derivation(case):
    _, _, walk = case
    names = {s.name for s in walk.forward}
    for glue in ("bert.embeddings.word_embeddings", "bert.embeddings.token_type_embeddings",
                 "bert.embeddings.position_embeddings", "bert.embeddings.sum", "bert.embeddings.LayerNorm",
                 "bert.encoder.layer.0.attention.output.residual", "bert.encoder.layer.1.output.residual",
                 "bert.pooler.cls_slice", "cls.predictions.gather", "cls.predictions.decoder",
                 "cls.predictions.loss", "cls.seq_relationship.loss", "loss"):
        assert glue in names, glue
    assert [s.phase for s in walk.steps] == sorted((s.phase for s in walk.steps), key=lambda p: p == "backward")
    for s in walk.steps:
        path, line = s.source.rsplit(":", 1)
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            assert 1 <= int(line) <= len(f.readlines()), s.source
        assert s.doc and os.path.isfile(os.path.join(ROOT, s.doc)), (s.name, s.doc)  # every step links a derivation
        assert s.formula
        assert not s.source.endswith(":1"), s.source  # a line found, not the top of a file
    # a glue step points at the model's line that does it (if the model's code moves on, at its function)
    for name, text in (("bert.embeddings.sum", "we + te + pe"),
                       ("bert.encoder.layer.0.attention.output.residual", "a + x"),
                       ("bert.encoder.layer.1.output.residual", "f + h"),
                       ("bert.encoder.layer.0.attention.self.scores", "q @ k"),
                       ("bert.pooler.cls_slice", "x[:, 0]"),
                       ("cls.predictions.gather", "cross_entropy_forward(logits, labels")):
        path, line = walk[name].source.rsplit(":", 1)
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            assert text in f.readlines()[int(line) - 1]
    for name, text in (("cls.predictions.gather", "dlogits = K.cross_entropy_backward"),
                       ("bert.pooler.cls_slice", "dx[:, 0] += self.pooler_backward")):
        path, line = walk[name, "backward"].source.rsplit(":", 1)
        with open(os.path.join(ROOT, path), encoding="utf-8") as f:
            assert text in f.readlines()[int(line) - 1], name


def test_the_tied_embedding_gets_the_sum_of_its_two_gradients_and_the_model_is_left_alone(case):
    model, _, walk = case
    model.zero_grad()
    step_through(model, **case[1])
    assert all(not g.any() for _, _, g in model.named_parameters())  # the step-through never writes grads
    tied = walk["bert.embeddings.word_embeddings.weight", "backward"]
    assert np.array_equal(tied.out, tied.inputs["dE_decoder"] + tied.inputs["dE_lookup"])
    lookup = walk["bert.embeddings.word_embeddings", "backward"].out
    assert not lookup[0].any()  # the [PAD] row: padding_idx
    assert set(np.flatnonzero(np.abs(lookup).sum(1))) == set(np.unique(case[1]["input_ids"])) - {0}


def test_bad_input_is_named(case):
    model, batch, _ = case
    with pytest.raises(ValueError, match="labels"):
        step_through(model, batch["input_ids"])
    with pytest.raises(ValueError, match="no predicted position"):
        step_through(model, batch["input_ids"], labels=np.full((B, T), IGNORE_INDEX))
    with pytest.raises(TypeError, match="BertForPreTraining"):
        step_through(model.bert, batch["input_ids"], labels=batch["labels"])
    model.train()
    try:
        with pytest.raises(ValueError, match="eval"):
            step_through(model, **batch)
    finally:
        model.eval()


@pytest.fixture(scope="module")
def toy():
    before = backend.get_backend()
    model, tok, history = train_toy_bert(seed=0)
    assert backend.get_backend() == before
    return model, tok, history


@pytest.mark.parametrize("text, answer, decider", [
    ("the cat often [MASK] .", "meows", "cat"), ("now a [MASK] barks .", "dog", "barks"),
    ("a cow loudly [MASK] .", "moos", "cow"), ("the [MASK] moos .", "cow", "moos")])
def test_the_trained_toy_bert_predicts_the_word_and_its_attention_looks_at_the_deciding_word(toy, text, answer,
                                                                                               decider):
    """Trained for 400 steps (seed 0): the loss falls below 0.2 (from ln 17 = 2.8 for MLM + ln 2 for NSP),
    the masked word is the top guess, and some head of the [MASK] position puts more than half of its
    weight on the one word that decides it (seen: 0.90 to 1.00 for these four; uniform would be 1/6)."""
    model, tok, history = toy
    assert np.mean(history[:5]) > 2.5 and np.mean(history[-50:]) < 0.2
    batch = toy_batch_of(tok, text, answer)
    tokens = batch.pop("tokens")[0]
    walk = step_through(model, **batch, tokens=tokens)
    logits = walk["cls.predictions.decoder"].out[0]  # (V,)
    assert tok.convert_ids_to_tokens(int(logits.argmax())) == answer
    probs = walk["bert.encoder.layer.0.attention.self.softmax"].out[0]  # (A, T, T)
    assert probs[:, tokens.index("[MASK]"), tokens.index(decider)].max() > 0.5


def test_the_toy_language_is_twelve_words_and_its_tokenizer_leaves_no_temporary_folder():
    assert len(TOY_WORDS) == 12 and TOY_SOUNDS["dog"] == "barks"
    before = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("minibert-")}
    tok = toy_tokenizer()
    after = {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("minibert-")}
    assert after <= before
    assert tok.tokenize("the cat now meows .") == ["the", "cat", "now", "meows", "."]
    with pytest.raises(ValueError, match="toy vocabulary"):
        toy_batch_of(tok, "the bird [MASK] .", "sings")


def test_a_wrong_answer_by_hand_is_told_wrong_with_a_hint_and_never_the_value(capsys):
    truth = np.array([0.123456, -1.5, 2.25])
    check_by_hand("softmax row", truth * (1 + 1e-9), truth, "subtract the max")
    assert "right" in capsys.readouterr().out
    for wrong in (truth + 0.01, truth[:2], ...):
        with pytest.raises(AssertionError) as e:
            check_by_hand("softmax row", wrong, truth, "subtract the max")
        message = str(e.value)
        assert "0.123" not in message and "2.25" not in message and "1.5" not in message
    assert "Hint: subtract the max" in message or "not answered" in message


def test_the_toy_bert_is_the_same_every_time_so_the_book_s_page_shows_the_lesson_s_numbers(toy):
    """The book's trace/toy.html trains its own copy (book/build.py) with the lesson's seed: the same
    parameters, bit for bit, whatever backend was set before (training runs on the NumPy references)."""
    model, _, history = toy
    before = backend.get_backend()
    backend.set_backend("numba" if before != "numba" else "numpy")
    try:
        again, _, history_again = train_toy_bert(seed=0)
    finally:
        backend.set_backend(before)
    assert history_again == history
    for (name, p, _), (_, q, _) in zip(model.named_parameters(), again.named_parameters()):
        assert np.array_equal(p, q), name
