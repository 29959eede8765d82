"""How large is each parameter's gradient in a pretraining run?  Where does Adam's epsilon bite?

    minibert pretrain --out runs/pretrain
    python benchmarks/gradient_scales.py runs/pretrain            # 40 full-length training batches

AdamW moves a parameter by lr * m / (sqrt(v) + eps): a parameter whose gradient is much smaller than
``eps`` is damped, one whose gradient is much larger moves a full step whatever its size.  This script
takes a trained model (a ``minibert pretrain`` output), computes the gradients of ``--batches``
full-length training batches of that run's corpus and vocabulary (clipped to the run's global norm, as
training does), and prints for each group of parameters the quantiles of each entry's RMS gradient over
the batches, and the share of entries below 1e-6 (BERT's eps), 1e-5 and 1e-4.  docs/pretraining.md
("The optimizer's epsilon") reads it: the word embeddings (rare pieces' rows) and the decoder bias sit
far below every other matrix.
"""
import argparse
import json
import os

import numpy as np

from minibert.kernels.heads_rows import LossOnly
from minibert.optim import clip_grad_norm
from minibert.training.inference import load_pretraining_model
from minibert.training.pretrain import PretrainConfig, load_corpus, pretraining_data


def gradient_rms(run_dir, batches):
    """{parameter name: (entries,) RMS gradient over ``batches`` full-length batches of the run's data}."""
    model, tokenizer = load_pretraining_model(run_dir)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        cfg = PretrainConfig.from_metrics(json.load(f))
    train_docs, _ = load_corpus(cfg.corpus, cfg.seed, verbose=False)
    data = pretraining_data(cfg, train_docs, tokenizer)
    model.train()
    loss_only, sums = LossOnly(), {}
    for i in range(batches):
        batch = data.batch(cfg.short_seq_steps + i)  # a full-length batch
        model.zero_grad()
        loss_only.forward(model, **batch)
        loss_only.backward(model, dmlm=1.0, dnsp=1.0)
        clip_grad_norm(model, cfg.max_grad_norm)
        for name, _, grad in model.named_parameters():
            sums[name] = sums.get(name, 0.0) + grad.astype(np.float64) ** 2
    return {name: np.sqrt(s / batches).ravel() for name, s in sums.items()}


def group_of(name):
    """The encoder's layers pooled by kind (``query``, ``dense``, ``LayerNorm``...); every other name as is."""
    return name.split(".")[-2] if ".layer." in name else name


def main(argv=None):
    """Print the table; -> {group: (entries,) RMS gradients}."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a `minibert pretrain` output directory")
    ap.add_argument("--batches", type=int, default=40)
    args = ap.parse_args(argv)
    groups = {}
    for name, rms in gradient_rms(args.run, args.batches).items():
        groups.setdefault(group_of(name), []).append(rms)
    print(f"{'parameters':48s} {'entries':>8s} {'p10':>9s} {'median':>9s} {'p90':>9s} {'<1e-6':>6s} {'<1e-5':>6s} "
          f"{'<1e-4':>6s}")
    for name, parts in sorted(groups.items()):
        r = np.concatenate(parts)
        p10, p50, p90 = np.quantile(r, [0.1, 0.5, 0.9])
        print(f"{name[:48]:48s} {r.size:8d} {p10:9.2e} {p50:9.2e} {p90:9.2e} {(r < 1e-6).mean():6.2f} "
              f"{(r < 1e-5).mean():6.2f} {(r < 1e-4).mean():6.2f}")
    return {name: np.concatenate(parts) for name, parts in groups.items()}


if __name__ == "__main__":
    main()
