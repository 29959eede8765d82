"""The ``minibert`` command (also ``python -m minibert``).  It sits on top: nothing in minibert imports it.

    minibert pretrain [--preset tiny|mini] [--corpus default|synthetic|FILE] [--max-steps N]
                      [--minutes M] [--seed S] [--out DIR] [--resume] [--grad-accum N] [--backend numba|numpy] ...
    minibert finetune [--task TASK] [--model PRETRAIN_OUT|HF_DIR] [--random-init | --compare] [--freeze-encoder]
                      fine-tune on a built-in task: classification, code tagging, span QA, sentence pairs
    minibert fill-mask --model OUT [--top-k K] "the [MASK] statement raises an exception"
    minibert nsp --model OUT "sentence A" "sentence B"      the probability that B follows A
    minibert trace [--model OUT] [--answer WORD] "a sentence with a [MASK] ."
                      every operation of one forward and backward pass: names, shapes, statistics
    minibert demo     a one-minute tour: build a tiny BERT, gradient-check it, compare with transformers
    minibert exercises list | make OUTDIR | course DIR | check [NAME ...] [--dir D | --class D]
                      classroom exercises: write the student copies, grade them by gradient checks
    minibert lessons DIR [LESSON ...] [--force]
                      the lessons as a student gets them: every your-turn and question emptied

The options of ``pretrain`` and ``finetune`` are made from the fields of ``PretrainConfig`` and
``FinetuneConfig`` (``minibert.config.option``): a default or a help text is written once, there.
"""
import argparse
import dataclasses
import sys


class ShowDefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: ...)" to an option's help, except for flags and options that default to None."""

    def _get_help_string(self, action):
        if action.default is None or action.nargs == 0:  # None, or a flag (store_true / store_false)
            return action.help
        return super()._get_help_string(action)


def add_config_options(parser, config_class, skip=()):
    """One ``--field-name`` option per field of the dataclass ``config_class`` (see ``config.option``)."""
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        if field.name in skip or meta.get("cli") is False or "help" not in meta:
            continue
        flag = meta.get("flag", "--" + field.name.replace("_", "-"))
        default = field.default  # the declared default (an instance may resolve it, e.g. lr from the preset)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field.name, action="store_false" if meta.get("invert") else "store_true",
                                help=meta["help"])
            continue
        help_text = meta["help"]
        if "shown_default" in meta:
            help_text += f" (default: {meta['shown_default']})"
        parser.add_argument(flag, dest=field.name, default=default, help=help_text,
                            type=meta.get("type", str if default is None else type(default)),
                            choices=meta.get("choices"))


def config_from_args(config_class, args):
    """The config whose fields are the parsed options of the same names."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in vars(args).items() if k in names})


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minibert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    from .training.finetune import FinetuneConfig
    from .training.pretrain import PretrainConfig
    p = sub.add_parser("pretrain", help="pretrain a BERT with MLM + NSP on a corpus",
                       formatter_class=ShowDefaultsFormatter)
    add_config_options(p, PretrainConfig)
    p = sub.add_parser("finetune", formatter_class=ShowDefaultsFormatter,
                       help="fine-tune a pretrained (or random) BERT on a built-in task",
                       description="Fine-tune a BERT with the head --task needs, on a task built from the bundled "
                                   "corpus and held out by module: stdlib-packages (which standard-library package "
                                   "a docstring sentence comes from), stdlib-code-tags (token tagging), "
                                   "stdlib-quoted-qa (span QA), stdlib-same-doc (sentence pairs). --model takes a "
                                   "`minibert pretrain` output or a transformers BERT directory (docs/applications.md). "
                                   "Writes log.jsonl, checkpoint.safetensors, metrics.json (with the task's trivial "
                                   "baselines), curves.png and model/ into --out.")
    add_config_options(p, FinetuneConfig)
    p.add_argument("--compare", action="store_true",
                   help="run both starts (OUT/pretrained, OUT/random) and plot OUT/comparison.png")
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
    p = sub.add_parser("trace", formatter_class=ShowDefaultsFormatter,
                       help="run one text through a model and print every operation, forward then backward",
                       description="Run one text with [MASK] in it through BERT (MLM + NSP loss) and print "
                                   "every operation in order, forward then backward: its name, input and output "
                                   "shapes, mean/std/min/max, the first values, and in the backward the "
                                   "gradient's norm and each parameter's gradient (minibert.trace).")
    p.add_argument("--model", default=None, help="a `minibert pretrain` output or a transformers-format directory "
                   "with an MLM head (default: a freshly initialised BERT-Tiny with a 2000-piece WordPiece "
                   "vocabulary trained on the bundled corpus: it works before any training)")
    p.add_argument("--answer", action="append", default=None, metavar="WORD",
                   help="the true word at a [MASK], the MLM label (once per [MASK], in order; default: the "
                        "model's own top guess)")
    p.add_argument("--pair", default=None, metavar="TEXT", help="a second sentence (segment B; NSP label 0, is next)")
    p.add_argument("--depth", type=int, default=None, help="show operations only to this depth (0: the calls "
                   "the model makes; 1, 2: the operations inside attention and the FFN; default: all)")
    p.add_argument("--values", type=int, default=3, help="how many values of each output to print")
    p.add_argument("--seed", type=int, default=0, help="the initialisation seed of the model without --model")
    p.add_argument("--toy", action="store_true", help="trace lesson 11's toy BERT (C=8, 2 heads, 12 words; "
                   "trained now, a few seconds), e.g. \"the cat often [MASK] .\"")
    p.add_argument("--html", default=None, metavar="OUT", help="write one self-contained page that steps through "
                   "every operation (glue included, forward then backward; arrow keys), with each tensor as a "
                   "heatmap, instead of printing the table")
    p.add_argument("text", help='e.g. "the [MASK] statement raises an exception ."')
    _add_exercises(sub)
    p = sub.add_parser("lessons", help="write the student copies of the lessons (no answer in them)",
                       description="Write every lesson notebook as a student gets it into DIR: each 'your turn' "
                                   "and question emptied as nbgrader does (# YOUR CODE HERE / YOUR ANSWER HERE), "
                                   "hidden tests left out, and the library's exercise code shown as its TODO. "
                                   "Refuses a copy that would still hold a line of any answer. The instructor "
                                   "copies are notebooks/ in the repository (./run lessons --instructor).")
    p.add_argument("outdir", metavar="DIR", help="where to write the student copies (e.g. my_lessons)")
    p.add_argument("names", nargs="*", metavar="LESSON", help="only these lessons, e.g. 03_attention (default: all)")
    p.add_argument("--force", action="store_true", help="overwrite notebooks already in DIR (a student's work!)")
    p.add_argument("--from", dest="notebooks", default=None, metavar="NOTEBOOKS",
                   help="the instructor's notebooks to copy (default: notebooks/ of the repository minibert runs from)")
    args = parser.parse_args(argv)
    try:
        if args.command == "pretrain":
            from .training.pretrain import pretrain
            pretrain(config_from_args(PretrainConfig, args))
        elif args.command == "finetune":
            return _finetune(args)
        elif args.command == "demo":
            from .classroom.demo import main as demo
            demo()
        elif args.command == "fill-mask":
            return _fill_mask(args)
        elif args.command == "nsp":
            from .training.inference import load_pretraining_model, next_sentence_probability
            model, tok = load_pretraining_model(args.model)
            p = next_sentence_probability(model, tok, args.sentence_a, args.sentence_b)
            print(f"P(B follows A) = {p:.4f}  ({'is next' if p >= 0.5 else 'not next'})")
        elif args.command == "exercises":
            return _exercises(args)
        elif args.command == "trace":
            return _trace(args)
        elif args.command == "lessons":
            from .classroom.lessons import write_lessons
            written = write_lessons(args.outdir, names=args.names or None, force=args.force,
                                    notebooks_dir=args.notebooks)
            print(f"wrote {len(written)} student lesson(s) into {args.outdir} (answers left out)")
            print(f"next: jupyter lab {args.outdir}")
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
            FloatingPointError) as e:
        print(f"minibert {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


def _add_exercises(sub):
    from .classroom import exercises
    doc = exercises.__doc__.split("\n\n")
    p = sub.add_parser("exercises", help="classroom exercises: list, make the student copies, check them",
                       description=doc[0] + "\n\n" + doc[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ex = p.add_subparsers(dest="exercises_command", required=True)
    ex.add_parser("list", help="the exercises, in the suggested order")
    m = ex.add_parser("make", help="write the student copies (solutions replaced by raise NotImplementedError)")
    m.add_argument("outdir")
    m.add_argument("names", nargs="*", metavar="NAME", help="only these exercises (default: all)")
    m.add_argument("--force", action="store_true", help="overwrite exercise files already in OUTDIR")
    c = ex.add_parser("check", help="grade the student copies with gradient checks against the reference")
    c.add_argument("names", nargs="*", metavar="NAME", help="only these exercises (default: all)")
    c.add_argument("--dir", default=None, help="the student's directory (default: the current directory if "
                   "`make` wrote it, else the reference solutions)")
    c.add_argument("--brief", action="store_true", help="only the pass/fail summary")
    c.add_argument("--class", dest="class_dir", default=None, metavar="DIR",
                   help="grade a whole class: DIR holds one folder per student; writes one CSV row per student")
    c.add_argument("--json", default=None, metavar="FILE", help="write the grade (points per array) as JSON")
    c.add_argument("--csv", default=None, metavar="FILE", help="write the grade as CSV (with --class: one row "
                   "per student)")
    c.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per exercise (default 120)")
    c.add_argument("--jobs", type=int, default=None, help="with --class: gradings run side by side (default: one "
                   "per core)")
    co = ex.add_parser("course", help="write an nbgrader course directory: DIR/nbgrader_config.py and "
                       "DIR/source/<assignment>/<assignment>.ipynb")
    co.add_argument("outdir")
    co.add_argument("names", nargs="*", metavar="NAME", help="only these assignments (default: all)")
    co.add_argument("--force", action="store_true", help="overwrite a course directory that is already there")


def _exercises(args):
    """``minibert exercises list | make | check``; returns the exit code."""
    from pathlib import Path

    from .classroom.exercises import EXERCISES, MARKER_FILE, make
    from .classroom.grader import check, check_class, write_results
    cmd = args.exercises_command
    if cmd == "list":
        for i, (name, e) in enumerate(EXERCISES.items(), 1):
            print(f"{i}. {name:16s} {e.title}  (docs/{e.docs})")
        return 0
    if cmd == "make":
        written = make(args.outdir, force=args.force, names=args.names or None)
        print(f"wrote {len(written)} exercise(s) into {args.outdir}: {', '.join(p.name for p in written)}")
        print(f"next: cd {args.outdir} && python {written[0].name} && minibert exercises check --dir .")
        return 0
    if cmd == "course":
        from .classroom.course import write_course
        written = write_course(args.outdir, names=args.names or None, force=args.force)
        print(f"wrote the nbgrader course {args.outdir}: {len(written)} assignment(s), "
              f"{', '.join(p.parent.name for p in written)}")
        print(f"next: cd {args.outdir} && nbgrader generate_assignment --force --CourseDirectory.assignment_id=*  (docs/instructors_guide.md)")
        return 0
    if args.timeout <= 0:
        raise ValueError(f"--timeout must be positive, got {args.timeout}")
    if args.class_dir is not None:
        if not Path(args.class_dir).is_dir():
            raise FileNotFoundError(f"exercises check: --class {args.class_dir!r} is not a directory")
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
        records = check_class(args.class_dir, args.names or None, csv_path=args.csv, timeout=args.timeout,
                              jobs=args.jobs)
        write_results(records, json_path=args.json)
        return 0 if all(r["passed"] for r in records) else 1
    directory = args.dir
    if directory is None and Path(MARKER_FILE).is_file():
        directory = "."
    if directory is not None and not Path(directory).is_dir():
        raise FileNotFoundError(f"exercises check: --dir {directory!r} is not a directory")
    if directory is None:
        print("grading the reference solutions, minibert's own code (pass --dir DIR to grade a student's "
              "copies)\n")
    records = check(args.names or None, directory, verbose=not args.brief, timeout=args.timeout)
    write_results(records, json_path=args.json, csv_path=args.csv)
    return 0 if all(r["passed"] for r in records) else 1


def _finetune(args):
    from .training.finetune import FinetuneConfig, compare_starts, finetune
    cfg = config_from_args(FinetuneConfig, args)
    if args.compare:
        if cfg.random_init:
            raise ValueError("--compare runs both starts itself; drop --random-init")
        compare_starts(cfg)
    else:
        finetune(cfg)
    return 0


def _fill_mask(args):
    from .training.inference import fill_mask, load_pretraining_model
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



def _trace(args):
    from .classroom.trace import sentence_batch, trace, untrained_tiny
    if args.depth is not None and args.depth < 0:
        raise ValueError(f"--depth must be 0 or more, got {args.depth}")
    if args.values < 0:
        raise ValueError(f"--values must be 0 or more, got {args.values}")
    if args.toy and args.model is not None:
        raise ValueError("pass --toy or --model, not both")
    if args.toy:
        from .classroom.toy import train_toy_bert
        model, tok, _ = train_toy_bert(seed=args.seed)
        where = f"lesson 11's toy BERT (seed {args.seed}), trained just now on the toy language"
    elif args.model is None:
        model, tok = untrained_tiny(seed=args.seed)
        where = f"a freshly initialised BERT-Tiny (seed {args.seed}) and a {len(tok.vocab)}-piece vocabulary " \
                "trained on the bundled corpus"
    else:
        from .training.inference import load_pretraining_model
        model, tok = load_pretraining_model(args.model)
        missing = [k for k in getattr(model, "missing_keys", []) if k.startswith("cls.predictions")]
        if missing:
            raise ValueError(f"--model {args.model!r} has no MLM head (missing {missing[:3]}...): trace needs a "
                             "pretraining model, e.g. a `minibert pretrain` output")
        where = args.model
    model.eval()
    batch = sentence_batch(tok, args.text, answers=args.answer, text_pair=args.pair, model=model)
    tokens = batch.pop("tokens")
    if args.html is not None:
        return _trace_html(args, model, tok, batch, tokens, where)
    steps = trace(model, tokens=tokens, **batch)
    labels = batch["labels"][0]
    answers = ", ".join(f"{tok.convert_ids_to_tokens(int(labels[t]))!r} at {t}" for t in (labels >= 0).nonzero()[0])
    out = steps.output
    print(f"model: {model!r}\n       {where}")
    print(f"tokens ({len(tokens)}): {' '.join(tokens)}")
    print(f"MLM label{'s' if (labels >= 0).sum() > 1 else ''}: {answers}"
          + ("" if args.answer else " (the model's own top guess; --answer WORD sets it)") + "; NSP label 0 (is next)")
    print(f"loss = MLM {float(out.mlm_loss):.4f} + NSP {float(out.nsp_loss):.4f} = {float(out.loss):.4f}; "
          f"{len(steps.forward)} forward and {len(steps.backward)} backward operations\n")
    print(steps.table(depth=args.depth, values=args.values))
    return 0


def _trace_html(args, model, tok, batch, tokens, where):
    """``minibert trace --html OUT``: the step-through of the batch, as one page."""
    from pathlib import Path

    from .classroom.stepthrough import step_through
    from .classroom.trace_html import write_html
    if Path(args.html).is_dir():
        raise ValueError(f"--html {args.html!r} is a folder: give the file to write, e.g. {args.html}/trace.html")
    walk = step_through(model, **batch, tokens=[tokens], sentence=args.text,
                        words=tok.convert_ids_to_tokens(list(range(model.config.vocab_size))))
    write_html(walk, args.html)
    print(f"model: {model!r}\n       {where}")
    print(f"tokens ({len(tokens)}): {' '.join(tokens)}")
    print(f"loss = {walk.loss:.4f}; wrote {args.html}: {len(walk.forward)} forward and {len(walk.backward)} backward "
          "steps (open it in a browser; the arrow keys step through)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
