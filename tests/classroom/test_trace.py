"""``minibert.trace`` shows the arrays the model used, and every parameter in the backward.

The model is a small BERT in float64 (B=2, T=7 with the second row padded, C=12, A=3, F=20, V=31, two
layers), so comparisons are exact: the trace copies the arrays the kernels received and returned, it
does not recompute them, so equality is tested with ``array_equal`` (no tolerance) wherever the same
array is meant; the only tolerance is the softmax rows' sum, 1 up to float64 rounding (1e-12).
"""
import subprocess
import sys

import numpy as np
import pytest

import minibert
from minibert import backend
from minibert.classroom.trace import Step, Trace, sentence_batch, trace
from minibert.config import BertConfig
from minibert.models.bert import BertForPreTraining
from conftest import padded_two_sequence_batch

B, T, V = 2, 7, 31


def run_numpy(model, **inputs):
    """An untraced forward on the NumPy references, the kernels a trace runs (numba's twins round
    differently), so its arrays must equal the trace's bit for bit."""
    with backend.using("numpy"):
        return model(**inputs)


@pytest.fixture(scope="module")
def case():
    cfg = BertConfig(vocab_size=V, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=20, max_position_embeddings=16)
    model = BertForPreTraining(cfg, seed=1, dtype=np.float64).eval()
    rng = np.random.default_rng(0)
    batch = padded_two_sequence_batch(rng, T, V)
    steps = trace(model, **batch)
    return model, batch, steps


def test_every_parameter_gets_a_gradient_in_the_backward_and_the_sums_equal_model_grads(case):
    model, _, steps = case
    seen = {p for s in steps.backward for p in s.grads}
    names = [n for n, _, _ in model.named_parameters()]
    assert set(names) == seen
    for name, _, grad in model.named_parameters():
        assert np.array_equal(steps.param_grad(name), grad), name  # the same additions, in the same order


def test_the_tied_word_embedding_receives_gradient_twice_decoder_and_lookup(case):
    model, _, steps = case
    word = "bert.embeddings.word_embeddings.weight"
    givers = [s for s in steps.backward if s.depth == 0 and word in s.grads]
    assert [s.name for s in givers] == ["cls.predictions.decoder", "bert.embeddings.word_embeddings"]
    assert np.array_equal(givers[0].grads[word] + givers[1].grads[word], model.bert.grads["embeddings.word_embeddings.weight"])


def test_the_final_logits_and_losses_are_the_models_output(case):
    model, batch, steps = case
    decoder = steps["cls.predictions.decoder"]
    assert np.array_equal(decoder.out, steps.output.prediction_logits.reshape(B * T, V))  # every position
    again = run_numpy(model, **batch)  # an untraced forward: the trace did not change what the model computes
    assert np.array_equal(again.prediction_logits.reshape(B * T, V), decoder.out)
    assert float(steps["cls.predictions.decoder.cross_entropy"].out) == float(again.mlm_loss)
    assert float(steps["cls.seq_relationship.cross_entropy"].out) == float(again.nsp_loss)


def test_recorded_attention_probabilities_are_the_models_and_rows_sum_to_one_masked_keys_zero(case):
    model, batch, steps = case
    out = run_numpy(model, **{k: v for k, v in batch.items() if k not in ("labels", "next_sentence_label")},
                    output_attentions=True)
    for layer in range(2):
        probs = steps[f"bert.encoder.layer.{layer}.attention.sdpa.softmax"].out  # (B, A, T, T)
        assert probs.shape == (B, 3, T, T)
        assert np.array_equal(probs, out.attentions[layer])
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=0, atol=1e-12)
        assert np.all(probs[1, :, :, 5:] == 0)     # the padded keys of row 1: exactly zero
        assert np.all(probs[0] > 0)
    mask = steps["bert.extended_attention_mask"].out  # (B, 1, 1, T)
    assert mask[1, 0, 0, 5] == np.finfo(np.float64).min and mask[0].max() == 0


def test_a_recorded_parameter_gradient_equals_model_grads_after_the_backward(case):
    model, _, steps = case
    query = steps["bert.encoder.layer.0.attention.self.query", "backward"]  # inside the attention op
    assert query.depth == 1
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert np.array_equal(query.grads[name], model.bert.grads["encoder.layer.0.attention.self.query.weight"])


def test_the_pooler_reads_the_cls_position_of_the_last_layer(case):
    _, _, steps = case
    last = steps["bert.encoder.layer.1.output.LayerNorm"].out  # (B, T, C)
    assert np.array_equal(steps["bert.pooler.dense"].x, last[:, 0])


def test_arrays_changed_in_place_later_are_recorded_as_they_were(case):
    # attention_backward adds the key and value paths into the query path's dx in place (dx += dxk):
    # the query step must still show its own gradient, not the sum
    _, _, steps = case
    q, k = (steps[f"bert.encoder.layer.1.attention.self.{n}", "backward"] for n in ("query", "key"))
    v = steps["bert.encoder.layer.1.attention.self.value", "backward"]
    parent = steps["bert.encoder.layer.1.attention", "backward"]
    assert not np.array_equal(q.out, parent.out)
    assert np.array_equal(q.out + k.out + v.out, parent.out)


def test_steps_come_one_at_a_time_forward_then_backward_in_order(case):
    _, _, steps = case
    steps.reset()
    first = next(steps)
    assert isinstance(first, Step) and first.index == 0 and first.name == "bert.embeddings.word_embeddings"
    soft = steps.next_where("softmax")
    assert soft.name == "bert.encoder.layer.0.attention.sdpa.softmax" and soft.depth == 2
    assert steps.steps[soft.parent].name == "bert.encoder.layer.0.attention.sdpa"
    phases = [s.phase for s in steps.steps]
    assert phases == sorted(phases, key=lambda p: p == "backward")  # every forward before every backward
    assert [s.index for s in steps.steps] == list(range(len(steps)))
    back = steps["bert.encoder.layer.0.attention.sdpa.softmax", "backward"]
    assert back.forward == soft.index
    assert "Trace(BertForPreTraining" in repr(steps) and "softmax_forward" in repr(soft)
    table = steps.table()
    assert table.count("\n") > len(steps) and "FORWARD" in table and "BACKWARD" in table
    assert len(list(steps.reset())) == len(steps)
    with pytest.raises(StopIteration):
        next(steps)


def test_the_trace_restores_the_backend_and_the_layer_functions():
    import minibert.layers.attention as attention
    before_backend, before_softmax = backend.get_backend(), attention.softmax_forward
    cfg = BertConfig(vocab_size=V, hidden_size=12, num_hidden_layers=1, num_attention_heads=3, intermediate_size=20)
    model = BertForPreTraining(cfg, seed=0, dtype=np.float64).eval()
    minibert.trace(model, np.array([[2, 8, 9, 3]]), labels=np.array([[-100, 8, -100, -100]]))
    assert backend.get_backend() == before_backend
    assert attention.softmax_forward is before_softmax
    assert not hasattr(backend.ops.attention_forward, "__wrapped__") or backend._debug


def test_a_custom_backend_of_the_students_functions_is_put_back_after_the_trace():
    import types
    from minibert.layers import layernorm
    mine = types.SimpleNamespace(__name__="my_layers", layernorm_forward=lambda *a: layernorm.layernorm_forward(*a),
                                 layernorm_backward=layernorm.layernorm_backward)
    before = backend.get_backend()
    backend.set_backend(mine)
    try:
        cfg = BertConfig(vocab_size=V, hidden_size=12, num_hidden_layers=1, num_attention_heads=3,
                         intermediate_size=20)
        model = BertForPreTraining(cfg, seed=0, dtype=np.float64).eval()
        minibert.trace(model, np.array([[2, 8, 9, 3]]), labels=np.array([[-100, 8, -100, -100]]))
        assert backend.get_backend() == "custom:my_layers"
        assert backend.ops.layernorm_forward is mine.layernorm_forward
    finally:
        backend.set_backend(before)


def test_bad_input_is_named():
    cfg = BertConfig(vocab_size=V, hidden_size=12, num_hidden_layers=1, num_attention_heads=3, intermediate_size=20)
    model = BertForPreTraining(cfg, seed=0)
    with pytest.raises(ValueError, match="labels"):
        trace(model, np.array([[2, 8, 3]]))
    with pytest.raises(TypeError, match="model must be"):
        trace(model.bert, np.array([[2, 8, 3]]), labels=np.array([[-100, 8, -100]]))


def test_sentence_batch_labels_each_mask_with_its_answer(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "."]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = minibert.BertTokenizer(str(tmp_path / "vocab.txt"))
    b = sentence_batch(tok, "the [MASK] sat on the [MASK] .", answers=["cat", "mat"])
    assert b["tokens"] == ["[CLS]", "the", "[MASK]", "sat", "on", "the", "[MASK]", ".", "[SEP]"]
    assert b["labels"][0].tolist() == [-100, -100, 6, -100, -100, -100, 9, -100, -100]
    with pytest.raises(ValueError, match="2 \\[MASK\\] token\\(s\\) but 1 answer"):
        sentence_batch(tok, "the [MASK] sat on the [MASK] .", answers=["cat"])
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        sentence_batch(tok, "the cat sat .", answers=[])
    with pytest.raises(ValueError, match="not one piece"):
        sentence_batch(tok, "the [MASK] sat .", answers=["dog"])


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "minibert", "trace", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_traces_a_fresh_bert_tiny_without_model():
    r = _cli("the [MASK] statement raises an exception .", "--depth", "0")
    assert r.returncode == 0, r.stderr
    assert "freshly initialised BERT-Tiny" in r.stdout
    assert "bert.encoder.layer.1.attention " in r.stdout and "cls.predictions.decoder" in r.stdout
    assert "-> grad bert.embeddings.word_embeddings.weight" in r.stdout
    assert "sdpa.softmax" not in r.stdout  # --depth 0: the model's own calls only


def test_cli_traces_a_saved_model_and_names_bad_input(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "."]
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=12, num_hidden_layers=1, num_attention_heads=3,
                     intermediate_size=20)
    model = BertForPreTraining(cfg, seed=0)
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    model.save_pretrained(tmp_path / "m", minibert.BertTokenizer(str(tmp_path / "vocab.txt")))
    r = _cli("--model", str(tmp_path / "m"), "the [MASK] sat on the mat .", "--answer", "cat")
    assert r.returncode == 0, r.stderr
    assert "'cat' at 2" in r.stdout and "bert.encoder.layer.0.attention.sdpa.softmax" in r.stdout
    r = _cli("--model", str(tmp_path / "m"), "the cat sat .")
    assert r.returncode == 2 and "no [MASK] token" in r.stderr
    minibert.BertModel(cfg).save_pretrained(tmp_path / "encoder", minibert.BertTokenizer(str(tmp_path / "vocab.txt")))
    r = _cli("--model", str(tmp_path / "encoder"), "the [MASK] sat .")
    assert r.returncode == 2 and "no MLM head" in r.stderr


def test_untrained_tiny_leaves_no_temporary_folder_behind():
    """Issue 26 found 39 ``minibert-trace-*`` folders left in /tmp: the vocabulary's folder is removed."""
    import os
    import tempfile
    from minibert.classroom.trace import untrained_tiny

    def leftovers():
        return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("minibert-trace-")}
    before = leftovers()
    model, tok = untrained_tiny(vocab_size=200, sentences=300)
    assert leftovers() <= before
    assert tok.vocab_size <= 200 and tok.tokenize("the") == ["the"]  # the tokenizer works without its file
