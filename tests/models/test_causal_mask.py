"""``BertConfig(is_decoder=True)``: causal self-attention with transformers' semantics (lesson 07c).

Query i attends to key j only if j <= i and key j is not padding (transformers' ``create_causal_mask``:
the two conditions combined as booleans, then 0 / ``finfo.min``).  Checked against transformers'
``BertForPreTraining`` / ``BertModel`` with ``is_decoder=True`` in float64 (eager attention, dropout 0):
logits 1e-9 absolute, loss 1e-10 relative, every parameter gradient 1e-8 relative, the tolerances of
``test_parity_transformers.py`` and for the same reason (two summation orders agree to ~1e-13).
The default (``is_decoder=False``) is unchanged: that file's tests still hold it against transformers.
"""
import json

import numpy as np
import pytest

import minibert
from conftest import assert_grads_match, make_batch, perturb_parameters, small_config
from minibert.layers.softmax import attention_mask_to_additive

torch = pytest.importorskip("torch")  # declared in the test extra: a missing oracle is an install error


def _t(a):
    return torch.from_numpy(np.asarray(a))


def _hf_config(cfg):
    import transformers
    hf_config = transformers.BertConfig(**cfg.to_dict())
    hf_config._attn_implementation = "eager"
    hf_config.use_cache = False            # a decoder keeps a key/value cache by default; nothing to cache here
    assert hf_config.is_decoder == cfg.is_decoder
    return hf_config


def test_causal_pretraining_outputs_loss_and_every_gradient_match_transformers_is_decoder(each_backend):
    import transformers
    cfg = small_config(is_decoder=True)
    model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)).eval()
    hf = transformers.BertForPreTraining(_hf_config(cfg)).double().eval()
    hf.load_state_dict({k: _t(v) for k, v in model.state_dict().items()}, strict=True)
    batch = make_batch(cfg, T=9)  # rows padded on the right: padding and causality combine

    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    hf_out = hf(input_ids=_t(batch["input_ids"]), token_type_ids=_t(batch["token_type_ids"]),
                attention_mask=_t(batch["attention_mask"]))
    np.testing.assert_allclose(out.prediction_logits, hf_out.prediction_logits.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.seq_relationship_logits, hf_out.seq_relationship_logits.detach().numpy(),
                               rtol=0, atol=1e-9)

    out = model(**batch)
    model.zero_grad()
    model.backward()
    hf_out = hf(**{k: _t(v) for k, v in batch.items()})
    hf_out.loss.backward()
    assert abs(out.loss - hf_out.loss.item()) <= 1e-10 * abs(hf_out.loss.item())
    assert_grads_match(model.grad_state_dict(), {n: p.grad.numpy() for n, p in hf.named_parameters()}, 1e-8)

    # the oracle is really causal, and so are we: the bidirectional model gives other logits
    bidi = minibert.BertForPreTraining(small_config(), seed=0, dtype=np.float64)
    bidi.load_state_dict(model.state_dict())
    bidi_logits = bidi.eval()(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).prediction_logits
    causal_logits = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).prediction_logits
    assert np.abs(bidi_logits - causal_logits).max() > 1e-3


def test_causal_bert_model_hidden_states_and_gradients_match_transformers_is_decoder(each_backend):
    import transformers
    cfg = small_config(is_decoder=True)
    model = perturb_parameters(minibert.BertModel(cfg, seed=3, dtype=np.float64), seed=4).eval()
    hf = transformers.BertModel(_hf_config(cfg)).double().eval()
    hf.load_state_dict({k: _t(v) for k, v in model.state_dict().items()}, strict=True)
    batch = make_batch(cfg, B=2, T=11, seed=5)
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], output_attentions=True)
    hf_out = hf(input_ids=_t(batch["input_ids"]), token_type_ids=_t(batch["token_type_ids"]),
                attention_mask=_t(batch["attention_mask"]))
    np.testing.assert_allclose(out.last_hidden_state, hf_out.last_hidden_state.detach().numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(out.pooler_output, hf_out.pooler_output.detach().numpy(), atol=1e-10, rtol=0)
    for probs in out.attentions:  # (B, A, T, T): nothing above the diagonal, nothing on a padded key
        assert np.all(np.triu(probs, k=1) == 0)
        assert np.all(probs[1][..., batch["attention_mask"][1] == 0] == 0)

    rng = np.random.default_rng(0)
    d_seq, d_pool = rng.standard_normal(out.last_hidden_state.shape), rng.standard_normal(out.pooler_output.shape)
    model.zero_grad()
    model.backward(d_seq, d_pool)
    ((hf_out.last_hidden_state * _t(d_seq)).sum() + (hf_out.pooler_output * _t(d_pool)).sum()).backward()
    assert_grads_match(model.grad_state_dict(), {n: p.grad.numpy() for n, p in hf.named_parameters()}, 1e-8)


def test_a_causal_model_cannot_see_the_future_and_a_bidirectional_one_can(each_backend):
    cfg = small_config(is_decoder=True)
    batch = make_batch(cfg, B=1, T=10)
    ids = batch["input_ids"].copy()
    changed = ids.copy()
    changed[0, 6] = (changed[0, 6] + 1) % cfg.vocab_size or 5   # another token at position 6
    for is_decoder in (True, False):
        model = minibert.BertModel(small_config(is_decoder=is_decoder), seed=0, dtype=np.float64)
        a = model(ids).last_hidden_state
        b = model(changed).last_hidden_state
        if is_decoder:
            np.testing.assert_array_equal(a[0, :6], b[0, :6])      # positions before 6 never saw it
        else:
            assert np.abs(a[0, :6] - b[0, :6]).max() > 1e-6      # every position sees every token
        assert np.abs(a[0, 6:] - b[0, 6:]).max() > 1e-6


def test_the_causal_additive_mask_combines_causality_and_padding_as_transformers_does():
    from transformers.masking_utils import eager_mask, padding_mask_function
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    ours = attention_mask_to_additive(mask, np.float64, causal=True)
    assert ours.shape == (2, 1, 5, 5) and ours.dtype == np.float64
    from transformers.masking_utils import and_masks, causal_mask_function
    theirs = eager_mask(batch_size=2, q_length=5, kv_length=5, attention_mask=_t(mask).bool(),
                        mask_function=and_masks(causal_mask_function, padding_mask_function(_t(mask).bool())),
                        dtype=torch.float64)
    np.testing.assert_array_equal(ours, theirs.numpy())
    assert np.isfinite(ours).all()                 # finfo.min where forbidden, never -inf
    # the default is the (B, 1, 1, T) padding mask, as before
    np.testing.assert_array_equal(attention_mask_to_additive(mask, np.float32),
                                  ((1 - mask) * np.finfo(np.float32).min)[:, None, None, :].astype(np.float32))


def test_is_decoder_round_trips_through_config_json_and_is_validated(tmp_path):
    cfg = small_config(is_decoder=True)
    cfg.to_json_file(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["is_decoder"] is True   # transformers' name
    assert minibert.BertConfig.from_json_file(tmp_path / "config.json").is_decoder is True
    assert minibert.BertConfig.from_dict({"vocab_size": 10}).is_decoder is False       # BERT by default
    import transformers
    assert transformers.BertConfig(**cfg.to_dict()).is_decoder is True
    with pytest.raises(ValueError, match="is_decoder must be True or False, got 'yes'"):
        minibert.BertConfig(is_decoder="yes")
