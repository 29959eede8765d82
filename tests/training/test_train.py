"""Pretraining end to end: outputs, exact resume after SIGKILL, non-finite guards, the CLI."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import minibert
from minibert.files import load_checkpoint, save_checkpoint
from minibert.training.pretrain import PRESETS, PretrainConfig, pretrain

SMALL = dict(corpus="synthetic", batch_size=8, max_seq_length=32, vocab_size=300, eval_every=5,
             checkpoint_every=4, eval_batches=2, warmup_steps=3, verbose=False)


def test_pretrain_writes_metrics_curves_log_and_a_model_that_loads_back(tmp_path):
    out = str(tmp_path / "run")
    metrics = pretrain(PretrainConfig(out=out, max_steps=12, **SMALL))
    on_disk = json.load(open(os.path.join(out, "metrics.json")))
    assert set(on_disk["eval"]) == {"mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy", "unigram_mlm_accuracy"}
    assert on_disk["steps"] == 12 and on_disk["tokens_per_second"] > 0 and "config" in on_disk
    assert on_disk["eval"] == metrics["eval"]
    assert 0 <= on_disk["eval"]["unigram_mlm_accuracy"] <= 1
    log = [json.loads(l) for l in open(os.path.join(out, "log.jsonl"))]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert os.path.getsize(os.path.join(out, "curves.png")) > 10_000
    model = minibert.BertForPreTraining.from_pretrained(os.path.join(out, "model"), verbose=False)
    tok = minibert.BertTokenizer(os.path.join(out, "model", "vocab.txt"))
    enc = tok("the red fox", return_tensors="np")
    assert model(enc["input_ids"]).prediction_logits.shape == (1, enc["input_ids"].shape[1], len(tok.vocab))


def test_the_sequence_length_warmup_serves_short_sequences_first_with_the_same_tokens_per_step(tmp_path):
    from minibert.training.pretrain import load_corpus, pretraining_data
    cfg = PretrainConfig(out=str(tmp_path), max_steps=12, short_seq_fraction=0.5, **SMALL)  # T: 16, then 32
    pretrain(cfg)
    seq_lens = [json.loads(l)["seq_len"] for l in open(tmp_path / "log.jsonl")]
    assert seq_lens[:6] == [16] * 6 and all(T <= 32 for T in seq_lens[6:]) and 32 in seq_lens[6:]  # cut to
    # their longest sequence: grouped by length, a batch of shorter ones is shorter than 32

    train_docs, _ = load_corpus(cfg.corpus, cfg.seed, verbose=False)
    data = pretraining_data(cfg, train_docs, minibert.BertTokenizer(str(tmp_path / "vocab.txt")))
    short, full = data.batch(0), data.batch(6)
    assert short["input_ids"].shape == (16, 16) and full["input_ids"].shape[0] == 8  # 16 x 16 = 8 x 32 cells
    assert full["input_ids"].shape[1] <= 32
    # BERT's masking at both lengths: a full 16-token row masks round(0.15 * 16) = 2 tokens; the cap is 3
    whole = short["attention_mask"].sum(axis=1) == 16
    assert whole.any() and ((short["labels"][whole] >= 0).sum(axis=1) == 2).all()
    # resuming mid-warmup: a fresh stream restored from the state continues with the very same batches
    tok = minibert.BertTokenizer(str(tmp_path / "vocab.txt"))
    data = pretraining_data(cfg, train_docs, tok)
    for step in range(4):
        data.batch(step)
    resumed = pretraining_data(cfg, train_docs, tok)
    resumed.load_state_dict(json.loads(json.dumps(data.state_dict())))  # as the checkpoint stores it
    for step in range(4, 9):  # crosses the switch at step 6
        a, b = data.batch(step), resumed.batch(step)
        assert all(np.array_equal(a[k], b[k]) for k in a), f"step {step}"
    assert PretrainConfig(short_seq_fraction=0).short_seq_steps == 0
    assert PretrainConfig(max_seq_length=16).short_seq_steps == 0, "nothing to warm up to"
    assert PretrainConfig().short_seq_steps == 900


def _benchmark(name):
    """The script benchmarks/NAME.py, imported as a module (benchmarks/ is not a package); its folder goes
    on sys.path, as when it runs as a script, for the scripts that import bench_step."""
    import importlib.util
    folder = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    path = os.path.join(folder, name + ".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_runs_config_reads_back_from_its_metrics_and_other_metrics_are_refused(tmp_path):
    """The diagnosis scripts rebuild a run's data from the config pretrain() saved in metrics.json."""
    cfg = PretrainConfig(out=str(tmp_path), max_steps=4, **SMALL)
    metrics = pretrain(cfg)
    assert PretrainConfig.from_metrics(metrics) == cfg
    with open(tmp_path / "metrics.json") as f:
        assert PretrainConfig.from_metrics(json.load(f)) == cfg
    with pytest.raises(ValueError, match="not a `minibert pretrain` run's"):
        PretrainConfig.from_metrics({"config": {"finetune": {}}})


def test_the_pretraining_diagnosis_rebuilds_the_held_out_batches_the_run_was_evaluated_on(tmp_path):
    """benchmarks/diagnose_pretraining.py explains the README's figures, so it must measure the very
    predictions metrics.json scored: its model accuracy equals the run's, to the last bit."""
    diagnosis = _benchmark("diagnose_pretraining")
    out = str(tmp_path / "run")
    metrics = pretrain(PretrainConfig(out=out, max_steps=30, lr=2e-3, **SMALL))
    [found] = diagnosis.main([out])
    assert found["model_accuracy"] == metrics["eval"]["mlm_accuracy"]
    # the synthetic corpus is built so that neighbours say a lot: counting them beats the unigram guess
    assert found["counts_accuracy"] > 1.5 * metrics["eval"]["unigram_mlm_accuracy"]
    shape = PRESETS["tiny"]
    assert found["attention_offsets"].shape == (shape["num_hidden_layers"], shape["num_attention_heads"], 3)
    assert 0 < found["uniform_attention"] < 1


def test_the_gradient_scales_script_measures_the_runs_clipped_training_gradients(tmp_path):
    """benchmarks/gradient_scales.py explains why Adam's eps matters (docs/pretraining.md): over one batch
    its RMS is the size of each entry of the clipped gradient that training would apply.  Checked against
    the model's own forward and backward (not the loss-only path the script uses)."""
    from minibert.data.tokenizer import BertTokenizer
    from minibert.models.bert import BertForPreTraining
    from minibert.optim import clip_grad_norm
    from minibert.training.pretrain import load_corpus, pretraining_data
    script = _benchmark("gradient_scales")
    out = str(tmp_path / "run")
    cfg = PretrainConfig(out=out, max_steps=12, max_grad_norm=0.5, **SMALL)
    pretrain(cfg)
    rms = script.gradient_rms(out, batches=1)

    model = BertForPreTraining.from_pretrained(os.path.join(out, "model"), verbose=False).train()
    train_docs, _ = load_corpus(cfg.corpus, cfg.seed, verbose=False)
    data = pretraining_data(cfg, train_docs, BertTokenizer(os.path.join(out, "vocab.txt")))
    model.zero_grad()
    model(**data.batch(cfg.short_seq_steps))
    model.backward()
    assert clip_grad_norm(model, 0.5) > 0.5, "clipping must be on for this check to test it"
    # rtol 1e-3: float32, and the loss-only path adds the heads' rows in another order than the full model
    for name, _, grad in model.named_parameters():
        np.testing.assert_allclose(rms[name], np.abs(grad).ravel(), rtol=1e-3, atol=1e-7, err_msg=name)


def test_the_step_flops_script_counts_each_product_once_with_two_flops_per_multiply_add():
    """benchmarks/step_flops.py (docs/pretraining.md, "A step that costs less?"): a linear layer's
    forward and backward are three products of N x I x O multiply-adds each."""
    from minibert.kernels.linear import linear_backward, linear_forward
    script = _benchmark("step_flops")
    N, I, O = 6, 5, 7
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((N, I)), rng.standard_normal((O, I)), rng.standard_normal(O)
    with script.counted_products(vocab_size=99) as totals:
        out, cache = linear_forward(x, w, b)
        linear_backward(np.ones_like(out), cache)
    assert list(totals) == [script.PARTS[2]]  # a projection: neither the FFN's module nor a side of V
    assert totals[script.PARTS[2]][0] == pytest.approx(3 * 2 * N * I * O / 1e9)


def test_the_step_flops_script_counts_the_ffn_by_its_module_not_by_its_width():
    """The 16-token phase has exactly 512 masked rows, the FFN's width: the MLM transform's products
    (512 x 128 x 128) must still count as projections, and only ffn.py's products as the FFN."""
    from minibert.kernels.ffn import ffn_backward, ffn_forward
    from minibert.kernels.linear import linear_backward, linear_forward
    script = _benchmark("step_flops")
    rng = np.random.default_rng(0)
    C, F, P = 8, 16, 16  # P = F, as in the 16-token phase
    x = rng.standard_normal((P, C)).astype(np.float32)
    w1, b1 = rng.standard_normal((F, C)).astype(np.float32), np.zeros(F, np.float32)
    w2, b2 = rng.standard_normal((C, F)).astype(np.float32), np.zeros(C, np.float32)
    with script.counted_products(vocab_size=99) as totals:
        out, cache = linear_forward(x, w2[:, :C], b2)  # a C x C projection of P rows
        linear_backward(np.ones_like(out), cache)
        out, cache = ffn_forward(x, w1, b1, w2, b2, "gelu")
        ffn_backward(np.ones_like(out), cache)
    assert totals[script.PARTS[2]][0] == pytest.approx(3 * 2 * P * C * C / 1e9)
    assert totals[script.PARTS[1]][0] == pytest.approx(2 * 3 * 2 * P * C * F / 1e9)


def test_the_step_flops_script_counts_the_decoder_at_the_masked_positions_only(tmp_path):
    """A training step's tied decoder multiplies only the rows the MLM loss reads: forward and the two
    products of its backward, P x C x V multiply-adds each, P the batch's labelled positions."""
    from minibert.data.tokenizer import BertTokenizer
    from minibert.layers.cross_entropy import IGNORE_INDEX
    script = _benchmark("step_flops")
    cfg = PretrainConfig(out=str(tmp_path), max_steps=12, short_seq_fraction=0.5, **SMALL)
    with minibert.backend.using("numpy"):  # as another test may leave the process; the script runs numba
        parts, step_seconds, batches = script.measure(cfg, steps=3, warmup=1)
        assert minibert.get_backend() == "numpy"  # and puts the process's backend back

    labelled = np.mean([(b["labels"] != IGNORE_INDEX).sum() for b in batches])
    vocab = len(BertTokenizer(str(tmp_path / "vocab.txt")).vocab)
    hidden = PRESETS["tiny"]["hidden_size"]
    assert all(b["input_ids"].shape[1] > cfg.short_seq_length for b in batches)  # after the 16-token phase
    assert parts[script.PARTS[0]][0] == pytest.approx(3 * 2 * labelled * hidden * vocab / 1e9)
    assert set(parts) == set(script.PARTS) and step_seconds > sum(s for _, s in parts.values())


def test_resuming_a_checkpoint_of_another_architecture_is_refused_by_name(tmp_path, monkeypatch):
    """The weights of 2 heads and of 4 have the same shapes, so only the saved config can tell them apart."""
    out = str(tmp_path / "run")
    heads = PRESETS["tiny"]["num_attention_heads"]
    monkeypatch.setitem(PRESETS, "tiny", {**PRESETS["tiny"], "num_attention_heads": heads // 2})
    pretrain(PretrainConfig(out=out, max_steps=4, **SMALL))
    monkeypatch.undo()
    with pytest.raises(ValueError, match=f"another architecture .num_attention_heads: checkpoint {heads // 2}, "
                                         f"this run {heads}"):
        pretrain(PretrainConfig(out=out, max_steps=8, resume=True, **SMALL))


def test_every_architecture_field_the_resume_check_compares_is_a_field_of_bert_config():
    """check_same_architecture skips a name the saved config lacks (older checkpoints), so a misspelt
    name would never be compared: each must be a real BertConfig field."""
    import dataclasses
    from minibert.config import ARCHITECTURE_FIELDS, BertConfig
    assert set(ARCHITECTURE_FIELDS) <= {f.name for f in dataclasses.fields(BertConfig)}


def test_training_reduces_the_loss_on_the_synthetic_corpus(tmp_path):
    metrics = pretrain(PretrainConfig(out=str(tmp_path), max_steps=60, lr=2e-3, **SMALL))
    hist = metrics["eval_history"]
    assert hist[-1]["mlm_loss"] < hist[0]["mlm_loss"] - 0.5, hist


def _cli(out, *extra, backend="numpy"):
    return [sys.executable, "-m", "minibert", "pretrain", "--corpus", "synthetic", "--out", out,
            "--max-steps", "16", "--checkpoint-every", "4", "--eval-every", "8", "--batch-size", "8",
            "--max-seq-length", "32", "--vocab-size", "300", "--warmup-steps", "3", "--backend", backend,
            "--quiet", *extra]


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_run_killed_with_sigkill_and_resumed_matches_an_uninterrupted_run(tmp_path, backend):
    env = {**os.environ, "MINIBERT_BACKEND": backend}
    full, killed = str(tmp_path / "full"), str(tmp_path / "killed")
    warmup = ("--short-seq-fraction", "0.75")  # 12 short steps, then 4 full-length ones (the kill lands near
    # the switch; resuming exactly inside the warmup is pinned down by the sequence-length warmup test)
    subprocess.run(_cli(full, *warmup, backend=backend), check=True, env=env, timeout=600)

    proc = subprocess.Popen(_cli(killed, *warmup, backend=backend), env=env)
    log = os.path.join(killed, "log.jsonl")
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # kill it once it is past a checkpoint
        if os.path.exists(log) and sum(1 for _ in open(log)) >= 10:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"
    subprocess.run(_cli(killed, *warmup, "--resume", backend=backend), check=True, env=env, timeout=600)

    losses = lambda d: [json.loads(l)["loss"] for l in open(os.path.join(d, "log.jsonl"))]
    assert losses(killed) == losses(full), "exactly the same losses, step by step"
    seq_lens = lambda d: [json.loads(l)["seq_len"] for l in open(os.path.join(d, "log.jsonl"))]
    assert seq_lens(killed) == seq_lens(full) and seq_lens(full)[:12] == [16] * 12  # then batches grouped by
    assert all(T <= 32 for T in seq_lens(full)[12:])                                 # length, cut to their longest
    a, _ = load_checkpoint(os.path.join(full, "checkpoint.safetensors"))
    b, _ = load_checkpoint(os.path.join(killed, "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NaNs/overflows are the point
def test_a_nan_loss_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    out = str(tmp_path)
    with pytest.raises(FloatingPointError, match=r"non-finite loss .* at step \d+; no checkpoint was written yet"):
        pretrain(PretrainConfig(out=out, max_steps=40, lr=1e30, max_grad_norm=1e30, **SMALL))


def test_a_nan_gradient_mid_run_stops_with_the_last_good_checkpoint_intact(tmp_path, monkeypatch):
    import minibert.training.loop as train
    calls = {"n": 0}
    real_clip = train.clip_grad_norm

    def clip_that_breaks_at_step_6(model, max_norm):
        calls["n"] += 1
        if calls["n"] == 7:  # the 7th update (step index 6): poison one gradient
            model.grads["cls.predictions.bias"][0] = np.nan
        return real_clip(model, max_norm)

    monkeypatch.setattr(train, "clip_grad_norm", clip_that_breaks_at_step_6)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient norm at step 7; the last good checkpoint is"):
        pretrain(PretrainConfig(out=str(tmp_path), max_steps=40, **SMALL))
    arrays, meta = load_checkpoint(os.path.join(tmp_path, "checkpoint.safetensors"))
    assert meta["step"] == 4 and all(np.isfinite(a).all() for a in arrays.values())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NaNs/overflows are the point
def test_debug_mode_names_the_first_kernel_that_produced_a_non_finite_value():
    cfg = minibert.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=20, max_position_embeddings=12)
    model = minibert.BertForPreTraining(cfg, seed=0)
    model.bert.params["encoder.layer.1.intermediate.dense.weight"][3, 2] = np.inf
    minibert.set_debug(True)
    try:
        with pytest.raises(FloatingPointError, match="encoder.layer.1 forward: ffn_forward produced a non-finite"):
            model(np.ones((1, 5), dtype=np.int64))
    finally:
        minibert.set_debug(False)
    out = model(np.ones((1, 5), dtype=np.int64))  # debug off: no check, the NaN just flows
    assert not np.isfinite(out.prediction_logits).all()


def test_a_corrupted_or_truncated_checkpoint_gives_a_clear_error(tmp_path):
    path = str(tmp_path / "c.safetensors")
    save_checkpoint(path, {"w": np.arange(1000, dtype=np.float32)}, {"step": 3})
    arrays, meta = load_checkpoint(path)
    assert meta == {"step": 3} and arrays["w"][999] == 999
    data = bytearray(open(path, "rb").read())
    data[-10] ^= 0xFF  # flip bits inside the array bytes
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="failed its checksum"):
        load_checkpoint(path)
    open(path, "wb").write(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError, match="corrupted or truncated"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "missing.safetensors"))


def test_checkpoints_are_never_pickled(tmp_path):
    path = str(tmp_path / "c.safetensors")
    save_checkpoint(path, {"w": np.ones(3)}, {"step": 1})
    assert b"\x80\x04" not in open(path, "rb").read()[:2], "not a pickle stream"
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f], "no temporary file left behind"


@pytest.mark.parametrize("args, message", [
    (["--corpus", "/no/such/file.txt"], "corpus file not found"),
    (["--max-steps", "0"], "max_steps must be a positive integer"),
    (["--preset", "huge"], "invalid choice"),
    (["--short-seq-fraction", "1"], "short_seq_fraction must be in [0, 1)"),
    (["--short-seq-length", "4"], "short_seq_length must be an integer >= 8"),
    (["--dropout", "1"], "dropout must be in [0, 1)"),
])
def test_cli_reports_bad_arguments_clearly(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "minibert", "pretrain", "--out", str(tmp_path), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and message in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_help_shows_the_defaults_of_the_config_and_explains_every_option(command, capsys):
    from minibert.cli import main
    from minibert.training.finetune import FinetuneConfig
    from minibert.training.pretrain import PRESET_LR, PretrainConfig
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    d = PretrainConfig() if command == "pretrain" else FinetuneConfig()
    # pretraining's lr depends on the preset: its help names each preset's
    lr = ", ".join(f"{name} {PRESET_LR[name]:g}" for name in ("tiny", "mini")) if command == "pretrain" else d.lr
    # and its warmup follows --max-steps
    warmup = "a tenth of --max-steps" if command == "pretrain" else d.warmup_steps
    steps = "300; 1000 for stdlib-quoted-qa" if command == "finetune" else d.max_steps  # finetune's: the task's
    for option, default in [("--max-steps", steps), ("--batch-size", d.batch_size), ("--lr", lr),
                            ("--warmup-steps", warmup), ("--seed", d.seed), ("--dropout", d.dropout)]:
        after_option = text.split(f"{option} {option.lstrip('-').upper().replace('-', '_')}")[-1]
        if default is None:  # a default that depends on something else is said in words (finetune's dropout)
            assert after_option.split(" --", 1)[0].count("default: ") == 1, option
            continue
        shown = after_option.split("(default: ", 1)[1].replace(" ", "")  # argparse may wrap inside it
        assert shown.startswith(f"{default})".replace(" ", "")), option
    assert "(default: None)" not in text and "(default: False)" not in text
    options = text.split("options:")[1]
    for metavar in ("MAX_STEPS", "BATCH_SIZE", "LR", "SEED", "EVAL_EVERY", "CHECKPOINT_EVERY"):
        assert not options.split(f" {metavar} ")[1].startswith("--"), f"{metavar} has no help text"


def test_the_learning_rate_defaults_to_the_presets_and_an_explicit_one_wins():
    """tiny and mini need different peak learning rates (mini at tiny's 2e-3 stays at the unigram level)."""
    from minibert.training.pretrain import PRESET_LR
    assert PRESET_LR["tiny"] != PRESET_LR["mini"]
    for preset in ("tiny", "mini"):
        assert PretrainConfig(preset=preset).lr == PRESET_LR[preset]
        assert PretrainConfig(preset=preset, lr=3e-4).lr == 3e-4
    for bad in (0, -1e-3, "1e-3"):
        with pytest.raises(ValueError, match="lr must be a number > 0"):
            PretrainConfig(lr=bad).validate()


def test_cli_rejects_an_empty_corpus_and_one_too_small_for_a_batch(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    r = subprocess.run([sys.executable, "-m", "minibert", "pretrain", "--corpus", str(empty), "--out",
                        str(tmp_path / "o1")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "empty" in r.stderr, r.stderr
    small = tmp_path / "small.txt"
    small.write_text("one sentence here .\nanother one .\n\na second document .\nwith two lines .\n\n"
                     "a third document .\nfor the held-out part .\n")
    r = subprocess.run([sys.executable, "-m", "minibert", "pretrain", "--corpus", str(small), "--out",
                        str(tmp_path / "o2"), "--vocab-size", "100"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "too small for one batch" in r.stderr, r.stderr


def test_memory_stays_flat_over_200_steps():
    import tracemalloc
    cfg = minibert.BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=24, max_position_embeddings=16)
    model = minibert.BertForPreTraining(cfg, seed=0).train()
    opt = minibert.AdamW(model, lr=1e-3)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, 60, (4, 16))
    labels = np.where(rng.random((4, 16)) < 0.2, ids, -100)
    labels[0, 0] = 7
    tracemalloc.start()
    sizes = []
    for step in range(200):
        model(ids, labels=labels, next_sentence_label=np.array([0, 1, 0, 1]))
        model.zero_grad()
        model.backward()
        minibert.clip_grad_norm(model, 1.0)
        opt.step()
        if step in (20, 199):
            sizes.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    assert sizes[1] - sizes[0] < 100_000, f"memory grew by {sizes[1] - sizes[0]} bytes over 180 steps"


def test_fill_mask_and_nsp_commands_print_what_transformers_computes_from_the_saved_model(tmp_path, capsys):
    """The two inference commands on a pretraining output, checked against transformers loading the same
    model/ directory (float32 on both sides: probabilities agree to ~1e-6, we allow 1e-4)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from minibert.cli import main
    out = str(tmp_path / "run")
    pretrain(PretrainConfig(out=out, max_steps=8, **SMALL))
    hf = transformers.BertForPreTraining.from_pretrained(os.path.join(out, "model")).eval()
    tok = minibert.BertTokenizer(os.path.join(out, "model", "vocab.txt"))

    text = "the [MASK] fox jumps"
    assert main(["fill-mask", "--model", out, "--top-k", "3", text]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("[MASK] at position 2") and len(lines) == 4, lines
    enc = tok(text, return_tensors="np")
    with torch.no_grad():
        probs = torch.softmax(hf(input_ids=torch.tensor(enc["input_ids"])).prediction_logits[0, 2].double(), -1)
    top = torch.topk(probs, 3)
    for line, p, i in zip(lines[1:], top.values.tolist(), top.indices.tolist()):
        token, printed = line.split()
        assert token == tok.convert_ids_to_tokens(i) and abs(float(printed) - p) < 1e-4, (line, p)

    assert main(["nsp", "--model", out, "the red fox", "jumps over the dog"]) == 0
    printed = float(capsys.readouterr().out.split("=")[1].split()[0])
    enc = tok("the red fox", "jumps over the dog", return_tensors="np")
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor(enc["input_ids"]), token_type_ids=torch.tensor(enc["token_type_ids"]),
                    attention_mask=torch.tensor(enc["attention_mask"])).seq_relationship_logits[0].double()
    assert abs(printed - torch.softmax(logits, -1)[0].item()) < 1e-4


@pytest.mark.parametrize("args, message", [
    (["fill-mask", "--model", "/no/such/dir", "a [MASK]"], "model directory not found"),
    (["nsp", "--model", "/no/such/dir", "a", "b"], "model directory not found"),
])
def test_inference_commands_report_a_missing_model_clearly(args, message, capsys):
    from minibert.cli import main
    assert main(args) == 2
    assert message in capsys.readouterr().err
