"""The package as a user gets it: a wheel builds (``python -m build``) and installs into a fresh venv.

The wheel is built from a copy of the files setup.py reads (so the work tree gets no build/ or egg-info), with
``--no-isolation`` (the build backend is this venv's setuptools: no download).  The fresh venv gets the wheel
with ``--no-deps``, and sees this venv's site-packages for numpy, numba & co. through a .pth line (which
does not run this venv's own .pth files, so the editable minibert of a development install stays out).
Then, run from outside the repository: the installed minibert is the wheel's, its version is setup.py's, the
console script runs, the licence is in the metadata, and the docs the package reads at run time are inside.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["setup.py", "README.md", "LICENSE", "minibert", "docs"]  # what setup.py reads


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_a_wheel_builds_and_installs_into_a_fresh_venv(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SHIPPED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(ROOT / name, src / name)
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path / "dist", src])
    wheel, = (tmp_path / "dist").glob("minibert-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "dependencies-of-the-test-venv.pth").write_text("".join(f"{p}\n" for p in deps))
    run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel])

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    probe = """
import importlib.metadata as md, json, minibert
from minibert.classroom.course import DOCS_DIR
from minibert.classroom.exercises import EXERCISES
dist = md.distribution("minibert")
print(json.dumps({"file": minibert.__file__, "version": minibert.__version__, "metadata_version": dist.version,
                  "license": dist.metadata["License-Expression"], "dist_files": [str(f) for f in dist.files],
                  "docs_dir": str(DOCS_DIR), "docs": {n: (DOCS_DIR / e.docs).is_file() for n, e in EXERCISES.items()}}))
"""
    got = json.loads(run([python, "-c", probe], cwd=tmp_path, env=env))
    setup_version = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text())[1]
    assert got["file"].startswith(str(site / "minibert")), got["file"]  # the wheel's, not the work tree's
    assert got["version"] == got["metadata_version"] == setup_version, got
    assert got["license"] == "MIT"
    assert any(f.endswith("licenses/LICENSE") for f in got["dist_files"]), "LICENSE is not in the wheel"
    assert got["docs_dir"] == str(site / "minibert" / "docs"), got["docs_dir"]
    assert all(got["docs"].values()), f"derivation pages missing from the wheel: {got['docs']}"
    assert "pretrain" in run([venv / "bin" / "minibert", "--help"], cwd=tmp_path, env=env)
