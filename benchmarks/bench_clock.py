"""SSP clock cost: the MPI RMA clock table against a message-based clock.

On the same ranks in one run, every worker (or worker 0 alone) commits its
clock in a loop for a fixed time, four ways:

``rma commit``
    :class:`paracel.ssp.ClockTable` with ``staleness=None``: one atomic
    ``Accumulate(REPLACE)`` + ``Flush`` into the window on the server rank,
    no waiting — the pure cost of a commit.
``rma commit+read``
    The same, plus ``read_slowest()`` (``Get_accumulate(NO_OP)`` + ``Flush``
    of the whole table): what a commit costs when a staleness bound has to
    be checked and passes at once.
``msg, blocking``
    A clock kept by the server rank and answered by messages, written here
    only: the worker ``Send``\\ s ``(worker, clock)`` as two int64 and
    ``Recv``\\ s the slowest clock back; the server loops on a blocking
    ``Recv(source=ANY_SOURCE)``. The fastest a message clock can be in
    mpi4py, but its ranks poll inside MPI while they wait.
``msg, polling``
    The same messages, waited for the way paracel waits (``improbe`` plus
    :class:`paracel.waiting.Backoff`, on the worker and the server), so no
    rank spins a core.

Reported: microseconds per commit as seen by one worker (mean over the
committing workers), aggregate commits per second, and each method's time
relative to ``rma commit+read``. Best of several alternating reps (the
machine is small and often shared: the fastest rep is the least disturbed;
the run also prints how many cores other processes used meanwhile).

Run (any N >= 2; rank N-1 holds the clock)::

    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_osc=^ucx \
        .venv/bin/mpiexec --oversubscribe -n 16 .venv/bin/python benchmarks/bench_clock.py
"""

import argparse
import os
import statistics
import time

import numpy as np
from mpi4py import MPI

from _common import (machine_cpu_seconds, other_load_line, own_cpu_seconds, print_table,
                     process_cpu_seconds)

from paracel import ssp
from paracel import topology as topo
from paracel.waiting import Backoff, wait_for, wait_request

TAG_CLOCK = 81
TAG_SLOWEST = 82
STOP = -1


class Bench:
    """This rank's role, the clock table and the message-clock plumbing.

    Parameters
    ----------
    world : mpi4py.MPI.Comm
        ``MPI.COMM_WORLD``.
    quick : bool
        Fewer and shorter reps.
    """

    def __init__(self, world, quick):
        self.top = topo.split(world, 1)
        self.raw = world.Dup()
        self.rank = world.Get_rank()
        self.host = self.top.server_ranks[0]
        self.worker = self.top.index if self.top.role == "worker" else None
        self.table = ssp.ClockTable(self.top.ps, self.host, self.worker,
                                    self.top.num_workers, None)
        self.seconds = 0.2 if quick else 0.5
        self.reps = 2 if quick else 5

    def idle(self):
        """Barrier of every rank that sleeps while it waits."""
        wait_request(self.raw.Ibarrier())

    def active(self, count):
        """Whether this rank is one of the first ``count`` workers."""
        return self.worker is not None and self.worker < count


def commit_loop(commit, seconds):
    """Call ``commit`` for ``seconds``; returns ``(commits, elapsed)``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        commit()
        count += 1
    return count, time.perf_counter() - start


# -- the RMA clock table ---------------------------------------------------------


def rma_commit(bench, count):
    """``ClockTable.commit()`` with staleness None on ``count`` workers."""
    result = commit_loop(bench.table.commit, bench.seconds) if bench.active(count) else None
    bench.idle()
    return result


def rma_commit_read(bench, count):
    """``commit()`` followed by ``read_slowest()`` on ``count`` workers."""
    def commit():
        bench.table.commit()
        bench.table.read_slowest()

    result = commit_loop(commit, bench.seconds) if bench.active(count) else None
    bench.idle()
    return result


# -- the message clock -----------------------------------------------------------


def clock_server(bench, count, receive):
    """Keep the clocks; answer each ``(worker, clock)`` with the slowest clock."""
    clocks = np.zeros(bench.top.num_workers, dtype=np.int64)
    request, reply, stops = np.zeros(2, dtype=np.int64), np.zeros(1, dtype=np.int64), 0
    while stops < count:
        source = receive(request)
        if request[1] == STOP:
            stops += 1
            continue
        clocks[request[0]] = request[1]
        reply[0] = clocks.min()
        bench.raw.Send(reply, dest=source, tag=TAG_SLOWEST)


def message_clock(bench, count, polling):
    """A message-based commit loop on ``count`` workers; the server answers."""
    comm, result = bench.raw, None
    if bench.rank == bench.host:
        clock_server(bench, count, polling_receive(comm) if polling else blocking_receive(comm))
    elif bench.active(count):
        request, reply = np.array([bench.worker, 0], dtype=np.int64), np.zeros(1, np.int64)
        wait = polling_reply(comm, bench.host) if polling else None

        def commit():
            request[1] += 1
            comm.Send(request, dest=bench.host, tag=TAG_CLOCK)
            if wait:
                wait().Recv(reply)
            else:
                comm.Recv(reply, source=bench.host, tag=TAG_SLOWEST)

        result = commit_loop(commit, bench.seconds)
        request[1] = STOP
        comm.Send(request, dest=bench.host, tag=TAG_CLOCK)
    bench.idle()
    return result


def blocking_receive(comm):
    """Receive a request with a blocking ``Recv``; returns the source rank."""
    status = MPI.Status()

    def receive(buffer):
        comm.Recv(buffer, source=MPI.ANY_SOURCE, tag=TAG_CLOCK, status=status)
        return status.Get_source()

    return receive


def polling_receive(comm):
    """Receive a request the way paracel's serve loop does (improbe + Backoff)."""
    status, backoff = MPI.Status(), Backoff()

    def receive(buffer):
        while (message := comm.improbe(MPI.ANY_SOURCE, TAG_CLOCK, status)) is None:
            backoff.pause()
        backoff.reset()
        message.Recv(buffer)
        return status.Get_source()

    return receive


def polling_reply(comm, host):
    """A function that waits for the reply as ``paracel.client`` does."""
    backoff = Backoff()

    def wait():
        backoff.reset()
        return wait_for(lambda: comm.improbe(host, TAG_SLOWEST), backoff)

    return wait


# -- running and printing ------------------------------------------------------------


METHODS = [
    ("rma commit", rma_commit),
    ("rma commit+read", rma_commit_read),
    ("msg, blocking", lambda bench, count: message_clock(bench, count, False)),
    ("msg, polling", lambda bench, count: message_clock(bench, count, True)),
]


def gather_rep(bench, result):
    """``(mean seconds per commit per worker, aggregate commits/s)`` on rank 0."""
    parts = [part for part in bench.raw.gather(result, root=0) or [] if part]
    if bench.rank != 0:
        return None
    per_commit = statistics.mean(seconds / count for count, seconds in parts)
    return per_commit, sum(count for count, _ in parts) / max(s for _, s in parts)


def measure(bench, count):
    """Best ``(seconds per commit, commits/s)`` per method, reps alternating."""
    samples = {name: [] for name, _ in METHODS}
    for _ in range(bench.reps):
        for name, method in METHODS:
            samples[name].append(gather_rep(bench, method(bench, count)))
    if bench.rank != 0:
        return None
    return {name: (min(s[0] for s in reps), max(s[1] for s in reps))
            for name, reps in samples.items()}


def rows(results):
    """Table rows: method, µs per commit, commits/s, time relative to rma commit+read."""
    base = results["rma commit+read"][0]
    return [[name, f"{per * 1e6:.2f}", f"{rate:,.0f}", f"{per / base:.2f}"]
            for name, (per, rate) in results.items()]


def report(bench, by_count, load):
    """Print the tables and the verdict (rank 0)."""
    top = bench.top
    print(f"bench_clock: {top.num_workers + 1} ranks = {top.num_workers} worker(s) + 1 "
          f"clock/server rank; osc components allowed: "
          f"{os.environ.get('OMPI_MCA_osc', '(all)')}")
    print(load)
    for count, results in by_count.items():
        who = "worker 0 alone" if count == 1 else f"all {count} workers at once"
        print_table(f"commits by {who} (best of {bench.reps} reps of {bench.seconds} s)",
                    ["method", "us/commit", "commits/s", "vs rma commit+read"], rows(results))
    every = by_count[max(by_count)]
    rma, msg = every["rma commit+read"][0], every["msg, polling"][0]
    print(f"\nsummary at N={top.num_workers + 1}: rma commit (s=None) "
          f"{every['rma commit'][0] * 1e6:.2f} us; message clock (paracel-style polling) "
          f"{msg * 1e6:.2f} us, {msg / rma:.2f}x the rma commit+read; "
          f"{'rma is faster' if rma < msg else 'MESSAGES ARE FASTER'}")


def main():
    """Parse flags, measure on every rank, print on rank 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    bench = Bench(MPI.COMM_WORLD, args.quick)
    start, machine, own = time.perf_counter(), machine_cpu_seconds(), own_cpu_seconds()
    launcher = process_cpu_seconds(os.getppid()) or 0.0
    by_count = {count: measure(bench, count) for count in sorted({1, bench.top.num_workers})}
    used = bench.raw.reduce(own_cpu_seconds() - own, root=0)
    bench.table.free()
    if bench.rank == 0:
        used += (process_cpu_seconds(os.getppid()) or launcher) - launcher
        report(bench, by_count, other_load_line(machine_cpu_seconds() - machine, used,
                                                time.perf_counter() - start))


if __name__ == "__main__":
    main()
