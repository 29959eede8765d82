"""Build the lesson notebooks from their readable sources: ``notebooks/src/NN_name.py`` -> ``notebooks/NN_name.ipynb``.

A source is plain Python in Jupytext's "percent" format (VS Code and Spyder read it too): a line
``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines are comments (``# ``).
Jupytext reads the source into cells; this script only makes the notebook reproducible: no outputs,
fixed cell ids (``03-07``: lesson, cell), fixed notebook metadata, and none of Jupytext's layout
metadata (``lines_to_next_cell``: a blank line more in a source would otherwise change the notebook).
So building twice gives the same bytes; CI executes every notebook (``tests/test_notebooks.py``) and
checks that each committed notebook is exactly what its source builds, so neither can go stale.

    python notebooks/build_notebooks.py            # rebuild every notebook that has a source
    python notebooks/build_notebooks.py 03_attention
    python notebooks/build_notebooks.py --check    # exit 1 if a committed notebook differs from its source

Why a script and not the bare ``jupytext --to ipynb`` command: jupytext gives new cells random ids
and writes its own metadata, so two builds differ; it has no "is the committed notebook up to date"
mode that ignores cell ids; and the test imports ``build``/``dumps`` to compare without writing.
"""
import argparse
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
FORMAT = "py:percent"
JUPYTEXT_LAYOUT = ("cell_marker", "lines_to_next_cell", "lines_to_end_of_cell_marker")  # how the source looks


def read_source(text, name="source"):
    """The notebook jupytext reads from a percent-format text; refuses a text jupytext would not write back
    as it is (a Markdown cell holding a line that is not a comment is the usual cause: Jupytext would
    silently make that code part of the Markdown)."""
    nb = jupytext.reads(text, fmt=FORMAT)
    back = jupytext.writes(nb, fmt=FORMAT)
    if back != text:
        lines, back_lines = text.splitlines(), back.splitlines()
        n = next((i for i, (a, b) in enumerate(zip(lines, back_lines)) if a != b), min(len(lines), len(back_lines)))
        got = lines[n] if n < len(lines) else "<end of file>"
        want = back_lines[n] if n < len(back_lines) else "<end of file>"
        raise ValueError(f"{name}, line {n + 1}: {got!r} is not in jupytext's percent format (jupytext writes "
                         f"{want!r}); a Markdown cell's lines must all be comments ('# ')")
    return nb


def build(src_path):
    """The notebook (an ``nbformat.NotebookNode``) for one source file."""
    src_path = Path(src_path)
    stem = src_path.stem
    nb = read_source(src_path.read_text(encoding="utf-8"), name=f"notebooks/src/{src_path.name}")
    nb.metadata = {  # replaces jupytext's own ("jupytext": {"main_language", ...})
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "minibert": {"source": f"notebooks/src/{stem}.py",
                     "generated_by": "notebooks/build_notebooks.py: edit the source, not this file"},
    }
    for i, cell in enumerate(nb.cells):
        cell.id = f"{stem[:2]}-{i:02d}"  # jupytext draws random ids
        for key in JUPYTEXT_LAYOUT:
            cell.metadata.pop(key, None)
    nbformat.validate(nb)
    return nb


def dumps(nb):
    """The bytes ``jupytext.write(nb, "NN_name.ipynb")`` writes (it ends the file with a newline)."""
    return jupytext.writes(nb, fmt="ipynb") + "\n"


def sources(names=()):
    paths = sorted(SRC.glob("*.py"))
    if names:
        paths = [p for p in paths if p.stem in names]
        missing = set(names) - {p.stem for p in paths}
        if missing:
            raise SystemExit(f"no source for {sorted(missing)} in {SRC}")
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="stems to build (default: all)")
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args(argv)
    stale = []
    for src in sources(args.names):
        target = HERE / f"{src.stem}.ipynb"
        text = dumps(build(src))
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                stale.append(target.name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(HERE.parent)}")
    if stale:
        print(f"out of date (run python notebooks/build_notebooks.py): {', '.join(stale)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
