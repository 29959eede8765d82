"""One gradient contract, as PyTorch's ``.grad``: ``backward()`` adds into ``grads``, ``zero_grad()``
clears them, and the training step is the one place that zeroes.  What it buys: gradient accumulation,
a batch split into micro-batches whose gradients add up to exactly the whole batch's.

All in float64, where a correct accumulation agrees with the whole batch to rounding (~1e-15 relative);
a wrongly weighted one (e.g. each micro-batch's mean loss simply averaged) is off by ~1e-2.
"""
import types

import numpy as np
import pytest

import minibert
from conftest import make_batch, perturb_parameters, small_config
from minibert.models import (BertForPreTraining, BertForQuestionAnswering, BertForSequenceClassification,
                             BertForTokenClassification, BertModel)
from minibert.training.loop import split_batch, training_step

HEADS = [BertForSequenceClassification, BertForTokenClassification, BertForQuestionAnswering]


def model_and_batch(cls, B=6, T=9, seed=0, **config):
    """A float64 model with non-trivial parameters and a padded batch with labels for its task."""
    cfg = small_config(num_labels=2 if cls is BertForQuestionAnswering else config.pop("num_labels", 3), **config)
    model = perturb_parameters(cls(cfg, seed=0, dtype=np.float64)).eval()
    batch = make_batch(cfg, B=B, T=T, seed=seed)  # rows of different lengths, some positions labelled
    if cls is BertForPreTraining:
        return model, batch
    inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    if cls is BertForSequenceClassification:  # two sequences not counted (-100)
        return model, {**inputs, "labels": np.array([0, -100, -100, 2, 1, 1])[:B]}
    if cls is BertForTokenClassification:  # padding and [CLS] not counted
        labels = np.where(batch["attention_mask"] == 1, np.random.default_rng(seed).integers(0, 3, (B, T)), -100)
        labels[:, 0] = -100
        return model, {**inputs, "labels": labels}
    # QA: two answers outside the sequence (clamped to T, not counted)
    return model, {**inputs, "start_positions": np.array([2, T + 5, 1, 3, T + 2, 0])[:B],
                   "end_positions": np.array([4, T + 7, T - 1, 3, 5, 0])[:B]}


def grads(model):
    return {n: g.copy() for n, g in model.grad_state_dict().items()}


def assert_same(a, b, what, rtol=1e-12):
    """Equal up to rounding, relative to the largest entry of each array.  A gradient that is exactly
    zero in truth (the attention key bias: softmax ignores a shift shared by a row) holds rounding noise
    of ~1e-17 on both sides, so there only both being below 1e-12 is asserted."""
    for n in a:
        scale = max(np.abs(a[n]).max(), np.abs(b[n]).max())
        if scale < 1e-12:
            continue
        assert np.abs(a[n] - b[n]).max() <= rtol * scale, f"{what}: {n}"


# -- backward() adds -------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [BertForPreTraining] + HEADS)
def test_two_backward_passes_without_zero_grad_give_twice_the_gradient(cls):
    model, batch = model_and_batch(cls)
    model(**batch)
    model.backward()
    once = grads(model)
    model(**batch)
    model.backward()  # no zero_grad(): adds the same gradient again
    # g + g is exact; only the tied embedding, which adds two paths per pass, rounds differently
    assert_same(grads(model), {n: 2 * g for n, g in once.items()}, "twice", rtol=1e-15)
    model.zero_grad()
    assert all(not g.any() for g in model.grad_state_dict().values()), "zero_grad() clears every gradient"


def test_the_encoder_alone_also_adds():
    cfg = small_config()
    model = perturb_parameters(BertModel(cfg, seed=0, dtype=np.float64))
    batch = make_batch(cfg)
    rng = np.random.default_rng(1)
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    d_seq, d_pool = rng.standard_normal(out.last_hidden_state.shape), rng.standard_normal(out.pooler_output.shape)
    model.backward(d_seq, d_pool)
    once = grads(model)
    model.backward(d_seq, d_pool)  # the same cache, the same upstream gradients
    assert_same(grads(model), {n: 2 * g for n, g in once.items()}, "twice", rtol=1e-15)


# -- gradient accumulation -------------------------------------------------------------------------
def one_update(model, batch, grad_accum):
    """Weights and gradients after one training step with ``grad_accum`` micro-batches."""
    cfg = types.SimpleNamespace(grad_accum=grad_accum, max_grad_norm=1e9, max_steps=10, warmup_steps=0, lr=1e-2)
    opt = minibert.AdamW(model, lr=cfg.lr)
    result = training_step(model, opt, batch, 0, cfg)
    return result, grads(model), {n: p.copy() for n, p, _ in model.named_parameters()}


@pytest.mark.parametrize("cls", [BertForPreTraining] + HEADS)
@pytest.mark.parametrize("grad_accum", [2, 3])
def test_micro_batches_give_the_same_update_as_the_whole_batch(cls, grad_accum):
    """The rows of make_batch/head_batch hold different numbers of labelled positions (and the QA batch
    an ignored answer), so the micro-batches' means must be weighted by their counts to add up."""
    whole_model, batch = model_and_batch(cls)
    split_model, _ = model_and_batch(cls)
    whole, g_whole, p_whole = one_update(whole_model, batch, 1)
    split, g_split, p_split = one_update(split_model, batch, grad_accum)
    assert len(split.micro_batches) == grad_accum
    counts = [split_model.loss_counts(**mb) for mb in split.micro_batches]
    assert len({tuple(c.values()) for c in counts}) > 1, "the test needs micro-batches of unequal counts"
    assert split.loss == pytest.approx(whole.loss, rel=1e-13)
    assert_same(g_split, g_whole, "gradient")
    assert_same(p_split, p_whole, "weights after AdamW")


def test_split_batch_keeps_every_row_once_in_order():
    batch = {"a": np.arange(7), "b": np.arange(14).reshape(7, 2)}
    parts = split_batch(batch, 3)
    assert [len(p["a"]) for p in parts] == [2, 3, 2]
    np.testing.assert_array_equal(np.concatenate([p["b"] for p in parts]), batch["b"])
    with pytest.raises(ValueError, match="grad_accum must be between 1 and the batch size"):
        split_batch(batch, 8)


def test_grad_accum_larger_than_the_batch_is_refused():
    from minibert.training.pretrain import PretrainConfig
    with pytest.raises(ValueError, match=r"grad_accum \(9\) must be at most batch_size \(8\)"):
        PretrainConfig(batch_size=8, grad_accum=9).validate()


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_the_training_commands_take_grad_accum(command, capsys):
    from minibert.cli import main
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--grad-accum GRAD_ACCUM" in capsys.readouterr().out


def test_pretraining_with_micro_batches_logs_the_same_losses(tmp_path):
    """End to end in float32: the same run with 1 and with 4 micro-batches per step.  Only the order of
    float32 sums differs (~1e-7 relative per step), so the losses agree to ~1e-5 after a few steps."""
    import json
    from minibert.training.pretrain import PretrainConfig, pretrain
    small = dict(corpus="synthetic", batch_size=8, max_seq_length=32, vocab_size=300, eval_every=5,
                 checkpoint_every=5, eval_batches=1, warmup_steps=2, max_steps=5, verbose=False)
    losses = {}
    for n in (1, 4):
        pretrain(PretrainConfig(out=str(tmp_path / f"accum{n}"), grad_accum=n, **small))
        losses[n] = [json.loads(line)["loss"] for line in open(tmp_path / f"accum{n}" / "log.jsonl")]
    assert len(losses[1]) == 5
    np.testing.assert_allclose(losses[4], losses[1], rtol=1e-5)
