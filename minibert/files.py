"""Everything minibert reads from or writes to disk, in one place: atomic writes, checksummed training
checkpoints, and transformers-format model directories.  Nothing here is ever pickled.

**Atomic writes.**  Write ``path.tmp-<pid>``, flush + fsync, then ``os.replace`` it over ``path``; a
crash at any moment leaves either the old file or the new one, never a mix.

**Checkpoints.**  One file per checkpoint, in the safetensors format (a JSON header + raw little-endian
arrays: nothing in it can run code when loaded).  Arrays go in as tensors; everything else (step, RNG
states, data position, config) goes in the header's metadata as JSON.  A SHA-256 over every array's
name, dtype, shape and bytes is stored in the metadata and verified on load, so a truncated or
corrupted file gives a clear error instead of silently wrong weights.

**transformers-format directories**: ``config.json`` + ``model.safetensors`` (+ ``vocab.txt``).
``save_pretrained(model, dir)`` writes what ``transformers.BertForPreTraining.from_pretrained(dir)``
loads; ``read_config`` / ``read_weights`` read such a directory (``Module.from_pretrained`` uses them).

This module sits below the models (which load and save themselves through it) and imports nothing of
minibert but the config.
"""
import hashlib
import json
import os

import numpy as np

from .config import BertConfig

FORMAT = "minibert-checkpoint-v1"


def _digest(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # disk full, interrupted: leave no temporary file behind
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def save_checkpoint(path, arrays, meta):
    """Atomically write ``arrays`` ({name: ndarray}) and ``meta`` (JSON-able dict) to ``path``."""
    from safetensors.numpy import save
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    metadata = {"format": FORMAT, "meta": json.dumps(meta), "sha256": _digest(arrays)}
    atomic_write_bytes(path, save(arrays, metadata=metadata))


def load_checkpoint(path):
    """-> (arrays, meta).  Raises FileNotFoundError, or ValueError naming the file if it is corrupt."""
    from safetensors import SafetensorError, safe_open
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with safe_open(path, framework="numpy") as f:  # checks the header and that it covers the file
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise ValueError(f"{path} is not a minibert checkpoint (format {metadata.get('format')!r})")
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except SafetensorError as e:  # truncated, or a garbled header
        raise ValueError(f"checkpoint {path} is corrupted or truncated ({e})") from None
    if _digest(arrays) != metadata.get("sha256"):
        raise ValueError(f"checkpoint {path} failed its checksum: the file is corrupted")
    try:
        return arrays, json.loads(metadata["meta"])
    except (KeyError, json.JSONDecodeError) as e:  # the checksum covers the arrays, not the metadata
        raise ValueError(f"checkpoint {path} is corrupted: its metadata holds no valid 'meta' JSON ({e!r})") from None


# -- transformers-format directories ----------------------------------------------------------------
KNOWN_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # not parameters


def save_pretrained(model, directory, tokenizer=None):
    """Write ``directory/config.json`` + ``model.safetensors`` (+ ``vocab.txt``) that transformers loads.

    A pre-LN model (``layer_norm_position="pre"``, an experiment, not BERT) is refused with a ValueError:
    transformers has no pre-LN BERT, would ignore the field and misread the LayerNorms."""
    check_exportable(model.config, "save_pretrained")
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


def check_exportable(config, what):
    """Raise a ValueError naming ``what`` if ``config`` is a model transformers cannot represent."""
    if getattr(config, "layer_norm_position", "post") != "post":
        raise ValueError(f"{what}: this model has layer_norm_position={config.layer_norm_position!r}, an experiment "
                         f"that is not BERT; transformers' BertModel is post-LN only and would misread its weights "
                         f"(its LayerNorms sit elsewhere, encoder.final_layer_norm has no place there), so it is not "
                         f"exported.  Keep it in memory, or save it with minibert.files' checkpoints.")


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


def resolve_model_dir(path):
    """The transformers-format directory in ``path``: ``path`` itself or ``path/model`` (a training
    output).  It needs config.json, model.safetensors and vocab.txt."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    for d in (path, os.path.join(path, "model")):
        if os.path.isfile(os.path.join(d, "config.json")):
            for name in ("model.safetensors", "vocab.txt"):
                if not os.path.isfile(os.path.join(d, name)):
                    raise FileNotFoundError(f"{os.path.join(d, name)} not found: a model directory needs "
                                            "config.json, model.safetensors and vocab.txt")
            return d
    raise FileNotFoundError(f"no model in {path}: expected config.json, model.safetensors and vocab.txt there or in "
                            f"{os.path.join(path, 'model')} (the model/ folder of a `minibert pretrain` output)")
