"""Whatever makes a temporary directory removes it: conftest's ``leaves_no_temporary_directory`` checks
this after every test.  Here the check itself is run on a test that leaks, and on the lessons' sources."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_check_fails_a_test_that_leaves_a_minibert_directory_behind(tmp_path):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_leak.py").write_text(
        "import tempfile\n\n"
        "def test_leaks():\n    tempfile.mkdtemp(prefix='minibert-leak-')\n\n"
        "def test_cleans_up():\n    with tempfile.TemporaryDirectory(prefix='minibert-clean-'):\n        pass\n\n"
        "def test_leaves_something_else():\n    tempfile.mkdtemp(prefix='not-ours-')\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_leak.py"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "3 passed, 1 error" in r.stdout, r.stdout[-3000:]  # the leak errors in test_leaks' teardown
    assert re.search(r"ERROR.*test_leaks", r.stdout) and "minibert-leak-" in r.stdout, r.stdout[-3000:]
    assert not re.search(r"(ERROR|FAILED).*test_cleans_up", r.stdout), r.stdout[-3000:]


def test_lessons_make_temporary_directories_that_remove_themselves():
    """A lesson's ``tempfile.mkdtemp()`` is never removed (the kernel just ends); a ``TemporaryDirectory``
    kept in a variable is removed when the kernel stops.  Running the lessons checks it for real
    (test_notebooks, under conftest's check); this reads every lesson, the ones too slow to run too."""
    for lesson in sorted((ROOT / "notebooks" / "src").glob("*.py")):
        code = lesson.read_text()
        assert "mkdtemp(" not in code, f"{lesson.name} makes a temporary directory it never removes (mkdtemp)"
        for line in re.findall(r"^.*TemporaryDirectory\(.*$", code, re.M):
            assert re.match(r"\s*(with |\w+ = )", line), f"{lesson.name}: keep the TemporaryDirectory: {line}"
