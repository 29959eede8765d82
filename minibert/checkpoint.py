"""Checkpoints that cannot be half-written and are never pickled.

One file per checkpoint, in the safetensors format (a JSON header + raw little-endian arrays: nothing
in it can run code when loaded).  Arrays go in as tensors; everything else (step, RNG states, data
position, config) goes in the header's metadata as JSON.  A SHA-256 over every array's name, dtype,
shape and bytes is stored in the metadata and verified on load, so a truncated or corrupted file
gives a clear error instead of silently wrong weights.

Atomic write: write ``path.tmp-<pid>``, flush + fsync, then ``os.replace`` it over ``path``; a crash
at any moment leaves either the old checkpoint or the new one, never a mix.
"""
import hashlib
import json
import os

import numpy as np

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
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
    from safetensors.numpy import load
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        arrays = load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__", {})
    except Exception as e:  # safetensors raises its own error types for truncated/garbled files
        raise ValueError(f"checkpoint {path} is corrupted or truncated ({type(e).__name__}: {e})") from None
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a minibert checkpoint (format {metadata.get('format')!r})")
    if _digest(arrays) != metadata.get("sha256"):
        raise ValueError(f"checkpoint {path} failed its checksum: the file is corrupted")
    return arrays, json.loads(metadata["meta"])
