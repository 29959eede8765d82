"""The assembled BERT: whole-model gradient check, BERT's invariants, dropout, state dicts, init."""
import math

import numpy as np
import pytest

import minibert
from conftest import check_sampled_gradients, make_batch, perturb_parameters, small_config


def tiny_config(**kw):
    """Even smaller than small_config, so finite differences over every parameter stay fast."""
    base = dict(vocab_size=23, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                intermediate_size=10, max_position_embeddings=11)
    base.update(kw)
    return small_config(**base)


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["eval", "dropout-masks-fixed"])
def test_whole_model_gradient_check_on_sampled_coordinates_of_every_parameter(each_backend, dropout):
    """float64, 4 sampled coordinates of each of the 2-layer model's parameters.  Tolerance 1e-6 per
    parameter (rel_error over the sampled coordinates; a correct backward gives ~1e-9, a wrong one
    1e-2).  With dropout on, the dropout generator is re-seeded before every forward so the
    numerical and analytic gradients see the same masks."""
    cfg = tiny_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    check_sampled_gradients(cfg, dropout)  # every parameter (their count is checked there)


def test_padded_tokens_change_neither_loss_nor_gradients(each_backend):
    cfg = small_config()
    model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)).eval()
    batch = make_batch(cfg)
    out1 = model(**batch)
    model.backward()
    g1 = {n: g.copy() for n, g in model.grad_state_dict().items()}
    pad = batch["attention_mask"] == 0
    assert pad.any()
    batch["input_ids"] = np.where(pad, np.random.default_rng(9).integers(5, cfg.vocab_size, pad.shape),
                                  batch["input_ids"])
    batch["token_type_ids"] = np.where(pad, 1 - batch["token_type_ids"], batch["token_type_ids"])
    out2 = model(**batch)
    model.zero_grad()  # backward() adds into the gradients
    model.backward()
    assert abs(out1.loss - out2.loss) < 1e-12
    for n, g in model.grad_state_dict().items():
        # padded positions get exactly zero gradient (no loss there, zero attention to them), so even
        # the embedding rows of the new padding-position ids receive nothing
        np.testing.assert_allclose(g, g1[n], atol=1e-12, rtol=0, err_msg=n)


def test_with_labels_the_model_returns_what_transformers_returns_and_the_mlm_loss_reads_labelled_positions_only(
        each_backend):
    """As transformers' BertForPreTraining: with labels, ``prediction_logits`` is (B, T, V) and the same
    as without labels, ``last_hidden_state`` (B, T, C); ``mlm_loss`` is the mean cross-entropy over the
    labelled positions only (computed here by hand from the logits, float64 to 1e-12)."""
    cfg = small_config()
    model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)).eval()
    batch = make_batch(cfg)
    B, T = batch["input_ids"].shape
    full = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).prediction_logits
    labels = batch["labels"]
    sel = labels != -100
    z = full[sel]  # (P, V)
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    expected = -logp[np.arange(len(z)), labels[sel]].mean()
    out = model(**batch)
    assert out.prediction_logits.shape == (B, T, cfg.vocab_size)
    assert out.last_hidden_state.shape == (B, T, cfg.hidden_size)
    np.testing.assert_array_equal(out.prediction_logits, full)
    assert abs(out.mlm_loss - expected) < 1e-12
    # one more -100 only removes that position from the average
    labels2 = labels.copy()
    labels2[sel.nonzero()[0][0], sel.nonzero()[1][0]] = -100
    sel2 = labels2 != -100
    expected2 = -logp[np.arange(len(z)), labels[sel]][sel2[sel]].mean()
    assert abs(model(**{**batch, "labels": labels2}).mlm_loss - expected2) < 1e-12


def test_with_labels_output_attentions_gives_every_query_s_probabilities(each_backend):
    cfg = small_config()
    batch = make_batch(cfg)
    model = minibert.BertForPreTraining(cfg, seed=0).eval()
    out = model(**batch, output_attentions=True)
    B, T = batch["input_ids"].shape
    assert [a.shape for a in out.attentions] == [(B, cfg.num_attention_heads, T, T)] * cfg.num_hidden_layers


def test_eval_mode_turns_dropout_off_inside_the_block_and_restores_the_mode_even_after_an_error():
    model = minibert.BertForPreTraining(small_config(), seed=0).train()
    with model.eval_mode():
        assert not model.training and not model.bert.training
    assert model.training and model.bert.training
    with pytest.raises(RuntimeError):
        with model.eval_mode():
            raise RuntimeError("inside")
    assert model.training
    model.eval()
    with model.eval_mode():
        pass
    assert not model.training  # an eval model stays in eval


def test_initial_losses_are_about_ln_V_and_ln_2():
    """With N(0, 0.02) weights the logits are near zero, so predictions are near uniform."""
    cfg = small_config(vocab_size=500, hidden_size=64, num_attention_heads=4, intermediate_size=128)
    model = minibert.BertForPreTraining(cfg, seed=0).eval()
    batch = make_batch(cfg, B=8, T=30, seed=2)
    out = model(**batch)
    assert abs(out.mlm_loss - math.log(500)) < 0.05 * math.log(500)
    assert abs(out.nsp_loss - math.log(2)) < 0.05


def test_tied_embedding_gradient_is_the_sum_of_the_lookup_and_decoder_paths(each_backend):
    cfg = small_config()
    tied = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)).eval()
    untied = minibert.BertForPreTraining(small_config(tie_word_embeddings=False), seed=0, dtype=np.float64).eval()
    sd = dict(tied.state_dict())
    untied.load_state_dict(sd)  # the untied decoder matrix gets a copy of the embeddings
    batch = make_batch(cfg)
    out_t, out_u = tied(**batch), untied(**batch)
    assert abs(out_t.loss - out_u.loss) < 1e-12
    tied.backward()
    untied.backward()
    g_lookup = untied.bert.grads["embeddings.word_embeddings.weight"]
    g_decoder = untied.grads["cls.predictions.decoder.weight"]
    assert np.abs(g_lookup).max() > 0 and np.abs(g_decoder).max() > 0, "both paths must carry gradient"
    np.testing.assert_allclose(tied.bert.grads["embeddings.word_embeddings.weight"], g_lookup + g_decoder,
                               rtol=0, atol=1e-14)


def test_dropout_same_seed_same_masks_and_eval_is_deterministic():
    cfg = small_config(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    batch = make_batch(cfg)
    a = minibert.BertForPreTraining(cfg, seed=4).train()
    b = minibert.BertForPreTraining(cfg, seed=4).train()
    la, lb = a(**batch).loss, b(**batch).loss
    assert la == lb, "same seed: same weights and the same dropout masks"
    assert a(**batch).loss != la, "train mode: a new forward draws new masks"
    a.eval()
    e1, e2 = a(**batch).loss, a(**batch).loss
    assert e1 == e2 and e1 != la


def test_state_dict_has_transformers_names_and_round_trips():
    cfg = small_config()
    model = minibert.BertForPreTraining(cfg, seed=0)
    sd = model.state_dict()
    assert sd["cls.predictions.decoder.weight"] is sd["bert.embeddings.word_embeddings.weight"]
    assert sd["bert.encoder.layer.2.intermediate.dense.weight"].shape == (80, 48)  # (out, in)
    other = minibert.BertForPreTraining(cfg, seed=1)
    other.load_state_dict({k: v.copy() for k, v in sd.items()})
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])
    # the tied aliases are optional (transformers' safetensors files drop them)
    other.load_state_dict({k: v for k, v in sd.items() if not k.startswith("cls.predictions.decoder")})


@pytest.mark.parametrize("damage, message", [
    (lambda sd: sd.pop("bert.pooler.dense.bias"), "missing keys \\['bert.pooler.dense.bias'\\]"),
    (lambda sd: sd.__setitem__("bert.extra.weight", np.zeros(3)), "unexpected keys \\['bert.extra.weight'\\]"),
    (lambda sd: sd.__setitem__("cls.seq_relationship.weight", np.zeros((3, 48))),
     "cls.seq_relationship.weight has shape \\(3, 48\\), expected \\(2, 48\\)"),
])
def test_a_failed_load_names_the_problem_and_changes_nothing(damage, message):
    cfg = small_config()
    model = minibert.BertForPreTraining(cfg, seed=0)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    sd = {k: np.full_like(v, 0.5) for k, v in minibert.BertForPreTraining(cfg, seed=1).state_dict().items()}
    damage(sd)
    with pytest.raises(ValueError, match=message):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_initialisation_is_bert_s():
    cfg = small_config(vocab_size=400, hidden_size=96, num_attention_heads=4, intermediate_size=200)
    model = minibert.BertForPreTraining(cfg, seed=0)
    sd = model.state_dict()
    w = sd["bert.encoder.layer.0.intermediate.dense.weight"]
    assert abs(w.std() - 0.02) < 0.001 and abs(w.mean()) < 0.001
    assert np.all(sd["bert.encoder.layer.1.output.LayerNorm.weight"] == 1)
    assert np.all(sd["bert.encoder.layer.1.output.LayerNorm.bias"] == 0)
    assert np.all(sd["cls.predictions.bias"] == 0)
    assert np.all(sd["bert.embeddings.word_embeddings.weight"][cfg.pad_token_id] == 0)
    assert w.dtype == np.float32, "float32 by default"
    again = minibert.BertForPreTraining(cfg, seed=0).state_dict()
    assert all(np.array_equal(again[k], v) for k, v in sd.items()), "same seed, same weights"


def test_float32_model_keeps_float32_everywhere():
    cfg = small_config()
    model = minibert.BertForPreTraining(cfg, seed=0)
    out = model(**make_batch(cfg))
    model.backward()
    assert out.prediction_logits.dtype == np.float32
    assert all(g.dtype == np.float32 for g in model.grad_state_dict().values())


def test_config_validates():
    with pytest.raises(ValueError, match="divisible by num_attention_heads"):
        minibert.BertConfig(hidden_size=50, num_attention_heads=3)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer, got 0"):
        minibert.BertConfig(vocab_size=0)
    with pytest.raises(ValueError, match="hidden_act"):
        minibert.BertConfig(hidden_act="swish")
    with pytest.raises(ValueError, match="hidden_dropout_prob"):
        minibert.BertConfig(hidden_dropout_prob=1.5)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(input_ids=np.array([1, 2, 3])), ValueError, "must be 2-D .* pass input_ids\\[None\\]"),
    (dict(input_ids=np.array([[1.0, 2.0]])), TypeError, "input_ids must be an integer array"),
    (dict(input_ids=np.array([[1, 97]])), ValueError, "input_ids must be in \\[0, vocab_size=97\\), got 97"),
    (dict(input_ids=np.array([[-1, 3]])), ValueError, "got -1"),
    (dict(input_ids=np.ones((1, 41), int)), ValueError, "longer than max_position_embeddings=40"),
    (dict(input_ids=np.ones((1, 4), int), token_type_ids=np.full((1, 4), 2)), ValueError, "type_vocab_size=2"),
    (dict(input_ids=np.ones((1, 4), int), attention_mask=np.ones((1, 3))), ValueError,
     "attention_mask must have shape \\(1, 4\\)"),
    (dict(input_ids=np.ones((1, 4), int), labels=np.ones((1, 3), int)), ValueError, "labels must have shape"),
    (dict(input_ids=np.ones((1, 4), int), labels=np.full((1, 4), 500)), ValueError, "labels must be -100"),
    (dict(input_ids=np.ones((2, 4), int), next_sentence_label=np.array([0, 2])), ValueError,
     "next_sentence_label must be 0 .* or 1"),
])
def test_bad_inputs_get_clear_errors(kwargs, error, message):
    model = minibert.BertForPreTraining(small_config(), seed=0)
    with pytest.raises(error, match=message):
        model(**kwargs)


def test_backward_before_forward_or_without_loss_is_a_clear_error():
    model = minibert.BertForPreTraining(small_config(), seed=0)
    with pytest.raises(ValueError, match="before forward"):
        model.backward()
    model(np.ones((1, 4), int))
    with pytest.raises(ValueError, match="needs a loss"):
        model.backward()


def test_reprs_say_what_the_model_is():
    model = minibert.BertForPreTraining(small_config(), seed=0)
    assert "L=3, C=48, A=3" in repr(model) and "params=" in repr(model)
    out = model(**make_batch(small_config()))
    assert "loss=" in repr(out)


def test_learning_rate_schedule_warms_up_then_decays_linearly():
    lrs = [minibert.linear_warmup_decay(s, max_steps=10, warmup_steps=4, peak_lr=1.0) for s in range(10)]
    np.testing.assert_allclose(lrs, [0.25, 0.5, 0.75, 1.0, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7])
