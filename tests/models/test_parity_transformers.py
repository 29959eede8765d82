"""minibert's BERT is transformers' BERT: same outputs, same loss, same gradient for every parameter.

float64, eager attention, dropout 0.  Tolerances: logits 1e-9 absolute (float64 carries ~16 digits;
the two implementations sum in different orders, so they agree to ~1e-13, far below this), loss 1e-10
relative, every parameter gradient 1e-8 relative (rel_error: max|a-b| over max|a|+|b|).
"""
import numpy as np
import pytest

import minibert
from conftest import assert_grads_match, hf_pretraining_model, make_batch, perturb_parameters, small_config
from minibert.gradcheck import rel_error

torch = pytest.importorskip("torch")  # declared in the test extra: a missing oracle is an install error


def _t(a):
    return torch.from_numpy(np.asarray(a))


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_pretraining_outputs_loss_and_every_gradient_match_transformers(each_backend, act):
    cfg = small_config(hidden_act=act)
    model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64))
    model.eval()
    hf = hf_pretraining_model(model)
    batch = make_batch(cfg)

    # 1. outputs without labels: logits at every position
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    hf_out = hf(input_ids=_t(batch["input_ids"]), token_type_ids=_t(batch["token_type_ids"]),
                attention_mask=_t(batch["attention_mask"]))
    np.testing.assert_allclose(out.prediction_logits, hf_out.prediction_logits.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.seq_relationship_logits, hf_out.seq_relationship_logits.detach().numpy(),
                               rtol=0, atol=1e-9)

    # 2. with labels: the same outputs as transformers' (every position's logits, the hidden states), the
    # loss and every gradient
    out = model(**batch, output_attentions=True)
    model.backward()
    hf_out = hf(**{k: _t(v) for k, v in batch.items()}, output_hidden_states=True, output_attentions=True)
    hf_out.loss.backward()
    assert abs(out.loss - hf_out.loss.item()) <= 1e-10 * abs(hf_out.loss.item())
    np.testing.assert_allclose(out.prediction_logits, hf_out.prediction_logits.detach().numpy(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.seq_relationship_logits, hf_out.seq_relationship_logits.detach().numpy(),
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(out.last_hidden_state, hf_out.hidden_states[-1].detach().numpy(), rtol=0, atol=1e-10)
    for ours, theirs in zip(out.attentions, hf_out.attentions, strict=True):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=0, atol=1e-12)
    assert_grads_match(model.grad_state_dict(), {n: p.grad.numpy() for n, p in hf.named_parameters()}, 1e-8)


def test_bert_model_hidden_states_and_pooler_match_transformers(each_backend):
    import transformers
    cfg = small_config()
    model = minibert.BertModel(cfg, seed=3, dtype=np.float64)
    perturb_parameters(model, seed=4).eval()
    hf_config = transformers.BertConfig(**cfg.to_dict())
    hf_config._attn_implementation = "eager"
    hf = transformers.BertModel(hf_config).double().eval()
    hf.load_state_dict({k: _t(v) for k, v in model.state_dict().items()}, strict=True)
    batch = make_batch(cfg, B=2, T=11, seed=5)
    out = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    hf_out = hf(input_ids=_t(batch["input_ids"]), token_type_ids=_t(batch["token_type_ids"]),
                attention_mask=_t(batch["attention_mask"]))
    np.testing.assert_allclose(out.last_hidden_state, hf_out.last_hidden_state.detach().numpy(), atol=1e-10, rtol=0)
    np.testing.assert_allclose(out.pooler_output, hf_out.pooler_output.detach().numpy(), atol=1e-10, rtol=0)

    # backward from an arbitrary upstream gradient on both outputs
    rng = np.random.default_rng(0)
    d_seq, d_pool = rng.standard_normal(out.last_hidden_state.shape), rng.standard_normal(out.pooler_output.shape)
    model.zero_grad()
    model.backward(d_seq, d_pool)
    ((hf_out.last_hidden_state * _t(d_seq)).sum() + (hf_out.pooler_output * _t(d_pool)).sum()).backward()
    assert_grads_match(model.grad_state_dict(), {n: p.grad.numpy() for n, p in hf.named_parameters()}, 1e-8)


def test_adamw_tracks_torch_adamw_for_ten_steps_with_a_changing_lr(each_backend):
    cfg = small_config(num_hidden_layers=2)
    model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)).eval()
    hf = hf_pretraining_model(model)
    decay = [p for n, p in hf.named_parameters() if not minibert.optim.no_weight_decay(n)]
    no_decay = [p for n, p in hf.named_parameters() if minibert.optim.no_weight_decay(n)]
    assert decay and no_decay
    torch_opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.999), eps=1e-6)
    opt = minibert.AdamW(model, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    for step in range(10):
        lr = minibert.linear_warmup_decay(step, max_steps=10, warmup_steps=3, peak_lr=1e-3)
        batch = make_batch(cfg, seed=step)
        out = model(**batch)
        model.zero_grad()
        model.backward()
        opt.lr = lr
        opt.step()
        torch_opt.zero_grad()
        hf_out = hf(**{k: _t(v) for k, v in batch.items()})
        hf_out.loss.backward()
        for group in torch_opt.param_groups:
            group["lr"] = lr
        torch_opt.step()
        assert abs(out.loss - hf_out.loss.item()) < 1e-8
    theirs = dict(hf.named_parameters())
    for n, p, _ in model.named_parameters():
        assert rel_error(p, theirs[n].detach().numpy()) < 1e-8, n


def test_clip_grad_norm_matches_torch():
    cfg = small_config(num_hidden_layers=1)
    model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=np.float64)).eval()
    hf = hf_pretraining_model(model)
    batch = make_batch(cfg)
    model(**batch)
    model.backward()
    hf(**{k: _t(v) for k, v in batch.items()}).loss.backward()
    ours = minibert.clip_grad_norm(model, 0.5)
    theirs = torch.nn.utils.clip_grad_norm_(hf.parameters(), 0.5).item()
    assert abs(ours - theirs) < 1e-10 * theirs and ours > 0.5
    assert_grads_match(model.grad_state_dict(), {n: p.grad.numpy() for n, p in hf.named_parameters()}, 1e-10)


def test_the_schedule_differs_from_transformers_only_as_documented():
    """docs/backward/adamw.md: minibert's warmup runs one step ahead of transformers' (its update s
    uses (s + 1) / W, transformers' s / W), the peak is used exactly once, and the decay divides by
    S - W + 1 where transformers' divides by S - W.  Exact arithmetic on fractions of the peak."""
    import torch
    from transformers import get_linear_schedule_with_warmup
    S, W = 10, 3
    ours = [minibert.linear_warmup_decay(s, max_steps=S, warmup_steps=W, peak_lr=1.0) for s in range(S)]
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    theirs = get_linear_schedule_with_warmup(opt, num_warmup_steps=W, num_training_steps=S).lr_lambdas[0]
    assert ours.count(1.0) == 1 and ours.index(1.0) == W - 1, ours
    for s in range(S):
        if s < W:
            assert ours[s] == pytest.approx(theirs(s + 1), rel=1e-15), s  # one step ahead
        else:
            assert ours[s] == pytest.approx(theirs(s) * (S - W) / (S - W + 1), rel=1e-15), s
