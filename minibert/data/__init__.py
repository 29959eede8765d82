"""The data side: text in, batches out.  ``tokenizer.py`` (BERT's tokenizer, as transformers'),
``wordpiece.py`` (training a WordPiece vocabulary), ``pretraining.py`` (MLM/NSP instances, as
google-research/bert's create_pretraining_data.py), ``corpus.py`` (the bundled CPython-documentation
corpus and a synthetic one).  Nothing here imports the models or training."""
