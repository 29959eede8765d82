"""The ``minibert`` command (also ``python -m minibert``).

    minibert pretrain [--preset tiny|mini] [--corpus default|synthetic|FILE] [--max-steps N]
                      [--minutes M] [--seed S] [--out DIR] [--resume] [--backend numba|numpy]
    minibert demo     a one-minute tour: build a tiny BERT, gradient-check it, compare with transformers
"""
import argparse
import sys


def _add_pretrain(sub):
    from .train import PRESETS, PretrainConfig
    d = PretrainConfig()
    p = sub.add_parser("pretrain", help="pretrain a BERT with MLM + NSP on a corpus")
    p.add_argument("--preset", choices=sorted(PRESETS), default=d.preset,
                   help="tiny: L=2 H=128 A=2 F=512; mini: L=4 H=256 A=4 F=1024 (T=128 for both)")
    p.add_argument("--corpus", default=d.corpus,
                   help="'default' (CPython's own documentation, no download), 'synthetic', or a text file "
                        "in google-research/bert's format (one sentence per line, blank line between documents)")
    p.add_argument("--max-steps", type=int, default=d.max_steps)
    p.add_argument("--minutes", type=float, default=None, help="stop after this many minutes of training")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.out, help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--max-seq-length", type=int, default=d.max_seq_length)
    p.add_argument("--vocab-size", type=int, default=d.vocab_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--backend", choices=["numba", "numpy"], default=None)
    p.add_argument("--debug", action="store_true", help="name the first kernel that produces a NaN/Inf")
    p.add_argument("--quiet", action="store_true")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minibert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_pretrain(sub)
    sub.add_parser("demo", help="gradient-check a tiny BERT and compare it with transformers")
    args = parser.parse_args(argv)
    try:
        if args.command == "pretrain":
            from .train import PretrainConfig, pretrain
            cfg = PretrainConfig(
                preset=args.preset, corpus=args.corpus, out=args.out, max_steps=args.max_steps,
                minutes=args.minutes, seed=args.seed, batch_size=args.batch_size,
                max_seq_length=args.max_seq_length, vocab_size=args.vocab_size, lr=args.lr,
                warmup_steps=args.warmup_steps, eval_every=args.eval_every,
                checkpoint_every=args.checkpoint_every, resume=args.resume, backend=args.backend,
                debug=args.debug, verbose=not args.quiet)
            pretrain(cfg)
        elif args.command == "demo":
            from .demo import main as demo
            demo()
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as e:
        print(f"minibert {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
