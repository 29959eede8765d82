"""The classroom: ``exercises.py`` (solution markers, student copies), ``grader.py`` (grading by
gradient checks), ``attention_ninja.py`` (attention's backward one atomic step at a time),
``lessons.py`` (what the notebooks share), ``demo.py`` (``minibert demo``), ``trace.py`` (every kernel
call of a model, ``minibert.trace``), ``stepthrough.py`` (every operation, glue included, written out
over a model's parameters), ``trace_html.py`` (the page that steps through it, ``minibert trace --html``)
and ``toy.py`` (lesson 11's toy language and its C = 8 BERT)."""
