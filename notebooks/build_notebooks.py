"""Build the lesson notebooks from their readable sources: ``notebooks/src/NN_name.py`` -> ``notebooks/NN_name.ipynb``.

A source is plain Python in the "percent" format that Jupytext, VS Code and Spyder understand: a line
``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell whose lines are comments (``# `` is
stripped).  The notebooks are written *without outputs* and with deterministic cell ids, so that
building twice gives the same bytes; CI executes every notebook (``tests/test_notebooks.py``) and
checks that each committed notebook is exactly what its source builds, so neither can go stale.

    python notebooks/build_notebooks.py            # rebuild every notebook that has a source
    python notebooks/build_notebooks.py 03_attention
    python notebooks/build_notebooks.py --check    # exit 1 if a committed notebook differs from its source
"""
import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
CELL = "# %%"


def parse_cells(text):
    """[(kind, source)] of a percent-format file; kind is "markdown" or "code"."""
    cells, kind, lines = [], None, []

    def close():
        body = "\n".join(lines).strip("\n")
        if kind is not None and body.strip():
            cells.append((kind, body))

    for line in text.splitlines():
        if line.startswith(CELL):
            close()
            kind = "markdown" if "[markdown]" in line else "code"
            lines = []
        elif kind == "markdown":
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"a markdown cell holds a line that is not a comment: {line!r}")
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind == "code":
            lines.append(line)
        elif line.strip() and not line.startswith("#"):
            raise ValueError(f"code before the first '# %%' cell marker: {line!r}")
    close()
    return cells


def build(src_path):
    """The notebook (an ``nbformat.NotebookNode``) for one source file."""
    stem = Path(src_path).stem
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "minibert": {"source": f"notebooks/src/{stem}.py",
                     "generated_by": "notebooks/build_notebooks.py: edit the source, not this file"},
    }
    for i, (kind, body) in enumerate(parse_cells(Path(src_path).read_text(encoding="utf-8"))):
        cell = nbformat.v4.new_markdown_cell(body) if kind == "markdown" else nbformat.v4.new_code_cell(body)
        cell.id = f"{stem[:2]}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def dumps(nb):
    return nbformat.writes(nb) + "\n"


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
