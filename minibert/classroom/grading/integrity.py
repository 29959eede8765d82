"""What the instructor should look at: a solution that is the reference's, token for token, and code that
reaches into the grader's process.  These are *flags*: they change no point (``report.py`` lists them in
``integrity``, a column of the CSV, a line of nbgrader's feedback).

**Copies.**  Both texts are cut into Python tokens (``tokenize``), comments and layout dropped, and every
name that is not a keyword, a builtin, an attribute (``.T``, ``.sum``) or a function or module of the
exercise's file (``linear_backward``, ``np``) becomes ``V``,
so renaming the variables changes nothing.  A solution region of the reference counts as copied where a run
of at least ``MIN_RUN`` such tokens appears, in the same order, in the student's file; an exercise is
flagged when such runs cover ``MIN_COVERAGE`` of the exercise's solutions and at least ``MIN_TOKENS``
tokens.  So a
short line that any honest student writes the same way (``out = x @ w.T + b``: 9 tokens), or an exercise
too short to be told apart from an honest solution (all of ``linear``'s, 50 tokens), is never flagged;
an honest solution written differently (``einsum``, another order of operations) shares only short runs.

**Introspection.**  Names no layer needs and that reach into the process (``gc``, ``__closure__``,
``sys.modules``, ``ctypes``, ``inspect``, ``open``, ``exec``...) are flagged when the student's file uses
them and the reference file does not: the sandbox (``sandbox.py``) refuses what it can of them, and what it
cannot, a person should read.
"""
import builtins
import io
import keyword
import tokenize

from ..exercises import parse_regions, source_text

MIN_RUN = 12        # tokens: longer than any line every student writes alike
MIN_TOKENS = 60     # tokens of an exercise's solutions that must be covered by such runs
MIN_COVERAGE = 0.7  # and the share of its solutions they cover
KEEP = {"np", "numpy", "math", "self", "cache"} | set(dir(builtins)) | set(keyword.kwlist)
SUSPICIOUS = {"gc", "ctypes", "inspect", "importlib", "__import__", "builtins", "exec", "eval", "compile", "open",
              "__code__", "__closure__", "__globals__", "__wrapped__", "cell_contents", "f_back", "f_locals",
              "f_globals", "tb_frame", "_getframe", "modules", "__subclasses__", "__builtins__", "subprocess", "os",
              "weakref", "atexit", "signal", "threading", "settrace", "setprofile", "torch", "jax", "autograd",
              "kernels", "numerical_gradient", "pickle", "marshal", "types", "getsource", "linecache", "__del__"}


def normalized_tokens(text, keep=frozenset()):
    """The tokens of ``text`` with variable names made anonymous (see the module docstring; the names in
    ``keep``, the functions and modules of the exercise's file, stay); a text that does not tokenize gives
    what came before the error."""
    out, prev = [], None
    keep = KEEP | set(keep)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER) or (tok.type == tokenize.STRING and prev in (None, ":", ";")):
                prev = ";" if tok.type == tokenize.NEWLINE else prev
                continue
            s = tok.string
            if tok.type == tokenize.NAME and s not in keep and prev != ".":
                s = "V"
            out.append(s)
            prev = s
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def names_used(text):
    """Every NAME token of ``text`` (identifiers and attributes)."""
    names = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NAME:
                names.add(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return names


def _global_names(text):
    """The names an exercise's file defines or imports at its top level (``linear_backward``,
    ``split_heads``, ``np``): calls of them are the same call in any solution, not a variable."""
    import ast
    names = set()
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _solutions(name):
    """{function: the code of its solution regions} of the reference of exercise ``name``."""
    text = source_text(name)
    lines = text.splitlines()
    found = {}
    for r in parse_regions(text):
        if r.kind == "solution":
            body = "\n".join(l[len(r.indent):] if l.startswith(r.indent) else l.lstrip() for l in lines[r.begin + 1:r.end])
            found[r.function] = found.get(r.function, "") + body + "\n"
    return found


def coverage(reference_tokens, student_tokens, min_run=MIN_RUN):
    """How many of ``reference_tokens`` lie in a run of ``min_run`` or more that appears, in the same
    order, in ``student_tokens``."""
    if len(reference_tokens) < min_run:
        return 0
    grams = {tuple(student_tokens[i:i + min_run]) for i in range(len(student_tokens) - min_run + 1)}
    covered = [False] * len(reference_tokens)
    for i in range(len(reference_tokens) - min_run + 1):
        if tuple(reference_tokens[i:i + min_run]) in grams:
            covered[i:i + min_run] = [True] * min_run
    return sum(covered)


def integrity_findings(name, text):
    """The flags of a student's file ``text`` for exercise ``name``: a list of sentences (empty: nothing
    to look at)."""
    findings = []
    keep = _global_names(source_text(name))
    student = normalized_tokens(text, keep)
    per = {}
    for function, body in _solutions(name).items():
        ref = normalized_tokens(body, keep)
        per[function] = (coverage(ref, student), len(ref))
    got, total = sum(c for c, _ in per.values()), sum(n for _, n in per.values())
    if got >= MIN_TOKENS and got >= MIN_COVERAGE * total:
        which = ", ".join(f"{f} {c}/{n}" for f, (c, n) in per.items() if c)
        findings.append(f"copied? {got} of the {total} tokens of minibert's solution appear in this file in runs of "
                        f"{MIN_RUN}+ tokens, variable names aside ({which}): read it")
    reference_names = names_used(source_text(name))
    odd = sorted((names_used(text) - reference_names) & SUSPICIOUS)
    if odd:
        findings.append(f"uses {', '.join(odd)}: code that reaches into the grading process or the library's "
                        "files, which no solution needs; read it")
    return findings

