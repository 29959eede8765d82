"""minibert: BERT from first principles in NumPy, every backward pass by hand.

    import minibert
    cfg = minibert.BertConfig(vocab_size=97, hidden_size=48, num_hidden_layers=3, num_attention_heads=3)
    model = minibert.BertForPreTraining(cfg, seed=0)
    steps = minibert.trace(model.eval(), ids, labels=labels, next_sentence_label=nsp)  # every operation
    next(steps)                                                    # ... one at a time

The package is a map of the design (``docs/architecture.md``); imports run one way, downwards:

    cli.py                        the ``minibert`` command; nothing imports it
    classroom/                    exercises, grader, the attention ninja, lesson helpers, the demo
    training/                     the training loop (pretraining, fine-tuning), the torch engine, inference, plots
    data/                         the corpora, tokenizer, WordPiece, pretraining instances and batches
    models/  optim.py             Module base, BERT, the heads; AdamW, schedule, clipping
    backend.py                    which kernels run: the references or their numba twins
    kernels/                      numba twins, file for file of layers/
    layers/                       NumPy references: pure forward/backward functions
    config.py gradcheck.py files.py   the config, gradient checking, everything on disk
"""
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
