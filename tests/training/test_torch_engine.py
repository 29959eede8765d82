"""``minibert pretrain --engine torch``: the same recipe on PyTorch + transformers, in one process or two.

Tolerances.  float32 carries 24 bits (eps = 1.2e-7); the two engines add in different orders, so a
step's loss differs by a few units of the last place (measured: at most 1.6e-7 relative over 20 steps).
We allow 2e-6 relative, ~16 ulp: a wrong weighting, a wrong schedule step or a wrong clip moves the
loss by 1e-3 or more within a few steps.  In float64 the engines agree within 1e-8 (measured ~1e-14).
The key biases of attention are compared to nothing: their true gradient is 0 (softmax ignores a shift
shared by a row, see tests/conftest.py), so AdamW normalises rounding noise into steps of about ``lr``
that differ between any two implementations; they do not change any output.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # declared in the test extra (and the torch extra)
import transformers  # noqa: E402

import minibert  # noqa: E402
from minibert.files import load_checkpoint  # noqa: E402
from minibert.training.pretrain import PRESETS, PretrainConfig, pretrain  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/<folder>/ -> the repository
SMALL = dict(corpus="synthetic", batch_size=8, max_seq_length=32, vocab_size=300, eval_every=5,
             checkpoint_every=4, eval_batches=2, warmup_steps=3, verbose=False)
F32_REL = 2e-6


def losses(out):
    return np.array([json.loads(line)["loss"] for line in open(os.path.join(out, "log.jsonl"))])


def weights(out):
    arrays, _ = load_checkpoint(os.path.join(out, "checkpoint.safetensors"))
    return {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}


def cli(out, *extra):
    return [sys.executable, "-m", "minibert", "pretrain", "--out", out, "--corpus", "synthetic", "--batch-size", "8",
            "--max-seq-length", "32", "--vocab-size", "300", "--eval-every", "5", "--checkpoint-every", "4",
            "--eval-batches", "2", "--warmup-steps", "3", "--quiet", "--engine", "torch", *extra]


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory):
    """20 steps of the same job on each engine (dropout 0, the sequence-length warmup included)."""
    root = tmp_path_factory.mktemp("engines")
    runs = {}
    for engine in ("minibert", "torch"):
        out = str(root / engine)
        runs[engine] = (out, pretrain(PretrainConfig(out=out, max_steps=20, engine=engine, **SMALL)))
    return runs


def test_the_torch_engine_follows_the_minibert_engine_step_by_step_in_float32(both_engines):
    (ours, m_ours), (theirs, m_theirs) = both_engines["minibert"], both_engines["torch"]
    a, b = losses(ours), losses(theirs)
    assert len(a) == len(b) == 20
    assert a[-1] < a[0] - 1.0, "the job trains (or the comparison would be of two flat lines)"
    rel = np.abs(a - b) / a
    print(f"worst step loss rel. difference: {rel.max():.1e} (float32 eps 1.2e-7)")
    assert rel.max() < F32_REL, rel
    seq = lambda out: [json.loads(line)["seq_len"] for line in open(os.path.join(out, "log.jsonl"))]
    assert seq(ours) == seq(theirs), "the same batches: the sequence-length warmup, then grouped by length"
    assert seq(ours)[:5] == [16] * 5 and all(T <= 32 for T in seq(ours)[5:])
    for k, v in m_ours["eval"].items():  # the same held-out batches, evaluated the same way
        assert abs(v - m_theirs["eval"][k]) <= F32_REL * max(1.0, abs(v)), k
    assert m_theirs["engine"] == "torch" and m_theirs["torch"]["world_size"] == 1
    assert m_theirs["torch"]["torch"].startswith("2.13.0")
    for name in ("metrics.json", "log.jsonl", "curves.png", "checkpoint.safetensors", "vocab.txt",
                 "model/config.json", "model/model.safetensors", "model/vocab.txt"):
        assert os.path.isfile(os.path.join(theirs, name)), name


def test_in_float64_the_two_engines_agree_within_1e_8_for_20_steps(tmp_path):
    from minibert.training import loop, torch_engine
    from minibert.training.pretrain import build_vocab, load_corpus, pretraining_data
    cfg = PretrainConfig(out=str(tmp_path), max_steps=20, grad_accum=2, **SMALL)  # micro-batches too
    docs, _ = load_corpus(cfg.corpus, cfg.seed, verbose=False)
    tok = build_vocab(docs, cfg.vocab_size, str(tmp_path / "vocab.txt"), verbose=False)
    model = minibert.BertForPreTraining(cfg.model_config(len(tok.vocab)), seed=0, dtype=np.float64).train()
    trainer = torch_engine.TorchTrainer(model, cfg, dtype=torch.float64)  # copies the initial weights
    opt = minibert.AdamW(model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    data = pretraining_data(cfg, docs, tok)
    worst = 0.0
    for step in range(20):
        batch = data.batch(step)
        ours = loop.training_step(model, opt, batch, step, cfg)
        theirs = trainer.step(batch, step)
        for k in ("mlm", "nsp"):
            worst = max(worst, abs(ours.terms[k] - theirs.terms[k]) / abs(ours.terms[k]))
        assert abs(ours.grad_norm - theirs.grad_norm) <= 1e-8 * ours.grad_norm, step
    print(f"worst loss term rel. difference over 20 steps: {worst:.1e}")
    assert worst < 1e-8
    theirs = dict(trainer.hf.named_parameters())
    for n, p, _ in model.named_parameters():
        if not n.endswith("attention.self.key.bias"):  # see the module docstring
            assert minibert.rel_error(p, theirs[n].detach().numpy()) < 1e-8, n


def test_two_processes_under_ddp_give_the_losses_and_weights_of_one(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    for out, n in ((one, "1"), (two, "2")):
        r = subprocess.run(cli(out, "--max-steps", "12", "--nproc", n), capture_output=True, text=True,
                           timeout=600, cwd=ROOT)
        assert r.returncode == 0, f"--nproc {n} failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    group = json.load(open(os.path.join(two, "metrics.json")))["torch"]
    assert group["world_size"] == 2 and group["process_group"] == "gloo"
    assert len(set(group["pids"])) == 2 and os.getpid() not in group["pids"], "two real processes"
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 12
    assert (np.abs(a - b) / a).max() < F32_REL, np.abs(a - b) / a
    wa, wb = weights(one), weights(two)
    assert wa.keys() == wb.keys()
    for k in wa:
        if not k.endswith("attention.self.key.bias"):
            assert minibert.rel_error(wa[k], wb[k]) < 1e-5, k  # AdamW after 12 steps: ~1e-7 measured


def test_the_ranks_weight_their_losses_by_the_whole_batchs_counts(tmp_path):
    """The shards of a batch hold different numbers of masked positions; the ranks' parts must add up
    to the whole batch's loss, not average their own means (which this batch makes differ)."""
    from minibert.training.loop import split_batch
    from minibert.training.pretrain import build_vocab, load_corpus, pretraining_data
    from minibert.training.torch_engine import PretrainingLoss, hf_model
    cfg = PretrainConfig(out=str(tmp_path), max_steps=2, short_seq_fraction=0, **SMALL)
    docs, _ = load_corpus(cfg.corpus, cfg.seed, verbose=False)
    tok = build_vocab(docs, cfg.vocab_size, str(tmp_path / "vocab.txt"), verbose=False)
    batch = pretraining_data(cfg, docs, tok).batch(0)
    model = minibert.BertForPreTraining(cfg.model_config(len(tok.vocab)), seed=0, dtype=np.float64)
    loss = PretrainingLoss(hf_model(model, torch.float64))
    t = lambda b: {k: torch.from_numpy(v) for k, v in b.items()}
    totals = model.loss_counts(**batch)
    whole = model(**batch)
    shards = split_batch(batch, 2)
    assert len({model.loss_counts(**s)["mlm"] for s in shards}) == 2, "the shards must hold different counts"
    parts = [loss(**t(s), n_mlm=totals["mlm"], n_nsp=totals["nsp"]) for s in shards]
    assert abs(sum(p[0].item() for p in parts) - whole.mlm_loss) < 1e-12
    assert abs(sum(p[1].item() for p in parts) - whole.nsp_loss) < 1e-12
    own_means = [loss(**t(s), n_mlm=model.loss_counts(**s)["mlm"], n_nsp=1)[0] for s in shards]
    assert abs(sum(own_means).item() / 2 - whole.mlm_loss) > 1e-6, "the naive mean differs on this batch"


def test_a_killed_torch_run_resumes_from_its_checkpoint_exactly(tmp_path):
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    steps = ("--max-steps", "16")
    subprocess.run(cli(full, *steps), check=True, timeout=600, cwd=ROOT)
    proc = subprocess.Popen(cli(killed, *steps), cwd=ROOT)
    log = os.path.join(killed, "log.jsonl")
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # kill it past the checkpoint of step 4
        if os.path.exists(log) and sum(1 for _ in open(log)) >= 6:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"
    assert load_checkpoint(os.path.join(killed, "checkpoint.safetensors"))[1]["step"] < 16
    subprocess.run(cli(killed, *steps, "--resume"), check=True, timeout=600, cwd=ROOT)
    assert losses(killed).tolist() == losses(full).tolist(), "exactly the same losses, step by step"
    a, b = load_checkpoint(os.path.join(full, "checkpoint.safetensors"))[0], \
        load_checkpoint(os.path.join(killed, "checkpoint.safetensors"))[0]
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    with pytest.raises(ValueError, match="written by the torch engine: resume it with --engine torch"):
        pretrain(PretrainConfig(out=killed, max_steps=17, resume=True, **SMALL))  # the other engine


def test_the_torch_engine_refuses_to_resume_a_checkpoint_of_another_architecture(tmp_path, monkeypatch):
    """As minibert's engine: 2 heads and 4 have weights of the same shapes, only the saved config differs."""
    out = str(tmp_path / "run")
    heads = PRESETS["tiny"]["num_attention_heads"]
    monkeypatch.setitem(PRESETS, "tiny", {**PRESETS["tiny"], "num_attention_heads": heads // 2})
    pretrain(PretrainConfig(out=out, max_steps=4, engine="torch", **SMALL))
    monkeypatch.undo()
    with pytest.raises(ValueError, match=f"another architecture .num_attention_heads: checkpoint {heads // 2}, "
                                         f"this run {heads}"):
        pretrain(PretrainConfig(out=out, max_steps=8, resume=True, engine="torch", **SMALL))


def test_the_torch_engines_model_loads_in_minibert_and_fill_mask_agrees_with_transformers(both_engines, capsys):
    from minibert.cli import main
    from minibert.training.inference import fill_mask, load_pretraining_model
    out, _ = both_engines["torch"]
    model, tok = load_pretraining_model(out)
    text = "the red [MASK] jumps over the [MASK] dog ."
    ours = fill_mask(model, tok, text, top_k=5)
    hf = transformers.BertForPreTraining.from_pretrained(os.path.join(out, "model")).eval()
    enc = tok(text, return_tensors="np")
    with torch.no_grad():
        logits = hf(**{k: torch.from_numpy(v) for k, v in enc.items()}).prediction_logits[0].numpy()
    assert len(ours) == 2
    for position, candidates in ours:
        top = np.argsort(-logits[position])[:5]
        assert [t for t, _ in candidates] == tok.convert_ids_to_tokens([int(i) for i in top])
    assert main(["fill-mask", "--model", out, text]) == 0
    assert ours[0][1][0][0] in capsys.readouterr().out


def test_without_torch_the_engine_says_how_to_install_it(tmp_path):
    (tmp_path / "torch.py").write_text("raise ImportError(\"No module named 'torch'\")\n")  # torch is absent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}
    r = subprocess.run(cli(str(tmp_path / "out"), "--max-steps", "2"), capture_output=True, text=True,
                       env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 2, r.stderr
    assert "pip install 'minibert[torch]'" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "minibert", "pretrain", "--help"], capture_output=True, text=True,
                       env=env, timeout=300, cwd=ROOT)
    assert r.returncode == 0 and "--engine" in r.stdout, "the default engine needs no torch"


def test_only_the_torch_engine_imports_torch_or_transformers():
    """torch_engine.py imports them; anywhere else (the demo's optional parity check) an import of them
    must sit in a ``try`` that handles ImportError, so nothing else needs the extra."""
    import ast
    from pathlib import Path

    def torch_imports(nodes):
        for node in nodes:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(n.split(".")[0] in ("torch", "transformers") for n in names):
                yield node

    importers, unguarded = set(), set()
    for path in Path(ROOT, "minibert").rglob("*.py"):
        tree, name = ast.parse(path.read_text()), path.relative_to(ROOT).as_posix()
        found = set(torch_imports(ast.walk(tree)))
        guarded = {n for t in ast.walk(tree) if isinstance(t, ast.Try) and any(
            h.type is not None and "ImportError" in ast.unparse(h.type) for h in t.handlers)
            for n in torch_imports(ast.walk(ast.Module(body=t.body, type_ignores=[])))}
        if found:
            importers.add(name)
        if found - guarded:
            unguarded.add(name)
    assert "minibert/training/torch_engine.py" in importers
    assert unguarded <= {"minibert/training/torch_engine.py"}, f"{unguarded} need torch to import"
    assert importers - {"minibert/training/torch_engine.py"} <= {"minibert/classroom/demo.py"}, importers
    code = ("import sys, minibert, minibert.cli, minibert.training.pretrain, minibert.training.finetune; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.parametrize("args, message", [
    (["--engine", "jax"], "invalid choice: 'jax'"),
    (["--nproc", "2"], "--nproc and --device are settings of the torch engine: add --engine torch"),
    (["--engine", "torch", "--nproc", "0"], "nproc must be a positive integer, got 0"),
    (["--engine", "torch", "--nproc", "3", "--grad-accum", "3", "--batch-size", "8"],
     "nproc x grad_accum (3 x 3) must be at most batch_size (8)"),
    (["--engine", "torch", "--debug"], "the torch engine has none"),
])
def test_the_engine_options_report_bad_values_clearly(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "minibert", "pretrain", "--out", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode != 0 and message in r.stderr, r.stderr
