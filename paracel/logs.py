"""Rank-tagged logging: every line says which rank wrote it.

Lines look like ``12:03:04.512 [worker 3] clock 5 ...`` on standard error, so
the interleaved output of many ranks stays readable.
"""

import logging
import sys


def setup(tag, level="info"):
    """Send the project's log lines to stderr, tagged with ``tag``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s.%(msecs)03d [{tag}] %(message)s",
                                           datefmt="%H:%M:%S"))
    root = logging.getLogger("paracel")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
