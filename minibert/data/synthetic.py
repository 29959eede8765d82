"""A synthetic language whose right answers are known, for fast tests and classroom experiments.

A bidirectional model provably beats a left-to-right one on it, and next-sentence prediction is learnable up
to a known ceiling (``synthetic_corpus``'s docstring works both out).

    >>> corpus = synthetic_corpus(200, seed=0)
    >>> corpus.train[0][:2]
    ['a red rose is near the red hose.', 'a red hose is near the yellow seed.']
    >>> synthetic_vocabulary()[:5]              # with BERT's special tokens, a vocab.txt for BertTokenizer
    ['.', 'a', 'alien', 'barn', 'bear']
"""
import random

from .corpus import Corpus


SYNTHETIC_ADJECTIVES = ("red", "green", "blue", "yellow")
SYNTHETIC_TOPICS = {
    "kitchen": ("cup", "plate", "spoon", "bowl", "knife", "pot", "kettle", "fork"),
    "farm": ("cow", "pig", "goat", "horse", "sheep", "hen", "barn", "tractor"),
    "forest": ("fox", "owl", "deer", "bear", "wolf", "tree", "moss", "fern"),
    "sea": ("ship", "whale", "crab", "shell", "wave", "fish", "boat", "reef"),
    "city": ("bus", "taxi", "tower", "bridge", "shop", "train", "street", "park"),
    "school": ("book", "desk", "pen", "chalk", "map", "bell", "ruler", "globe"),
    "garden": ("rose", "tulip", "bee", "snail", "hose", "bench", "gate", "seed"),
    "space": ("star", "moon", "comet", "rocket", "planet", "orbit", "probe", "alien"),
}
SYNTHETIC_VERBS = ("sees", "likes", "follows", "finds", "pushes", "holds", "meets", "hides")
# Every noun always wears the same colour: the j-th noun of each topic gets SYNTHETIC_ADJECTIVES[j % 4], so
# each topic has exactly two nouns of each colour and the topic says nothing about the colour.
SYNTHETIC_ADJECTIVE_OF = {noun: SYNTHETIC_ADJECTIVES[j % len(SYNTHETIC_ADJECTIVES)]
                          for nouns in SYNTHETIC_TOPICS.values() for j, noun in enumerate(nouns)}
_SYNTHETIC_TEMPLATES = (
    "the {a1} {n1} {verb} the {a2} {n2}.",
    "a {a1} {n1} is near the {a2} {n2}.",
)


def synthetic_vocabulary():
    """Every word (and the period) the synthetic language uses, sorted: build a tokenizer vocab from it."""
    words = {"the", "a", "is", "near", "."} | set(SYNTHETIC_ADJECTIVES) | set(SYNTHETIC_VERBS)
    for nouns in SYNTHETIC_TOPICS.values():
        words |= set(nouns)
    return sorted(words)


def synthetic_corpus(num_docs, seed=0, min_sentences=4, max_sentences=8, num_topics=8,
                     heldout_fraction=0.05):
    """A seeded corpus of ``num_docs`` documents in a tiny language whose right answers are known.

    Each document picks one topic (kitchen, farm, ...) and writes ``min_sentences`` to ``max_sentences``
    sentences about that topic's nouns, from two templates::

        the red cup holds the blue bowl.
        a green spoon is near the yellow fork.

    What a model can learn, and the best it can do:

    * **Colour words need the right-hand context.**  Each noun always comes with its own colour
      (``SYNTHETIC_ADJECTIVE_OF``), and every topic has two nouns of each colour, so nothing to the *left*
      of a colour word (``the``, earlier sentences, the topic) says which colour comes.  A left-to-right
      model predicts a masked colour at chance, 1/4; a bidirectional model reads the noun just to the right
      and gets it every time (unless that noun is masked too).  This is the point of BERT's bidirectional
      masked LM.
    * **Nouns** are predictable from their colour (left) and the topic (the rest of the document): two
      candidates, so at most 1/2.  Verbs are uniform: at most 1/8.
    * **Next-sentence prediction** is learnable from topics: consecutive sentences share the document's
      topic, a random sentence comes from another document, whose topic differs with probability
      (K-1)/K for K = ``num_topics``.  The best NSP accuracy is 1 - 1/(2K) (0.9375 for K = 8): a
      different topic means "random"; the same topic is a continuation with probability K/(K+1).

    Uses ``random.Random(seed)``, whose output is stable across Python versions.  Returns a ``Corpus``
    whose last ``int(num_docs * heldout_fraction)`` documents are held out (documents are independent, so
    any split is fair); ``corpus.train + corpus.heldout`` gives all of them.
    """
    for name, value, low in (("num_docs", num_docs, 1), ("min_sentences", min_sentences, 1),
                             ("num_topics", num_topics, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(max_sentences, int) or max_sentences < min_sentences:
        raise ValueError(f"max_sentences must be an integer >= min_sentences={min_sentences}, got {max_sentences!r}")
    if isinstance(heldout_fraction, bool) or not isinstance(heldout_fraction, (int, float)) \
            or not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction!r}")
    if num_topics > len(SYNTHETIC_TOPICS):
        raise ValueError(f"num_topics must be <= {len(SYNTHETIC_TOPICS)}, got {num_topics}")
    rng = random.Random(seed)
    topics = list(SYNTHETIC_TOPICS)[:num_topics]
    docs = []
    for _ in range(num_docs):
        nouns = SYNTHETIC_TOPICS[rng.choice(topics)]
        doc = []
        for _ in range(rng.randint(min_sentences, max_sentences)):
            n1, n2 = rng.choice(nouns), rng.choice(nouns)
            doc.append(rng.choice(_SYNTHETIC_TEMPLATES).format(
                a1=SYNTHETIC_ADJECTIVE_OF[n1], n1=n1, verb=rng.choice(SYNTHETIC_VERBS),
                a2=SYNTHETIC_ADJECTIVE_OF[n2], n2=n2))
        docs.append(doc)
    num_heldout = int(num_docs * heldout_fraction)
    num_train = num_docs - num_heldout
    titles = [f"synthetic:{seed}:{i}" for i in range(num_docs)]
    return Corpus(docs[:num_train], docs[num_train:], "synthetic", titles[:num_train], titles[num_train:],
                  {"seed": seed, "num_topics": num_topics, "source": "synthetic_corpus"})
