"""A random-operation stress test algorithm (imported on every rank).

Keys fall in four classes so that the final table can be predicted exactly
whatever order the servers apply concurrent operations in:

* ``("sum", k)``: every worker ``add``/``sub``s random integers — the final
  value is the sum of all workers' deltas;
* ``("max", k)`` / ``("min", k)``: every worker folds random integers with
  ``max`` / ``min``;
* ``("own", k, worker)``: one worker alone writes, replaces, updates with every
  built-in, reads and removes — the final value is a sequential replay of
  that worker's operations (kept locally as the worker goes, and every read
  must already equal it: read-your-writes).

Each worker writes what it contributed; the test combines the workers' files
and compares with the table worker 0 reads at the end.
"""

import json
import os

import numpy as np

import paracel

FOLD = {"add": lambda old, d: d if old is None else old + d,
        "sub": lambda old, d: -d if old is None else old - d,
        "max": lambda old, d: d if old is None else np.maximum(old, d),
        "min": lambda old, d: d if old is None else np.minimum(old, d),
        "replace": lambda old, d: d}


class Stress(paracel.Algorithm):
    """``ops`` random operations per worker over ``keys`` keys."""

    parameters = {"ops": paracel.Param(int, 20000, "operations per worker"),
                  "key_count": paracel.Param(int, 1000, "keys per class"),
                  "per_clock": paracel.Param(int, 500, "operations per clock")}

    def solve(self):
        rng = self.rng()
        self.sums = np.zeros(self.key_count, dtype=np.int64)
        self.maxes = np.full(self.key_count, np.iinfo(np.int64).min)
        self.mins = np.full(self.key_count, np.iinfo(np.int64).max)
        self.own = {}
        gaps = []
        for op in range(self.ops):
            self.step(rng)
            if (op + 1) % self.per_clock == 0:
                self.iter_commit()
                gaps.append(self.clock - self.slowest_clock)
                if self.staleness is not None:
                    assert gaps[-1] <= self.staleness, (self.clock, self.slowest_clock)
        self.sync()
        self.record(gaps)
        if self.worker_id == 0:
            self.dump_table()
        return {"max_gap": max(gaps) if gaps else 0}

    def step(self, rng):
        kind = rng.integers(0, 10)
        k = int(rng.integers(0, self.key_count))
        delta = int(rng.integers(-1000, 1000))
        if kind < 3:
            fn = "add" if kind < 2 else "sub"
            self.update(("sum", k), delta, fn)
            self.sums[k] += delta if fn == "add" else -delta
        elif kind == 3:
            self.update(("max", k), delta, "max")
            self.maxes[k] = max(self.maxes[k], delta)
        elif kind == 4:
            self.update(("min", k), delta, "min")
            self.mins[k] = min(self.mins[k], delta)
        elif kind == 5:
            self.read_multi([("sum", k), ("max", k), ("own", k, self.worker_id)], default=0)
        else:
            self.own_step(rng, k, kind)

    def own_step(self, rng, k, kind):
        key = ("own", k, self.worker_id)
        value = rng.integers(-50, 50, 3)
        if kind == 6:
            self.write(key, value)
            self.own[key] = value.copy()
        elif kind == 7:
            fn = ["add", "sub", "max", "min", "replace"][int(rng.integers(0, 5))]
            self.update(key, value, fn)
            self.own[key] = FOLD[fn](self.own.get(key), value.copy())
        elif kind == 8:
            got = self.read(key, default=None)
            expected = self.own.get(key)
            assert (got is None) == (expected is None), (key, got, expected)
            if expected is not None:
                np.testing.assert_array_equal(got, expected)
        else:
            assert self.remove(key) == (key in self.own)
            self.own.pop(key, None)

    def record(self, gaps):
        data = {"sums": self.sums.tolist(), "maxes": self.maxes.tolist(),
                "mins": self.mins.tolist(), "gaps": gaps,
                "own": [[list(key), value.tolist()] for key, value in self.own.items()]}
        with open(os.path.join(self.output, f"stress_{self.worker_id}.json"), "w") as handle:
            json.dump(data, handle)

    def dump_table(self):
        keys = self.keys()
        values = self.read_multi(keys)
        table = [[list(key), np.asarray(value).tolist()] for key, value in zip(keys, values)]
        with open(os.path.join(self.output, "table.json"), "w") as handle:
            json.dump(table, handle)
