"""Pretraining end to end: corpus -> WordPiece vocab -> MLM/NSP instances -> BERT -> AdamW.

    from minibert.training.pretrain import PretrainConfig, pretrain
    metrics = pretrain(PretrainConfig(preset="tiny", max_steps=500, out="runs/tiny"))

Writes into ``out``: ``vocab.txt``, ``log.jsonl`` (one line per step), ``checkpoint.safetensors``
(atomic, checksummed; ``resume=True`` continues from it exactly), ``metrics.json``, ``curves.png``
and ``model/`` (config.json + model.safetensors + vocab.txt, loadable by minibert and transformers).
"""
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Optional


from .. import backend
from ..config import BertConfig, option, redefault
from ..files import atomic_write_bytes
from ..kernels import heads_rows
from ..models.bert import BertForPreTraining
from ..optim import AdamW
from . import loop
from .inference import fill_mask
from .loop import Job, RunConfig
from .plots import plot_curves

# tiny is Google's BERT-Tiny (L=2, H=128, F=512) with 4 heads of 32 numbers instead of its 2 of 64: the
# same products and about the same minutes, and 0.012-0.019 more held-out MLM accuracy: three of its 8
# heads learn to read a neighbour, against two of 4 (measured: docs/pretraining.md, "Four heads").
PRESETS = {
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
}
# The default peak learning rate of each preset (measured, docs/pretraining.md): tiny, with a 360-step
# warmup, learns fastest at 3e-3 (with a 60-step warmup it lost its positional heads there); mini, without
# dropout, stays at the unigram level at 2e-3.
PRESET_LR = {"tiny": 3e-3, "mini": 1e-3}
ENGINES = ("minibert", "torch")  # torch: training/torch_engine.py, the only module that imports torch
DEVICES = ("cpu", "cuda")


@dataclass
class PretrainConfig(RunConfig):
    """A pretraining run; the fields shared with fine-tuning are ``RunConfig``'s."""
    preset: str = option("tiny", "tiny: L=2 H=128 A=4 F=512; mini: L=4 H=256 A=4 F=1024 (T=128 for both)",
                         choices=sorted(PRESETS))
    corpus: str = option("default", "'default' (CPython's own documentation, no download), 'synthetic', or a "
                                    "text file in google-research/bert's format (one sentence per line, blank "
                                    "line between documents)")
    out: str = redefault(RunConfig, "out", "runs/pretrain")
    max_steps: int = redefault(RunConfig, "max_steps", 3600)  # 8.6-10 min of training on a 2-core AVX2 EPYC
    warmup_steps: Optional[int] = option(None, "linear warmup to --lr, then linear decay to 0 at --max-steps (360 "
                                               "of 3600: tiny's lr of 3e-3 needs it, docs/pretraining.md)", type=int,
                                         shown_default="a tenth of --max-steps")
    seed: int = option(0, "seeds the initialisation, dropout, NSP pairing, masking and batch order (and the "
                          "synthetic corpus)")
    lr: Optional[float] = option(None, "peak learning rate of AdamW", type=float,
                                 shown_default=", ".join(f"{k} {v:g}" for k, v in PRESET_LR.items()))
    max_seq_length: int = option(128, "tokens per sequence, [CLS] A [SEP] B [SEP] included")
    vocab_size: int = option(8192, "WordPiece vocabulary trained on the corpus (OUT/vocab.txt is reused when present)")
    short_seq_length: int = option(16, "tokens per sequence during the sequence-length warmup")
    short_seq_fraction: float = option(0.25, "the first this fraction of the steps trains on short sequences "
                                             "(same tokens per batch; 0: off)")
    masked_lm_prob: float = option(0.15, "fraction of the tokens of a training sequence to predict (BERT's 0.15; "
                                         "the held-out evaluation always masks 0.15)")
    group_by_length: bool = option(True, "serve training batches of similar length, cut to their longest "
                                         "sequence, so no step computes on padding (transformers' "
                                         "group_by_length)", flag="--no-group-by-length", invert=True)
    dropout: float = option(0.0, "hidden and attention dropout while pretraining (BERT used 0.1; why 0 here: "
                                 "docs/pretraining.md)")
    eval_batches: int = option(8, "held-out batches per evaluation")
    debug: bool = option(False, "name the first kernel that produces a NaN/Inf (slower)")
    engine: str = option("minibert", "minibert: this package's BERT; torch: the same recipe (data, initial "
                                     "weights, schedule, evaluation, outputs) on PyTorch + transformers' "
                                     "BertForPreTraining (pip install 'minibert[torch]'; docs/scaling.md)",
                         choices=list(ENGINES))
    nproc: int = option(1, "with --engine torch: data-parallel processes, started by torch.distributed.run "
                           "under DistributedDataParallel (gloo on CPU, NCCL on CUDA); each trains on its "
                           "shard of every batch")
    device: str = option("cpu", "with --engine torch: where the model runs", choices=list(DEVICES))

    def __post_init__(self):
        if self.lr is None and self.preset in PRESET_LR:
            self.lr = PRESET_LR[self.preset]
        if self.warmup_steps is None and isinstance(self.max_steps, int) and not isinstance(self.max_steps, bool):
            self.warmup_steps = self.max_steps // 10

    def validate(self):
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        self.validate_run()
        for name in ("vocab_size", "eval_batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(self.max_seq_length, int) or self.max_seq_length < 8:
            raise ValueError(f"max_seq_length must be an integer >= 8, got {self.max_seq_length!r}")
        if not isinstance(self.short_seq_length, int) or self.short_seq_length < 8:
            raise ValueError(f"short_seq_length must be an integer >= 8, got {self.short_seq_length!r}")
        if not 0 <= self.short_seq_fraction < 1:
            raise ValueError(f"short_seq_fraction must be in [0, 1), got {self.short_seq_fraction!r}")
        if not 0 < self.masked_lm_prob < 1:
            raise ValueError(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if isinstance(self.nproc, bool) or not isinstance(self.nproc, int) or self.nproc <= 0:
            raise ValueError(f"nproc must be a positive integer, got {self.nproc!r}")
        if self.engine != "torch" and (self.nproc != 1 or self.device != "cpu"):
            raise ValueError("--nproc and --device are settings of the torch engine: add --engine torch")
        if self.engine == "torch" and self.debug:
            raise ValueError("--debug names minibert's kernels; the torch engine has none (drop --debug)")
        if self.nproc * self.grad_accum > self.batch_size:
            raise ValueError(f"nproc x grad_accum ({self.nproc} x {self.grad_accum}) must be at most batch_size "
                             f"({self.batch_size}): every process trains on at least one sequence")
        if self.corpus not in ("default", "synthetic") and os.path.isdir(self.corpus):
            raise IsADirectoryError(f"--corpus {self.corpus!r} is a directory: use 'default', 'synthetic', or a "
                                    "text file (one sentence per line, a blank line between documents)")
        if self.corpus not in ("default", "synthetic") and not os.path.isfile(self.corpus):
            raise FileNotFoundError(f"corpus file not found: {self.corpus!r} "
                                    "(use 'default', 'synthetic', or a text file: one sentence per line, "
                                    "a blank line between documents)")

    @classmethod
    def from_metrics(cls, metrics):
        """The config a finished run was trained with, from the metrics dict ``pretrain()`` returns and writes
        to ``metrics.json`` (under ``config.pretrain``; fields a later minibert dropped are skipped)."""
        saved = metrics.get("config", {}).get("pretrain")
        if saved is None:
            raise ValueError("these metrics hold no pretraining config: they are not a `minibert pretrain` run's")
        return cls(**{k: v for k, v in saved.items() if k in cls.__dataclass_fields__})

    @property
    def short_seq_steps(self):
        """Steps of the sequence-length warmup (0 when it is off or the sequences are short anyway)."""
        if self.short_seq_length >= self.max_seq_length:
            return 0
        return int(self.short_seq_fraction * self.max_steps)

    def model_config(self, vocab_size):
        return BertConfig(vocab_size=vocab_size, max_position_embeddings=self.max_seq_length,
                          hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
                          **PRESETS[self.preset])


# -- data ------------------------------------------------------------------------------------------
def load_corpus(name, seed=0, verbose=True):
    """-> (train documents, held-out documents); a document is a list of sentences."""
    from ..data.corpus import read_text_corpus
    from ..data.cpython_docs import load_default_corpus
    from ..data.synthetic import synthetic_corpus
    if name == "default":
        c = load_default_corpus(verbose=verbose)
        return c.train, c.heldout
    if name == "synthetic":
        c = synthetic_corpus(num_docs=400, seed=seed)
        return c.train, c.heldout
    docs = read_text_corpus(name)
    docs = docs.train + docs.heldout if hasattr(docs, "train") else docs
    if len(docs) < 2:
        raise ValueError(f"corpus {name!r} has {len(docs)} document(s); NSP needs at least 2 "
                         "(separate documents with a blank line)")
    n_held = max(1, len(docs) // 20)
    return docs[n_held:], docs[:n_held]


def build_vocab(train_docs, vocab_size, path, verbose=True):
    from ..data.wordpiece import train_wordpiece
    if not os.path.isfile(path):
        t = time.perf_counter()
        train_wordpiece((s for doc in train_docs for s in doc), vocab_size, out_file=path)
        if verbose:
            print(f"trained a {vocab_size}-piece WordPiece vocabulary in {time.perf_counter() - t:.1f}s -> {path}")
    from ..data.tokenizer import BertTokenizer
    return BertTokenizer(path)


class SequenceLengthWarmup:
    """Pretraining batches whose sequence length grows: ``short`` batches for the first ``short_steps``
    steps, then ``full`` ones (both are ``PretrainingDataset``).

    Why: at BERT's random initialisation every attention head is position-blind, and over a 128-token
    sequence the gradient that would teach a head to look at its neighbours is diluted 1/128.  On
    16-token sequences (8x as many per batch, so the same tokens per step) heads learn to look at the
    next and the previous token, and once the sequences are full length the model builds on them.
    google-research/bert also trains short sequences first (128 tokens for 90% of the steps, then 512).
    The masking is BERT's at both lengths; see docs/pretraining.md for what it buys.
    """

    def __init__(self, short, full, short_steps):
        self.short, self.full, self.short_steps = short, full, int(short_steps)

    def batch(self, step):
        """The batch for 0-based ``step``."""
        return (self.short if step < self.short_steps else self.full).next_batch()

    def most_frequent_label(self):
        return self.full.most_frequent_label()

    def state_dict(self):
        return {"short": self.short.state_dict() if self.short is not None else None,
                "full": self.full.state_dict()}

    def load_state_dict(self, state):
        """Continue both streams where they were.  The number of short steps is this run's (like the learning
        rate schedule, it follows ``--max-steps``), so a finished run can be resumed for longer."""
        if not isinstance(state, dict) or not {"short", "full"} <= set(state):
            raise ValueError("the checkpoint's data state has no 'short' and 'full' streams: it was written by "
                             "an older minibert; start a new run")
        self.full.load_state_dict(state["full"])
        if self.short is not None and state["short"] is not None:
            self.short.load_state_dict(state["short"])

    def __repr__(self):
        return (f"SequenceLengthWarmup(steps 1-{self.short_steps}: {self.short!r}; then: {self.full!r})"
                if self.short_steps else repr(self.full))


def pretraining_data(cfg, train_docs, tokenizer):
    """The training stream of ``cfg``: full-length batches, after ``cfg.short_seq_steps`` short ones."""
    from ..data.dataset import PretrainingDataset
    p = cfg.masked_lm_prob  # max_predictions_per_seq = ceil(p T) never caps it (20 at 15% of 128, as in BERT)
    full = PretrainingDataset(train_docs, tokenizer, max_seq_length=cfg.max_seq_length,
                              batch_size=cfg.batch_size, seed=cfg.seed, masked_lm_prob=p,
                              max_predictions_per_seq=math.ceil(p * cfg.max_seq_length),
                              group_by_length=cfg.group_by_length)
    short = None
    if cfg.short_seq_steps:
        T = cfg.short_seq_length
        short = PretrainingDataset(train_docs, tokenizer, max_seq_length=T,
                                   batch_size=cfg.batch_size * cfg.max_seq_length // T, seed=cfg.seed,
                                   masked_lm_prob=p, max_predictions_per_seq=math.ceil(p * T),
                                   group_by_length=cfg.group_by_length)
    return SequenceLengthWarmup(short, full, cfg.short_seq_steps)


# -- evaluation ------------------------------------------------------------------------------------
def heldout_batches(cfg, tokenizer, heldout_docs):
    """The fixed held-out set of a run: the first ``cfg.eval_batches`` batches of the held-out documents,
    masked once (static masking, seed ``cfg.seed + 1``), the same at every evaluation."""
    from ..data.dataset import PretrainingDataset
    heldout = PretrainingDataset(heldout_docs, tokenizer, max_seq_length=cfg.max_seq_length,
                                 batch_size=cfg.batch_size, seed=cfg.seed + 1, dynamic_masking=False,
                                 drop_last=False)
    return [b for _, b in zip(range(cfg.eval_batches), heldout.epoch_batches(0))]


def evaluate(model, batches, unigram_token=None):
    """Held-out MLM loss/accuracy and NSP loss/accuracy (eval mode, dropout off), averaged per
    prediction.  ``unigram_mlm_accuracy``: always guessing ``unigram_token`` at the same positions.
    Runs the loss-only fast path (``heads_rows.loss_forward``: the model's numbers at the heads' rows)."""
    mlm_loss = mlm_correct = n_mlm = nsp_loss = nsp_correct = n_nsp = uni = 0.0
    with model.eval_mode():
        for b in batches:
            out, _ = heads_rows.loss_forward(model, **b)
            labels = b["labels"].reshape(-1)[out.masked_positions]
            n = len(labels)
            mlm_loss += float(out.mlm_loss) * n
            mlm_correct += int((out.masked_logits.argmax(-1) == labels).sum())
            uni += int((labels == unigram_token).sum()) if unigram_token is not None else 0
            n_mlm += n
            nsp_loss += float(out.nsp_loss) * len(b["next_sentence_label"])
            nsp_correct += int((out.seq_relationship_logits.argmax(-1) == b["next_sentence_label"]).sum())
            n_nsp += len(b["next_sentence_label"])
    return {"mlm_loss": mlm_loss / n_mlm, "mlm_accuracy": mlm_correct / n_mlm,
            "nsp_loss": nsp_loss / n_nsp, "nsp_accuracy": nsp_correct / n_nsp,
            "unigram_mlm_accuracy": uni / n_mlm}


def probe_sentence(corpus, heldout_docs):
    """A held-out sentence with one word masked, to watch fill-mask improve."""
    if corpus == "default":
        return "the [MASK] statement raises an exception if the condition is false ."
    words = heldout_docs[0][0].split()[:12]
    words[min(2, len(words) - 1)] = "[MASK]"
    return " ".join(words)


def step_accuracy(result):
    """Training MLM and NSP accuracy of one step (``loop.StepResult``), over all its micro-batches."""
    mlm_correct = n_mlm = nsp_correct = n_nsp = 0
    for out, batch in zip(result.outputs, result.micro_batches):
        labels = batch["labels"].reshape(-1)[out.masked_positions]  # a heads_rows.LossOnlyOutput
        mlm_correct += int((out.masked_logits.argmax(-1) == labels).sum())
        n_mlm += len(labels)
        nsp_correct += int((out.seq_relationship_logits.argmax(-1) == batch["next_sentence_label"]).sum())
        n_nsp += len(batch["next_sentence_label"])
    return {"mlm_acc": mlm_correct / n_mlm if n_mlm else 0.0, "nsp_acc": nsp_correct / n_nsp}


# -- the job -------------------------------------------------------------------------------------
def pretrain(cfg: PretrainConfig):
    """Run (or resume) a pretraining job; returns the metrics dict also written to metrics.json."""
    cfg.validate()
    torch_engine = None
    if cfg.engine == "torch":
        try:
            from . import torch_engine  # the one module that imports torch (and transformers)
        except ImportError as e:  # its message says how to install them; a ValueError, so the CLI prints it
            raise ValueError(str(e)) from None
        if torch_engine.is_worker() and os.environ["RANK"] != "0":
            cfg = dataclasses.replace(cfg, verbose=False)  # rank 0 speaks for the group
    if cfg.backend:
        backend.set_backend(cfg.backend)
    if cfg.debug:
        backend.set_debug(True)
    log = print if cfg.verbose else (lambda *a, **k: None)
    log(f"minibert pretrain: preset={cfg.preset} corpus={cfg.corpus} engine={cfg.engine} "
        + (f"nproc={cfg.nproc} device={cfg.device}" if torch_engine else f"backend={backend.get_backend()}")
        + f" out={cfg.out}")
    train_docs, heldout_docs = load_corpus(cfg.corpus, cfg.seed, cfg.verbose)
    os.makedirs(cfg.out, exist_ok=True)  # after the corpus is read: a bad one leaves no empty OUT behind
    tokenizer = build_vocab(train_docs, cfg.vocab_size, os.path.join(cfg.out, "vocab.txt"), cfg.verbose)
    if torch_engine and cfg.nproc > 1 and not torch_engine.is_worker():  # the vocabulary is on disk: start
        return torch_engine.launch(cfg)  # the ranks, each of which runs this function as a worker
    data = pretraining_data(cfg, train_docs, tokenizer)
    eval_batches = heldout_batches(cfg, tokenizer, heldout_docs)
    unigram_token = data.most_frequent_label()
    log(f"data: {data!r}\nheld-out: {len(eval_batches)} batches; most frequent token "
        f"{tokenizer.convert_ids_to_tokens(int(unigram_token))!r}")

    model = BertForPreTraining(cfg.model_config(len(tokenizer.vocab)), seed=cfg.seed).train()
    opt = AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    log(repr(model))
    probe = probe_sentence(cfg.corpus, heldout_docs)
    before = fill_mask(model, tokenizer, probe) if not (cfg.resume and os.path.isfile(
        os.path.join(cfg.out, "checkpoint.safetensors"))) else None
    job = Job("pretrain", data, next_batch=data.batch,
              record=lambda result, batch: {"mlm_loss": result.terms["mlm"], "nsp_loss": result.terms["nsp"],
                                            "seq_len": batch["input_ids"].shape[1],
                                            **step_accuracy(result)},
              evaluate=lambda: evaluate(model, eval_batches, unigram_token),
              describe=lambda ev: " ".join(f"{k}={v:.4f}" for k, v in ev.items()),
              progress=("mlm_acc", "nsp_acc"),
              loss_only=heads_rows.LossOnly())  # training needs only the loss: the rows the heads read
    if torch_engine:  # the same data, weights and evaluation batches; transformers and torch.optim train
        run, ran = torch_engine.run(cfg, model, job, eval_batches, unigram_token, log)
        if ran is None:
            return None  # a rank other than 0: rank 0 writes the outputs
    else:
        run = loop.run(model, opt, cfg, job, log)

    model.save_pretrained(os.path.join(cfg.out, "model"), tokenizer)
    metrics = {"eval": {k: v for k, v in run.history["eval"][-1].items() if k != "step"},
               "steps": run.step, "tokens_per_second": run.tokens / max(run.seconds, 1e-9),
               "seconds": run.seconds, "stopped_by_time_budget": run.stopped_early,
               "config": {"pretrain": dataclasses.asdict(cfg), "model": model.config.to_dict()},
               "backend": backend.get_backend(), "peak_memory_mb": loop.peak_memory_mb(), "engine": cfg.engine,
               **({"torch": ran, "nproc": cfg.nproc, "device": cfg.device} if torch_engine else {}),
               "eval_history": run.history["eval"]}
    atomic_write_bytes(os.path.join(cfg.out, "metrics.json"), json.dumps(metrics, indent=2).encode())
    plot_curves(run.log_path, run.history["eval"], os.path.join(cfg.out, "curves.png"),
                unigram=metrics["eval"]["unigram_mlm_accuracy"])
    after = fill_mask(model, tokenizer, probe)
    if cfg.verbose:
        ev = metrics["eval"]
        print(f"\ndone: {run.step} steps in {run.seconds / 60:.1f} min, {metrics['tokens_per_second']:.0f} tokens/s, "
              f"peak memory {metrics['peak_memory_mb']:.0f} MB")
        print(f"held-out MLM accuracy {ev['mlm_accuracy']:.3f} (always-most-frequent-token baseline "
              f"{ev['unigram_mlm_accuracy']:.3f}), MLM loss {ev['mlm_loss']:.3f} (uniform guess "
              f"{math.log(len(tokenizer.vocab)):.3f}); NSP accuracy {ev['nsp_accuracy']:.3f} (chance 0.5)")
        print(f"fill-mask: {probe!r}")
        if before:
            print("  before training: " + ", ".join(f"{t} {p:.3f}" for t, p in before[0][1]))
        print("  after training:  " + ", ".join(f"{t} {p:.3f}" for t, p in after[0][1]))
        print(f"wrote {cfg.out}/metrics.json, curves.png, log.jsonl, model/")
    return metrics


def _torch_worker(argv):
    """``python -m minibert.training.pretrain --torch-worker OUT/torch_job.json``: one rank of a
    ``--engine torch --nproc N`` run (``torch_engine.launch`` starts N of them through torchrun)."""
    if len(argv) != 2 or argv[0] != "--torch-worker":
        raise SystemExit("usage: python -m minibert.training.pretrain --torch-worker OUT/torch_job.json "
                         "(started by minibert pretrain --engine torch --nproc N)")
    with open(argv[1]) as f:
        pretrain(PretrainConfig(**json.load(f)))


if __name__ == "__main__":
    import sys
    _torch_worker(sys.argv[1:])
