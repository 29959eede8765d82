"""A dependency-free progress bar for long work: ``step/total [bar] key=value ... tok/s ETA``.

On a terminal it redraws one line; in a log (CI, a notebook's captured output) it prints a line
every ``log_every`` seconds instead, so logs stay readable.
"""
import sys
import time


def format_seconds(s):
    s = int(max(0, s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class Progress:
    def __init__(self, total, desc="", stream=None, log_every=10.0, width=24):
        self.total, self.desc, self.width = total, desc, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.log_every = log_every
        self.start = time.perf_counter()
        self.last_print = -1e9
        self.n = 0

    def __repr__(self):
        return f"Progress({self.desc!r}, {self.n}/{self.total})"

    def update(self, n, **stats):
        """Report that ``n`` of ``total`` units are done, with the given stats shown."""
        self.n = n
        now = time.perf_counter()
        if not self.tty and now - self.last_print < self.log_every and n < self.total:
            return
        self.last_print = now
        elapsed = now - self.start
        frac = min(1.0, n / max(1, self.total))
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items())
        line = f"{self.desc} {n}/{self.total} [{bar}] {text} {format_seconds(elapsed)}<{format_seconds(eta)}"
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
