"""The data side: text in, batches out.  Imports run down this list:

    corpus.py        what a corpus is (documents of sentences, train/held-out), google-research/bert's text format
    cleaning.py      documentation text -> clean sentences
    stdlib_docs.py   the standard library's docstrings, read in a fresh interpreter
    cpython_docs.py  the default corpus: CPython's own documentation, cleaned, split and cached
    synthetic.py     a tiny seeded language whose right answers are known
    tokenizer.py     BERT's tokenizer, as transformers'
    wordpiece.py     training a WordPiece vocabulary
    pretraining.py   MLM/NSP instances and their arrays, as google-research/bert's create_pretraining_data.py
    dataset.py       seeded, shuffled, resumable mini-batches of those arrays

Nothing here imports the models or training."""
