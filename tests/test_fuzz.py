"""Property-based tests (hypothesis): arbitrary input never crashes, invariants always hold."""
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minibert import layers as L
from minibert.gradcheck import check_layer

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A real vocabulary trained on a little English and CJK, so WordPiece has work to do."""
    from minibert import BertTokenizer, train_wordpiece
    texts = ["The quick brown fox jumps over the lazy dog.", "Tokenizers split words into pieces!",
             "BERT模型的核心思想是预训练", "naïve café résumé", "numbers 12345 and symbols #$%"] * 20
    path = str(tmp_path_factory.mktemp("vocab") / "vocab.txt")
    train_wordpiece(texts, 200, out_file=path)
    return BertTokenizer(path)


@FUZZ
@given(st.text(max_size=200))
def test_tokenizer_never_crashes_and_ids_are_in_range(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert all(0 <= i < len(tokenizer.vocab) for i in ids)
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id


@FUZZ
@given(st.text(max_size=200))
def test_tokenize_decode_round_trip_is_stable(tokenizer, text):
    """decode(ids) is a normal form: tokenizing it again gives the same ids."""
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
    again = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(tokenizer.decode(ids)))
    assert again == ids


shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 7))


@FUZZ
@given(shapes, st.integers(0, 2**31 - 1))
def test_layernorm_passes_gradcheck_on_random_shapes(shape, seed):
    rng = np.random.default_rng(seed)
    B, T, C = shape
    # with one or two features the normalised output is (nearly) constant: (a - b)/|a - b| = +-1, so
    # the true gradient is ~eps-sized and finite differences measure only rounding noise
    C = max(C, 3)
    x = rng.standard_normal((B, T, C)) * 2
    errors = check_layer(lambda x, w, b: L.layernorm_forward(x, w, b, 1e-5), L.layernorm_backward,
                         [x, 1 + 0.3 * rng.standard_normal(C), rng.standard_normal(C)], seed=seed)
    assert max(errors.values()) < 1e-6, errors


@FUZZ
@given(shapes, st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_linear_softmax_gelu_cross_entropy_pass_gradcheck_on_random_shapes(shape, O, seed):
    rng = np.random.default_rng(seed)
    B, T, C = shape
    x = rng.standard_normal((B, T, C))
    assert max(check_layer(L.linear_forward, L.linear_backward,
                           [x, rng.standard_normal((O, C)), rng.standard_normal(O)], seed=seed).values()) < 1e-7
    assert check_layer(L.softmax_forward, L.softmax_backward, [x], seed=seed)["input0"] < 1e-7
    assert check_layer(L.gelu_forward, L.gelu_backward, [x], seed=seed)["input0"] < 1e-7
    labels = rng.integers(-1, C, size=B * T)
    labels[labels < 0] = -100
    err = check_layer(lambda z: L.cross_entropy_forward(z, labels), L.cross_entropy_backward,
                      [x.reshape(B * T, C)], seed=seed)["input0"]
    assert err < 1e-7


@FUZZ
@given(st.integers(1, 3), st.integers(2, 6), st.sampled_from([(4, 1), (6, 2), (6, 3)]), st.integers(0, 2**31 - 1))
def test_attention_passes_gradcheck_on_random_shapes_and_masks(B, T, CA, seed):
    C, A = CA
    rng = np.random.default_rng(seed)
    mask = (rng.random((B, T)) < 0.7).astype(np.int64)
    mask[:, 0] = 1  # every row attends to something
    mask_add = L.attention_mask_to_additive(mask, np.float64)
    weights = [rng.standard_normal((C, C)) * 0.5 if i % 2 == 0 else rng.standard_normal(C) * 0.1 for i in range(8)]
    errors = check_layer(lambda x, *w: L.attention_forward(x, *w, mask_add, A), L.attention_backward,
                         [rng.standard_normal((B, T, C))] + weights, seed=seed)
    errors.pop("input4")  # the key bias: its gradient is exactly 0 (see test_layers_gradcheck)
    assert max(errors.values()) < 1e-6, errors


@FUZZ
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_data_creation_never_masks_specials_and_keeps_segments_consistent(tokenizer, seed, wwm):
    from minibert.data.pretraining import create_training_instances, instances_to_arrays
    rng = np.random.default_rng(seed)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "tokenizers", "pieces"]
    docs = [[" ".join(rng.choice(words, size=rng.integers(2, 9))) for _ in range(rng.integers(2, 6))]
            for _ in range(4)]
    instances = create_training_instances(docs, tokenizer, max_seq_length=24, dupe_factor=1,
                                          whole_word_mask=wwm, seed=seed)
    arrays = instances_to_arrays(instances, tokenizer, 24)
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]
    for ids, segs, mask, labels in zip(arrays["input_ids"], arrays["token_type_ids"],
                                       arrays["attention_mask"], arrays["labels"]):
        n = int(mask.sum())
        assert np.all(mask[:n] == 1) and np.all(mask[n:] == 0)
        assert not np.isin(labels, specials).any(), "a special token was chosen for prediction"
        seps = np.flatnonzero(ids[:n] == tokenizer.sep_token_id)
        assert ids[0] == tokenizer.cls_token_id and len(seps) == 2 and seps[1] == n - 1
        assert np.all(segs[:seps[0] + 1] == 0) and np.all(segs[seps[0] + 1:n] == 1) and np.all(segs[n:] == 0)
        predicted = labels != -100
        assert predicted.any() and not predicted[n:].any()
