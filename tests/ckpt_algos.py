"""A resumable test algorithm, and pid files so a test can kill any rank.

Imported on every rank (job key ``modules``); when ``PARACEL_TEST_PIDS`` names
a folder, each MPI rank writes ``<world rank>.pid`` there on import (the
launcher that relaunches under mpiexec writes none).
"""

import os
import time

import numpy as np

import paracel

_rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK"))
if os.environ.get("PARACEL_TEST_PIDS") and _rank is not None:
    with open(os.path.join(os.environ["PARACEL_TEST_PIDS"], f"{_rank}.pid"), "w") as _f:
        _f.write(str(os.getpid()))


class Accumulate(paracel.Algorithm):
    """Each clock, read the model, push deltas that depend on it, keep local state.

    The deltas depend on what was read (so a lost or doubled update changes
    the result) and on a generator kept in :meth:`state` (so a resume that
    forgot it would differ). Reads happen before a ``sync()`` and pushes after
    it, and deltas are multiples of 2**-10 (sums exact in float64, whatever
    the order the servers apply them in), so the result is bitwise
    deterministic.
    """

    parameters = {"clocks": paracel.Param(int, 30, "how many clocks"),
                  "delay": paracel.Param(float, 0.05, "seconds of 'work' per clock")}

    def solve(self):
        M = self.matrix("M", (40, 3), block_rows=7, init="constant", value=0.5)
        if not self.resumed:
            self.rng_ = np.random.default_rng([self.seed, self.worker_id])
            self.total_ = np.zeros(3)
        while self.clock < self.clocks:
            time.sleep(self.delay)
            rows = self.rng_.integers(0, 40, 5)
            current = M.pull(rows)
            self.sync()
            delta = np.round(1024 * (np.tanh(current) + self.rng_.normal(size=(5, 3)))) / 1024
            M.push(rows, delta)
            self.update("steps", 1, "add")
            self.total_ += delta.sum(axis=0)
            self.iter_commit()
        self.sync()
        if self.worker_id == 0:
            np.save(os.path.join(self.output, "M.npy"), M.to_numpy())
        self.report(total_norm=float(np.abs(self.total_).sum()))  # after the last clock
        return {"steps": self.read("steps"), "total": self.total_.tolist()}

    def state(self):
        return {"rng": self.rng_.bit_generator.state, "total": self.total_}

    def restore(self, state):
        self.rng_ = np.random.default_rng()
        self.rng_.bit_generator.state = state["rng"]
        self.total_ = state["total"]


class BigTable(paracel.Algorithm):
    """Worker 0 stores one array of ``megabytes`` MiB, then every worker
    commits ``clocks`` clocks (checkpoints write the array each time)."""

    parameters = {"megabytes": paracel.Param(int, 32, "size of the stored array, MiB"),
                  "clocks": paracel.Param(int, 2, "how many clocks")}

    def solve(self):
        if self.worker_id == 0 and not self.resumed:
            self.write("big", np.ones(self.megabytes << 17))
        while self.clock < self.clocks:
            self.iter_commit()
        return {}

    def state(self):
        return {}

    def restore(self, state):
        pass


class BadState(paracel.Algorithm):
    """Keeps in its state something a checkpoint cannot store (a set)."""

    def solve(self):
        self.iter_commit()
        return {}

    def state(self):
        return {"rng": {"seen": {1, 2}}}

    def restore(self, state):
        pass
