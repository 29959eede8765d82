"""Time ``train_wordpiece``: an 8k vocabulary from ~2.4M characters of English.

The corpus is the docstrings of the Python standard library, read from its source files as text
(nothing is imported, so no module runs any code), in sorted file order: it is offline,
deterministic for a given Python version, and mostly plain technical English.

    python benchmarks/bench_wordpiece.py [--chars 2400000] [--vocab-size 8000]
"""
import argparse
import re
import sysconfig
import time
from pathlib import Path

from minibert.data.tokenizer import BertTokenizer
from minibert.data.wordpiece import train_wordpiece


def stdlib_docstrings(n_chars):
    """The first ``n_chars`` characters of the standard library's triple-quoted strings (docstrings,
    mostly), file by file in sorted order, as a list of strings.

    A regular expression rather than ``ast``: parsing the whole stdlib takes ~40 s here, the regex
    ~2 s, and a few non-docstring triple-quoted strings do not matter for a benchmark.
    """
    triple_quoted = re.compile(r'"""(.*?)"""|\'\'\'(.*?)\'\'\'', re.S)
    root = Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts:
            continue
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, ValueError):
            continue
        for match in triple_quoted.finditer(source):
            doc = match.group(1) if match.group(1) is not None else match.group(2)
            texts.append(doc[:n_chars - total])
            total += len(texts[-1])
            if total >= n_chars:
                return texts
    return texts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=2_400_000)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--out", default="/tmp/bench_wordpiece_vocab.txt")
    args = parser.parse_args()

    t0 = time.perf_counter()
    texts = stdlib_docstrings(args.chars)
    n_chars = sum(len(t) for t in texts)
    print(f"corpus: {len(texts)} docstrings, {n_chars:,} characters ({time.perf_counter() - t0:.1f} s to read)")

    t0 = time.perf_counter()
    vocab = train_wordpiece(texts, args.vocab_size, out_file=args.out)
    seconds = time.perf_counter() - t0
    print(f"train_wordpiece: {len(vocab)} pieces in {seconds:.1f} s -> {args.out}")

    tok = BertTokenizer(args.out)
    sample = "Return a new dictionary initialized from an optional positional argument."
    print(f"sample: {tok.tokenize(sample)}")
    print(f"last merges: {vocab[-10:]}")


if __name__ == "__main__":
    main()
