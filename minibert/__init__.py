"""minibert: BERT from first principles in NumPy, every backward pass by hand.

    import minibert
    cfg = minibert.BertConfig(vocab_size=97, hidden_size=48, num_hidden_layers=3, num_attention_heads=3)
    model = minibert.BertForPreTraining(cfg, seed=0)
    steps = minibert.trace(model.eval(), ids, labels=labels, next_sentence_label=nsp)  # every operation
    next(steps)                                                    # ... one at a time

The package is a map of the design (``docs/architecture.md``); imports run one way, downwards:

    cli.py                        the ``minibert`` command; nothing imports it
    classroom/                    exercises, grader, the attention ninja, lesson helpers, the demo
    training/                     one training loop (pretraining, fine-tuning), inference, plots
    data/                         tokenizer, WordPiece, pretraining instances, the bundled corpus
    models/  optim.py             Module base, BERT, the heads; AdamW, schedule, clipping
    backend.py                    which kernels run: the references or their numba twins
    kernels/                      numba twins, file for file of layers/
    layers/                       NumPy references: pure forward/backward functions
    config.py gradcheck.py files.py   the config, gradient checking, everything on disk
"""
import importlib
import importlib.abc
import importlib.util
import sys

from .backend import get_backend, set_backend, set_debug
from .classroom.trace import trace
from .config import BertConfig
from .data.tokenizer import BertTokenizer
from .data.wordpiece import train_wordpiece
from .gradcheck import rel_error
from .models.bert import BertForPreTraining, BertForPreTrainingOutput, BertModel, BertModelOutput
from .models.heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .optim import AdamW, clip_grad_norm, linear_warmup_decay

__version__ = "0.1.0"

# Where the modules of the flat layout (before the package had folders) live now.  ``import
# minibert.train`` and ``from minibert.heads import ...`` keep working: the old name is a thin module
# that reads its names from the new modules, in the order listed (the first that has the name).
MOVED_MODULES = {
    "model": ["minibert.models.bert", "minibert.models.module"],
    "heads": ["minibert.models.heads"],
    "tokenizer": ["minibert.data.tokenizer"], "wordpiece": ["minibert.data.wordpiece"],
    "pretraining_data": ["minibert.data.pretraining"], "corpus": ["minibert.data.corpus"],
    "train": ["minibert.training.pretrain", "minibert.training.loop", "minibert.training.inference"],
    "finetune": ["minibert.training.finetune", "minibert.files"],
    "inference": ["minibert.training.inference"], "plots": ["minibert.training.plots"],
    "checkpoint": ["minibert.files"], "pretrained": ["minibert.files"],
    "exercises": ["minibert.classroom.exercises", "minibert.classroom.grader", "minibert.gradcheck"],
    "attention_ninja": ["minibert.classroom.attention_ninja"],
    "lessons": ["minibert.classroom.lessons"], "demo": ["minibert.classroom.demo"],
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``minibert.<old name>`` to a module that forwards every name to the new modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(__name__ + ".") and fullname[len(__name__) + 1:] in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # the default: an empty module, filled in by exec_module

    def exec_module(self, module):
        targets = [importlib.import_module(m) for m in MOVED_MODULES[module.__name__[len(__name__) + 1:]]]
        module.__doc__ = f"Moved: {module.__name__} is now {', '.join(m.__name__ for m in targets)}."

        def __getattr__(name):
            for target in targets:
                if hasattr(target, name):
                    return getattr(target, name)
            raise AttributeError(f"module {module.__name__!r} (now {targets[0].__name__}) has no attribute {name!r}")

        module.__getattr__ = __getattr__
        module.__dir__ = lambda: sorted({n for t in targets for n in dir(t)})


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
