"""One live progress line on a terminal.

When the launcher's standard error is a terminal it asks worker 0 (through
the environment variable :data:`LIVE`) for a progress record about twice a
second; each record is one line starting with :data:`MARK`. The launcher
draws the newest record over the previous one (:class:`LiveLine`), keeps
every other line (logs, errors) above it, and clears it at the end, when the
job's summary is printed. Without a terminal nothing changes: worker 0 logs
a plain progress line every few seconds.
"""

#: Set by the launcher when its standard error is a terminal.
LIVE = "PARACEL_LIVE"

#: How a progress record starts (never the start of a log line).
MARK = "paracel-live: "

#: Seconds between two progress records.
LIVE_SECONDS = 0.5

#: Width of the bar drawn when the number of clocks is known.
BAR = 20


def progress_text(clock, elapsed, total=None, metrics=None):
    """The progress line: clock (of ``total``, with a bar and an ETA),
    elapsed time, rate and the last reported metrics.

    Examples
    --------
    >>> progress_text(25, 5.0, 100, {"loss": 0.5})
    'clock 25/100 [#####...............]  25%  5.0 s  5.0 clocks/s  ETA 15 s  loss=0.5'
    """
    rate = clock / elapsed if elapsed > 0 else 0.0
    parts = [f"clock {clock}"]
    if total:
        done = min(clock / total, 1.0)
        filled = int(done * BAR)
        parts = [f"clock {clock}/{total} [{'#' * filled}{'.' * (BAR - filled)}] "
                 f"{done:4.0%}"]
    parts += [f"{elapsed:.1f} s", f"{rate:.1f} clocks/s"]
    if total and rate > 0 and clock < total:
        parts.append(f"ETA {(total - clock) / rate:.0f} s")
    parts += [f"{name}={_short(value)}" for name, value in (metrics or {}).items()]
    return "  ".join(parts)


def _short(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class LiveLine:
    """The launcher's side: turns the lines mpiexec forwards into what the
    terminal shows (pure: bytes in, bytes out)."""

    CLEAR = b"\r\x1b[K"

    def __init__(self):
        self.shown = None   # the record on screen, without its mark

    def feed(self, line):
        """What to write for one forwarded line (a record replaces the live
        line; another line goes above it)."""
        if line.startswith(MARK.encode()):
            self.shown = line[len(MARK):].rstrip(b"\r\n")
            return self.CLEAR + self.shown
        if self.shown is None:
            return line
        return self.CLEAR + line + self.shown

    def close(self):
        """What to write when the job has ended: the live line goes."""
        return self.CLEAR if self.shown is not None else b""
