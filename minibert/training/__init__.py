"""Training and using a model.  ``loop.py`` is the one training loop (steps, gradient accumulation,
evaluation, checkpoints, resume) that ``pretrain.py`` and ``finetune.py`` both run; ``inference.py``
uses a trained model (fill-mask, next sentence, sentence embeddings, attention maps); ``plots.py``
draws curves and attention."""
