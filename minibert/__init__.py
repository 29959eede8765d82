"""minibert: BERT from first principles in NumPy, every backward pass by hand.

    import minibert
    cfg = minibert.BertConfig(vocab_size=97, hidden_size=48, num_hidden_layers=3, num_attention_heads=3)
    model = minibert.BertForPreTraining(cfg, seed=0)
"""
from .backend import get_backend, set_backend, set_debug
from .config import BertConfig
from .gradcheck import rel_error
from .model import BertForPreTraining, BertForPreTrainingOutput, BertModel, BertModelOutput
from .heads import BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification
from .optim import AdamW, clip_grad_norm, linear_warmup_decay
from .tokenizer import BertTokenizer
from .wordpiece import train_wordpiece

__version__ = "0.1.0"
