"""The grader of the classroom exercises: ``minibert exercises check`` (the exercises themselves, their
markers and the student copies are ``exercises.py``).

The grader is the package ``minibert.classroom.grading``, one idea per module (its ``__init__`` draws the
order of imports); this module gathers its public names, so ``from minibert.classroom.grader import
check`` keeps working.  How a student's code is run, what it cannot reach, and what is flagged for the
instructor: ``docs/grading.md``.

**What it checks.**  The cases are the exercise's own table, ``gradcheck_cases(rng)`` at the bottom of
``minibert/layers/NAME.py`` (hidden cases included), plus each exercise's extra checks
(``grading/checks.py``); every forward output is compared with the library's, every gradient with the
library's backward *and* with centered finite differences of the library's forward.  An exercise passes
when every array is within ``rel_error < 1e-7`` of both (an array that is exactly 0 for every input, such as
attention's key bias, within ``1e-10`` of 0, and only when another array of its function is right).
"""
from .grading.checks import EXTRA_CHECKS, NINJA_STEPS, NINJA_ZEROS, run_checks  # noqa: F401
from .grading.diagnose import diagnose  # noqa: F401
from .grading.grade import TIME_LIMIT, grade, grade_module, load_module  # noqa: F401
from .grading.integrity import integrity_findings  # noqa: F401
from .grading.judge import FORWARD_TOL, Grader, Result  # noqa: F401
from .grading.origin import foreign_function, foreign_reason, function_info  # noqa: F401
from .grading.report import (check, check_class, failed_record, grade_in_subprocess, item_of,  # noqa: F401
                             item_scores, items, points, result_record, write_results)
from .grading.sandbox import MEMORY_LIMIT, graded_functions  # noqa: F401
from ..gradcheck import rel_error  # noqa: F401  (the grader's measure of error, as tests use it)
from .exercises import EXERCISES  # noqa: F401
