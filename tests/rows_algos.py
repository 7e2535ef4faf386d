"""Test algorithms for row tables, run by tests/test_mpi_rows.py (imported on
every rank: the row and table functions here are registered everywhere).

Each checks on the workers with plain ``assert`` against
:class:`rows_reference.ReferenceTable` and writes what the test checks too.
"""

import json
import os

import numpy as np

import paracel
from paracel.errors import UserError
from rows_reference import ReferenceTable, sorted_items

#: Ids that matter: 0, small, around 2**32, past 2**63, near 2**64.
EDGES = np.array([0, 1, 7, 2**32 - 1, 2**32, 2**32 + 1, 2**40 + 3, 2**63 - 1, 2**63,
                  2**64 - 2, 2**64 - 1], dtype=np.uint64)


@paracel.row_function("clip_add")
def clip_add(rows, deltas, params):
    """Add, then clip every number to [-params[0], params[0]]."""
    rows += deltas.reshape(rows.shape)
    np.clip(rows, -params[0], params[0], out=rows)


@paracel.row_function("broken_rows")
def broken_rows(rows, deltas, params):
    """A row function that always fails."""
    raise ValueError("broken_rows was asked to fail")


@paracel.table_function("count_positive")
def count_positive(values, params):
    """Rows whose column params[0] is > 0 (a user table function)."""
    return int(np.count_nonzero(values[:, params[0]] > 0))


def _dump(algorithm, name, data):
    with open(os.path.join(algorithm.output, f"{name}_{algorithm.worker_id}.json"), "w",
              encoding="utf-8") as handle:
        json.dump(data, handle)


def draw(seed, round_, width, count):
    """The ids (int64 and uint64 alike, repeats included) and deltas of one push."""
    rng = np.random.default_rng([seed, round_])
    pool = np.concatenate([EDGES, rng.integers(0, 2**64 - 1, 20, dtype=np.uint64),
                           np.arange(30, dtype=np.uint64)])
    ids = pool[rng.integers(0, pool.size, count)]
    if round_ % 2:
        ids = ids.view(np.int64)  # the same bits as int64: the same rows
    deltas = rng.integers(-4, 5, (count, width)).astype(np.float64)
    return ids, deltas


class AgainstReference(paracel.Algorithm):
    """Pushes taken in turns (round r: worker r % W, between barriers, so
    the order is known), checked after each round by every worker against
    the reference; then size, items and table functions."""

    parameters = {"width": paracel.Param(int, 2, "row width"),
                  "admit": paracel.Param(int, 0, "pushes before a row exists"),
                  "rounds": paracel.Param(int, 12, "pushes"),
                  "count": paracel.Param(int, 400, "ids per push")}

    FNS = ("add", "add", "replace", "clip_add")

    def solve(self):
        table = self.rows("t", width=self.width, admit=self.admit)
        reference = ReferenceTable(self.width, self.admit)
        for round_ in range(self.rounds):
            ids, deltas = draw(self.seed, round_, self.width, self.count)
            fn = self.FNS[round_ % len(self.FNS)]
            if round_ % self.num_workers == self.worker_id:
                table.push(ids, deltas, fn, (6.0,)).wait()
            reference.push(ids, deltas, fn, clip_add, (6.0,))
            self.sync()
            query = np.concatenate([ids.view(np.uint64), EDGES, np.array([12345], np.uint64)])
            np.testing.assert_array_equal(table.pull(query), reference.pull(query))
            self.sync()  # every check done before the next push
        assert table.size() == len(reference.rows)
        ids, values = sorted_items(*table.items())
        want_ids, want_values = reference.items()
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_array_equal(values, want_values)
        self._check_table_functions(table, want_values)
        _dump(self, "rows", {"size": table.size(), "waiting": reference.waiting()})
        return {"size": table.size()}

    def _check_table_functions(self, table, values):
        last = self.width - 1
        assert table.map("dot", (0, last)) == float(values[:, 0] @ values[:, last])
        assert table.map("sum_sq", (0,)) == float(values[:, 0] @ values[:, 0])
        assert table.map("count_positive", (0,)) == int((values[:, 0] > 0).sum())
        self.sync()
        if self.worker_id == 0:
            table.map("axpy", (0.5, 0, last))
            table.map("scale", (0, 2.0))
            table.map("copy", (0, last))
            table.map("fill", (0, 3.0))
        values[:, last] += 0.5 * values[:, 0]
        values[:, 0] *= 2.0
        values[:, last] = values[:, 0]
        values[:, 0] = 3.0
        self.sync()
        np.testing.assert_array_equal(sorted_items(*table.items())[1], values)


class Totals(paracel.Algorithm):
    """Every worker pushes 1 to the same ids, each push holding some ids
    twice, ``repeats`` times without waiting: nothing may be lost."""

    parameters = {"repeats": paracel.Param(int, 50, "pushes per worker"),
                  "admit": paracel.Param(int, 0, "pushes before a row exists")}

    def solve(self):
        table = self.rows("hot", width=1, admit=self.admit)
        ids = np.concatenate([EDGES, np.arange(1000, 3000, dtype=np.uint64)])
        twice = np.concatenate([ids, ids[::2]])  # every other id twice per push
        for _ in range(self.repeats):
            table.push(twice, np.ones(twice.size))
        self.sync()
        got = table.pull(ids)[:, 0]
        _dump(self, "totals", {"once": got[1::2].tolist(), "twice": got[::2].tolist()})
        return {"rows": table.size()}


class Mistakes(paracel.Algorithm):
    """Bad calls, each caught and written down (with the one-line message);
    then a float id array, not caught: the job stops with that line."""

    def solve(self):
        table = self.rows("m", width=2)
        messages = {}
        for name, call in [
                ("shape", lambda: table.push([1, 2], np.ones((2, 3)))),
                ("fn", lambda: table.push([1], np.ones((1, 2)), fn="no_such_function")),
                ("map", lambda: table.map("no_such_function")),
                ("width", lambda: self.rows("m", width=3)),
                ("ids", lambda: table.pull(np.ones((2, 2), dtype=np.int64)))]:
            try:
                call()
            except UserError as error:
                messages[name] = str(error)
        table.push([5], np.ones((1, 2)), fn="broken_rows")
        try:
            self.sync()
        except paracel.RemoteError as error:
            messages["remote"] = str(error)
        table.push([5], np.ones((1, 2)))
        try:
            table.map("dot", (0, 9))
        except UserError as error:
            messages["column"] = str(error)
        _dump(self, "mistakes", messages)
        self.sync()
        table.pull(np.array([1.5, 2.0]))


class Resumable(paracel.Algorithm):
    """Each clock every worker pushes into an admitted table, from its own
    disjoint ids (so the result does not depend on the order of workers);
    worker 0 saves every row at the end."""

    parameters = {"clocks": paracel.Param(int, 16, "how many clocks")}

    def solve(self):
        table = self.rows("w", width=2, admit=2)
        if not self.resumed:
            self.rng_ = np.random.default_rng([self.seed, self.worker_id])
        while self.clock < self.clocks:
            ids = self.rng_.integers(0, 300, 50).astype(np.uint64) * np.uint64(
                self.num_workers) + np.uint64(self.worker_id) + np.uint64(2**40)
            table.push(ids, np.round(self.rng_.normal(size=(50, 2)) * 64) / 64)
            self.iter_commit()
        self.sync()
        if self.worker_id == 0:
            ids, values = sorted_items(*table.items())
            np.save(os.path.join(self.output, "ids.npy"), ids)
            np.save(os.path.join(self.output, "values.npy"), values)
        return {"size": table.size()}

    def state(self):
        return {"rng": self.rng_.bit_generator.state}

    def restore(self, state):
        self.rng_ = np.random.default_rng()
        self.rng_.bit_generator.state = state["rng"]
