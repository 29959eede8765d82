"""What the notebooks in ``notebooks/`` share: showing the library's own source, so that what a
student reads is what runs.  (Imports IPython, which jupyter brings; the library never imports this.)"""
import inspect


def show(obj, first=None, last=None):
    """The source of ``obj`` as a highlighted code cell output; with ``first`` and ``last``, only the
    lines from the first one containing ``first`` to the next one containing ``last``."""
    from IPython.display import Code
    lines = inspect.getsource(obj).splitlines()
    if first is not None:
        i = next(n for n, line in enumerate(lines) if first in line)
        j = next(n for n, line in enumerate(lines) if n >= i and last in line)
        lines = lines[i:j + 1]
    return Code("\n".join(lines), language="python")
