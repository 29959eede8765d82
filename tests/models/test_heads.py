"""The fine-tuning heads are transformers' heads: same logits, same loss, same gradient for every
parameter (float64, eager attention, dropout 0); a float64 gradient check on sampled coordinates; the
loss-masking invariants; and each head learns a small synthetic task in a few seconds.

Tolerances as in test_parity_transformers.py: logits 1e-9 absolute, loss 1e-10 relative, every
parameter gradient 1e-8 relative (rel_error); the gradient check 1e-6 (a correct backward gives ~1e-9).
"""
import numpy as np
import pytest

import minibert
from conftest import assert_grads_match, make_batch, perturb_parameters, small_config
from minibert.gradcheck import numerical_gradient_at, rel_error
from minibert.models.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification

torch = pytest.importorskip("torch")  # declared in the test extra: a missing oracle is an install error

HEADS = [BertForSequenceClassification, BertForTokenClassification, BertForQuestionAnswering]


def _t(a):
    return torch.from_numpy(np.asarray(a))


def hf_twin(model):
    """The transformers class of the same name (eager attention, float64) holding a copy of our weights."""
    import transformers
    hf_config = transformers.BertConfig(**model.config.to_dict())
    hf_config._attn_implementation = "eager"
    hf = getattr(transformers, type(model).__name__)(hf_config).double()
    hf.load_state_dict({k: _t(np.array(v, dtype=np.float64)) for k, v in model.state_dict().items()}, strict=True)
    return hf.train(model.training)


def head_batch(cls, config, B=3, T=9, seed=0):
    """``make_batch``'s padded two-segment inputs with the labels of ``cls``'s task."""
    b = make_batch(config, B=B, T=T, seed=seed)
    rng = np.random.default_rng(seed + 100)
    inputs = {k: b[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    K = config.num_labels
    if cls is BertForSequenceClassification:
        labels = rng.integers(0, K, size=B) if K > 1 else rng.standard_normal(B)
        return inputs, {"labels": labels}
    if cls is BertForTokenClassification:
        labels = np.where(b["attention_mask"] == 1, rng.integers(0, K, size=(B, T)), -100)
        labels[:, 0] = -100  # [CLS] is not tagged
        return inputs, {"labels": labels}
    # QA: one answer inside, one past the end (clamped to T: ignored), one at the last position
    starts = np.array([2, T + 5, 1][:B])
    ends = np.array([4, T + 7, T - 1][:B])
    return inputs, {"start_positions": starts, "end_positions": ends}


def zero_gradient_by_shift(model):
    """Parameters whose true gradient is exactly 0, so both sides hold rounding noise.

    QA: the start (end) softmax runs over the T positions of a row, and ignores a shift shared by all
    of them.  ``qa_outputs.bias`` shifts every position's score alike; so does the last LayerNorm's
    bias (it adds the same vector to every position before ``qa_outputs``).  Their gradients sum
    ``dlogits`` over the positions of a row, and each row of a softmax gradient sums to 0.
    """
    if not isinstance(model, BertForQuestionAnswering):
        return ()
    last = model.config.num_hidden_layers - 1
    return ("qa_outputs.bias", f"bert.encoder.layer.{last}.output.LayerNorm.bias")


def _logits(out):
    return [out.logits] if hasattr(out, "logits") else [out.start_logits, out.end_logits]


@pytest.mark.parametrize("cls, num_labels", [(BertForSequenceClassification, 5), (BertForSequenceClassification, 1),
                                             (BertForTokenClassification, 7), (BertForQuestionAnswering, 2)],
                         ids=["seq-cls", "seq-regression", "token-cls", "qa"])
def test_head_logits_loss_and_every_gradient_match_transformers(each_backend, cls, num_labels):
    cfg = small_config(num_labels=num_labels)
    model = perturb_parameters(cls(cfg, seed=0, dtype=np.float64), seed=2).eval()
    hf = hf_twin(model)
    inputs, labels = head_batch(cls, cfg)

    out = model(**inputs)
    hf_out = hf(**{k: _t(v) for k, v in inputs.items()})
    assert out.loss is None
    for ours, theirs in zip(_logits(out), _logits(hf_out)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=0, atol=1e-9)

    out = model(**inputs, **labels)
    model.backward()
    hf_out = hf(**{k: _t(v) for k, v in {**inputs, **labels}.items()})
    hf_out.loss.backward()
    assert abs(out.loss - hf_out.loss.item()) <= 1e-10 * abs(hf_out.loss.item()), (out.loss, hf_out.loss.item())
    assert_grads_match(model.grad_state_dict(), {n: p.grad.numpy() for n, p in hf.named_parameters()}, 1e-8,
                       exactly_zero=zero_gradient_by_shift(model))


@pytest.mark.parametrize("cls", HEADS)
@pytest.mark.parametrize("dropout", [0.0, 0.2], ids=["eval", "dropout-masks-fixed"])
def test_head_gradient_check_on_sampled_coordinates_of_every_parameter(each_backend, cls, dropout):
    """float64 centered differences at 3 sampled coordinates of every parameter; expect rel_error
    < 1e-6 (a correct backward gives ~1e-9, a wrong one ~1e-2).  With dropout on, the generator is
    re-seeded before each forward so both gradients see the same masks."""
    cfg = small_config(vocab_size=23, hidden_size=12, num_hidden_layers=2, num_attention_heads=3,
                       intermediate_size=10, max_position_embeddings=11, hidden_dropout_prob=dropout,
                       attention_probs_dropout_prob=dropout, num_labels=2 if cls is BertForQuestionAnswering else 3)
    model = perturb_parameters(cls(cfg, seed=0, dtype=np.float64)).train(dropout > 0)
    inputs, labels = head_batch(cls, cfg, B=3, T=7, seed=1)

    def loss():
        model.dropout_rng = np.random.default_rng(123)
        return float(model(**inputs, **labels).loss)

    loss()
    model.backward()
    rng = np.random.default_rng(0)
    for name, p, g in model.named_parameters():
        idx = rng.choice(p.size, size=min(3, p.size), replace=False)
        exact, approx = g.reshape(-1)[idx], numerical_gradient_at(loss, p, idx)
        if name.endswith("attention.self.key.bias") or name in zero_gradient_by_shift(model):
            assert np.abs(exact).max() < 1e-12 and np.abs(approx).max() < 1e-8, name
        else:
            assert rel_error(exact, approx) < 1e-6, f"{name}: {exact} vs {approx}"


def test_heads_have_transformers_parameter_names_and_no_pooler_where_transformers_has_none():
    import transformers
    cfg = small_config(num_labels=3)
    for cls in HEADS:
        c = cfg if cls is not BertForQuestionAnswering else small_config(num_labels=2)
        ours = cls(c, seed=0)
        hf_cfg = transformers.BertConfig(**c.to_dict())
        theirs = getattr(transformers, cls.__name__)(hf_cfg)
        assert list(ours.state_dict()) == list(dict(theirs.named_parameters())), cls.__name__
    assert minibert.BertForSequenceClassification is BertForSequenceClassification


def test_head_starts_like_bert_model_and_heads_start_as_transformers_inits_them():
    cfg = small_config(num_labels=4, initializer_range=0.05)
    head = BertForSequenceClassification(cfg, seed=7)
    bare = minibert.BertModel(cfg, seed=7)
    for n, p in bare.state_dict().items():
        np.testing.assert_array_equal(head.state_dict()["bert." + n], p)
    w = head.params["classifier.weight"]
    assert w.shape == (4, cfg.hidden_size) and abs(w.std() - 0.05) < 0.015
    assert not head.params["classifier.bias"].any()


def test_initial_classification_loss_is_about_ln_K():
    cfg = small_config(num_labels=6, hidden_size=96, num_attention_heads=3)
    model = BertForSequenceClassification(cfg, seed=0).eval()
    inputs, labels = head_batch(BertForSequenceClassification, cfg, B=3)
    rng = np.random.default_rng(0)
    losses = [float(model(**inputs, labels=rng.integers(0, 6, size=3)).loss) for _ in range(20)]
    assert abs(np.mean(losses) - np.log(6)) < 0.05


def test_token_classification_unlabelled_and_padded_positions_change_nothing(each_backend):
    cfg = small_config(num_labels=5)
    model = perturb_parameters(BertForTokenClassification(cfg, seed=0, dtype=np.float64)).eval()
    inputs, labels = head_batch(BertForTokenClassification, cfg)
    out1 = model(**inputs, **labels)
    model.backward()
    g1 = {n: g.copy() for n, g in model.grad_state_dict().items()}
    pad = inputs["attention_mask"] == 0
    inputs = dict(inputs, input_ids=np.where(pad, 7, inputs["input_ids"]))
    out2 = model(**inputs, **labels)
    model.zero_grad()  # backward() adds into the gradients
    model.backward()
    assert abs(out1.loss - out2.loss) < 1e-12
    for n, g in model.grad_state_dict().items():
        np.testing.assert_allclose(g, g1[n], atol=1e-12, rtol=0, err_msg=n)
    # the loss is the mean over labelled positions only (the d2l bug: a mean over all positions)
    z = out1.logits[labels["labels"] != -100]
    y = labels["labels"][labels["labels"] != -100]
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    assert abs(out1.loss + logp[np.arange(len(y)), y].mean()) < 1e-12


def test_qa_positions_outside_the_sequence_are_ignored_and_loss_is_the_mean_of_start_and_end():
    cfg = small_config()
    model = perturb_parameters(BertForQuestionAnswering(cfg, seed=0, dtype=np.float64)).eval()
    inputs, _ = head_batch(BertForQuestionAnswering, cfg, B=3, T=9)
    T = 9
    s, e = np.array([2, 3, 1]), np.array([4, 6, 8])
    full = model(**inputs, start_positions=s, end_positions=e)

    def ce(z, y):
        z = z - z.max(-1, keepdims=True)
        return -(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(-1)))
    expect = (ce(full.start_logits, s).mean() + ce(full.end_logits, e).mean()) / 2
    assert abs(full.loss - expect) < 1e-12
    # an answer past the end (clamped to T = ignore index) drops out of both means
    out = model(**inputs, start_positions=[2, 50, 1], end_positions=[4, T, 8])
    keep = [0, 2]
    expect = (ce(full.start_logits[keep], s[keep]).mean() + ce(full.end_logits[keep], e[keep]).mean()) / 2
    assert abs(out.loss - expect) < 1e-12
    # negative positions are clamped to 0, as transformers clamps them
    out = model(**inputs, start_positions=[-3, 3, 1], end_positions=[4, 6, 8])
    assert abs(out.loss - model(**inputs, start_positions=[0, 3, 1], end_positions=[4, 6, 8]).loss) < 1e-15
    # the softmax over positions ignores a shift shared by all of them: these gradients are exactly 0
    model(**inputs, start_positions=s, end_positions=e)
    model.backward()
    for name in zero_gradient_by_shift(model):
        assert np.abs(model.grad_state_dict()[name]).max() < 1e-13, name
    # (B, 1) positions are accepted, as transformers squeezes them
    out = model(**inputs, start_positions=s[:, None], end_positions=e[:, None])
    assert abs(out.loss - full.loss) < 1e-15


@pytest.mark.parametrize("cls, kwargs, error, message", [
    (BertForSequenceClassification, {"labels": [0, 1]}, ValueError, "labels must have shape (3,)"),
    (BertForSequenceClassification, {"labels": [0, 1, 4]}, ValueError, "num_labels=3"),
    (BertForSequenceClassification, {"labels": [0.0, 1.0, 2.0]}, TypeError, "labels must be an integer array"),
    (BertForTokenClassification, {"labels": np.zeros((3, 4), dtype=int)}, ValueError, "labels must have shape (3, 9)"),
    (BertForQuestionAnswering, {"start_positions": [1, 2, 3]}, ValueError, "both start_positions and end_positions"),
])
def test_bad_labels_get_clear_errors(cls, kwargs, error, message):
    cfg = small_config(num_labels=2 if cls is BertForQuestionAnswering else 3)
    model = cls(cfg, seed=0)
    inputs, _ = head_batch(cls, cfg)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        model(**inputs, **kwargs)


def test_backward_needs_a_forward_with_labels_and_qa_needs_two_labels():
    cfg = small_config(num_labels=3)
    model = BertForTokenClassification(cfg, seed=0)
    with pytest.raises(ValueError, match="before forward"):
        model.backward()
    inputs, _ = head_batch(BertForTokenClassification, cfg)
    model(**inputs)
    with pytest.raises(ValueError, match="needs a loss: pass labels"):
        model.backward()
    with pytest.raises(ValueError, match="num_labels == 2"):
        BertForQuestionAnswering(cfg)
    assert "BertForTokenClassification(L=3" in repr(model) and "K=3" in repr(model)
    assert "loss=" in repr(model(**inputs, labels=np.zeros((3, 9), dtype=int)))


# -- each head learns ------------------------------------------------------------------------------
def _train(model, batches, steps, lr=3e-3):
    opt = minibert.AdamW(model, lr=lr, weight_decay=0.0)
    losses = []
    for step in range(steps):
        out = model(**batches(step))
        model.zero_grad()
        model.backward()
        minibert.clip_grad_norm(model, 1.0)
        opt.step()
        losses.append(float(out.loss))
    return losses


def _learn_config(num_labels, V=40, T=12):
    return small_config(vocab_size=V, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=T, num_labels=num_labels)


def test_token_classification_learns_bio_tagging_which_needs_the_left_neighbour():
    """Named-entity style BIO tags: ids >= 8 are "entity words"; an entity word is B (1) when its
    left neighbour is not one, I (2) when it is; other words are O (0).  A tagger that looks at the
    token alone can tell O from entity but not B from I (~72% right here); attention to the previous
    position gets ~100%."""
    V, T, B, ENT = 16, 10, 32, 8
    cfg = _learn_config(3, V=V, T=T)

    def batch(seed):
        rng = np.random.default_rng(seed)
        ids = rng.integers(1, V, size=(B, T))
        ent = ids >= ENT
        after_ent = np.concatenate([np.zeros((B, 1), bool), ent[:, :-1]], axis=1)
        return dict(input_ids=ids, labels=np.where(~ent, 0, np.where(after_ent, 2, 1)))

    model = BertForTokenClassification(cfg, seed=0).train()
    losses = _train(model, batch, 150)
    test = batch(10_000)
    pred = model.eval()(test["input_ids"]).logits.argmax(-1)
    acc = (pred == test["labels"]).mean()
    context_free = (test["labels"] != 2).mean()  # the best a token-only tagger does: never says I
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:5]), (losses[:5], losses[-20:])
    assert acc > context_free + 0.15, (acc, context_free)


def test_question_answering_learns_to_find_a_span():
    """The answer is the span between two marker tokens (ids 1 and 2) at random places: start right
    after 1, end right before 2.  Chance is 1/T per boundary."""
    V, T, B = 20, 12, 32
    cfg = _learn_config(2, V=V, T=T)

    def batch(seed):
        rng = np.random.default_rng(seed)
        ids = rng.integers(3, V, size=(B, T))
        s = rng.integers(1, T - 4, size=B)
        e = s + rng.integers(0, 3, size=B)
        ids[np.arange(B), s - 1] = 1
        ids[np.arange(B), e + 1] = 2
        return dict(input_ids=ids, start_positions=s, end_positions=e)

    model = BertForQuestionAnswering(cfg, seed=0).train()
    losses = _train(model, batch, 200)
    test = batch(10_000)
    out = model.eval()(test["input_ids"])
    start_acc = (out.start_logits.argmax(-1) == test["start_positions"]).mean()
    end_acc = (out.end_logits.argmax(-1) == test["end_positions"]).mean()
    assert np.mean(losses[-20:]) < 0.3 * np.mean(losses[:5]), (losses[:5], losses[-20:])
    assert start_acc > 0.6 and end_acc > 0.6, (start_acc, end_acc)  # chance: 1/T = 0.08


def test_sequence_classification_learns_which_marker_comes_first():
    """Label 1 if token 1 comes before token 2 in the sequence: a question of order, so the [CLS]
    vector must gather information from two positions."""
    V, T, B = 16, 10, 32
    cfg = _learn_config(2, V=V, T=T)

    def batch(seed):
        rng = np.random.default_rng(seed)
        ids = rng.integers(3, V, size=(B, T))
        pos = np.array([rng.choice(np.arange(1, T), size=2, replace=False) for _ in range(B)])
        ids[np.arange(B), pos[:, 0]] = 1
        ids[np.arange(B), pos[:, 1]] = 2
        ids[:, 0] = 3  # a fixed first token, standing for [CLS]
        return dict(input_ids=ids, labels=(pos[:, 0] < pos[:, 1]).astype(int))

    model = BertForSequenceClassification(cfg, seed=0).train()
    losses = _train(model, batch, 200)
    test = batch(10_000)
    acc = (model.eval()(test["input_ids"]).logits.argmax(-1) == test["labels"]).mean()
    assert np.mean(losses[-20:]) < 0.5 * np.log(2), (losses[:5], losses[-20:])
    assert acc > 0.8, acc
