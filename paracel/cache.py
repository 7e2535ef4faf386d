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

:class:`ParamCache` holds the copies; :class:`CachingClient` is the layer
that puts them between an algorithm and its :class:`paracel.client.Client`:
the same verbs, served from the copies when they can be and sent on
otherwise, so the client itself knows nothing of caching.
"""

import copy

from paracel.server import updates

_NO_DEFAULT = object()
_ABSENT = object()  # stands in for a caller's default, which must not be cached


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


class CachingClient:
    """A :class:`paracel.client.Client` whose reads are served from a
    :class:`ParamCache` while fresh enough, and whose writes keep it right.

    Reads, writes, updates and removals go through the cache; every other
    attribute (``flush``, ``post``, ``ring``, ``comm_seconds``, ...) is the
    client's own.

    Parameters
    ----------
    client : paracel.client.Client
        What reads the cache cannot serve, and every write, go to.
    cache : ParamCache
        The copies.
    """

    def __init__(self, client, cache):
        self.client = client
        self.cache = cache

    def __getattr__(self, name):
        """Anything not about the copies is the client's (only called for
        names this layer lacks)."""
        return getattr(self.client, name)

    # -- reading -----------------------------------------------------------

    def read(self, key, default=_NO_DEFAULT, out=None):
        """Like :meth:`paracel.client.Client.read`, from a fresh copy if any."""
        value = self.cache.get(key)
        if value is None:
            value = self._fetch([key], default)[0]
        if out is not None and value is not out:
            out[...] = value
            return out
        return value

    def read_multi(self, keys, default=_NO_DEFAULT, fresh=False):
        """Fresh copies from the cache; the rest read (one message per
        server) and cached. ``fresh`` skips the cache (and fills nothing)."""
        keys = list(keys)
        if fresh:
            return self.client.read_multi(keys, *_given(default), fresh=True)
        values = [self.cache.get(key) for key in keys]
        missing = [i for i, value in enumerate(values) if value is None]
        if missing:
            found = self._fetch([keys[i] for i in missing], default)
            for i, value in zip(missing, found):
                values[i] = value
        return values

    def read_rows(self, keys, rows, servers=None):
        """Rows sliced from fresh cached blocks; missing blocks read whole
        (then cached), so later pulls of other rows cost nothing."""
        keys = list(keys)
        blocks = [self.cache.peek(key) for key in keys]
        missing = [i for i, block in enumerate(blocks) if block is None]
        if missing:
            wanted = [keys[i] for i in missing]
            hint = None if servers is None else [servers[i] for i in missing]
            for i, block in zip(missing, self.client.read_multi(wanted, servers=hint)):
                self.cache.put(keys[i], block)
                blocks[i] = block
        return [block[row] for block, row in zip(blocks, rows)]

    def _fetch(self, keys, default):
        """Read ``keys`` from the servers and cache what is there; a missing
        key gives ``default`` (never cached) or raises ``KeyError``."""
        marker = () if default is _NO_DEFAULT else (_ABSENT,)
        values = self.client.read_multi(keys, *marker)
        for i, (key, value) in enumerate(zip(keys, values)):
            if value is _ABSENT:
                values[i] = default
            else:
                self.cache.put(key, value)
        return values

    # -- writing -----------------------------------------------------------

    def write(self, key, value):
        """Like :meth:`paracel.client.Client.write`; drops the copy."""
        self.write_multi({key: value})

    def write_multi(self, mapping):
        """Drop the copies of the keys written, then write them."""
        self.cache.drop(mapping)
        self.client.write_multi(mapping)

    def update(self, key, delta, fn="add"):
        """Like :meth:`paracel.client.Client.update`; the copy is updated too."""
        return self.update_multi({key: delta}, fn)

    def update_multi(self, mapping, fn="add", servers=None):
        """Send the updates, then fold each into this worker's copy (if any)
        with the same function, so the worker reads its own writes."""
        name = updates.name_of(fn)
        handle = self.client.update_multi(mapping, name, servers)
        for key, delta in mapping.items():
            self.cache.apply(key, delta, name)
        return handle

    def remove(self, key):
        """Drop the copy, then the key; returns whether it was stored."""
        self.cache.drop([key])
        return self.client.remove(key)


def _given(default):
    """``default`` as positional arguments: none when the caller gave none."""
    return () if default is _NO_DEFAULT else (default,)
