"""The models: a thin object over ``params``/``grads`` dicts that runs the layers forward and their
backward passes in reverse.  ``module.py`` is the base (state dicts, train/eval, transformers-format
loading), ``bert.py`` the encoder and the pretraining model, ``heads.py`` the fine-tuning heads; every
model with a head derives from ``BertWithHead``."""
from .bert import BertForPreTraining, BertForPreTrainingOutput, BertModel, BertModelOutput, BertWithHead
from .heads import (BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification,
                    QuestionAnsweringModelOutput, SequenceClassifierOutput, TokenClassifierOutput)
from .module import Module
