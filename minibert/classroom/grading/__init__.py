"""The grader of the classroom exercises (``minibert exercises check``; the nbgrader course's hidden tests
go through it too).  One idea per module, imported one way, downwards:

    report.py      points per item, the records of --json/--csv, a class side by side (--class)
    grade.py       one exercise: the student's process records, this process replays and judges
    workers.py     starting the student's processes (a zygote that forks one per grading)
    sandbox.py     inside the student's process: limits, guards on the graded references, audit hook
    integrity.py   what the instructor should read: copies of the reference, introspection
    protocol.py    the two processes' record: Recorder (student's side) and Replayer (grader's side)
    checks.py      each exercise's grading flow: the layer's table, then its extra checks
    judge.py       Result, Grader: calling the student's functions, comparing each array
    diagnose.py    a wrong array's likely mistake, in words
    origin.py      the foreign-code rule: a graded function is written in the student's file

``minibert.classroom.grader`` gathers the public names.  How it works, and what it does not prevent:
``docs/grading.md``.
"""
