"""Exercise sources: BERT's layers as classroom exercises, *with* their solutions.

Each file mirrors a layer of ``minibert/layers`` (same functions, same caches, same numbers; the tests
prove it) and marks what the student writes with nbgrader's markers, each alone on its line::

    # TODO: what to write, then hints, one per line
    ### BEGIN SOLUTION
    ...the reference code...
    ### END SOLUTION

and checks the student does not see with ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``.
``minibert exercises make OUTDIR`` writes the student copies (each solution replaced by
``raise NotImplementedError("TODO: ...")``, the TODO and hints kept, hidden tests removed);
``minibert exercises check`` grades them.  See ``minibert/exercises.py`` and ``docs/instructors_guide.md``.

Suggested order: linear, softmax, layernorm, gelu, cross_entropy, embedding, attention_ninja, attention.
"""
