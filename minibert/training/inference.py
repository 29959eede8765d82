"""Using a trained BERT: fill in masks, embed sentences, compare them, look at attention.

    from minibert.training.inference import fill_mask, sentence_embeddings, cosine_similarity, attention_maps
    fill_mask(pretraining_model, tok, "the [MASK] statement raises an exception .")   # top-k with probabilities
    emb = sentence_embeddings(model, tok, ["A man plays guitar.", "Someone plays a guitar."])  # (N, C)
    cosine_similarity(emb, emb)                                                      # (N, N)
    tokens, probs = attention_maps(model, tok, "the cat sat on the mat")             # (L, A, T, T)
    next_sentence_probability(pretraining_model, tok, "sentence A", "sentence B")   # P(B follows A)

Every helper runs the model in eval mode (dropout off) and puts it back in the mode it found it in.
``model`` may be a ``BertModel`` or anything holding one as ``.bert`` (the pretraining model, a head).

Shapes: ``N`` sentences, ``B`` batch, ``T`` sequence, ``C`` hidden, ``L`` layers, ``A`` heads.
"""
import os

import numpy as np

from ..data.tokenizer import BertTokenizer
from ..files import resolve_model_dir
from ..layers.softmax import softmax_forward
from ..models.bert import BertForPreTraining


__all__ = ["fill_mask", "next_sentence_probability", "load_pretraining_model", "mean_pool", "sentence_embeddings",
           "cosine_similarity", "attention_maps"]


def _encoder(model):
    """The ``BertModel`` inside ``model`` (or ``model`` itself)."""
    encoder = getattr(model, "bert", model)
    if not hasattr(encoder, "check_inputs"):
        raise TypeError(f"model must be a minibert BertModel or hold one as .bert, got {type(model).__name__}")
    return encoder


def _run_eval(model, **inputs):
    """``model(**inputs)`` with dropout off, then back in the mode it was in."""
    with model.eval_mode():
        return model(**inputs)


def mean_pool(last_hidden_state, attention_mask):
    """(B, T, C), (B, T) -> (B, C): the mean of each row's token vectors, padding left out.

    sentence-transformers' "mean pooling" (all-MiniLM-L6-v2 was trained with it): ``[CLS]`` and
    ``[SEP]`` are averaged in too; only padded positions (mask 0) are not.
    """
    m = np.asarray(attention_mask)[..., None].astype(last_hidden_state.dtype)  # (B, T, 1)
    total = (last_hidden_state * m).sum(axis=1)  # (B, C)
    return total / np.maximum(m.sum(axis=1), 1e-9)  # (B, C); the clamp as sentence-transformers'


def sentence_embeddings(model, tokenizer, sentences, batch_size=32, max_length=None, normalize=False):
    """One vector per sentence: mean pooling of the last hidden states.  -> (N, C) array.

    ``sentences`` a str or a list of str; longer ones are truncated to ``max_length`` tokens (default:
    the model's ``max_position_embeddings``).  ``normalize=True`` scales each row to unit length, so
    a dot product is the cosine similarity.
    """
    encoder = _encoder(model)
    if isinstance(sentences, str):
        sentences = [sentences]
    if not isinstance(sentences, (list, tuple)) or not sentences:
        raise ValueError(f"sentences must be a non-empty list of str, got {sentences!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    max_length = max_length or encoder.config.max_position_embeddings
    chunks = []
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer(list(sentences[i:i + batch_size]), padding=True, truncation=True, max_length=max_length,
                        return_tensors="np")  # (b, T) each
        out = _run_eval(encoder, input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                        attention_mask=enc["attention_mask"])
        chunks.append(mean_pool(out.last_hidden_state, enc["attention_mask"]))  # (b, C)
    emb = np.concatenate(chunks)  # (N, C)
    if normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    return emb


def cosine_similarity(a, b):
    """(N, C), (M, C) -> (N, M) cosine of every pair; a single vector (C,) counts as N = 1.

    ``cos(u, v) = u.v / (|u| |v|)``: 1 for the same direction, 0 for orthogonal, -1 for opposite.
    """
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"cosine_similarity: vectors of different sizes, {a.shape[-1]} and {b.shape[-1]}")
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return a @ b.T  # (N, M)


def attention_maps(model, tokenizer, text, text_pair=None):
    """The attention probabilities of every layer and head for one text (or pair).

    Returns ``(tokens, probs)``: the T word pieces (``[CLS]`` ... ``[SEP]``) and a (L, A, T, T) array,
    ``probs[l, a, i, j]`` = how much query token i attends to key token j in head a of layer l (each
    row sums to 1).  ``minibert.training.plots.plot_attention(probs[l, a], tokens)`` draws one head.
    """
    encoder = _encoder(model)
    enc = tokenizer(text, text_pair, return_tensors="np")  # (1, T)
    T = enc["input_ids"].shape[1]
    if T > encoder.config.max_position_embeddings:
        raise ValueError(f"text has {T} tokens, more than max_position_embeddings="
                         f"{encoder.config.max_position_embeddings}")
    out = _run_eval(encoder, input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                    attention_mask=enc["attention_mask"], output_attentions=True)
    probs = np.stack([np.asarray(a)[0] for a in out.attentions])  # (L, A, T, T)
    return tokenizer.convert_ids_to_tokens(enc["input_ids"][0].tolist()), probs


def fill_mask(model, tokenizer, text, top_k=5):
    """[(position, [(token, probability), ...])] for every [MASK] in ``text``."""
    enc = tokenizer(text, truncation=True, max_length=model.config.max_position_embeddings, return_tensors="np")
    with model.eval_mode():
        out = model(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"])
    ids = enc["input_ids"][0]
    results = []
    for t in np.flatnonzero(ids == tokenizer.mask_token_id):
        p, _ = softmax_forward(out.prediction_logits[0, t].astype(np.float64))  # (V,)
        top = np.argsort(-p)[:top_k]
        results.append((int(t), [(tokenizer.convert_ids_to_tokens(int(i)), float(p[i])) for i in top]))
    return results


def load_pretraining_model(path, verbose=False):
    """-> (BertForPreTraining, BertTokenizer) from a `minibert pretrain` output or a transformers-format
    directory (config.json, model.safetensors, vocab.txt; ``path`` itself or ``path/model``)."""
    d = resolve_model_dir(path)
    return BertForPreTraining.from_pretrained(d, verbose=verbose), BertTokenizer(os.path.join(d, "vocab.txt"))


def next_sentence_probability(model, tokenizer, text_a, text_b):
    """P(``text_b`` is the sentence that follows ``text_a``) under the NSP head of a pretraining model.

    The pair is encoded as ``[CLS] A [SEP] B [SEP]`` (segment ids 0 then 1, the longer side trimmed to
    ``max_position_embeddings``); the NSP head's 2-way logits on the pooled ``[CLS]`` are softmaxed
    and class 0 ("is next", as in BERT) is returned as a float.
    """
    for name, text in (("text_a", text_a), ("text_b", text_b)):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{name} must be a non-empty str, got {text!r}")
    if not isinstance(model, BertForPreTraining):
        raise TypeError(f"model must be a BertForPreTraining (it has the NSP head), got {type(model).__name__}")
    enc = tokenizer(text_a, text_b, truncation=True, max_length=model.config.max_position_embeddings,
                    return_tensors="np")  # (1, T)
    out = _run_eval(model, input_ids=enc["input_ids"], token_type_ids=enc["token_type_ids"],
                    attention_mask=enc["attention_mask"])
    p, _ = softmax_forward(out.seq_relationship_logits[0].astype(np.float64))  # (2,)
    return float(p[0])
