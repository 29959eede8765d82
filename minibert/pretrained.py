"""transformers-format directories: ``config.json`` + ``model.safetensors`` (+ ``vocab.txt``).

``save_pretrained(model, dir)`` writes what ``transformers.BertForPreTraining.from_pretrained(dir)``
loads; ``load_pretrained(cls, dir)`` reads such a directory into a minibert model.  Weights are read
with the safetensors package's NumPy API: never pickle.
"""
import json
import os

import numpy as np

from .checkpoint import atomic_write_bytes
from .config import BertConfig

KNOWN_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # not parameters


def save_pretrained(model, directory, tokenizer=None):
    from safetensors.numpy import save
    os.makedirs(directory, exist_ok=True)
    arch = type(model).__name__
    extra = {"architectures": [arch], "torch_dtype": model.dtype.name}
    cfg = {"model_type": "bert", **model.config.to_dict(), **extra}
    atomic_write_bytes(os.path.join(directory, "config.json"), json.dumps(cfg, indent=2, sort_keys=True).encode())
    # transformers drops tied duplicates from safetensors files; so do we
    sd = {n: np.ascontiguousarray(p) for n, p, _ in model.named_parameters()}
    atomic_write_bytes(os.path.join(directory, "model.safetensors"), save(sd, metadata={"format": "pt"}))
    if tokenizer is not None:
        tokenizer.save_vocabulary(directory)


def read_config(directory, **overrides):
    """``BertConfig`` from ``directory/config.json``, with ``overrides`` (e.g. ``num_labels=6``) applied."""
    import dataclasses
    path = os.path.join(directory, "config.json")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"model directory not found: {directory}")
    try:
        config = BertConfig.from_json_file(path)
    except TypeError as e:  # valid JSON, but not an object of settings
        raise ValueError(f"config file {path} must hold a JSON object of BertConfig fields: {e}") from None
    fields = {f.name for f in dataclasses.fields(BertConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown BertConfig field(s) {unknown}; the fields are {sorted(fields)}")
    return dataclasses.replace(config, **overrides) if overrides else config


def read_weights(directory):
    """{name: ndarray} from ``model.safetensors``, with known buffers dropped."""
    from safetensors.numpy import load_file
    path = os.path.join(directory, "model.safetensors")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path} (minibert reads safetensors, never pickle)")
    try:
        sd = load_file(path)
    except Exception as e:
        raise ValueError(f"weights file {path} is corrupted ({type(e).__name__}: {e})") from None
    return {k: v for k, v in sd.items() if not k.endswith(KNOWN_BUFFERS)}
