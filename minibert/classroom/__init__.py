"""The classroom: ``exercises.py`` (solution markers, student copies), ``grader.py`` (grading by
gradient checks), ``attention_ninja.py`` (attention's backward one atomic step at a time),
``lessons.py`` (what the notebooks share), ``demo.py`` (``minibert demo``)."""
