"""One server's shard of a row table: rows keyed by 64-bit ids.

A row table (:mod:`paracel.rows` is the worker's side) maps ids to rows of
``width`` numbers. Its shard on a server is three dense arrays, row ``r``
being the ``r``-th id that came into being there: ``ids`` (in an
:class:`paracel.server.idmap.IdMap`), ``values`` (``(rows, width)``) and
``counts`` (how many times each id was pushed). Memory follows the rows
that exist: an id never pushed costs nothing. Every operation is a few
numpy passes over the ids it touches, whatever the size of the table.

**Admission** (DiFacto's frequency filter). With ``admit = k > 1`` an id
becomes a row only with the push that brings its pushes to ``k`` (that push
is applied whole; earlier ones are counted, then dropped). Until then it
waits in a second map with its count only, and pulls read it as zeros.

The values array always has a spare row past the last one, all zeros: a
pull gathers row -1 (numpy's last row) for an id that is not there, so
absent ids cost no extra pass.

**Layout.** A narrow table (fewer than :data:`COLUMNAR_WIDTH` numbers a
row) is stored row by row: a row is gathered or scattered in one copy
(pulls and pushes of whole rows, row functions). A wide one is stored column
by column (Fortran order): there the work is on columns -- vectors kept side
by side, as L-BFGS keeps its history, read and written one or two at a
time, and whole-column table functions -- which then run at memory speed
instead of touching a cache line per row per column.

A worker that pushes exactly the ids it pulled last (pull, compute, push:
the usual step of SGD) does not pay for finding them twice: the shard keeps
the rows each worker's last pull found until that worker's next push, and
a push of the same ids reuses them (rows never move, so they are still
right; the ids that were not rows then are looked up again).
"""

import numpy as np

from paracel.errors import CheckpointError, UserError
from paracel.server import rowfns
from paracel.server.idmap import IdMap

#: The table key under which a shard is saved in a checkpoint (with the name).
SAVED_TAG = "@rows"

#: Tables at least this wide are stored column by column.
COLUMNAR_WIDTH = 8

_MIN_ROWS = 16


class RowShard:
    """The rows of one table that live on this server.

    Parameters
    ----------
    name : str
        The table's name (for messages).
    width : int
        Numbers per row.
    dtype : numpy.dtype
        Their type.
    admit : int
        Pushes an id needs before it becomes a row (0 or 1: the first).
    """

    def __init__(self, name, width, dtype, admit):
        self.name = name
        self.width = width
        self.dtype = np.dtype(dtype)
        self.admit = admit
        self.map = IdMap()
        self._order = "F" if width >= COLUMNAR_WIDTH else "C"
        self._values = np.zeros((_MIN_ROWS, width), dtype=self.dtype, order=self._order)
        self._counts = np.zeros(_MIN_ROWS, dtype=np.int64)
        self.waiting = _Waiting() if admit > 1 else None
        self._pulled = {}

    @property
    def spec(self):
        """``(width, dtype, admit)``: what a worker attaching must agree with."""
        return self.width, self.dtype.str, self.admit

    def __len__(self):
        return len(self.map)

    @property
    def values(self):
        """The rows that exist, ``(len(self), width)`` (a view)."""
        return self._values[:len(self)]

    @property
    def counts(self):
        """Pushes of each row's id (a view)."""
        return self._counts[:len(self)]

    def nbytes(self):
        """Bytes held: values, counts, the id map, the admission counts."""
        held = self._values.nbytes + self._counts.nbytes + self.map.nbytes
        return held + (self.waiting.nbytes() if self.waiting else 0)

    def stats(self):
        """Rows, ids waiting for admission, bytes held."""
        return {"rows": len(self), "waiting": len(self.waiting) if self.waiting else 0,
                "nbytes": self.nbytes()}

    # -- requests ------------------------------------------------------------

    def pull(self, ids, source=None, columns=None):
        """The rows of ``ids`` (uint64, any order, repeats allowed), zeros
        for ids that are not rows: ``(len(ids), width)``, or only the given
        ``columns`` (a sequence of column numbers) as ``(len(ids),
        len(columns))``. The rows found are kept for ``source``'s next push
        (see the module docstring)."""
        rows = self.map.find(ids)
        self._pulled[source] = (ids, rows)
        if columns is None:
            return self._gather(rows)
        out = np.empty((ids.size, len(columns)), dtype=self.dtype)
        for i, column in enumerate(columns):
            out[:, i] = self._values[:, column][rows]  # not np.take: it copies a strided column
        return out

    def push(self, ids, deltas, fn, params, source=None, columns=None):
        """Fold ``deltas[i]`` into the row of ``ids[i]`` with row function
        ``fn`` (``"add"``, ``"replace"`` or a registered name), creating
        rows (or counting ids towards admission) as needed. The built-in
        ``add`` and ``replace`` may touch only the given ``columns``."""
        if fn in rowfns.BUILTIN_ROW:
            wide = self.width if columns is None else len(columns)
            if deltas.shape != (ids.size, wide) or deltas.dtype != self.dtype:
                raise UserError(f"{fn} needs {self.dtype} deltas of shape ({ids.size}, "
                                f"{wide}), got {deltas.dtype} {deltas.shape}")
        rows = self._pushed_rows(ids, source)
        if self.waiting is not None:
            kept = np.flatnonzero(rows >= 0)
            rows, deltas = rows[kept], deltas[kept]
        if fn not in rowfns.BUILTIN_ROW:
            self._apply(rowfns.lookup("row", fn), rows, deltas, params)
            return
        np.add.at(self._counts, rows, 1)
        if columns is None and fn == "add":
            _add_at(self._values, rows, deltas)
        elif columns is None:
            self._scatter(rows, deltas)
        else:
            for i, column in enumerate(columns):
                if fn == "add":
                    np.add.at(self._values[:, column], rows, deltas[:, i])
                else:
                    self._values[rows, column] = deltas[:, i]

    def map_values(self, fn, params):
        """Run table function ``fn`` on every row; its result."""
        return rowfns.lookup("table", fn)(self.values, params)

    def items(self, columns=None):
        """``(ids, values)`` of every row, in no particular order (views), or
        only the given ``columns`` of the values (copies)."""
        if columns is None:
            return self.map.ids, np.ascontiguousarray(self.values)
        return self.map.ids, np.ascontiguousarray(self.values[:, list(columns)])

    # -- rows of a push -------------------------------------------------------

    def _pushed_rows(self, ids, source):
        """:meth:`_push_rows`, reusing the rows ``source`` last pulled if it
        pulled these very ids."""
        ids_pulled, rows = self._pulled.pop(source, (None, None))
        if ids_pulled is None or not np.array_equal(ids_pulled, ids):
            return self._push_rows(ids)
        fresh = np.flatnonzero(rows < 0)
        if fresh.size:
            rows[fresh] = self._push_rows(ids[fresh])
        return rows

    def _push_rows(self, ids):
        """The row of each pushed id; ids new to the table become rows, or
        (with admission) are counted and get -1 until admitted."""
        rows = self.map.find(ids)
        fresh = np.flatnonzero(rows < 0)
        if fresh.size:
            rows[fresh] = self._admit(ids[fresh])
        return rows

    def _admit(self, ids):
        """Rows for ids that are not rows yet: new ones, or -1 for those
        still waiting for admission."""
        if self.waiting is None:
            return self._create(ids, 0)
        before, after = self.waiting.count(ids)
        ready = np.flatnonzero(after >= self.admit)
        rows = np.full(ids.size, -1, dtype=np.int64)
        if ready.size:
            existing = len(self)
            rows[ready] = self._create(ids[ready], before[ready])
            self.waiting.admitted(len(self) - existing, self.admit)
        return rows

    def _create(self, ids, counts):
        """Make rows of ``ids`` (repeats allowed), their counts starting at
        ``counts`` (the pushes counted while they waited)."""
        rows = self.map.insert(ids)
        self._fit(len(self))
        self._counts[rows] = counts
        return rows

    def _fit(self, count):
        """Grow the arrays (doubling) so that ``count`` rows and the spare
        zero row fit."""
        if count < self._counts.size:
            return
        size = max(2 * self._counts.size, count + 1)
        values = np.zeros((size, self.width), dtype=self.dtype, order=self._order)
        values[:self._counts.size] = self._values
        counts = np.zeros(size, dtype=np.int64)
        counts[:self._counts.size] = self._counts
        self._values, self._counts = values, counts

    def _gather(self, rows):
        """A copy of ``rows`` (row -1: the spare zero row), ``(k, width)``."""
        if self._order == "C":
            return np.take(_flat(self._values), rows).view(self.dtype).reshape(
                rows.size, self.width)
        return np.ascontiguousarray(self._values[rows])  # fancy indexing: take copies columns

    def _scatter(self, rows, block):
        """Write ``block`` into ``rows``."""
        if self._order == "C":
            _flat(self._values)[rows] = _flat(np.ascontiguousarray(block))
        else:
            self._values[rows] = block

    def _apply(self, fn, rows, deltas, params):
        """Run a registered row function on the pushed rows, each row once
        (the deltas of repeated ids summed first), and write them back."""
        rows, deltas = _combine(self._counts, rows, deltas)
        if not rows.size:  # nothing admitted: the function has nothing to do
            return
        block = self._gather(rows)
        result = fn(block, deltas, params)
        if result is not None:
            block = _checked_rows(fn, result, block)
        self._scatter(rows, block)

    # -- checkpoints ----------------------------------------------------------

    def saved(self):
        """The shard as plain arrays, for a checkpoint: ``(admit, ids,
        values, counts, waiting ids, waiting counts)``."""
        waiting = self.waiting.live(self.admit) if self.waiting else _no_waiting()
        return (self.admit, self.map.ids, np.ascontiguousarray(self.values), self.counts,
                *waiting)


def restore(name, parts, keep=None):
    """A shard rebuilt from what :meth:`RowShard.saved` gave (one part per
    checkpoint file that held the table).

    Parameters
    ----------
    name : str
        The table's name.
    parts : list of tuple
        Saved shards of the same table.
    keep : callable, optional
        ``keep(ids)`` says which ids belong on this server (when the job was
        re-sharded); by default all do.
    """
    admit, _, values, *_ = parts[0]
    shard = RowShard(name, values.shape[1], values.dtype, admit)
    ids, values, counts, waiting_ids, waiting_counts = (
        np.concatenate(column) for column in zip(*(part[1:] for part in parts)))
    if keep is not None:
        mine, waiting_mine = keep(ids), keep(waiting_ids)
        ids, values, counts = ids[mine], values[mine], counts[mine]
        waiting_ids, waiting_counts = waiting_ids[waiting_mine], waiting_counts[waiting_mine]
    shard.map = IdMap(ids)
    shard._fit(ids.size)
    shard.values[...] = values
    shard.counts[...] = counts
    if shard.waiting is not None:
        shard.waiting = _Waiting(waiting_ids, waiting_counts)
    return shard


def check_saved(name, saved):
    """Refuse a saved shard whose parts do not fit together (a damaged or
    foreign checkpoint); returns it."""
    try:
        admit, ids, values, counts, waiting_ids, waiting_counts = saved
        fits = (isinstance(admit, int) and ids.dtype == np.uint64 and values.ndim == 2
                and values.shape[1] >= 1 and len(values) == ids.size == counts.size
                and waiting_ids.dtype == np.uint64 and waiting_ids.size == waiting_counts.size
                and values.dtype.kind in "iufc" and counts.dtype == np.int64
                and waiting_counts.dtype == np.int64)
    except (TypeError, ValueError, AttributeError):
        fits = False
    if not fits:
        raise CheckpointError(f"row table {name!r}: its saved arrays do not fit together")
    return saved


class _Waiting:
    """Ids counted towards admission: an id map and a count per id.

    An admitted id stays here (dead: its count reached the bar, and the
    table finds it first) until dead ids outnumber live ones; then the map
    is rebuilt from the live ones.
    """

    def __init__(self, ids=None, counts=None):
        self._reset(ids, counts)

    def _reset(self, ids, counts):
        self.map = IdMap(ids)
        self._counts = np.zeros(max(len(self.map), _MIN_ROWS), dtype=np.int64)
        if counts is not None:
            self._counts[:counts.size] = counts
        self.dead = 0

    def __len__(self):
        return len(self.map) - self.dead

    def nbytes(self):
        return self.map.nbytes + self._counts.nbytes

    def count(self, ids):
        """Count one push of each of ``ids``; their counts ``(before,
        after)`` this push, per id given."""
        slots = self.map.insert(ids)
        if len(self.map) > self._counts.size:
            grown = np.zeros(2 * len(self.map), dtype=np.int64)
            grown[:self._counts.size] = self._counts
            self._counts = grown
        before = self._counts[slots]
        np.add.at(self._counts, slots, 1)
        return before, self._counts[slots]

    def admitted(self, count, admit):
        """``count`` ids became rows: drop them once the dead dominate."""
        self.dead += count
        if self.dead > max(len(self), _MIN_ROWS):
            self._reset(*self.live(admit))

    def live(self, admit):
        """``(ids, counts)`` of the ids still waiting."""
        counts = self._counts[:len(self.map)]
        waiting = np.flatnonzero(counts < admit)
        return self.map.ids[waiting], counts[waiting]


def _no_waiting():
    return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)


def _flat(array):
    """``array``'s rows as one-item-per-row void scalars: numpy gathers and
    scatters them with one copy per row (2-d fancy indexing is ~8x slower)."""
    rows = array.shape[0]
    return np.ascontiguousarray(array).view(np.dtype((np.void, array.itemsize * array.shape[1]))
                                            ).reshape(rows)


def _combine(counts, rows, deltas):
    """Count one push of each row, and give each row once, with the sum of
    its deltas. ``counts`` is the scratch that finds repeats, with no sort:
    each occurrence writes its position into its row's count, and reads back
    the position of the last occurrence of its row (then the counts are put
    right)."""
    before = counts[rows]
    positions = np.arange(rows.size)
    counts[rows] = positions
    last = counts[rows]
    repeats = np.bincount(last, minlength=rows.size)
    counts[rows] = before + repeats[last]
    kept = np.flatnonzero(last == positions)
    if kept.size == rows.size:
        return rows, deltas
    order = np.empty(rows.size, dtype=np.int64)
    order[kept] = np.arange(kept.size)
    summed = np.zeros((kept.size,) + deltas.shape[1:], dtype=deltas.dtype)
    _add_at(summed, order[last], deltas)
    return rows[kept], summed


def _add_at(target, rows, deltas):
    """``np.add.at(target, rows, deltas)`` column by column: numpy's fast
    path covers 1-d targets only (a 2-d one is ~7x slower)."""
    if target.ndim == 1:
        np.add.at(target, rows, deltas)
        return
    for column in range(target.shape[1]):
        np.add.at(target[:, column], rows, deltas[:, column])


def _checked_rows(fn, result, block):
    """The rows a row function returned, if they can replace ``block``."""
    result = np.asarray(result)
    if result.shape != block.shape or not np.can_cast(result.dtype, block.dtype, "same_kind"):
        raise UserError(f"row function {fn.__name__!r} returned {result.dtype} rows of "
                        f"shape {result.shape}; the rows are {block.dtype} of shape "
                        f"{block.shape}")
    return result.astype(block.dtype, copy=False)
