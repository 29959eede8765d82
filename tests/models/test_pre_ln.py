"""The pre-LN experiment (``BertConfig(layer_norm_position="pre")``, not BERT): the whole model's gradients
by finite differences, the layer against PyTorch's own pre-LN layer, the config, and the refused export.

The pre-LN layer pair's own gradient checks are ``gradcheck_cases`` in
``minibert/layers/pre_ln_encoder_layer.py`` (run by tests/layers/test_layers_gradcheck.py)."""
import dataclasses
import json

import numpy as np
import pytest

import minibert
from conftest import check_sampled_gradients, make_batch, perturb_parameters, small_config
from minibert.gradcheck import rel_error
from minibert.layers.encoder_layer import PARAMETERS
from minibert.layers.pre_ln_encoder_layer import pre_ln_encoder_layer_forward
from minibert.layers.softmax import attention_mask_to_additive
from minibert.models.bert import FINAL_NORM


def tiny_pre_ln_config(**kw):
    base = dict(vocab_size=23, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                intermediate_size=10, max_position_embeddings=11, layer_norm_position="pre")
    base.update(kw)
    return small_config(**base)


@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["eval", "dropout-masks-fixed"])
def test_whole_pre_ln_model_gradient_check_on_sampled_coordinates_of_every_parameter(each_backend, dropout):
    """float64, 4 sampled coordinates of each parameter of a 2-layer pre-LN BertForPreTraining (the
    final LayerNorm included), as tests/models/test_model.py checks the post-LN model.  Tolerance 1e-6 per
    parameter (a correct backward gives ~1e-9, a wrong one ~1e-2); the key biases' gradient is exactly
    0 (softmax's shift invariance) and is checked to be 0.  The dropout stream is re-seeded before
    every forward, so both gradients see the same masks."""
    cfg = tiny_pre_ln_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    names = check_sampled_gradients(cfg, dropout)  # every parameter, and their count, checked there
    assert "bert." + FINAL_NORM + ".weight" in names


def test_pre_ln_layer_equals_pytorchs_norm_first_transformer_layer():
    """PyTorch's ``nn.TransformerEncoderLayer(norm_first=True)`` is the same pre-LN layer written
    independently (fused q/k/v projection, its own LayerNorm and attention); same weights, float64:
    outputs within 1e-10 (rounding only), with padded keys."""
    torch = pytest.importorskip("torch")
    B, T, C, A, F = 2, 5, 12, 3, 7
    rng = np.random.default_rng(3)
    x = rng.standard_normal((B, T, C)) * 2 + 0.5
    w = {n: rng.standard_normal(s) * 0.5 for n, s in
         dict(wq=(C, C), bq=(C,), wk=(C, C), bk=(C,), wv=(C, C), bv=(C,), wo=(C, C), bo=(C,), w1=(F, C), b1=(F,),
              w2=(C, F), b2=(C,), ln1_b=(C,), ln2_b=(C,)).items()}
    w["ln1_w"], w["ln2_w"] = 1 + 0.3 * rng.standard_normal(C), 1 + 0.3 * rng.standard_normal(C)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    ours, _ = pre_ln_encoder_layer_forward(x, *(w[n] for n in PARAMETERS), attention_mask_to_additive(mask, np.float64),
                                           A, act="gelu", eps=1e-12)

    layer = torch.nn.TransformerEncoderLayer(C, A, F, dropout=0.0, activation="gelu", layer_norm_eps=1e-12,
                                             batch_first=True, norm_first=True).double()
    t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(t(np.concatenate([w["wq"], w["wk"], w["wv"]])))
        layer.self_attn.in_proj_bias.copy_(t(np.concatenate([w["bq"], w["bk"], w["bv"]])))
        layer.self_attn.out_proj.weight.copy_(t(w["wo"]))
        layer.self_attn.out_proj.bias.copy_(t(w["bo"]))
        for mod, wn, bn in ((layer.linear1, "w1", "b1"), (layer.linear2, "w2", "b2"),
                            (layer.norm1, "ln1_w", "ln1_b"), (layer.norm2, "ln2_w", "ln2_b")):
            mod.weight.copy_(t(w[wn]))
            mod.bias.copy_(t(w[bn]))
        layer.train()  # the slow path: PyTorch's fast path zeroes padded query rows
        theirs = layer(t(x), src_key_padding_mask=t(mask == 0)).numpy()
    assert rel_error(ours, theirs) < 1e-10


def test_the_default_is_post_ln_and_pre_ln_adds_only_the_final_layer_norm():
    """Same seed: a pre-LN model has every parameter of the post-LN one with the same initial values,
    plus the final LayerNorm (ones, zeros); the post-LN model has none."""
    post = minibert.BertForPreTraining(tiny_pre_ln_config(layer_norm_position="post"), seed=0)
    assert minibert.BertConfig().layer_norm_position == "post"
    pre = minibert.BertForPreTraining(tiny_pre_ln_config(), seed=0)
    ps, qs = post.state_dict(), pre.state_dict()
    assert set(qs) - set(ps) == {f"bert.{FINAL_NORM}.weight", f"bert.{FINAL_NORM}.bias"}
    assert all(np.array_equal(ps[k], qs[k]) for k in ps)
    assert (qs[f"bert.{FINAL_NORM}.weight"] == 1).all() and (qs[f"bert.{FINAL_NORM}.bias"] == 0).all()
    assert "pre-LN (not BERT)" in repr(pre) and "not BERT" not in repr(post)
    # the switch does something: the same (perturbed) weights give other hidden states
    perturb_parameters(post), perturb_parameters(pre)
    batch = make_batch(post.config, B=2, T=7, seed=1)
    hp, hq = (m.eval().bert(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]).last_hidden_state
              for m in (post, pre))
    assert np.abs(hp - hq).max() > 0.1


def test_layer_norm_position_validates_and_round_trips_through_config_json(tmp_path):
    with pytest.raises(ValueError, match=r"layer_norm_position must be one of \('post', 'pre'\).*not BERT.*'middle'"):
        small_config(layer_norm_position="middle")
    cfg = tiny_pre_ln_config()
    cfg.to_json_file(tmp_path / "config.json")
    assert json.loads((tmp_path / "config.json").read_text())["layer_norm_position"] == "pre"
    assert minibert.BertConfig.from_json_file(tmp_path / "config.json") == cfg
    # a config.json without the field (transformers', or an older minibert's) is post-LN, i.e. BERT
    d = cfg.to_dict()
    del d["layer_norm_position"]
    assert minibert.BertConfig.from_dict(d) == dataclasses.replace(cfg, layer_norm_position="post")


def test_a_pre_ln_model_refuses_transformers_export_with_a_clear_error(tmp_path):
    model = minibert.BertForPreTraining(tiny_pre_ln_config(), seed=0)
    with pytest.raises(ValueError, match="save_pretrained: .*layer_norm_position='pre'.*not BERT"):
        model.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model" / "config.json").exists()
    pytest.importorskip("transformers")
    from minibert.training.torch_engine import hf_model
    with pytest.raises(ValueError, match="torch engine.*not BERT"):
        hf_model(model)


def test_trace_of_a_pre_ln_model_names_the_final_layer_norm_and_covers_every_parameter():
    """``minibert.trace`` records whatever the model runs: on a pre-LN model, the final LayerNorm's
    steps appear, every parameter gets its gradient in the backward, and the sums are the model's."""
    from minibert.classroom.trace import trace
    cfg = tiny_pre_ln_config()
    model = minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)
    steps = trace(model, **make_batch(cfg, B=2, T=7, seed=1))
    assert {p for s in steps.backward for p in s.grads} == {n for n, _, _ in model.named_parameters()}
    for name, _, grad in model.named_parameters():
        assert np.array_equal(steps.param_grad(name), grad), name
    assert any(s.name == "bert." + FINAL_NORM and "bert." + FINAL_NORM + ".weight" in s.grads for s in steps.backward)
