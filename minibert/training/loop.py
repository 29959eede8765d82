"""The one training loop, shared by pretraining and fine-tuning.

    step:  zero_grad -> for each micro-batch: forward, backward (gradients add up)
           -> clip the global gradient norm -> set the scheduled lr -> AdamW
    loop:  steps until ``max_steps`` (or the time budget), logging every step to ``log.jsonl``,
           evaluating every ``eval_every`` steps, checkpointing every ``checkpoint_every`` steps;
           ``resume`` continues exactly where the checkpoint was (model, optimizer, data, dropout RNG).

What differs between pretraining and fine-tuning is a ``Job``: where batches come from, what to log
for a step, how to evaluate.  ``minibert.training.pretrain`` and ``minibert.training.finetune`` each
build one and hand it to ``run``.

**Gradient accumulation** (``grad_accum = N``): each batch is split into N micro-batches whose
gradients add up in ``grads`` (``backward()`` adds; only ``training_step`` zeroes).  A loss is a mean
over its batch's predictions, so micro-batch ``i`` enters loss term ``k`` with upstream gradient
``weight_k * count_ik / count_k`` (``model.loss_counts``): the sum is then exactly the gradient of the
whole batch, however unevenly the masked positions fall into the micro-batches.
"""
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy as np

from ..config import ARCHITECTURE_FIELDS, option
from ..files import atomic_write_bytes, load_checkpoint, save_checkpoint
from ..optim import clip_grad_norm, linear_warmup_decay


@dataclass
class RunConfig:
    """The settings every training run has (``PretrainConfig`` and ``FinetuneConfig`` add their own).
    Each is declared once, with its help: ``minibert.cli`` makes the command-line options from them."""
    out: str = option("runs/run", "output directory")
    max_steps: int = option(1000, "optimizer steps in all")
    minutes: Optional[float] = option(None, "stop after this many minutes of training", type=float)
    seed: int = option(0, "seeds the initialisation, dropout and batch order")
    batch_size: int = option(32, "sequences per optimizer step")
    grad_accum: int = option(1, "split each batch into this many micro-batches whose gradients add up "
                                "(same update, less memory)")
    lr: Optional[float] = option(1e-3, "peak learning rate of AdamW", type=float)
    warmup_steps: int = option(60, "linear warmup to --lr, then linear decay to 0 at --max-steps")
    weight_decay: float = option(0.01, "AdamW's decoupled weight decay (not on biases and LayerNorm)")
    max_grad_norm: float = option(1.0, "clip the global gradient norm to this")
    eval_every: int = option(250, "steps between held-out evaluations")
    checkpoint_every: int = option(250, "steps between checkpoints (OUT/checkpoint.safetensors)")
    resume: bool = option(False, "continue from OUT/checkpoint.safetensors")
    backend: Optional[str] = option(None, "numba kernels or the NumPy reference (default: $MINIBERT_BACKEND "
                                          "if set, else numba)", choices=["numba", "numpy"])
    verbose: bool = option(True, "no progress bar or evaluation lines", flag="--quiet", invert=True)

    def validate_run(self):
        """Check the shared settings; raises ValueError naming the setting."""
        for name in ("max_steps", "batch_size", "grad_accum", "eval_every", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.grad_accum > self.batch_size:
            raise ValueError(f"grad_accum ({self.grad_accum}) must be at most batch_size ({self.batch_size}): "
                             "each micro-batch needs at least one sequence")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0, got {self.minutes!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")


# -- one step --------------------------------------------------------------------------------------
def split_batch(batch, n):
    """A batch dict of (B, ...) arrays -> ``n`` micro-batch dicts of about B / n rows each, in order."""
    B = len(next(iter(batch.values())))
    if not 1 <= n <= B:
        raise ValueError(f"grad_accum must be between 1 and the batch size ({B}), got {n}")
    if n == 1:
        return [batch]
    bounds = np.linspace(0, B, n + 1).round().astype(int)
    return [{k: v[bounds[i]:bounds[i + 1]] for k, v in batch.items()} for i in range(n)]


class StepResult(NamedTuple):
    loss: float            # the whole batch's loss, ``sum(weight_k * term_k)``
    terms: dict            # {term: the whole batch's value}, e.g. {"mlm": ..., "nsp": ...}
    outputs: list          # the model output of each micro-batch
    micro_batches: list    # the micro-batches, in order
    grad_norm: float       # the global gradient norm before clipping


def training_step(model, opt, batch, step, cfg, ckpt_path=None, loss_only=None):
    """One update: zero the gradients, forward + backward each of ``cfg.grad_accum`` micro-batches
    (their gradients add up to the whole batch's), clip the gradient norm to ``cfg.max_grad_norm``, set
    the scheduled learning rate, AdamW.  -> ``StepResult``.

    ``loss_only``: a fast path that computes only the loss and its gradients, used in place of
    ``model(**mb)`` and ``model.backward(...)`` (``loss_only.forward(model, **mb)``,
    ``loss_only.backward(model, ...)``): pretraining's ``minibert.kernels.heads_rows.LossOnly``.  The
    outputs in the result are then its outputs.  None: the model's own forward and backward.

    A NaN/Inf loss or gradient stops the run here, naming the update (``step + 1``) and the last good
    checkpoint, before the optimizer can write it into the weights."""
    micro_batches = split_batch(batch, cfg.grad_accum)
    counts = [model.loss_counts(**mb) for mb in micro_batches]
    totals = {k: sum(c[k] for c in counts) for k in model.loss_weights}
    model.zero_grad()  # the one place gradients are cleared
    outputs, terms = [], dict.fromkeys(totals, 0.0)
    for mb, count in zip(micro_batches, counts):
        out = model(**mb) if loss_only is None else loss_only.forward(model, **mb)
        if not np.isfinite(out.loss):
            raise FloatingPointError(f"non-finite loss {out.loss} at step {step + 1}; " + _last_good(ckpt_path))
        share = {k: count[k] / totals[k] if totals[k] else 0.0 for k in totals}  # of each term's mean
        upstream = {"d" + k: model.loss_weights[k] * share[k] for k in totals}
        if loss_only is None:
            model.backward(**upstream)
        else:
            loss_only.backward(model, **upstream)
        for k, value in model.loss_terms(out).items():
            terms[k] += share[k] * float(value) if value is not None else 0.0
        outputs.append(out)
    grad_norm = clip_grad_norm(model, cfg.max_grad_norm)
    if not math.isfinite(grad_norm):
        raise FloatingPointError(f"non-finite gradient norm at step {step + 1}; "
                                 + _last_good(ckpt_path) + " (--debug names the kernel that made it)")
    opt.lr = linear_warmup_decay(step, cfg.max_steps, cfg.warmup_steps, cfg.lr)
    opt.step()
    loss = sum(model.loss_weights[k] * v for k, v in terms.items())
    return StepResult(loss, terms, outputs, micro_batches, grad_norm)


# -- checkpoints -----------------------------------------------------------------------------------
def check_same_architecture(path, meta, config):
    """Refuse to resume a checkpoint (its ``meta``) into a model of another architecture, naming what
    differs.  Both engines call it: some settings change the function without changing a weight's shape
    (the tiny preset went from 2 heads to 4), so loading the weights would not notice."""
    saved, now = meta.get("config", {}), config.to_dict()
    differ = [f"{k}: checkpoint {saved[k]!r}, this run {now[k]!r}" for k in ARCHITECTURE_FIELDS
              if k in saved and k in now and saved[k] != now[k]]
    if differ:
        raise ValueError(f"{path} holds another architecture ({'; '.join(differ)}): resume it with the settings "
                         f"it was written with, or start a new run in another --out")


def save_training_state(path, model, opt, step, data_state, history):
    """Everything a run needs to continue exactly: weights, AdamW moments, step, dropout RNG, data
    position, evaluation history (one checksummed safetensors file, written atomically)."""
    arrays = {"param/" + n: p for n, p, _ in model.named_parameters()}
    arrays.update({"adam_m/" + n: a for n, a in opt.m.items()})
    arrays.update({"adam_v/" + n: a for n, a in opt.v.items()})
    meta = {"step": step, "adam_t": opt.t, "lr": opt.lr, "dropout_rng": model.dropout_rng.bit_generator.state,
            "data": data_state, "history": history, "config": model.config.to_dict()}
    save_checkpoint(path, arrays, meta)


def load_training_state(path, model, opt):
    """Restore what ``save_training_state`` wrote; returns its metadata (step, data state, history)."""
    arrays, meta = load_checkpoint(path)
    if meta.get("engine", "minibert") != "minibert":
        raise ValueError(f"{path} was written by the {meta['engine']} engine: resume it with --engine "
                         f"{meta['engine']} (or start a new run in another --out)")
    check_same_architecture(path, meta, model.config)
    params = {n[len("param/"):]: a for n, a in arrays.items() if n.startswith("param/")}
    model.load_state_dict(params)
    opt.load_state_dict({"t": meta["adam_t"], "lr": meta["lr"],
                         "m": {n[len("adam_m/"):]: a for n, a in arrays.items() if n.startswith("adam_m/")},
                         "v": {n[len("adam_v/"):]: a for n, a in arrays.items() if n.startswith("adam_v/")}})
    model.dropout_rng.bit_generator.state = meta["dropout_rng"]
    return meta


def start_or_resume(out, resume, trainer, data, log=print):
    """-> (checkpoint path, log path, step, history) of a run in ``out``.

    With ``resume`` and a checkpoint there, the trainer (model, optimizer) and the data stream are restored
    to it, and log lines written after it (by a run that was killed) are dropped; otherwise a fresh start
    at step 0 (an old log is removed).  Only the main process touches the log."""
    ckpt_path, log_path = os.path.join(out, "checkpoint.safetensors"), os.path.join(out, "log.jsonl")
    if resume and os.path.isfile(ckpt_path):
        meta = trainer.load(ckpt_path)
        data.load_state_dict(meta["data"])
        if trainer.is_main:
            _truncate_log(log_path, meta["step"])
        log(f"resumed from {ckpt_path} at step {meta['step']}")
        return ckpt_path, log_path, meta["step"], meta["history"]
    if trainer.is_main and os.path.exists(log_path):
        os.remove(log_path)
    return ckpt_path, log_path, 0, {"eval": []}


class MinibertTrainer:
    """What ``run`` asks of an engine, for minibert's own: ``step(batch, step)`` -> a result with
    ``loss``, ``terms`` and ``grad_norm`` (``training_step``); ``lr``; ``save`` / ``load`` a checkpoint;
    ``is_main`` (the process that writes the log and the checkpoints); ``time_is_up(over)`` (every process
    of a run stops at the same step).  The torch engine's ``TorchTrainer`` is the other one."""

    is_main = True

    def __init__(self, model, opt, cfg, loss_only=None):
        self.model, self.opt, self.cfg, self.loss_only = model, opt, cfg, loss_only
        self.ckpt_path = os.path.join(cfg.out, "checkpoint.safetensors")

    @property
    def lr(self):
        return self.opt.lr

    def step(self, batch, step):
        return training_step(self.model, self.opt, batch, step, self.cfg, self.ckpt_path, self.loss_only)

    def save(self, path, step, data_state, history):
        save_training_state(path, self.model, self.opt, step, data_state, history)

    def load(self, path):
        return load_training_state(path, self.model, self.opt)

    def time_is_up(self, over):
        return over


# -- the loop --------------------------------------------------------------------------------------
@dataclass
class Job:
    """What a training run does that the loop does not decide.

    ``next_batch(step)``: the batch dict for 0-based ``step``; ``record(result, batch)``: the step's
    metrics for ``log.jsonl`` beyond step/loss/lr/grad_norm, e.g. ``{"mlm_acc": ...}``;
    ``evaluate()``: held-out metrics dict; ``describe(ev)``: the line printed after an evaluation;
    ``progress``: the keys of ``record`` shown in the progress bar."""
    name: str
    data: object                       # the batch stream: has state_dict() / load_state_dict()
    next_batch: Callable
    record: Callable
    evaluate: Callable
    describe: Callable
    progress: tuple = ()
    eval_at_start: bool = False        # evaluate the untrained model first (fine-tuning: near chance)
    # the loss-only fast path to train with (``training_step``'s ``loss_only``); None: the model's own
    # forward and backward.  Pretraining asks for ``minibert.kernels.heads_rows.LossOnly()``.
    loss_only: object = None


class RunResult(NamedTuple):
    step: int
    history: dict          # {"eval": [{"step": s, **metrics}, ...]}
    seconds: float         # of training, this session
    tokens: int            # non-padding tokens trained on, this session
    stopped_early: bool    # the time budget ran out first
    log_path: str


def run(model, opt, cfg, job, log=print, trainer=None):
    """Train ``model`` with ``opt`` on ``job`` as ``cfg`` says (``out``, ``max_steps``, ``minutes``,
    ``resume``, ``eval_every``, ``checkpoint_every``, ``grad_accum``, the schedule, ``verbose``).
    Ends with an evaluation and a checkpoint of the last step.  -> ``RunResult``.

    ``trainer``: who takes the steps and keeps the checkpoints (default ``MinibertTrainer``: minibert's
    ``training_step`` with ``job.loss_only``); the torch engine passes its ``TorchTrainer``, one per
    process, so its runs are this loop too."""
    trainer = trainer or MinibertTrainer(model, opt, cfg, job.loss_only)
    main = trainer.is_main
    ckpt_path, log_path, step, history = start_or_resume(cfg.out, cfg.resume, trainer, job.data, log)

    def evaluate():
        ev = job.evaluate()
        history["eval"].append({"step": step, **ev})
        log(f"\n[eval @ {step}] " + job.describe(ev))

    def checkpoint():
        if main:
            trainer.save(ckpt_path, step, job.data.state_dict(), history)

    if job.eval_at_start and step == 0 and not history["eval"]:
        evaluate()
    bar = progress_bar(cfg.max_steps, step, job.name, cfg.verbose and main)
    start, tokens, ema, stopped_early = time.perf_counter(), 0, None, False
    log_file = open(log_path, "a") if main else None
    try:
        while step < cfg.max_steps:
            if cfg.minutes is not None and trainer.time_is_up(time.perf_counter() - start > 60 * cfg.minutes):
                stopped_early = True
                break
            batch = job.next_batch(step)
            result = trainer.step(batch, step)
            step += 1
            tokens += int(batch["attention_mask"].sum())
            rec = {"step": step, "loss": result.loss, **job.record(result, batch), "lr": trainer.lr,
                   "grad_norm": result.grad_norm}
            if main:
                log_file.write(json.dumps(rec) + "\n")
            ema = rec["loss"] if ema is None else 0.95 * ema + 0.05 * rec["loss"]
            bar.update(step - bar.n)
            bar.set_postfix({"loss": f"{ema:.4f}", **{k: f"{rec[k]:.3f}" for k in job.progress},
                             "tok/s": int(tokens / (time.perf_counter() - start))}, refresh=False)
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                evaluate()
            if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
                if main:
                    log_file.flush()
                checkpoint()
    finally:
        if log_file is not None:
            log_file.close()
    bar.close()
    seconds = time.perf_counter() - start
    if not history["eval"] or history["eval"][-1]["step"] != step:
        evaluate()
        checkpoint()
    return RunResult(step, history, seconds, tokens, stopped_early, log_path)


def progress_bar(total, initial, desc, verbose=True):
    """tqdm's bar (``tqdm.auto``: a widget in a notebook, a text bar in a terminal); in a log that is
    not a terminal (CI) it redraws at most every 10 s, so logs stay short."""
    from tqdm.auto import tqdm
    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return tqdm(total=total, initial=initial, desc=desc, disable=not verbose, unit="step", dynamic_ncols=True,
                mininterval=0.1 if interactive else 10.0)


def _last_good(ckpt_path):
    if ckpt_path and os.path.isfile(ckpt_path):
        return f"the last good checkpoint is {ckpt_path} (continue with --resume, e.g. with a lower --lr)"
    return "no checkpoint was written yet"


def peak_memory_mb():
    """Peak resident memory of this process so far, in MB (Linux reports ru_maxrss in KB)."""
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _truncate_log(path, step):
    """Drop log lines written after the checkpoint we resume from (a killed run wrote them)."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = [l for l in f if l.strip() and json.loads(l)["step"] <= step]
    atomic_write_bytes(path, "".join(lines).encode())
