"""Points and reports: one point per graded item, the records of ``minibert exercises check`` (``--json``,
``--csv``), and a whole class graded side by side (``--class``).

An item is an array of a layer (``dk``: every case's ``dk`` together) or a step of the backprop ninja; it
earns its point when every comparison the reference makes for it was made on the student's code and was
right.  An array whose true value is exactly 0 (attention's ``dbk``) earns its point only when another
array its function returned is right: zeros alone earn nothing.
"""
import csv
import functools
import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ..exercises import EXERCISES, exercise_names, parse_regions, source_path
from .grade import TIME_LIMIT, grade
from .judge import Result


def item_of(name, label, case):
    """The graded item a compared array belongs to: the array's name (``dk``: every case's ``dk``
    together) for a layer, the step (``step11_scores``) for the backprop ninja."""
    return case.split(":")[0].split()[0] if name == "attention_ninja" else label


@functools.lru_cache(maxsize=None)
def items(name):
    """{item: the (label, case) pairs the reference answers are compared on}, in order: what a student
    must get right for that item's point.  Computed by grading the library's own code."""
    result = grade(name)
    if not result.passed:  # the references must pass, or every point would be meaningless
        raise RuntimeError(f"the reference solutions of {name!r} fail their own checks: {result.summary()}")
    text = source_path(name).read_text(encoding="utf-8")
    written = {r.function for r in parse_regions(text) if r.kind == "solution"}
    table = {}
    for label, case, _, function in result.checks:
        if function.endswith("_forward") and function not in written:
            continue  # the output of a forward the exercise gives (attention's): not the student's work
        table.setdefault(item_of(name, label, case), []).append((label, case))
    return {k: tuple(v) for k, v in table.items()}


def points(name):
    """{item: points}: one point per item (per array, per ninja step), so a wrong ``dk`` costs ``dk``'s
    point and nothing else."""
    return {item: 1 for item in items(name)}


def _judged(result):
    """{(label, case): ok} of every comparison, an exact-zero array counted right only when at least one
    other array its function returned in that case is right (zeros everywhere earn nothing), or, if it
    returned nothing else, when the same array is also checked where it is not 0 (its item needs those
    right too)."""
    got, zero = {}, result.zero_checks
    for label, case, ok, function in result.checks:
        if ok and (label, case) in zero:
            others = [c for c in result.checks if c[1] == case and c[3] == function and (c[0], c[1]) not in zero]
            elsewhere = [c for c in result.checks if c[0] == label and (c[0], c[1]) not in zero]
            ok = any(c[2] for c in others) if others else bool(elsewhere)
            if not ok:
                result.notes.setdefault(label, f"its true value is exactly 0, so it counts only when some other array "
                                               f"of {function or 'its function'} is right (zeros alone earn nothing)")
        got[(label, case)] = ok and got.get((label, case), True)
    return got


def item_scores(result):
    """[(item, earned, possible, message)] for a ``Result``: an item earns its points when every
    comparison the reference makes for it was made on the student's code and was right."""
    got = _judged(result)
    reasons = [f"not implemented yet: {', '.join(dict.fromkeys(result.todo))}"] if result.todo else []
    why_not = "; ".join(reasons + result.errors[:3])
    rows = []
    for item, pairs in items(result.name).items():
        possible = points(result.name)[item]
        missing = [p for p in pairs if p not in got]
        bad = [p for p in pairs if got.get(p) is False]
        if not missing and not bad:
            rows.append((item, possible, possible, f"{item}: right in all {len(pairs)} check(s)"))
            continue
        if bad:
            cases = "; ".join(dict.fromkeys(c for _, c in bad))
            labels = list(dict.fromkeys(l for l, _ in bad))
            likely = "; ".join(f"{l}: {result.notes[l]}" for l in labels if l in result.notes)
            msg = f"{item}: WRONG ({', '.join(labels)} off in: {cases})" + (f". Likely: {likely}" if likely else "")
        else:
            msg = f"{item}: not checked ({why_not or 'the function producing it did not run'})"
        rows.append((item, 0, possible, msg))
    return rows


def result_record(result, student=""):
    """A JSON-able record of one exercise's grade."""
    scores = item_scores(result)
    return {"student": student, "exercise": result.name, "passed": result.passed,
            "points": sum(s[1] for s in scores), "max_points": sum(s[2] for s in scores),
            "items": [{"item": i, "points": e, "max_points": p, "message": m} for i, e, p, m in scores],
            "summary": result.summary(), "wrong": result.wrong_names, "lines": result.lines,
            "errors": result.errors, "todo": result.todo, "integrity": list(result.integrity)}


def grade_in_subprocess(name, directory, timeout=TIME_LIMIT, numerical_cache=None):
    """``grade(name, directory)`` as the record of ``result_record``."""
    return result_record(grade(name, directory, timeout=timeout, numerical_cache=numerical_cache))


def check(names=None, directory=None, out=print, verbose=True, timeout=TIME_LIMIT, student="", numerical_cache=None):
    """Grade ``names`` (default: all) and print the report; returns one record per exercise
    (``result_record``).  A student's directory is graded one exercise at a time (``grade``: the student's
    code runs in its own process killed after ``timeout`` seconds, the comparisons here); the reference
    (``directory`` None) in this process."""
    names = exercise_names(names)
    records = []
    for name in names:
        where = source_path(name) if directory is None else Path(directory) / f"{name}.py"
        rec = (result_record(grade(name)) if directory is None else
               grade_in_subprocess(name, directory, timeout, numerical_cache))
        rec["student"] = student
        if verbose:
            out(f"== {name}: {EXERCISES[name].title} ({where})")
            for line in rec["lines"]:
                out(line)
            for it in rec["items"]:
                out(f"  [{it['points']}/{it['max_points']}] {it['message']}")
            for flag in rec["integrity"]:
                out(f"  INTEGRITY (for the instructor; no points change): {flag}")
            out(f"{rec['summary']}  ({rec['points']}/{rec['max_points']} points)")
            out("")
        records.append(rec)
    passed = sum(r["passed"] for r in records)
    total, possible = sum(r["points"] for r in records), sum(r["max_points"] for r in records)
    out(f"{passed}/{len(records)} exercise(s) pass, {total}/{possible} points" +
        ("" if passed == len(records) else ":"))
    for r in records:
        if not r["passed"] or not verbose:
            out(f"  {r['summary']}  ({r['points']}/{r['max_points']})")
    return records


def write_results(records, json_path=None, csv_path=None):
    """The records of ``check`` as JSON (everything) and/or CSV (one row per student, exercise and item;
    ``integrity``: the exercise's flags, on each of its rows)."""
    if json_path:
        Path(json_path).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    if csv_path:
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["student", "exercise", "item", "points", "max_points", "message", "integrity"])
            for r in records:
                flags = " | ".join(r.get("integrity", []))
                for it in r["items"]:
                    w.writerow([r["student"], r["exercise"], it["item"], it["points"], it["max_points"],
                                it["message"], flags])
                if not r["items"]:
                    w.writerow([r["student"], r["exercise"], "", 0, 0, r["summary"], flags])


# ---- a class: every student's every exercise, one grading per core --------------------------------------

_worker_cache = {}


def _grade_task(task):
    """One grading in a worker process (its own zygote, and finite differences shared across students)."""
    student_dir, student, name, timeout = task
    rec = grade_in_subprocess(name, student_dir, timeout, _worker_cache)
    rec["student"] = student
    return rec


def check_class(class_dir, names=None, csv_path=None, out=print, timeout=TIME_LIMIT, jobs=None):
    """Grade every student of ``class_dir`` (one sub-folder per student, named after them) on ``names``,
    ``jobs`` gradings at a time (default: one per core); returns all records, and writes one CSV row per
    student: exercise totals, the total, and the integrity flags."""
    class_dir = Path(class_dir)
    students = sorted(p for p in class_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise FileNotFoundError(f"exercises check --class: {class_dir} has no student folders (one folder per "
                                "student, each holding that student's NAME.py files)")
    names = exercise_names(names)
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    tasks = [(str(s), s.name, n, timeout) for s in students for n in names]
    if jobs == 1:
        records = [_grade_task(t) for t in tasks]
    else:
        import multiprocessing
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            records = list(pool.map(_grade_task, tasks, chunksize=1))
    by_student = {}
    for r in records:
        by_student.setdefault(r["student"], []).append(r)
    for s in students:
        recs = by_student[s.name]
        got, possible = sum(r["points"] for r in recs), sum(r["max_points"] for r in recs)
        flagged = [r["exercise"] for r in recs if r["integrity"]]
        out(f"{s.name:20s} {got}/{possible} points" + "".join(f"  {r['exercise']} {r['points']}/{r['max_points']}"
                                                         for r in recs)
            + (f"  INTEGRITY: {', '.join(flagged)}" if flagged else ""))
    if csv_path:
        with open(csv_path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["student"] + names + ["total", "max_points", "integrity"])
            for s in students:
                recs = {r["exercise"]: r for r in by_student[s.name]}
                flags = " | ".join(f"{n}: {flag}" for n in names for flag in recs[n]["integrity"])
                w.writerow([s.name] + [recs[n]["points"] for n in names] +
                           [sum(recs[n]["points"] for n in names), sum(recs[n]["max_points"] for n in names), flags])
    return records


def failed_record(name, message):
    result = Result(name)
    result.errors.append(message)
    result.say("  " + message)
    return result_record(result)
