"""The ``minibert`` command (also ``python -m minibert``).

    minibert pretrain [--preset tiny|mini] [--corpus default|synthetic|FILE] [--max-steps N]
                      [--minutes M] [--seed S] [--out DIR] [--resume] [--backend numba|numpy] ...
    minibert finetune [--model PRETRAIN_OUT|HF_DIR] [--random-init | --compare] [--max-steps N] [--out DIR]
                      fine-tune a classifier on the built-in task (pretrained vs random start)
    minibert fill-mask --model OUT [--top-k K] "the [MASK] statement raises an exception"
    minibert nsp --model OUT "sentence A" "sentence B"      the probability that B follows A
    minibert demo     a one-minute tour: build a tiny BERT, gradient-check it, compare with transformers
    minibert exercises list | make OUTDIR | check [NAME ...] [--dir OUTDIR]
                      classroom exercises: write the student copies, grade them by gradient checks
"""
import argparse
import sys


class ShowDefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: ...)" to an option's help, except for flags and options that default to None."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_run_options(p, d):
    """The options every training command has (``d``: its config, holding the defaults)."""
    p.add_argument("--out", default=d.out, help="output directory")
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes of training")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps,
                   help="linear warmup to --lr, then linear decay to 0 at --max-steps")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between held-out evaluations")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help="steps between checkpoints (OUT/checkpoint.safetensors)")
    p.add_argument("--backend", choices=["numba", "numpy"], default=None,
                   help="numba kernels or the NumPy reference (default: $MINIBERT_BACKEND if set, else numba)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or evaluation lines")


def _add_pretrain(sub):
    from .train import PRESET_LR, PRESETS, PretrainConfig
    d = PretrainConfig()
    p = sub.add_parser("pretrain", help="pretrain a BERT with MLM + NSP on a corpus",
                       formatter_class=ShowDefaultsFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default=d.preset,
                   help="tiny: L=2 H=128 A=2 F=512; mini: L=4 H=256 A=4 F=1024 (T=128 for both)")
    p.add_argument("--corpus", default=d.corpus,
                   help="'default' (CPython's own documentation, no download), 'synthetic', or a text file "
                        "in google-research/bert's format (one sentence per line, blank line between documents)")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps in all")
    p.add_argument("--seed", type=int, default=d.seed,
                   help="seeds the initialisation, dropout, NSP pairing, masking and batch order (and the synthetic corpus)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="sequences per step")
    p.add_argument("--max-seq-length", type=int, default=d.max_seq_length,
                   help="tokens per sequence, [CLS] A [SEP] B [SEP] included")
    p.add_argument("--vocab-size", type=int, default=d.vocab_size,
                   help="WordPiece vocabulary trained on the corpus (OUT/vocab.txt is reused when present)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of AdamW (default: " + ", ".join(f"{k} {v:g}" for k, v in PRESET_LR.items())
                        + ")")
    p.add_argument("--dropout", type=float, default=d.dropout,
                   help="hidden and attention dropout while pretraining (BERT used 0.1; why 0 here: docs/pretraining.md)")
    p.add_argument("--short-seq-length", type=int, default=d.short_seq_length,
                   help="tokens per sequence during the sequence-length warmup")
    p.add_argument("--short-seq-fraction", type=float, default=d.short_seq_fraction,
                   help="the first this fraction of the steps trains on short sequences (0: off)")
    p.add_argument("--debug", action="store_true", help="name the first kernel that produces a NaN/Inf")
    add_run_options(p, d)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minibert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_pretrain(sub)
    sub.add_parser("demo", help="gradient-check a tiny BERT and compare it with transformers")
    p = sub.add_parser("fill-mask", help="the top-k tokens (with probabilities) for every [MASK] in a text",
                       formatter_class=ShowDefaultsFormatter)
    p.add_argument("--model", required=True, help="a `minibert pretrain` output or a transformers-format directory")
    p.add_argument("--top-k", type=int, default=5, help="how many candidates to print per [MASK]")
    p.add_argument("text", help='e.g. "the [MASK] statement raises an exception"')
    p = sub.add_parser("nsp", help="the probability that sentence B follows sentence A (next sentence prediction)")
    p.add_argument("--model", required=True, help="a `minibert pretrain` output or a transformers-format directory")
    p.add_argument("sentence_a")
    p.add_argument("sentence_b")
    from .exercises import add_subparser as _add_exercises
    _add_exercises(sub)
    from .finetune import add_subparser as _add_finetune
    _add_finetune(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "pretrain":
            from .train import PretrainConfig, pretrain
            cfg = PretrainConfig(
                preset=args.preset, corpus=args.corpus, out=args.out, max_steps=args.max_steps,
                minutes=args.minutes, seed=args.seed, batch_size=args.batch_size,
                max_seq_length=args.max_seq_length, vocab_size=args.vocab_size, lr=args.lr, dropout=args.dropout,
                warmup_steps=args.warmup_steps, short_seq_length=args.short_seq_length,
                short_seq_fraction=args.short_seq_fraction, eval_every=args.eval_every,
                checkpoint_every=args.checkpoint_every, resume=args.resume, backend=args.backend,
                debug=args.debug, verbose=not args.quiet)
            pretrain(cfg)
        elif args.command == "demo":
            from .demo import main as demo
            demo()
        elif args.command == "fill-mask":
            return _fill_mask(args)
        elif args.command == "nsp":
            from .inference import load_pretraining_model, next_sentence_probability
            model, tok = load_pretraining_model(args.model)
            p = next_sentence_probability(model, tok, args.sentence_a, args.sentence_b)
            print(f"P(B follows A) = {p:.4f}  ({'is next' if p >= 0.5 else 'not next'})")
        elif args.command == "finetune":
            from .finetune import run as finetune
            return finetune(args)
        elif args.command == "exercises":
            from .exercises import run as exercises
            return exercises(args)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError) as e:
        print(f"minibert {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


def _fill_mask(args):
    from .inference import fill_mask, load_pretraining_model
    if args.top_k <= 0:
        raise ValueError(f"--top-k must be a positive integer, got {args.top_k}")
    model, tok = load_pretraining_model(args.model)
    results = fill_mask(model, tok, args.text, top_k=args.top_k)
    if not results:
        raise ValueError(f"the text has no [MASK] token to fill: {args.text!r}")
    for position, candidates in results:
        print(f"[MASK] at position {position}:")
        for token, p in candidates:
            print(f"  {token:<20s} {p:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
