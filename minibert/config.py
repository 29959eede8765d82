"""``BertConfig``: transformers' field names and defaults, validated.  And ``option``: how the training
configs declare a setting once (default and help), from which ``minibert.cli`` makes its flags."""
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Optional

from .layers.gelu import ACTIVATIONS  # hidden_act name -> (forward, backward): the one registry

ACTIVATION_NAMES = tuple(ACTIVATIONS)  # the values BertConfig.hidden_act may take
LAYER_NORM_POSITIONS = ("post", "pre")  # the values BertConfig.layer_norm_position may take ("pre": not BERT)
# The BertConfig fields that make a model compute another function, some without changing a weight's
# shape (2 heads or 4): a checkpoint resumes only into the same ones (training/loop.check_same_architecture).
# Dropout is not among them: a run may change it.
ARCHITECTURE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                       "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                       "layer_norm_position", "is_decoder", "tie_word_embeddings")


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT model (defaults are BERT-base, as in transformers).

    >>> BertConfig(vocab_size=97, hidden_size=48, num_hidden_layers=3, num_attention_heads=3)

    Two switches are experiments, **not BERT**, off by default: ``is_decoder=True`` (causal attention,
    lesson 07c) and ``layer_norm_position="pre"`` (pre-LN layers, ``layers/pre_ln_encoder_layer.py``, plus
    a final LayerNorm ``encoder.final_layer_norm.*``; lesson 07d).  A pre-LN model has no transformers
    equivalent: ``save_pretrained`` and the torch engine refuse it.  The field is written to and read
    from config.json like the others (transformers ignores it, which is why the export is refused).
    """
    vocab_size: int = 30522
    hidden_size: int = 768              # C
    num_hidden_layers: int = 12         # L
    num_attention_heads: int = 12       # A; head size D = C / A
    intermediate_size: int = 3072       # F
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512  # longest T
    type_vocab_size: int = 2            # segments A and B
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    tie_word_embeddings: bool = True    # the MLM decoder reuses the word embeddings (BERT does)
    num_labels: int = 2                 # classes of a fine-tuning head (minibert.models.heads)
    classifier_dropout: Optional[float] = None  # dropout before a classification head; None: hidden_dropout_prob
    is_decoder: bool = False            # True: causal self-attention (query i sees keys j <= i), as transformers'
                                        # is_decoder; not BERT, which is bidirectional (lesson 07c's experiment)
    layer_norm_position: str = "post"   # "post": LayerNorm(x + sublayer(x)), BERT's.  "pre": x + sublayer(LayerNorm(x))
                                        # and a final LayerNorm: an EXPERIMENT, NOT BERT (lesson 07d); no transformers export

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads}): each head gets hidden_size / heads features")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"BertConfig.hidden_act must be one of {tuple(ACTIVATIONS)}, got {self.hidden_act!r}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            if not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ValueError(f"BertConfig.{name} must be a probability in [0, 1), got {p!r}")
        for name in ("initializer_range", "layer_norm_eps"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"BertConfig.{name} must be a positive number, got {v!r}")
        if isinstance(self.num_labels, bool) or not isinstance(self.num_labels, int) or self.num_labels <= 0:
            raise ValueError(f"BertConfig.num_labels must be a positive integer, got {self.num_labels!r}")
        if self.classifier_dropout is not None and (
                isinstance(self.classifier_dropout, bool) or not isinstance(self.classifier_dropout, (int, float))
                or not 0.0 <= self.classifier_dropout < 1.0):
            raise ValueError(f"BertConfig.classifier_dropout must be None or a probability in [0, 1), "
                             f"got {self.classifier_dropout!r}")
        if not isinstance(self.is_decoder, bool):
            raise ValueError(f"BertConfig.is_decoder must be True or False, got {self.is_decoder!r}")
        if self.layer_norm_position not in LAYER_NORM_POSITIONS:
            raise ValueError(f"BertConfig.layer_norm_position must be one of {LAYER_NORM_POSITIONS} ('post' is BERT; "
                             f"'pre' is an experiment, not BERT), got {self.layer_norm_position!r}")
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"BertConfig.pad_token_id must be in [0, vocab_size={self.vocab_size}), "
                             f"got {self.pad_token_id!r}")

    @property
    def head_size(self):
        return self.hidden_size // self.num_attention_heads

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Build from a dict such as transformers' config.json; unknown keys are ignored."""
        if not isinstance(d, dict):
            raise TypeError(f"config must be a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "num_labels" not in kw and isinstance(d.get("id2label"), dict):  # transformers writes id2label
            kw["num_labels"] = len(d["id2label"])
        return cls(**kw)

    def to_json_file(self, path, extra=None):
        d = {"model_type": "bert", **self.to_dict(), **(extra or {})}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(d, f, indent=2, sort_keys=True)

    @classmethod
    def from_json_file(cls, path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {path} is not valid JSON: {e}") from None
        return cls.from_dict(d)


# -- settings declared once: the training configs' fields, from which the CLI makes its options ----------
def option(default, help, **cli):
    """A dataclass field with its help text: ``lr: float = option(1e-3, "peak learning rate")``.

    ``cli`` holds what ``minibert.cli`` needs beyond the default and the help: ``type`` (when the
    default is None), ``choices``, ``flag`` (a different flag name, e.g. ``--quiet`` for
    ``verbose``), ``invert`` (the flag stores False), ``shown_default`` (the help's "(default: ...)"
    when it is not the field's default), ``cli=False`` (no command-line option)."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


def redefault(cls, name, default, **cli):
    """Field ``name`` of dataclass ``cls`` (its help and CLI settings) with another default, for a
    subclass: ``out: str = redefault(RunConfig, "out", "runs/pretrain")``; ``cli`` adds or replaces CLI
    settings, as ``option``'s (e.g. ``type`` and ``shown_default`` for a default resolved later)."""
    return dataclasses.field(default=default, metadata={**cls.__dataclass_fields__[name].metadata, **cli})
