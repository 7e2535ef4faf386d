"""Stale Synchronous Parallel: the clock table and its wait rule.

Every worker has a clock that starts at 0. ``commit`` (``iter_commit`` in the
algorithm API) first makes this worker's updates visible on the servers (the
caller flushes), then advances the clock to ``c``, then waits until the
slowest worker is at ``c - s`` or beyond. So a read at clock ``c`` sees every
update made in clocks ``<= c - s - 1`` by every worker. ``s = 0`` is bulk
synchronous; ``s = None`` never waits. A finished worker's clock is set to
:data:`FINISHED` so it never holds the others back.

The rule and the table's states are plain Python (:func:`may_proceed`,
:class:`ClockState`) so tests can check them without MPI. The distributed
table (:class:`ClockTable`) is an MPI one-sided window of one int64 per
worker, allocated on a server rank: workers write their own slot with an
atomic ``Accumulate(REPLACE)`` and read all slots with an atomic
``Get_accumulate(NO_OP)``, so no rank's progress is needed to answer. This
was measured against a clock kept by a server and answered by messages
(``benchmarks/bench_clock.py``), and is faster. A waiting worker polls with
:class:`paracel.waiting.Backoff`, never spinning a core.
"""

import time

import numpy as np

from paracel.waiting import wait_request
from paracel.watch import CLOCK, RUNNING, Watch

FINISHED = 2 ** 62

#: Longest sleep between two looks at the clock table while waiting. Clock
#: waits are long next to a request's round trip, so polling more rarely
#: than the serve loop keeps a waiting worker near 1-2 % of a core; a wait
#: overshoots by at most this much.
CLOCK_MAX_SLEEP = 4e-3


def may_proceed(clock, slowest, staleness):
    """The SSP wait rule: may a worker at ``clock`` go on while the slowest is
    at ``slowest``?

    Parameters
    ----------
    clock : int
        The worker's own clock, just advanced.
    slowest : int
        The smallest clock of all workers (finished ones count as infinite).
    staleness : int or None
        The bound ``s``; ``None`` means asynchronous.
    """
    return staleness is None or slowest >= clock - staleness


class ClockState:
    """The clock table as a pure state machine (one process, no MPI).

    Parameters
    ----------
    num_workers : int
        How many clocks the table holds.
    staleness : int or None
        The bound ``s``.
    """

    def __init__(self, num_workers, staleness):
        self.clocks = [0] * num_workers
        self.staleness = staleness

    def commit(self, worker):
        """Advance ``worker``'s clock by one and return the new clock."""
        self.clocks[worker] += 1
        return self.clocks[worker]

    def finish(self, worker):
        """Take ``worker`` out of the bound: it never holds others back again."""
        self.clocks[worker] = FINISHED

    def slowest(self):
        """The smallest clock in the table."""
        return min(self.clocks)

    def may_proceed(self, worker):
        """Whether ``worker`` may run at its current clock."""
        return may_proceed(self.clocks[worker], self.slowest(), self.staleness)


class ClockTable:
    """The shared clock table, an MPI window of int64 slots on one rank.

    Construction and :meth:`free` are collective over ``comm`` (servers take
    part with ``worker=None``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Communicator of all ranks.
    host : int
        Rank in ``comm`` that holds the window's memory.
    worker : int or None
        This rank's worker index, or ``None`` on a server.
    num_workers : int
        Number of slots.
    staleness : int or None
        The bound ``s``.
    start : int
        The clock every worker starts at (non-zero when resuming).
    """

    def __init__(self, comm, host, worker, num_workers, staleness, start=0):
        from mpi4py import MPI

        self._mpi = MPI
        self.host = host
        self.worker = worker
        self.num_workers = num_workers
        self.staleness = staleness
        self.clock = start
        self.slowest = start
        self.wait_seconds = 0.0
        self.comm = comm
        # slots: one clock per worker, then each worker's wait label (3 int64)
        size = num_workers * 8 * 4 if comm.Get_rank() == host else 0
        wait_request(comm.Ibarrier())  # arrive together: Allocate's own wait may spin
        self.win = MPI.Win.Allocate(size, 8, comm=comm)
        if comm.Get_rank() == host:
            slots = np.frombuffer(self.win.tomemory(), dtype=np.int64)
            slots[:num_workers], slots[num_workers:] = start, 0
        wait_request(comm.Ibarrier())
        if worker is not None:
            self.win.Lock_all(MPI.MODE_NOCHECK)
        self._slots = np.zeros(num_workers, dtype=np.int64)
        self._one = np.zeros(1, dtype=np.int64)
        self.watch = Watch(self)

    def commit(self):
        """Advance this worker's clock, then wait as the rule says.

        Returns
        -------
        int
            The new clock.
        """
        self.clock += 1
        self._set(self.clock)
        if self.staleness is not None:
            start = time.perf_counter()
            self.watch.wait(lambda: may_proceed(self.clock, self._read_slowest(),
                                                self.staleness),
                            (CLOCK, 0, self.clock), max_sleep=CLOCK_MAX_SLEEP)
            self.wait_seconds += time.perf_counter() - start
        return self.clock

    def read_slowest(self):
        """The slowest worker's clock, read now."""
        return self._read_slowest()

    def finish(self):
        """Mark this worker finished, so it never holds the others back."""
        self._set(FINISHED)

    def free(self):
        """Release the window (collective). Ranks first meet in a barrier that
        sleeps while it waits: ``MPI_Win_free`` itself waits for the others
        in a busy loop, which would spin a core for as long as a worker that
        finished early waits for the rest of the job."""
        if self.worker is not None:
            self.win.Unlock_all()
        wait_request(self.comm.Ibarrier())
        self.win.Free()

    def publish(self, label):
        """Show this worker's wait label ``(kind, number, clock)`` to the
        others (``None``: not waiting); see :mod:`paracel.watch`."""
        MPI = self._mpi
        mine = np.array(label or (RUNNING, 0, 0), dtype=np.int64)
        self.win.Accumulate([mine, MPI.INT64_T], self.host,
                            target=(self.num_workers + 3 * self.worker, 3, MPI.INT64_T),
                            op=MPI.REPLACE)
        self.win.Flush(self.host)

    def snapshot(self):
        """``(finished, labels)``: whether each worker has finished, and each
        worker's published wait label."""
        MPI = self._mpi
        n = self.num_workers
        slots = np.zeros(4 * n, dtype=np.int64)
        self.win.Get_accumulate([slots, MPI.INT64_T], [slots, MPI.INT64_T], self.host,
                                target=(0, 4 * n, MPI.INT64_T), op=MPI.NO_OP)
        self.win.Flush(self.host)
        return (slots[:n] == FINISHED).tolist(), slots[n:].reshape(n, 3).tolist()

    def _set(self, value):
        MPI = self._mpi
        self._one[0] = value
        self.win.Accumulate([self._one, MPI.INT64_T], self.host,
                            target=(self.worker, 1, MPI.INT64_T),
                            op=MPI.REPLACE)
        self.win.Flush(self.host)

    def _read_slowest(self):
        MPI = self._mpi
        slots = [self._slots, MPI.INT64_T]
        self.win.Get_accumulate(slots, slots, self.host,
                                target=(0, self.num_workers, MPI.INT64_T), op=MPI.NO_OP)
        self.win.Flush(self.host)
        self.slowest = int(self._slots.min())
        return self.slowest
