"""Parameter-store throughput against raw mpi4py, on the same ranks in one run.

What it measures (worker 0 ↔ server 0 unless said otherwise):

a. **Bandwidth.** ``client.write`` of one dense float64 block followed by
   ``client.flush`` (push), and ``client.read(key, out=...)`` into a
   preallocated array (pull), for blocks of 64 KiB … 128 MiB, against raw
   ``comm.Send``/``comm.Recv`` of the same buffer into a preallocated buffer.
   Each raw operation carries the one-byte message a real protocol needs to
   know the transfer is done (an acknowledgement after a push, a request
   before a pull), as the framework's fence and read request do.
b. **Small-value round trips.** ``client.read`` of a key holding a float and
   of a key holding an 8-element array, from worker 0 alone and from all
   workers at once (aggregate), against two raw request/reply loops (worker
   ``comm.send`` of the key → server → reply: the float pickled, the array
   as a raw buffer into a preallocated one). *raw* blocks in MPI
   (``comm.recv``/``Recv``), which polls inside Open MPI; *raw (fair)* waits
   the way paracel must, ``improbe`` between :class:`paracel.waiting.Backoff`
   pauses on both sides, so its ratio measures paracel's own costs.
c. **read_multi** of 10,000 small keys (5,000 float scalars, 5,000 4-element
   arrays) spread over all servers: keys/s and seconds per call, against a
   raw baseline that sends each server the pickled list of its keys and gets
   the pickled list of values back.

Raw and framework measurements alternate rep by rep, and the best rep of each
is reported (the machine is small and often shared: the fastest rep is the
least disturbed one; the run also prints how many cores other processes used
meanwhile). Ranks that take no part in a measurement wait in a non-blocking
barrier that sleeps, so they do not steal the cores.

Run (any N >= 2; ``--servers S`` makes the last S ranks servers; ``--json
PATH`` also writes the measured numbers there, for ``study_overhead.py``)::

    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_osc=^ucx \
        .venv/bin/mpiexec --oversubscribe -n 4 .venv/bin/python benchmarks/bench_kv.py
"""

import argparse
import json
import os
import time

import mpi4py
import numpy as np
from mpi4py import MPI

from _common import (machine_cpu_seconds, other_load_line, own_cpu_seconds, print_table,
                     process_cpu_seconds)

from paracel import topology as topo
from paracel.client import Client
from paracel.partition import Ring
from paracel.server.serve import Server
from paracel.waiting import Backoff, wait_request

KIB = 1024
MIB = 1024 * KIB
SIZES = [64 * KIB, 256 * KIB, MIB, 4 * MIB, 16 * MIB, 64 * MIB, 128 * MIB]
BATCH_BYTES = 16 * MIB
MULTI_KEYS = 10_000
BW_TARGET = 0.8
RTT_TARGET = 0.5
TAG_DATA = 71
TAG_ACK = 72
TAG_REQ = 73
TAG_REPLY = 74


class Bench:
    """This rank's roles, communicators and the run's settings.

    Parameters
    ----------
    world : mpi4py.MPI.Comm
        ``MPI.COMM_WORLD``.
    num_servers : int
        How many of the last ranks are parameter servers.
    quick : bool
        Fewer repetitions and shorter timed loops.
    """

    def __init__(self, world, num_servers, quick):
        self.top = topo.split(world, num_servers)
        self.raw = world.Dup()
        self.rank = world.Get_rank()
        self.ring = Ring(num_servers)
        self.server_rank = self.top.server_ranks[0]
        self.is_server = self.top.role == "server"
        self.client = None if self.is_server else Client(self.top.ps, self.top.server_ranks,
                                                         self.ring)
        self.reps = 2 if quick else 7
        self.seconds = 0.3 if quick else 0.5
        self.small_reps = 1 if quick else 5
        self.multi_reps = 3 if quick else 7

    def idle(self):
        """Barrier of every rank that sleeps while it waits (no spinning)."""
        wait_request(self.raw.Ibarrier())

    def worker_sync(self):
        """Barrier of the workers only (non-spinning)."""
        wait_request(self.top.workers.Ibarrier())

    def key_on(self, prefix, server=0):
        """A key named ``prefix...`` that the ring places on ``server``."""
        for number in range(10_000):
            key = f"{prefix}{number}"
            if self.ring.server_of(key) == server:
                return key
        raise RuntimeError("no key found for server")

    def session(self, work):
        """Serve on the servers while the workers run ``work()``; collective.

        Returns
        -------
        object
            What ``work()`` returned on this worker (``None`` on servers).
        """
        result = None
        if self.is_server:
            Server(self.top.ps, self.top.index, self.top.num_workers).serve()
        else:
            result = work()
            self.client.done()
        self.idle()
        return result


def touched(nbytes, fill=0.0):
    """A float64 array of ``nbytes`` bytes whose pages are already mapped."""
    array = np.empty(nbytes // 8, dtype=np.float64)
    array.fill(fill)
    return array


def timed(operation, count):
    """Seconds per call of ``operation`` over ``count`` calls."""
    start = time.perf_counter()
    for _ in range(count):
        operation()
    return (time.perf_counter() - start) / count


# -- a. bandwidth --------------------------------------------------------------


def raw_bandwidth(bench, buffers, ops):
    """Raw push and pull seconds per operation between worker 0 and server 0."""
    comm, one = bench.raw, np.zeros(1, dtype=np.uint8)
    result = None
    if bench.rank == bench.server_rank:
        for _ in range(ops + 1):
            comm.Recv(buffers["server"], source=0, tag=TAG_DATA)
            comm.Send(one, dest=0, tag=TAG_ACK)
        for _ in range(ops + 1):
            comm.Recv(one, source=0, tag=TAG_REQ)
            comm.Send(buffers["server"], dest=0, tag=TAG_DATA)
    elif bench.rank == 0:
        src, out = buffers["src"], buffers["out"]

        def push():
            comm.Send(src, dest=bench.server_rank, tag=TAG_DATA)
            comm.Recv(one, source=bench.server_rank, tag=TAG_ACK)

        def pull():
            comm.Send(one, dest=bench.server_rank, tag=TAG_REQ)
            comm.Recv(out, source=bench.server_rank, tag=TAG_DATA)

        push()
        push_time = timed(push, ops)
        pull()
        result = (push_time, timed(pull, ops))
    bench.idle()
    return result


def framework_bandwidth(bench, buffers, ops):
    """Framework push (write + flush) and pull (read out=) seconds per operation."""
    def work():
        if bench.rank != 0:
            return None
        client, key = bench.client, bench.key_on("block")
        src, out = buffers["src"], buffers["out"]

        def push():
            client.write(key, src)
            client.flush()

        push()
        push_time = timed(push, ops)
        client.read(key, out=out)
        pull_time = timed(lambda: client.read(key, out=out), ops)
        if out[0] != src[0] or out[-1] != src[-1]:
            raise AssertionError("pulled block differs from the pushed one")
        return push_time, pull_time

    return bench.session(work)


def size_buffers(bench, size):
    """Preallocated, touched buffers for one block size on this rank."""
    if bench.rank == 0:
        return {"src": touched(size, 1.5), "out": touched(size)}
    if bench.rank == bench.server_rank:
        return {"server": touched(size)}
    return {}


def bandwidth(bench):
    """Rows ``(size, raw push, fw push, raw pull, fw pull)`` in seconds per op."""
    rows = []
    for size in SIZES:
        buffers = size_buffers(bench, size)
        ops = max(1, BATCH_BYTES // size)
        raw, fw = [], []
        for _ in range(bench.reps):
            raw.append(raw_bandwidth(bench, buffers, ops))
            fw.append(framework_bandwidth(bench, buffers, ops))
        if bench.rank == 0:
            rows.append((size, best(raw, 0), best(fw, 0), best(raw, 1), best(fw, 1)))
        del buffers
    return rows


def best(pairs, index):
    """Smallest item ``index`` (the fastest time) over a list of tuples."""
    return min(pair[index] for pair in pairs)


# -- b. small-value round trips ----------------------------------------------


def raw_round_trips(bench, key, value, active, fair=False):
    """Raw request/reply loop; returns ``(count, seconds)`` on active workers.

    ``fair``: wait with ``improbe`` and :class:`Backoff` pauses instead of
    blocking in MPI.
    """
    comm, result = bench.raw, None
    if bench.rank == bench.server_rank:
        raw_serve(comm, {key: value}, active, fair)
    elif not bench.is_server and bench.top.index < active:
        out = np.empty_like(value) if isinstance(value, np.ndarray) else None
        backoff = Backoff() if fair else None

        def one():
            comm.send(key, dest=bench.server_rank, tag=TAG_REQ)
            return raw_wait(comm, bench.server_rank, out, backoff)

        result = count_for(one, bench.seconds)
        comm.send(None, dest=bench.server_rank, tag=TAG_REQ)
    bench.idle()
    return result


def raw_serve(comm, table, active, fair):
    """Answer raw requests until ``active`` workers have sent ``None``."""
    status, stops, backoff = MPI.Status(), 0, Backoff()
    while stops < active:
        if fair:
            message = comm.improbe(MPI.ANY_SOURCE, TAG_REQ, status)
            if message is None:
                backoff.pause()
                continue
            request = message.recv()
            backoff.reset()
        else:
            request = comm.recv(source=MPI.ANY_SOURCE, tag=TAG_REQ, status=status)
        if request is None:
            stops += 1
        else:
            raw_reply(comm, table[request], status.Get_source())


def raw_reply(comm, value, dest):
    """An array as a raw buffer, anything else pickled."""
    if isinstance(value, np.ndarray):
        comm.Send(value, dest=dest, tag=TAG_REPLY)
    else:
        comm.send(value, dest=dest, tag=TAG_REPLY)


def raw_wait(comm, source, out, backoff):
    """Receive a raw reply (into ``out`` if an array): blocking in MPI, or,
    given a ``backoff``, as paracel waits (probe, then back off)."""
    if backoff is None:
        message = comm.mprobe(source=source, tag=TAG_REPLY)
    else:
        backoff.reset()
        while (message := comm.improbe(source=source, tag=TAG_REPLY)) is None:
            backoff.pause()
    if out is None:
        return message.recv()
    message.Recv(out)
    return out


def framework_round_trips(bench, key, value, active):
    """``client.read`` loop; returns ``(count, seconds)`` on active workers."""
    def work():
        if bench.top.index == 0:
            bench.client.write(key, value)
            bench.client.flush()
        bench.worker_sync()
        if bench.top.index >= active:
            return None
        return count_for(lambda: bench.client.read(key), bench.seconds)

    return bench.session(work)


def count_for(operation, seconds):
    """Call ``operation`` for ``seconds``; returns ``(calls, elapsed seconds)``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        operation()
        count += 1
    return count, time.perf_counter() - start


def aggregate_rate(bench, result):
    """Sum of calls over the longest elapsed time of all ranks (on rank 0)."""
    parts = [part for part in bench.raw.gather(result, root=0) or [] if part]
    if bench.rank != 0:
        return None
    return sum(count for count, _ in parts) / max(seconds for _, seconds in parts)


def round_trips(bench):
    """Rows ``(value kind, readers, raw rate, framework rate, fair raw rate)``
    in reads/s."""
    cases = [("float", 3.25), ("8 x float64", np.arange(8, dtype=np.float64))]
    rows = []
    for name, value in cases:
        key = bench.key_on("small")
        for active in sorted({1, bench.top.num_workers}):
            raw, fw, fair = [], [], []
            for _ in range(bench.small_reps):
                raw.append(aggregate_rate(bench, raw_round_trips(bench, key, value, active)))
                fw.append(aggregate_rate(bench, framework_round_trips(bench, key, value,
                                                                      active)))
                fair.append(aggregate_rate(bench, raw_round_trips(bench, key, value, active,
                                                                  fair=True)))
            if bench.rank == 0:
                rows.append((name, active, max(raw), max(fw), max(fair)))
    return rows


# -- c. read_multi -------------------------------------------------------------


def multi_table():
    """The 10,000 small keys and their values: float scalars and 4-arrays."""
    half = MULTI_KEYS // 2
    table = {f"f{i}": float(i) for i in range(half)}
    table.update({f"a{i}": np.full(4, i, dtype=np.float64) for i in range(half)})
    return table


def raw_multi(bench, table, groups):
    """Raw pickled keys → pickled values, one message per server; seconds per call."""
    comm, result = bench.raw, None
    if bench.is_server:
        status = MPI.Status()
        while (keys := comm.recv(source=0, tag=TAG_REQ, status=status)) is not None:
            comm.send([table[key] for key in keys], dest=0, tag=TAG_REPLY)
    elif bench.rank == 0:
        def call():
            for server, keys in groups.items():
                comm.send(keys, dest=bench.top.server_ranks[server], tag=TAG_REQ)
            return [comm.recv(source=bench.top.server_ranks[server], tag=TAG_REPLY)
                    for server in groups]

        call()
        result = [timed(call, 1) for _ in range(bench.multi_reps)]
        for rank in bench.top.server_ranks:
            comm.send(None, dest=rank, tag=TAG_REQ)
    bench.idle()
    return result


def framework_multi(bench, table):
    """``client.read_multi`` of every key from worker 0; seconds per call."""
    keys = list(table)

    def work():
        if bench.rank != 0:
            return None
        bench.client.write_multi(table)
        bench.client.flush()
        values = bench.client.read_multi(keys)
        if values[-1][0] != table[keys[-1]][0] or values[0] != table[keys[0]]:
            raise AssertionError("read_multi returned wrong values")
        return [timed(lambda: bench.client.read_multi(keys), 1)
                for _ in range(bench.multi_reps)]

    return bench.session(work)


def read_multi(bench):
    """Median seconds per read_multi call: ``(raw, framework)`` on rank 0."""
    table = multi_table()
    keys = list(table)
    groups = {server: [keys[i] for i in positions]
              for server, positions in bench.ring.group(keys).items()}
    raw = raw_multi(bench, table, groups)
    fw = framework_multi(bench, table)
    if bench.rank != 0:
        return None
    return min(raw), min(fw)


# -- printing ------------------------------------------------------------------


def size_name(size):
    """``64 KiB`` / ``4 MiB``."""
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def gbps(size, seconds):
    """Gigabytes (1e9) per second."""
    return size / seconds / 1e9


def bandwidth_rows(rows):
    """Formatted bandwidth rows with ratios."""
    out = []
    for size, raw_push, fw_push, raw_pull, fw_pull in rows:
        out.append([size_name(size),
                    f"{gbps(size, raw_push):.2f}", f"{gbps(size, fw_push):.2f}",
                    f"{raw_push / fw_push:.2f}",
                    f"{gbps(size, raw_pull):.2f}", f"{gbps(size, fw_pull):.2f}",
                    f"{raw_pull / fw_pull:.2f}"])
    return out


def summary_rows(bw_rows, rtt_rows):
    """One row per target: what was measured, the worst ratio, pass or not."""
    big = [row for row in bw_rows if row[0] >= MIB]
    push = min(row[1] / row[2] for row in big)
    pull = min(row[3] / row[4] for row in big)
    rows = [["push bandwidth, blocks >= 1 MiB (worst)", f"{push:.2f}", f">= {BW_TARGET}",
             verdict(push, BW_TARGET)],
            ["pull bandwidth, blocks >= 1 MiB (worst)", f"{pull:.2f}", f">= {BW_TARGET}",
             verdict(pull, BW_TARGET)]]
    for name, active, raw, fw, fair in rtt_rows:
        who = "1 worker" if active == 1 else f"{active} workers"
        rows.append([f"small read ({name}), {who}", f"{fw / raw:.2f}", f">= {RTT_TARGET}",
                     verdict(fw / raw, RTT_TARGET)])
        rows.append([f"small read ({name}), {who}, vs fair raw", f"{fw / fair:.2f}",
                     f">= {RTT_TARGET}", verdict(fw / fair, RTT_TARGET)])
    return rows


def verdict(ratio, target):
    """``ok`` or ``BELOW``."""
    return "ok" if ratio >= target else "BELOW"


def report(bench, bw_rows, rtt_rows, multi, load):
    """Print every table (rank 0)."""
    top = bench.top
    print(f"bench_kv: {top.num_workers + top.num_servers} ranks = {top.num_workers} "
          f"worker(s) + {top.num_servers} server(s); "
          f"{MPI.Get_library_version().split(',')[0]}; mpi4py {mpi4py.__version__}")
    print(load)
    print_table("a. push / pull bandwidth, worker 0 <-> server 0 (GB/s, best of "
                f"{bench.reps}; ratio = paracel / raw)",
                ["block", "raw push", "paracel push", "ratio", "raw pull", "paracel pull",
                 "ratio"], bandwidth_rows(bw_rows))
    print_table(f"b. small-value reads (round trips/s, aggregate over readers, best of "
                f"{bench.small_reps} x {bench.seconds} s)",
                ["value", "readers", "raw", "paracel", "ratio", "raw (fair)", "ratio (fair)"],
                [[name, active, f"{raw:,.0f}", f"{fw:,.0f}", f"{fw / raw:.2f}", f"{fair:,.0f}",
                  f"{fw / fair:.2f}"]
                 for name, active, raw, fw, fair in rtt_rows])
    raw, fw = multi
    print_table(f"c. read_multi of {MULTI_KEYS:,} small keys from worker 0 over "
                f"{top.num_servers} server(s) (best of {bench.multi_reps})",
                ["", "ms per call", "keys/s", "ratio"],
                [["raw pickled lists", f"{raw * 1e3:.1f}", f"{MULTI_KEYS / raw:,.0f}", ""],
                 ["paracel read_multi", f"{fw * 1e3:.1f}", f"{MULTI_KEYS / fw:,.0f}",
                  f"{raw / fw:.2f}"]])
    print_table("summary (ratio = paracel / raw)", ["measure", "ratio", "target", "verdict"],
                summary_rows(bw_rows, rtt_rows))


def results(bench, bw_rows, rtt_rows, multi, load):
    """The measured numbers as plain data, for ``--json`` (rank 0).

    Bandwidths are GB/s and ratios paracel / raw (above 1: paracel faster),
    as in the printed tables; small reads also give ``raw_fair_per_s`` and
    ``ratio_fair``, against the raw loop that waits as paracel does.
    """
    top = bench.top
    raw, fw = multi
    return {
        "ranks": top.num_workers + top.num_servers, "workers": top.num_workers,
        "servers": top.num_servers, "reps": bench.reps, "small_reps": bench.small_reps,
        "small_seconds": bench.seconds, "multi_reps": bench.multi_reps,
        "mpi": MPI.Get_library_version().split(",")[0], "load": load,
        "bandwidth": [{"bytes": size,
                       "raw_push_gbps": gbps(size, raw_push),
                       "paracel_push_gbps": gbps(size, fw_push),
                       "push_ratio": raw_push / fw_push,
                       "raw_pull_gbps": gbps(size, raw_pull),
                       "paracel_pull_gbps": gbps(size, fw_pull),
                       "pull_ratio": raw_pull / fw_pull}
                      for size, raw_push, fw_push, raw_pull, fw_pull in bw_rows],
        "small": [{"value": name, "readers": active, "raw_per_s": raw_rate,
                   "paracel_per_s": fw_rate, "ratio": fw_rate / raw_rate,
                   "raw_fair_per_s": fair_rate, "ratio_fair": fw_rate / fair_rate}
                  for name, active, raw_rate, fw_rate, fair_rate in rtt_rows],
        "read_multi": {"keys": MULTI_KEYS, "raw_seconds": raw, "paracel_seconds": fw,
                       "raw_keys_per_s": MULTI_KEYS / raw,
                       "paracel_keys_per_s": MULTI_KEYS / fw, "ratio": raw / fw},
    }


class CollectiveLoadMeter:
    """CPU used by processes outside the job while it runs (collective)."""

    def __init__(self, comm):
        self.comm = comm
        self.start = time.perf_counter()
        self.machine = machine_cpu_seconds()
        self.own = own_cpu_seconds()
        self.launcher = process_cpu_seconds(os.getppid()) or 0.0

    def line(self):
        """The sentence of :func:`_common.other_load_line` (rank 0; else None)."""
        own = self.comm.reduce(own_cpu_seconds() - self.own, root=0)
        if self.comm.Get_rank() != 0:
            return None
        own += (process_cpu_seconds(os.getppid()) or self.launcher) - self.launcher
        return other_load_line(machine_cpu_seconds() - self.machine, own,
                               time.perf_counter() - self.start)


def main():
    """Parse flags, run every measurement on every rank, print on rank 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=1, help="parameter-server ranks")
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers here as JSON")
    args = parser.parse_args()
    bench = Bench(MPI.COMM_WORLD, args.servers, args.quick)
    meter = CollectiveLoadMeter(bench.raw)
    bw_rows = bandwidth(bench)
    rtt_rows = round_trips(bench)
    multi = read_multi(bench)
    load = meter.line()
    if bench.rank == 0:
        report(bench, bw_rows, rtt_rows, multi, load)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(results(bench, bw_rows, rtt_rows, multi, load), handle, indent=1)


if __name__ == "__main__":
    main()
