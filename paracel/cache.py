"""The worker-side parameter cache (job key ``"cache": true``).

Under SSP a read at clock ``c`` only has to see every update of clocks
``<= c - s - 1``. A value read from the servers while every worker had
committed at least ``g`` clocks holds all updates of clocks ``<= g - 1``, so
the copy is good enough for any later read at a clock ``c <= g + s``: such
reads are served here without a message (the process cache of Bösen, Wei et
al., SoCC 2015). The worker's own updates are applied to its copies too, with
the same update function the servers run, so a worker always reads its own
writes. With ``s = 0`` a copy serves the rest of the clock it was read in;
asynchronous jobs (no bound) likewise reuse a copy only within its clock, so
that they still see others' progress every clock.

``g`` is the slowest clock the worker saw in the clock table at its last
commit (a lower bound of the true one, so the rule errs on the safe side).
A copy is dropped when the worker writes or removes its key, or when an
update function fails on it (the server reports that failure), and every
copy is dropped by ``sync()``, after which reads must see everything done
before it. Copies are kept until refreshed: the cache holds every value this
worker has read. Whole-matrix reads (``to_numpy``, hence model files) always
go to the servers.
"""

import copy

from paracel.server import updates


class ParamCache:
    """Copies of stored values with the clock they are good for.

    Parameters
    ----------
    clock : paracel.ssp.ClockTable
        Anything with ``clock`` (this worker's clock), ``slowest`` (the
        slowest clock seen) and ``staleness`` (the bound, or ``None``).
    """

    def __init__(self, clock):
        self.clock = clock
        self.entries = {}
        self.hits = 0
        self.misses = 0

    def get(self, key):
        """A private copy of ``key``'s cached value, or ``None`` if there is
        none fresh enough for a read now."""
        entry = self.entries.get(key)
        if entry is None or not self._fresh(entry):
            self.misses += 1
            return None
        self.hits += 1
        return _copy(entry[0])

    def peek(self, key):
        """The cached value itself (no copy: do not modify it), or ``None`` if
        there is none fresh enough; counts as a hit or a miss like :meth:`get`."""
        entry = self.entries.get(key)
        if entry is None or not self._fresh(entry):
            self.misses += 1
            return None
        self.hits += 1
        return entry[0]

    def put(self, key, value):
        """Keep a copy of ``value``, just read from the servers."""
        self.entries[key] = (_copy(value), self.clock.slowest, self.clock.clock)

    def apply(self, key, delta, fn_name):
        """Fold this worker's own update into its copy of ``key``, if any."""
        entry = self.entries.get(key)
        if entry is None:
            return
        try:
            new = updates.lookup(fn_name)(entry[0], delta)
        except Exception:  # the server reports it; the copy is no longer right
            new = None
        if new is None:
            del self.entries[key]
        else:
            self.entries[key] = (new, entry[1], entry[2])

    def clear(self):
        """Forget every copy: after a ``sync()`` each read must see every
        update made before it, which no copy taken earlier is known to hold."""
        self.entries.clear()

    def drop(self, keys):
        """Forget ``keys`` (written or removed by this worker)."""
        for key in keys:
            self.entries.pop(key, None)

    def _fresh(self, entry):
        _, slowest, clock = entry
        staleness = self.clock.staleness
        if staleness is None:
            return clock == self.clock.clock
        return slowest >= self.clock.clock - staleness


def _copy(value):
    """A copy the caller may change without touching the cache (scalars and
    tuples of scalars are immutable; arrays and sparse matrices are copied)."""
    return value.copy() if hasattr(value, "copy") else copy.deepcopy(value)
