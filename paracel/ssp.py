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

from paracel.waiting import wait_for, wait_request
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
        self.commit_seconds = 0.0
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
        start = time.perf_counter()
        self._set(self.clock)
        self.commit_seconds += time.perf_counter() - start
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


class MessageClock:
    """The clock table kept by server 0 and reached by messages: across hosts.

    A one-sided window on another host completes an operation only when that
    host's rank next enters MPI (6 ms a commit measured across two hosts,
    hundreds under load); messages to server 0, whose serve loop is always
    receiving, cost one network trip. A commit is one message; a worker that
    must wait asks for an answer, and server 0 (:class:`ClockService`) sends
    it as soon as the bound holds — so a clock costs at most one round trip,
    and none when the last answer already showed the bound holds (the
    slowest clock known here is a lower bound of the true one). The same
    interface as :class:`ClockTable`; construction and :meth:`free` are
    collective over ``comm``.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Communicator of all ranks.
    host : int
        Rank in ``comm`` of server 0.
    worker : int or None
        This rank's worker index, or ``None`` on a server.
    num_workers : int
        How many workers.
    staleness : int or None
        The bound ``s``.
    start : int
        The clock every worker starts at (non-zero when resuming).
    """

    def __init__(self, comm, host, worker, num_workers, staleness, start=0):
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm
        self.host = host
        self.worker = worker
        self.num_workers = num_workers
        self.staleness = staleness
        self.clock = start
        self.slowest = start
        self.wait_seconds = 0.0
        self.commit_seconds = 0.0
        self.watch = Watch(self)
        self._reply = np.zeros(2 + 4 * num_workers, dtype=np.int64)
        self._answers = {}
        self._status = MPI.Status()

    def commit(self):
        """Advance this worker's clock, tell server 0, and wait if the rule says.

        Returns
        -------
        int
            The new clock.
        """
        self.clock += 1
        need = None if self.staleness is None else self.clock - self.staleness
        if need is not None and need <= self.slowest:
            need = None  # the last answer already shows the bound holds
        start = time.perf_counter()
        self._tell("commit", self.clock, need)
        self.commit_seconds += time.perf_counter() - start
        if need is not None:
            start = time.perf_counter()
            self.watch.wait(lambda: self._answered(SLOWEST), (CLOCK, 0, self.clock))
            self.slowest = int(self._answers.pop(SLOWEST)[0])
            self.wait_seconds += time.perf_counter() - start
        return self.clock

    def read_slowest(self):
        """The slowest worker's clock, asked of server 0 now."""
        self._tell("read")
        wait_for(lambda: self._answered(SLOWEST))
        self.slowest = int(self._answers.pop(SLOWEST)[0])
        return self.slowest

    def finish(self):
        """Mark this worker finished, so it never holds the others back."""
        self._tell("finish")

    def free(self):
        """Meet the other ranks (collective, sleeping while it waits)."""
        wait_request(self.comm.Ibarrier())

    def publish(self, label):
        """Show this worker's wait label to the others (see :mod:`paracel.watch`)."""
        self._tell("label", *(label or (RUNNING, 0, 0)))

    def snapshot(self):
        """``(finished, labels)`` of every worker, asked of server 0."""
        self._tell("snapshot")
        wait_for(lambda: self._answered(SNAPSHOT))
        return snapshot_of(self._answers.pop(SNAPSHOT), self.num_workers)

    def _tell(self, *what):
        """Send ``what`` to server 0 (a request it answers, if at all, later)."""
        from paracel import protocol

        wait_request(protocol.post(self.comm, self.host,
                                   protocol.request_header("clock", arg=what), []))

    def _answered(self, kind):
        """Whether an answer of ``kind`` has come (taking any that arrived)."""
        MPI = self._mpi
        while (message := self.comm.improbe(self.host, TAG_CLOCK, self._status)) is not None:
            count = self._status.Get_count(MPI.INT64_T)
            message.Recv([self._reply, count, MPI.INT64_T])
            self._answers[int(self._reply[0])] = self._reply[1:count].copy()
        return kind in self._answers or None


#: Tag of server 0's answers to :class:`MessageClock`, and their kinds.
TAG_CLOCK = 15
SLOWEST, SNAPSHOT = 1, 2


def snapshot_of(values, num_workers):
    """``(finished, labels)`` from a snapshot answer's numbers."""
    clocks = values[:num_workers]
    return (clocks == FINISHED).tolist(), values[num_workers:].reshape(num_workers, 3).tolist()


class ClockService:
    """Server 0's side of :class:`MessageClock`: the table, the waiting
    workers, their wait labels; answers go out as soon as they are due.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        Communicator of all ranks.
    worker_ranks : list of int
        Rank in ``comm`` of worker 0, 1, ...
    staleness : int or None
        The bound ``s``.
    start : int
        The clock every worker starts at.
    """

    def __init__(self, comm, worker_ranks, staleness, start=0):
        self.comm = comm
        self.worker_ranks = list(worker_ranks)
        self._worker_of = {rank: w for w, rank in enumerate(worker_ranks)}
        self.state = ClockState(len(worker_ranks), staleness)
        self.state.clocks = [start] * len(worker_ranks)
        self.labels = np.zeros((len(worker_ranks), 3), dtype=np.int64)
        self.waiting = {}

    def handle(self, source, what):
        """Apply one message of the worker at rank ``source``."""
        worker, op = self._worker_of[source], what[0]
        if op == "commit":
            self.state.clocks[worker] = what[1]
            if what[2] is not None:
                self.waiting[worker] = what[2]
            self._answer_waiting()
        elif op == "finish":
            self.state.finish(worker)
            self._answer_waiting()
        elif op == "label":
            self.labels[worker] = what[1:4]
        elif op == "read":
            self._send(worker, SLOWEST, [self.state.slowest()])
        elif op == "snapshot":
            self._send(worker, SNAPSHOT, [*self.state.clocks, *self.labels.ravel().tolist()])

    def _answer_waiting(self):
        slowest = self.state.slowest()
        for worker, need in list(self.waiting.items()):
            if slowest >= need:
                del self.waiting[worker]
                self._send(worker, SLOWEST, [slowest])

    def _send(self, worker, kind, values):
        """A small answer: sent eagerly, the worker is waiting for it."""
        from mpi4py import MPI

        message = np.array([kind, *values], dtype=np.int64)
        self.comm.Send([message, MPI.INT64_T], dest=self.worker_ranks[worker], tag=TAG_CLOCK)
