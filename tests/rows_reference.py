"""A plain reference of a row table, for the tests: one dict entry per id.

It replays pushes one id occurrence at a time, exactly as the row table
promises to behave: ``add`` accumulates, ``replace`` keeps the last, a row
function sees each pushed row once with the sum of its deltas, and with
``admit = k`` an id becomes a row with the push that brings its count to k
(that push applied whole, the earlier ones dropped).
"""

import numpy as np


class ReferenceTable:
    """What a row table of ``width`` and ``admit`` should hold."""

    def __init__(self, width, admit=0, dtype=np.float64):
        self.width = width
        self.admit = max(admit, 1)
        self.dtype = np.dtype(dtype)
        self.rows = {}
        self.counts = {}

    def push(self, ids, deltas, fn="add", row_function=None, params=()):
        """Apply one push (``row_function(rows, deltas, params)`` for a
        registered function named ``fn``)."""
        ids = [int(i) for i in np.asarray(ids).astype(np.int64).view(np.uint64)]
        deltas = np.asarray(deltas)
        for i in ids:
            self.counts[i] = self.counts.get(i, 0) + 1
        applied = [position for position, i in enumerate(ids)
                   if i in self.rows or self.counts[i] >= self.admit]
        for position in applied:
            self.rows.setdefault(ids[position], np.zeros(self.width, dtype=self.dtype))
        if fn == "add":
            for position in applied:
                self.rows[ids[position]] += deltas[position].reshape(self.width)
        elif fn == "replace":
            for position in applied:
                self.rows[ids[position]][:] = deltas[position].reshape(self.width)
        else:
            self._row_function(ids, deltas, applied, row_function, params)

    def _row_function(self, ids, deltas, applied, row_function, params):
        summed = {}
        for position in applied:
            key = ids[position]
            summed[key] = summed.get(key, 0) + deltas[position]
        keys = list(summed)
        if not keys:
            return
        rows = np.array([self.rows[key] for key in keys])
        result = row_function(rows, np.array([summed[key] for key in keys]), params)
        rows = rows if result is None else result
        for key, row in zip(keys, rows):
            self.rows[key] = row.astype(self.dtype)

    def pull(self, ids):
        """The rows of ``ids`` (zeros where none)."""
        ids = np.asarray(ids).astype(np.int64).view(np.uint64)
        zero = np.zeros(self.width, dtype=self.dtype)
        out = np.array([self.rows.get(int(i), zero) for i in ids], dtype=self.dtype)
        return out.reshape(len(ids), self.width)

    def items(self):
        """``(ids, values)`` sorted by id."""
        ids = np.array(sorted(self.rows), dtype=np.uint64)
        values = np.array([self.rows[int(i)] for i in ids], dtype=self.dtype)
        return ids, values.reshape(len(ids), self.width)

    def waiting(self):
        """How many ids were pushed but are not rows yet."""
        return sum(1 for i in self.counts if i not in self.rows)


def sorted_items(ids, values):
    """``(ids, values)`` in the order of their ids."""
    order = np.argsort(ids, kind="stable")
    return ids[order], values[order]
