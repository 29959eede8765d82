"""docs/instructors_guide.md says what the tests do: every `minibert ...` and `nbgrader ...` command in
its bash blocks is run by tests/classroom/test_course.py or tests/classroom/test_exercises.py, its table of points is the
course generator's, and its schedule puts no lab before its lesson.

A command "is run by a test" when one call in those files (``cli_main([...])``, ``subprocess.run([...])``,
``nbgrader(course, ...)``) holds, as string constants, its subcommand words and every option it uses
(``--class``, ``--CourseDirectory.assignment_id=*``); the guide's paths and names (``submissions``,
``linear``) are the instructor's own and may differ.  Commands in prose (``nbgrader release_assignment``,
``nbgrader collect``: nbgrader's exchange needs a JupyterHub) are not in bash blocks, and the guide says
the test does not run them.
"""
import ast
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "instructors_guide.md"
TESTS = [ROOT / "tests" / "classroom" / name for name in ("test_course.py", "test_exercises.py", "test_student_copies.py")]


def guide_commands():
    """[(line, tokens)] of every `minibert`/`nbgrader` command in the guide's bash blocks."""
    text = GUIDE.read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command.startswith(("minibert ", "nbgrader ")):
                found.append((command, shlex.split(command)))
    return found


def required_tokens(tokens):
    """What a test must pass for the command: ``exercises SUB`` for minibert, ``SUB`` for nbgrader, and
    every option (without its value unless written ``--opt=value``)."""
    words = tokens[1:3] if tokens[0] == "minibert" and tokens[1] == "exercises" else tokens[1:2]
    return set(words) | {t for t in tokens if t.startswith("--")}


def calls_in_tests():
    """The string constants of every call in the course and exercise tests (lists flattened)."""
    calls = []
    for path in TESTS:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                consts = set()
                for arg in node.args:
                    for sub in ast.walk(arg):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            consts.add(sub.value)
                calls.append(consts)
    return calls


CALLS = calls_in_tests()
COMMANDS = guide_commands()


def test_the_guide_has_the_commands_of_both_paths():
    joined = "\n".join(c for c, _ in COMMANDS)
    for must in ("minibert exercises course", "nbgrader generate_assignment", "nbgrader autograde",
                 "nbgrader generate_feedback", "nbgrader export", "minibert exercises make",
                 "minibert exercises check --class"):
        assert must in joined, must


@pytest.mark.parametrize("command, tokens", COMMANDS, ids=[c for c, _ in COMMANDS])
def test_every_command_of_the_guide_is_run_by_the_tests(command, tokens):
    need = required_tokens(tokens)
    assert any(need <= call for call in CALLS), \
        f"no call in tests/classroom/test_course.py or tests/classroom/test_exercises.py runs {command!r} (needs {sorted(need)})"


def test_the_points_table_is_the_course_generators():
    from minibert.classroom import exercises as X
    from minibert.classroom import grader as G
    text = GUIDE.read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| `(\w+)` \|.*\| (\w+) \| (\d+) \|$", text, re.M)
    assert [name for _, name, _, _ in rows] == list(X.EXERCISES), "the table lists every assignment, in order"
    for _, name, _, pts in rows:
        assert int(pts) == sum(G.points(name).values()), name


def test_no_lab_comes_before_its_lesson_and_every_lesson_exists():
    text = GUIDE.read_text(encoding="utf-8")
    lessons = sorted(p.stem.split("_")[0] for p in (ROOT / "notebooks" / "src").glob("*.py"))
    section = text[text.index("## The lessons"):text.index("## The assignments")]
    listed = re.findall(r"^\| (\d\d[a-z]?) \| ", section, re.M)
    assert sorted(listed) == lessons, "the guide's lesson table is notebooks/src/, no more, no less"
    after = {name: lesson for _, name, lesson, _ in
             re.findall(r"^\| (\d+) \| `(\w+)` \|.*\| (\w+) \| (\d+) \|$", text, re.M)}
    schedule = re.findall(r"^\| (\d+) \| ([^|]+) \| ([^|]+) \| [^|]+ \|$", text, re.M)
    taught, seen_lab = set(), set()
    for _, day_lessons, labs in schedule:
        taught |= set(re.findall(r"\d\d[a-z]?", day_lessons))
        for name in re.findall(r"`(\w+)`", labs):
            assert after[name] in taught, f"the lab {name} comes before lesson {after[name]}"
            seen_lab.add(name)
    assert seen_lab == set(after), set(after) - seen_lab


# ---- the derivations, the students' set-up, the primer, the timings --------------------------------------

def test_the_derivation_points_and_rubrics_are_the_course_generators():
    from minibert.classroom.derivations import PROBLEMS
    text = GUIDE.read_text(encoding="utf-8")
    rows = re.findall(r"^\| \d+ \| `(\w+)` \| [^|]+ \| (\d+) \| \w+ \| \d+ \|$", text, re.M)
    assert [n for n, _ in rows] == list(PROBLEMS)
    for name, pts in rows:
        assert int(pts) == PROBLEMS[name].points == sum(p for p, _ in PROBLEMS[name].rubric), name
    rubrics = text[text.index("## Rubrics for the written derivations"):]
    for name, problem in PROBLEMS.items():
        assert f"**`{name}`** ({problem.points} points)" in rubrics, name
        for pts, what in problem.rubric:
            assert f"- {pts}: {what}" in rubrics, (name, what)
    assert PROBLEMS["attention"].points > PROBLEMS["linear"].points  # points follow difficulty


def test_every_session_has_its_goals_key_points_demo_and_misconceptions():
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("## Running the sessions"):text.index("## Rubrics for the written derivations")]
    days = re.split(r"\n\*\*Day \d+ ", section)[1:]
    assert len(days) == 10
    for day in days:
        for part in ("*Goals:*", "*Key points:*", "*Live demo:*", "*Misconceptions:*"):
            assert part in day, (day[:40], part)


def test_the_guide_links_the_primer_the_grading_page_and_states_the_light_install():
    text = GUIDE.read_text(encoding="utf-8")
    assert "(math_primer.md)" in text and (ROOT / "docs" / "math_primer.md").is_file()
    assert "(grading.md)" in text  # the integrity page (what is prevented, flagged, not)
    assert 'pip install "minibert[lessons]"' in text and "SIZE_PLACEHOLDER" not in text
    assert re.search(r"`minibert\[lessons\]` measured [\d.]+ (MB|GB)", text)


def test_the_lessons_extra_holds_no_book_or_test_tool():
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    extras = next(ast.literal_eval(k.value) for node in ast.walk(tree) if isinstance(node, ast.Call)
                  for k in node.keywords if k.arg == "extras_require")
    heavy = ("torch", "transformers", "nbgrader", "playwright", "mkdocs", "pytest", "hypothesis", "minibert[")
    assert extras["lessons"] and not [r for r in extras["lessons"] if r.startswith(heavy)]


def test_the_clis_hint_after_course_is_a_command_of_the_guide(tmp_path, capsys):
    from minibert.cli import main
    assert main(["exercises", "course", str(tmp_path / "c"), "linear"]) == 0
    printed = capsys.readouterr().out
    hint = re.search(r"&& (nbgrader [^(]+?)\s+\(", printed).group(1)
    assert hint in [c for c, _ in COMMANDS], hint
