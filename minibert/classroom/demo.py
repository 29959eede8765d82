"""``minibert demo``: build a tiny BERT, gradient-check it in float64, and (if transformers is
installed) compare it with transformers' BertForPreTraining.  Prints every figure it claims."""
import math

import numpy as np

from ..backend import get_backend
from ..config import BertConfig
from ..models.bert import BertForPreTraining
from ..gradcheck import numerical_gradient_at, perturb_parameters, rel_error
from ..layers.cross_entropy import IGNORE_INDEX


def main():
    cfg = BertConfig(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
                     intermediate_size=80, max_position_embeddings=40, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    model = BertForPreTraining(cfg, seed=0, dtype=np.float64).eval()
    print(model, f"backend={get_backend()}")
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 97, size=(2, 9))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    labels = np.full_like(ids, IGNORE_INDEX)
    labels[0, [2, 5]] = ids[0, [2, 5]]
    labels[1, 3] = ids[1, 3]
    nsp = np.array([0, 1])
    out = model(ids, attention_mask=mask, labels=labels, next_sentence_label=nsp)
    print(f"initial losses: MLM {out.mlm_loss:.4f} (ln V = {math.log(97):.4f}), "
          f"NSP {out.nsp_loss:.4f} (ln 2 = {math.log(2):.4f})")
    # The check runs on non-trivial parameter values: at BERT's init the deepest gradients are ~1e-5,
    # where the rounding of a centered difference alone is a relative error of ~1e-6.
    perturb_parameters(model)
    out = model(ids, attention_mask=mask, labels=labels, next_sentence_label=nsp)
    model.backward()
    loss = lambda: float(model(ids, attention_mask=mask, labels=labels, next_sentence_label=nsp).loss)
    worst = 0.0
    for name, p, g in model.named_parameters():
        if name.endswith("key.bias"):
            continue  # exactly zero gradient (softmax shift invariance); see docs/backward/attention.md
        idx = rng.choice(p.size, size=min(3, p.size), replace=False)
        worst = max(worst, rel_error(g.reshape(-1)[idx], numerical_gradient_at(loss, p, idx)))
    print(f"whole-model float64 gradient check (non-trivial parameter values), 3 coordinates of each "
          f"parameter: worst rel_error {worst:.2e} (correct: < 1e-7; a wrong backward: > 1e-3)")
    try:
        import torch
        import transformers
    except ImportError:
        print("transformers not installed: skipping the parity check (pip install -e '.[test]')")
        return
    hf_cfg = transformers.BertConfig(**cfg.to_dict())
    hf_cfg._attn_implementation = "eager"
    hf = transformers.BertForPreTraining(hf_cfg).double().eval()
    hf.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    t = lambda a: torch.from_numpy(np.asarray(a))
    hf_out = hf(input_ids=t(ids), attention_mask=t(mask), labels=t(labels), next_sentence_label=t(nsp))
    hf_out.loss.backward()
    grads = model.grad_state_dict()
    gerr = max(rel_error(grads[n], p.grad.numpy()) for n, p in hf.named_parameters() if not n.endswith("key.bias"))
    print(f"vs transformers.BertForPreTraining (float64): loss {float(out.loss):.12f} vs "
          f"{hf_out.loss.item():.12f}, worst gradient rel_error {gerr:.2e}")
