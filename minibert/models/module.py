"""The base every minibert model shares: ``params``/``grads`` dicts with transformers' names, the
train/eval switch, state dicts, and loading/saving transformers-format directories.

**The gradient contract** (PyTorch's ``.grad``): ``backward()`` *adds* into ``grads``, ``zero_grad()``
clears them, and the training step is the one place that zeroes.  So a parameter used twice (the tied
word embedding/decoder) gets the sum of both paths, and two micro-batches' backward passes sum their
gradients (gradient accumulation, ``minibert.training.loop``).
"""
import contextlib

import numpy as np

from ..config import BertConfig
from ..files import read_config, read_weights, save_pretrained


def shape_of(a):
    return None if a is None else tuple(a.shape)


class Module:
    """Holds ``params``/``grads`` (same keys), sub-modules, the train/eval switch and state dicts."""

    def __init__(self):
        self.params = {}
        self.grads = {}
        self.children = {}  # prefix -> Module
        self.training = True

    # -- parameters ------------------------------------------------------------------------------
    def named_parameters(self):
        """[(full name, param array, grad array)] in transformers' ``named_parameters()`` order."""
        out = [(prefix + n, p, g) for prefix, child in self.children.items()
               for n, p, g in child.named_parameters()]
        return out + [(n, self.params[n], self.grads[n]) for n in self.params]

    def num_parameters(self):
        return sum(p.size for _, p, _ in self.named_parameters())

    def zero_grad(self):
        for _, _, g in self.named_parameters():
            g.fill(0)

    def grad_state_dict(self):
        """{name: gradient} for every trainable parameter, named as transformers' named_parameters()."""
        return {n: g for n, _, g in self.named_parameters()}

    def _tied_aliases(self):
        """{alias name: real name} for parameters that appear twice in transformers' state_dict."""
        return {}

    def state_dict(self):
        """{name: array} with transformers' names, shapes and (out, in) layout (arrays, not copies)."""
        sd = {n: p for n, p, _ in self.named_parameters()}
        for alias, real in self._tied_aliases().items():
            sd[alias] = sd[real]
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Copy weights in, in place.  Checks everything first, so a failed load changes nothing.

        Tied aliases (``cls.predictions.decoder.weight``/``.bias``) may be present or absent.
        Returns ``(missing, unexpected)`` name lists (both empty when ``strict``).
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of name -> array, got {type(state_dict).__name__}")
        own = {n: p for n, p, _ in self.named_parameters()}
        aliases = self._tied_aliases()
        missing = [n for n in own if n not in state_dict]
        unexpected = [n for n in state_dict if n not in own and n not in aliases]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        new, wrong_shapes = {}, []
        for n, value in state_dict.items():
            target = own.get(n)
            if target is None and n in aliases:
                target = own[aliases[n]]
            if target is None:
                continue
            try:
                value = np.asarray(value)
            except Exception as e:  # e.g. a torch tensor that needs .numpy()
                raise TypeError(f"load_state_dict: {n} must be array-like, got {type(value).__name__}") from e
            if value.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: {n} must hold numbers, got dtype {value.dtype}")
            if value.shape != target.shape:
                wrong_shapes.append(f"{n} has shape {value.shape}, expected {target.shape}")
            elif n in own:
                new[n] = value
        if wrong_shapes:
            raise ValueError("load_state_dict: " + "; ".join(wrong_shapes))
        for n, value in new.items():
            own[n][...] = value
        return missing, unexpected

    # -- transformers-format directories ---------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory, dtype=np.float32, seed=0, verbose=True, **config_overrides):
        """Load a transformers-format directory (config.json + model.safetensors).

        Works across classes as transformers does: a ``BertModel`` checkpoint into a model with heads
        (the heads are newly initialised, and we say so), or a pretraining checkpoint into a
        ``BertModel`` (the heads are ignored).  Missing and unexpected weights are reported by name.
        ``config_overrides`` replace fields of config.json (``num_labels=6`` for a new classifier).
        The model is returned in eval mode.
        """
        model = cls(read_config(directory, **config_overrides), seed=seed, dtype=dtype)
        sd = read_weights(directory)
        own = model.state_dict()
        wants_prefix = any(k.startswith("bert.") for k in own)
        has_prefix = any(k.startswith("bert.") for k in sd)
        if wants_prefix and not has_prefix:
            sd = {"bert." + k: v for k, v in sd.items()}
        elif has_prefix and not wants_prefix:
            sd = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in sd.items()}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        if len(missing) == len(model.named_parameters()):
            raise ValueError(f"no weight of {directory}/model.safetensors fits {cls.__name__} (expected names "
                             f"like {next(iter(own))!r}, found {list(sd)[:3]}): is it a BERT checkpoint?")
        model.missing_keys, model.unexpected_keys = missing, unexpected
        if verbose and missing:
            print(f"{cls.__name__}.from_pretrained: newly initialised (not in {directory}): {missing}")
        if verbose and unexpected:
            print(f"{cls.__name__}.from_pretrained: ignored weights of {directory} this model has no place for: "
                  f"{unexpected}")
        return model.eval()

    def save_pretrained(self, directory, tokenizer=None):
        """Write config.json + model.safetensors (+ vocab.txt) that transformers loads."""
        save_pretrained(self, directory, tokenizer)

    # -- modes -----------------------------------------------------------------------------------
    def train(self, mode=True):
        """Dropout on (as PyTorch's ``model.train()``)."""
        self.training = bool(mode)
        for child in self.children.values():
            child.train(mode)
        return self

    def eval(self):
        """Dropout off: the forward becomes deterministic."""
        return self.train(False)

    @contextlib.contextmanager
    def eval_mode(self):
        """``with model.eval_mode(): ...``: dropout off inside the block, the model's own mode (train or
        eval) back after it, also when the block raises.  For evaluating in the middle of training."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- helpers ---------------------------------------------------------------------------------
    def _new_param(self, name, shape, kind):
        """kind: 'normal' (weights, N(0, initializer_range)), 'zeros' (biases), 'ones' (LN gains)."""
        if kind == "normal":
            p = self._init_rng.normal(0.0, self.config.initializer_range, size=shape).astype(self.dtype)
        elif kind == "zeros":
            p = np.zeros(shape, dtype=self.dtype)
        else:
            p = np.ones(shape, dtype=self.dtype)
        self.params[name] = p
        self.grads[name] = np.zeros_like(p)

    def _acc(self, name, g):
        self.grads[name] += g


def check_config(config):
    if not isinstance(config, BertConfig):
        raise TypeError(f"config must be a minibert.BertConfig, got {type(config).__name__}")


def check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def as_int_array(name, value, shape=None):
    """``value`` as an int64 array, or a TypeError/ValueError naming ``name``."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array (token ids are integers), got dtype {arr.dtype}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return arr.astype(np.int64, copy=False)
