"""The torch engine: minibert's pretraining recipe on PyTorch and transformers' ``BertForPreTraining``,
in one process or in N under ``torch.distributed`` (``minibert pretrain --engine torch [--nproc N]``).

This is the only module of minibert that imports torch or transformers (``pip install minibert[torch]``).
Everything but the model, its gradients and the optimizer's arithmetic stays minibert's:
``training/pretrain.py`` builds the corpus, the vocabulary, the pretraining batches (same order), the
held-out batches and the initial weights (``BertForPreTraining(config, seed)``) exactly as for the
default engine, and writes the same output directory from the trained weights this engine hands back.
What this module adds:

    TorchTrainer      transformers' model holding minibert's weights; torch.optim.AdamW with minibert's
                      settings (decay groups, betas, eps), minibert's schedule and clipping; one step, the
                      held-out evaluation, checkpoints
    run()             ``loop.run`` (the one loop: log.jsonl, evaluations, checkpoints, resume) with a
                      ``TorchTrainer`` taking the steps
    launch()          ``--nproc N > 1``: N worker processes through torch's own launcher
                      (``python -m torch.distributed.run``), each running ``pretrain`` as rank r

**The mean across ranks.**  The loss is ``mean CE over the P masked positions of the whole batch +
mean CE over its B pairs``.  Rank r holds P_r of the positions and B_r of the pairs, and P_r differs
between ranks, so the average of the ranks' own means is *not* the batch's loss.  Each rank therefore
computes ``sum_r(CE over its positions) / P + sum_r(CE over its pairs) / B`` with the *global* counts
(``model.loss_counts`` of the whole batch, which every rank reads): these add up over ranks to the
batch's loss, and so do their gradients.  DDP averages gradients (divides their sum by N), so each rank
back-propagates N times its part.  The global loss that is logged is the sum of the parts
(``all_reduce``).  Gradient accumulation (``--grad-accum``) splits each rank's shard further, with the
same global counts: it is the same weighting minibert's ``training_step`` applies to micro-batches.
"""
import dataclasses
import json
import math
import os
import subprocess
import sys
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

INSTALL_HINT = ("the torch engine needs PyTorch and transformers: pip install 'minibert[torch]' "
                "(torch==2.13.0 and transformers), or run without --engine torch")
try:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    import transformers
except ImportError as e:  # the extra is not installed: say how to install it
    raise ImportError(f"{INSTALL_HINT} ({e})") from e

from ..files import atomic_write_bytes, check_exportable, load_checkpoint, save_checkpoint
from ..layers.cross_entropy import IGNORE_INDEX
from ..optim import linear_warmup_decay, no_weight_decay
from . import loop
from .loop import split_batch

WORKER_ENV = "MINIBERT_TORCH_WORKER"  # set by launch() for the processes torch.distributed.run starts
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# -- the model ------------------------------------------------------------------------------------
def hf_model(model, dtype=torch.float32, device="cpu"):
    """transformers' ``BertForPreTraining`` holding a copy of minibert ``model``'s weights (same names,
    same (out, in) layouts; the MLM decoder tied to the word embeddings as in BERT)."""
    c = model.config
    check_exportable(c, "the torch engine (transformers' BertForPreTraining)")
    hf_config = transformers.BertConfig(**c.to_dict())
    hf_config._attn_implementation = "eager"  # the textbook attention minibert writes out
    hf = transformers.BertForPreTraining(hf_config).to(dtype)
    hf.load_state_dict({k: torch.from_numpy(np.array(v)).to(dtype) for k, v in model.state_dict().items()},
                       strict=True)
    return hf.to(device)


def copy_weights_to(hf, model):
    """Write transformers' weights back into minibert ``model`` (in its dtype), e.g. to save ``model/``."""
    model.load_state_dict({n: p.detach().cpu().numpy().astype(model.dtype)
                           for n, p in hf.named_parameters()})
    return model


class PretrainingLoss(torch.nn.Module):
    """transformers' ``BertForPreTraining`` run as minibert runs it: the MLM head only on the masked
    positions (the decoder, P x C x V, is the largest product of a step), and each loss term a *sum*
    over this shard divided by the *whole batch's* count, so the terms of all shards add up to the
    batch's mean.  DDP wraps this module, so what it runs is what DDP synchronises."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf

    def forward(self, input_ids, token_type_ids, attention_mask, labels, next_sentence_label, n_mlm, n_nsp):
        """(B, T) ids, segments, mask, labels; (B,) NSP labels; the whole batch's counts ->
        (mlm part, nsp part, (P_r, V) MLM logits, (P_r,) their labels, (B, 2) NSP logits)."""
        seq, pooled = self.hf.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                   attention_mask=attention_mask, return_dict=False)[:2]  # (B, T, C), (B, C)
        flat = labels.reshape(-1)                                                      # (B*T,)
        positions = (flat != IGNORE_INDEX).nonzero().squeeze(1)                        # (P_r,)
        mlm_logits = self.hf.cls.predictions(seq.reshape(-1, seq.shape[-1])[positions])  # (P_r, V)
        nsp_logits = self.hf.cls.seq_relationship(pooled)                              # (B, 2)
        mlm = F.cross_entropy(mlm_logits, flat[positions], reduction="sum") / max(n_mlm, 1)
        nsp = F.cross_entropy(nsp_logits, next_sentence_label, reduction="sum") / max(n_nsp, 1)
        return mlm, nsp, mlm_logits, flat[positions], nsp_logits


class TorchStep(NamedTuple):
    loss: float            # the whole (global) batch's loss
    terms: dict            # {"mlm": ..., "nsp": ...}: the whole batch's values
    accuracy: dict         # {"mlm_acc": ..., "nsp_acc": ...} over the whole batch
    grad_norm: float       # the global gradient norm before clipping


# -- one process's trainer ------------------------------------------------------------------------
class TorchTrainer:
    """Train minibert ``model``'s weights with transformers' BertForPreTraining as ``cfg`` says
    (``lr``, ``warmup_steps``, ``max_steps``, ``weight_decay``, ``max_grad_norm``, ``grad_accum``).

    ``model`` is the minibert ``BertForPreTraining`` whose weights are the start (its ``loss_counts``
    and ``loss_weights`` define the loss); ``rank`` / ``world_size``: this process's place in a
    ``torch.distributed`` group (already initialised when ``world_size > 1``)."""

    def __init__(self, model, cfg, device="cpu", dtype=torch.float32, rank=0, world_size=1):
        self.model, self.cfg, self.device = model, cfg, torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.hf = hf_model(model, dtype, self.device).train(model.training)
        self.loss = PretrainingLoss(self.hf)
        self.ddp = None
        if world_size > 1:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.loss, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        named = list(self.hf.named_parameters())
        self.names = [n for n, _ in named]
        self.opt = torch.optim.AdamW(
            [{"params": [p for n, p in named if not no_weight_decay(n)], "weight_decay": cfg.weight_decay},
             {"params": [p for n, p in named if no_weight_decay(n)], "weight_decay": 0.0}],
            lr=cfg.lr, betas=(0.9, 0.999), eps=1e-6)  # minibert.AdamW's defaults
        self.lr = cfg.lr

    @property
    def is_main(self):
        """Rank 0 writes the log and the checkpoints (``loop.run``)."""
        return self.rank == 0

    def time_is_up(self, over):
        """Every rank must stop at the same step: rank 0's clock decides (``loop.run``'s time budget)."""
        flag = torch.tensor([float(over)], device=self.device)
        if self.world_size > 1:
            dist.broadcast(flag, 0)
        return bool(flag.item())

    def __repr__(self):
        return (f"TorchTrainer(transformers.BertForPreTraining, {next(self.hf.parameters()).dtype}, "
                f"device={self.device}, rank {self.rank} of {self.world_size}, torch {torch.__version__})")

    def _tensors(self, batch):
        return {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in batch.items()}

    def step(self, batch, step):
        """One update on the global ``batch`` (every rank passes the same one and trains on its shard)
        -> ``TorchStep`` of the whole batch.  Raises FloatingPointError on a NaN/Inf loss or gradient
        (on every rank alike: both are global), before the optimizer writes it into the weights."""
        totals = self.model.loss_counts(**batch)                   # {"mlm": P, "nsp": B} of the whole batch
        w = self.model.loss_weights
        shard = split_batch(batch, self.world_size)[self.rank]
        micro = split_batch(shard, self.cfg.grad_accum)
        self.opt.zero_grad(set_to_none=False)
        module = self.ddp or self.loss
        sums = torch.zeros(6, dtype=torch.float64, device=self.device)  # mlm, nsp, mlm hits, P, nsp hits, B
        for i, mb in enumerate(micro):
            sync = self.ddp is None or i == len(micro) - 1  # DDP all-reduces on the last micro-batch only
            with nullcontext() if sync else self.ddp.no_sync():
                mlm, nsp, mlm_logits, mlm_labels, nsp_logits = module(
                    **self._tensors(mb), n_mlm=totals["mlm"], n_nsp=totals["nsp"])
                (self.world_size * (w["mlm"] * mlm + w["nsp"] * nsp)).backward()  # DDP divides by N
            nsp_labels = torch.from_numpy(mb["next_sentence_label"]).to(self.device)
            sums += torch.stack([mlm.detach().double(), nsp.detach().double(),
                                 (mlm_logits.argmax(-1) == mlm_labels).sum().double(),
                                 torch.tensor(float(len(mlm_labels)), dtype=torch.float64, device=self.device),
                                 (nsp_logits.argmax(-1) == nsp_labels).sum().double(),
                                 torch.tensor(float(len(nsp_labels)), dtype=torch.float64, device=self.device)])
        if self.world_size > 1:
            dist.all_reduce(sums)  # the parts of the ranks add up to the whole batch's
        mlm, nsp, mlm_hits, n_mlm, nsp_hits, n_nsp = sums.tolist()
        loss = w["mlm"] * mlm + w["nsp"] * nsp
        if not math.isfinite(loss):
            raise FloatingPointError(f"non-finite loss {loss} at step {step + 1}")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.hf.parameters(), self.cfg.max_grad_norm))
        if not math.isfinite(grad_norm):
            raise FloatingPointError(f"non-finite gradient norm at step {step + 1}")
        self.lr = linear_warmup_decay(step, self.cfg.max_steps, self.cfg.warmup_steps, self.cfg.lr)
        for group in self.opt.param_groups:
            group["lr"] = self.lr
        self.opt.step()
        return TorchStep(loss, {"mlm": mlm, "nsp": nsp},
                         {"mlm_acc": mlm_hits / n_mlm if n_mlm else 0.0, "nsp_acc": nsp_hits / n_nsp}, grad_norm)

    @torch.no_grad()
    def evaluate(self, batches, unigram_token=None):
        """The metrics of ``pretrain.evaluate`` (held-out MLM/NSP loss and accuracy per prediction, the
        always-``unigram_token`` accuracy), eval mode.  Rank r evaluates batches r, r + N, ...; the sums
        are added up over the ranks."""
        was_training = self.hf.training
        self.hf.eval()  # transformers' module: its own train/eval, put back below
        sums = torch.zeros(7, dtype=torch.float64, device=self.device)
        for b in batches[self.rank::self.world_size]:
            mlm, nsp, mlm_logits, labels, nsp_logits = self.loss(**self._tensors(b), n_mlm=1, n_nsp=1)  # sums
            nsp_labels = torch.from_numpy(b["next_sentence_label"]).to(self.device)
            sums += torch.tensor([float(mlm), float((mlm_logits.argmax(-1) == labels).sum()),
                                  float((labels == unigram_token).sum()) if unigram_token is not None else 0.0,
                                  float(len(labels)), float(nsp), float((nsp_logits.argmax(-1) == nsp_labels).sum()),
                                  float(len(nsp_labels))], dtype=torch.float64, device=self.device)
        if self.world_size > 1:
            dist.all_reduce(sums)
        self.hf.train(was_training)
        mlm_loss, mlm_hits, uni, n_mlm, nsp_loss, nsp_hits, n_nsp = sums.tolist()
        return {"mlm_loss": mlm_loss / n_mlm, "mlm_accuracy": mlm_hits / n_mlm,
                "nsp_loss": nsp_loss / n_nsp, "nsp_accuracy": nsp_hits / n_nsp,
                "unigram_mlm_accuracy": uni / n_mlm}

    # -- checkpoints: minibert's format (files.py), the same array names as the default engine's ----
    def save(self, path, step, data_state, history):
        """Weights, AdamW moments, step, torch's RNG (dropout), data position and evaluation history, in
        one checksummed safetensors file written atomically (``files.save_checkpoint``)."""
        params = dict(self.hf.named_parameters())
        arrays = {"param/" + n: p.detach().cpu().numpy() for n, p in params.items()}
        t = 0
        for n, p in params.items():
            state = self.opt.state.get(p)
            if state:
                arrays["adam_m/" + n] = state["exp_avg"].cpu().numpy()
                arrays["adam_v/" + n] = state["exp_avg_sq"].cpu().numpy()
                t = int(state["step"])
        arrays["rng/torch_cpu"] = torch.get_rng_state().numpy()
        if self.device.type == "cuda":
            arrays["rng/torch_cuda"] = torch.cuda.get_rng_state(self.device).numpy()
        meta = {"engine": "torch", "step": step, "adam_t": t, "lr": self.lr, "data": data_state,
                "history": history, "config": self.model.config.to_dict(),
                "dtype": str(next(self.hf.parameters()).dtype).replace("torch.", "")}
        save_checkpoint(path, arrays, meta)

    def load(self, path):
        """Restore what ``save`` wrote; -> its metadata (step, data state, history)."""
        arrays, meta = load_checkpoint(path)
        if meta.get("engine") != "torch":
            raise ValueError(f"{path} was written by the minibert engine; resume it without --engine torch "
                             "(or start a new run in another --out)")
        loop.check_same_architecture(path, meta, self.model.config)
        params = dict(self.hf.named_parameters())
        missing = sorted(n for n in params if "param/" + n not in arrays)
        if missing:
            raise ValueError(f"checkpoint {path} lacks weights {missing[:3]}...: it is of another model")
        scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32  # AdamW's
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(torch.from_numpy(arrays["param/" + n]))
                if meta["adam_t"] and "adam_m/" + n in arrays:
                    self.opt.state[p] = {
                        "step": torch.tensor(float(meta["adam_t"]), dtype=scalar),
                        "exp_avg": torch.from_numpy(arrays["adam_m/" + n].copy()).to(p.device, p.dtype),
                        "exp_avg_sq": torch.from_numpy(arrays["adam_v/" + n].copy()).to(p.device, p.dtype)}
        torch.set_rng_state(torch.from_numpy(arrays["rng/torch_cpu"].copy()))
        if self.device.type == "cuda" and "rng/torch_cuda" in arrays:
            torch.cuda.set_rng_state(torch.from_numpy(arrays["rng/torch_cuda"].copy()), self.device)
        self.lr = meta["lr"]
        return meta


# -- the loop -------------------------------------------------------------------------------------
def is_worker():
    """Is this process one of the ranks ``launch`` started?"""
    return os.environ.get(WORKER_ENV) == "1" and "RANK" in os.environ


def run(cfg, model, job, eval_batches, unigram_token, log=print, dtype=torch.float32):
    """Train ``model``'s weights on ``job``'s data as ``cfg`` says, with transformers and torch.optim, in
    ``loop.run`` (the one loop: log.jsonl every step, evaluation every ``eval_every``, checkpoints,
    ``resume``, the time budget), with a ``TorchTrainer`` taking the steps.  Runs as one rank of
    ``launch``'s group when started by it.  At the end the trained weights are copied into ``model``.
    -> (``loop.RunResult``, what ran: {"torch", "transformers", "threads", "world_size", "process_group",
    "pids" of the ranks}); the second is None on ranks other than 0 (rank 0 writes the outputs)."""
    rank, world = 0, 1
    if is_worker():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = cfg.device
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    main = rank == 0
    pids = [os.getpid()] * world
    if world > 1:
        dist.all_gather_object(pids, os.getpid())  # which processes trained, for metrics.json
    group = {"torch": torch.__version__, "transformers": transformers.__version__,
             "threads": torch.get_num_threads(), "world_size": world, "pids": pids,
             "process_group": dist.get_backend() if world > 1 else None}
    torch.manual_seed(cfg.seed)
    trainer = TorchTrainer(model, cfg, device=device, dtype=dtype, rank=rank, world_size=world)
    if main:
        log(repr(trainer))
    torch_job = dataclasses.replace(
        job, name=f"pretrain (torch, {world} process{'es' if world > 1 else ''})", loss_only=None,
        record=lambda result, batch: {"mlm_loss": result.terms["mlm"], "nsp_loss": result.terms["nsp"],
                                      "seq_len": batch["input_ids"].shape[1], **result.accuracy},
        evaluate=lambda: trainer.evaluate(eval_batches, unigram_token))
    result = loop.run(model, None, cfg, torch_job, log if main else (lambda *a, **k: None), trainer=trainer)
    copy_weights_to(trainer.hf, model)
    if world > 1:
        dist.barrier()  # rank 0's checkpoint is on disk before any rank leaves
        dist.destroy_process_group()
    return result, group if main else None


# -- N processes ----------------------------------------------------------------------------------
def launch(cfg, worker_module="minibert.training.pretrain"):
    """Run ``cfg`` (``nproc > 1``) as ``cfg.nproc`` processes started by torch's launcher,
    ``python -m torch.distributed.run --standalone --nproc-per-node N -m <worker_module> --torch-worker
    OUT/torch_job.json``; each process is one rank and runs ``pretrain`` on its shard of every batch;
    rank 0 writes the outputs.  -> the metrics rank 0 wrote to OUT/metrics.json."""
    job = os.path.join(cfg.out, "torch_job.json")
    atomic_write_bytes(job, json.dumps({k: getattr(cfg, k) for k in cfg.__dataclass_fields__}).encode())
    metrics_path = os.path.join(cfg.out, "metrics.json")
    if os.path.exists(metrics_path):
        os.remove(metrics_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={cfg.nproc}",
           "-m", worker_module, "--torch-worker", job]
    env = {**os.environ, WORKER_ENV: "1"}
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, said here so it does not warn
    r = subprocess.run(cmd, env=env)
    if r.returncode != 0 or not os.path.isfile(metrics_path):
        raise RuntimeError(f"torch.distributed.run exited with {r.returncode}; the ranks' errors are above "
                           f"(command: {' '.join(cmd)})")
    with open(metrics_path) as f:
        return json.load(f)
