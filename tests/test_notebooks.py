"""The lessons in ``notebooks/`` cannot go stale.

* every ``notebooks/*.ipynb`` (whoever wrote it: the glob picks up new lessons by itself) runs top to
  bottom in a clean kernel, with nbclient, without an error and in under 2 minutes;
* the committed notebooks carry no outputs (CI re-executes them; see notebooks/README.md);
* a notebook built from a source in ``notebooks/src/`` is byte for byte what the source builds.

The notebooks run in parallel, each in its own process and kernel (``MINIBERT_NOTEBOOK_JOBS``
processes, default: the number of CPUs, at least 2), longest lessons first; under pytest-xdist each
worker runs its own. The kernels get ``OPENBLAS_NUM_THREADS=1`` unless it is set: on a busy 2-core
machine OpenBLAS's spinning threads make small matrix products tens of times slower.

Executing is ``notebooks/run_notebooks.py``'s job, shared with the book (``book/build.py``): a notebook
that ran without an error is stored in ``.cache/executed/`` under a key of its bytes, every source of
``minibert/`` and the library versions, and a later run with the same key (the book build, or this test
again) reuses it instead of executing twice; ``MINIBERT_NOTEBOOK_CACHE=0`` executes regardless. A fresh
clone (CI) has no cache, so there every lesson really runs.
"""
import importlib.util
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("*.ipynb"))
LESSONS = ["00_map", "01_tokenization", "02_embeddings", "03_attention", "04_layernorm_gelu_ffn",
           "05_encoder_layer", "06_mlm_nsp_heads", "07_pretraining"]
BUDGET = 120  # seconds per notebook, top to bottom


def _shared_runner():
    spec = importlib.util.spec_from_file_location("run_notebooks", NB_DIR / "run_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = _shared_runner()  # notebooks/run_notebooks.py: executes, and keeps the executed copy for the book


def execute(path):
    """Run one notebook in a fresh process and kernel (or reuse the executed copy that a run of the same
    notebook with the same minibert sources and libraries stored); returns {"seconds", "error", "cached"}."""
    return RUNNER.run(path, budget=BUDGET)


class _Runs:
    """Executes the notebooks this session selected, in parallel, the first time one is asked for."""

    def __init__(self, selected):
        self.selected = selected
        self.results = {}
        self.lock = threading.Lock()

    def __getitem__(self, path):
        with self.lock:
            if path not in self.results:
                todo = [path] if os.environ.get("PYTEST_XDIST_WORKER") else \
                    [p for p in self.selected if p not in self.results] or [path]
                todo.sort(key=lambda p: p.name, reverse=True)  # later lessons are longer: start them first
                jobs = int(os.environ.get("MINIBERT_NOTEBOOK_JOBS", max(2, os.cpu_count() or 1)))
                with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
                    for p, r in zip(todo, pool.map(execute, todo)):
                        self.results[p] = r
            return self.results[path]


@pytest.fixture(scope="module")
def runs(request):
    selected = [item.callspec.params["notebook"] for item in request.session.items
                if item.module is request.module and getattr(item, "originalname", "") == _RUN_TEST]
    return _Runs(list(dict.fromkeys(selected)))


_RUN_TEST = "test_notebook_runs_top_to_bottom_in_a_clean_kernel_in_under_2_minutes"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom_in_a_clean_kernel_in_under_2_minutes(runs, notebook):
    r = runs[notebook]
    assert r["error"] is None, f"{notebook.name} failed after {r['seconds']:.0f} s:\n{r['error'][-6000:]}"
    assert r["seconds"] < BUDGET, f"{notebook.name} took {r['seconds']:.0f} s, over the {BUDGET} s budget"
    print(f"{notebook.name}: {r['seconds']:.1f} s" + (" (the stored run of these exact sources)" if r["cached"] else ""))


def test_the_lessons_are_all_there():
    assert {p.stem for p in NOTEBOOKS} >= set(LESSONS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebooks_have_no_outputs(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{notebook.name}: cells {dirty} hold outputs; commit notebooks without outputs "
                       "(CI executes them): rebuild it with python notebooks/build_notebooks.py, or clear its outputs")


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NB_DIR / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("source", sorted((NB_DIR / "src").glob("*.py")), ids=lambda p: p.stem)
def test_notebooks_are_exactly_what_their_sources_build(source):
    build = _builder()
    target = NB_DIR / f"{source.stem}.ipynb"
    assert target.exists(), f"{target.name} is missing: run python notebooks/build_notebooks.py {source.stem}"
    assert target.read_text(encoding="utf-8") == build.dumps(build.build(source)), \
        f"{target.name} differs from notebooks/src/{source.name}: run python notebooks/build_notebooks.py {source.stem}"


def test_the_builder_reads_cells_with_jupytext_reproducibly_and_refuses_code_in_markdown(tmp_path):
    build = _builder()
    src = tmp_path / "42_demo.py"
    src.write_text("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\ny = 2\n", encoding="utf-8")
    nb = build.build(src)
    assert [(c.cell_type, c.source) for c in nb.cells] == [("markdown", "# Title\n\ntext"), ("code", "x = 1"),
                                                           ("code", "y = 2")]
    assert [c.id for c in nb.cells] == ["42-00", "42-01", "42-02"]        # not jupytext's random ids
    assert all(c.metadata == {} for c in nb.cells)                     # no lines_to_next_cell
    assert "jupytext" not in nb.metadata
    assert all(c.outputs == [] and c.execution_count is None for c in nb.cells if c.cell_type == "code")
    assert build.dumps(build.build(src)) == build.dumps(nb)            # building twice: the same bytes
    with pytest.raises(ValueError, match="line 3.*must all be comments"):
        build.read_source("# %% [markdown]\n# text\nx = 1\n")       # jupytext would make x = 1 Markdown
