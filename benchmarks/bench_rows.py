"""Row tables: pull and push of random rows, against raw mpi4py and numpy.

One worker and 1 or 2 servers. A row table of width 1 or 2 is filled with
~4 M rows under random 64-bit ids; then the worker pulls (``T.pull``) and
pushes (``T.push(...).wait()``, ``add``) 10 k, 100 k and 1 M ids drawn from
the existing ones (repeats allowed) -- a push of other ids than the last
pull's, and a push of the very ids just pulled (SGD's pull, compute, push:
the servers reuse the rows the pull found) -- and the same exchange is made with
raw mpi4py: the worker sends each server the same number of ids as a raw
buffer, the server gathers (pull) or ``np.add.at``-s (push) the rows of a
dense array, the ids being row numbers there, and sends the values back
(or a one-byte ack). Raw ranks wait the way paracel's do (``improbe``
between :class:`paracel.waiting.Backoff` pauses, no spinning), so the ratio
is the cost of ids that are hashed 64-bit keys rather than row numbers, of
grouping them by server and of the framework's messages. The third column
is a local numpy fancy index (``values[rows]``, or ``np.add.at``) of as many
rows of a 4 M-row array, no MPI at all.

Then *where the time goes*: the same steps timed one by one (CPU time) in
this process, on a shard of the same size as one server's (placing and
grouping the ids on the worker, finding the rows in the id map, gathering
or adding the values on the server).

Each measurement is the best of ``--reps`` (the machine is small and
shared); the run prints how many cores other processes used meanwhile.

Run from the project folder (it launches ``mpiexec`` itself, once per
server count)::

    .venv/bin/python benchmarks/bench_rows.py [--quick] [--servers 1 2]
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from _common import LoadMeter, print_table

ROWS = 4_000_000
SIZES = (10_000, 100_000, 1_000_000)
WIDTHS = (1, 2)
FILL_BATCH = 500_000
TAG_PULL, TAG_PUSH, TAG_STOP, TAG_DATA, TAG_REPLY = 81, 82, 83, 84, 85


def best(operation, reps, clock=time.perf_counter):
    """The fastest of ``reps`` calls of ``operation``, in seconds of ``clock``."""
    times = []
    for _ in range(reps):
        start = clock()
        operation()
        times.append(clock() - start)
    return min(times)


# -- the job (every rank) --------------------------------------------------------

class Bench:
    """This rank's part: the paracel server or client, and the raw loops."""

    def __init__(self, servers, reps, rows):
        from mpi4py import MPI

        from paracel import topology as topo
        from paracel.client import Client
        from paracel.partition import Ring
        from paracel.server.serve import Server

        self.MPI = MPI
        self.world = MPI.COMM_WORLD
        self.raw = self.world.Dup()
        self.top = topo.split(self.world, servers)
        self.servers, self.reps, self.rows = servers, reps, rows
        self.is_server = self.top.role == "server"
        if self.is_server:
            self.server = Server(self.top.ps, self.top.index, self.top.num_workers)
        else:
            self.client = Client(self.top.ps, self.top.server_ranks, Ring(servers))

    def idle(self):
        from paracel.waiting import wait_request

        wait_request(self.raw.Ibarrier())

    def session(self, work):
        """Serve (servers) while the worker runs ``work()``; its result."""
        result = None
        if self.is_server:
            self.server.finished.clear()
            self.server.serve()
        else:
            result = work()
            self.client.done()
        self.idle()
        return result

    def run(self, width):
        """Fill a table, then time paracel and raw exchanges of every size;
        rows ``(size, paracel pull, raw pull, paracel push, raw push)``."""
        from paracel.rows import open_table

        table = None

        def fill():
            nonlocal table
            table = open_table(self.client, f"bench{width}", width, np.float64, 0)
            rng = np.random.default_rng(width)
            ids = rng.integers(0, 2**64 - 1, self.rows, dtype=np.uint64, endpoint=True)
            for start in range(0, ids.size, FILL_BATCH):
                table.push(ids[start:start + FILL_BATCH],
                           np.ones((min(FILL_BATCH, ids.size - start), width))).wait()
            return ids

        ids = self.session(fill)
        results = []
        for size in SIZES:
            asked = other = None
            if not self.is_server:
                draw = np.random.default_rng(size).integers(0, ids.size, (2, size))
                asked, other = ids[draw[0]], ids[draw[1]]
            fw = self.session(lambda: self._paracel(table, asked, other, width))
            raw = self._raw(asked, width)
            if not self.is_server:
                results.append((size, fw[0], raw[0], fw[1], raw[1], fw[2]))
        return results, ids

    def _paracel(self, table, asked, other, width):
        """Seconds of a pull, of a push of other ids, and of a push of the
        ids just pulled (pull untimed; the servers reuse the rows found)."""
        deltas = np.ones((asked.size, width))
        table.pull(asked)
        pull = best(lambda: table.pull(asked), self.reps)
        push = best(lambda: table.push(other, deltas).wait(), self.reps)
        after_pull = []
        for _ in range(self.reps):
            table.pull(asked)
            start = time.perf_counter()
            table.push(asked, deltas).wait()
            after_pull.append(time.perf_counter() - start)
        return pull, push, min(after_pull)

    # -- raw mpi4py ----------------------------------------------------------

    def _raw(self, asked, width):
        """Raw pull and push seconds on the worker (``None`` on servers)."""
        from paracel.partition import id_servers

        result = None
        if self.is_server:
            self._raw_serve(width)
        else:
            places = id_servers(asked, self.servers)
            share = self.rows // self.servers
            parts = [np.random.default_rng(s).integers(0, share, int((places == s).sum()))
                     .astype(np.uint64) for s in range(self.servers)]
            result = self._raw_worker(parts, width)
        self.idle()
        return result

    def _raw_worker(self, parts, width):
        from paracel.waiting import Backoff, wait_request

        raw, ranks, backoff = self.raw, self.top.server_ranks, Backoff()
        outs = [np.empty((part.size, width)) for part in parts]
        deltas = [np.ones((part.size, width)) for part in parts]
        ack = np.empty(1, dtype=np.uint8)

        def receive(rank, buffer):
            backoff.reset()
            while (message := raw.improbe(ranks[rank], TAG_REPLY)) is None:
                backoff.pause()
            message.Recv(buffer)

        def pull():
            sends = [raw.Isend(part, dest=ranks[s], tag=TAG_PULL) for s, part in enumerate(parts)]
            for s, out in enumerate(outs):
                receive(s, out)
            wait_request(sends, backoff)

        def push():
            sends = []
            for s, part in enumerate(parts):
                sends += [raw.Isend(part, dest=ranks[s], tag=TAG_PUSH),
                          raw.Isend(deltas[s], dest=ranks[s], tag=TAG_DATA)]
            for s in range(len(parts)):
                receive(s, ack)
            wait_request(sends, backoff)

        pull()
        result = best(pull, self.reps), best(push, self.reps)
        for rank in ranks:
            raw.Send(ack, dest=rank, tag=TAG_STOP)
        return result

    def _raw_serve(self, width):
        """Answer raw pulls and pushes from worker 0 until it says stop."""
        from paracel.waiting import Backoff, wait_request

        raw, MPI, backoff = self.raw, self.MPI, Backoff()
        values = np.zeros((self.rows // self.servers, width))
        flat = values.view(np.dtype((np.void, 8 * width))).reshape(values.shape[0])
        status = MPI.Status()
        while True:
            message = raw.improbe(0, MPI.ANY_TAG, status)
            if message is None:
                backoff.pause()
                continue
            backoff.reset()
            tag, count = status.Get_tag(), status.Get_count(MPI.BYTE) // 8
            rows = np.empty(count, dtype=np.uint64)
            message.Recv(rows if tag != TAG_STOP else np.empty(1, dtype=np.uint8))
            if tag == TAG_STOP:
                return
            rows = rows.view(np.int64)
            if tag == TAG_PULL:
                reply = np.take(flat, rows).view(np.float64)
            else:
                deltas = np.empty((count, width))
                raw.Recv(deltas, source=0, tag=TAG_DATA)
                for column in range(width):
                    np.add.at(values[:, column], rows, deltas[:, column])
                reply = np.zeros(1, dtype=np.uint8)
            wait_request(raw.Isend(reply, dest=0, tag=TAG_REPLY), backoff)


def local_rows(reps):
    """Seconds of a numpy fancy index / ``np.add.at`` of each size's rows in
    a local 4 M-row array: ``{(width, size): (pull, push)}``."""
    found = {}
    for width in WIDTHS:
        values = np.zeros((ROWS, width))
        for size in SIZES:
            rows = np.random.default_rng(size).integers(0, ROWS, size)
            deltas = np.ones((size, width))
            found[width, size] = (best(lambda: values[rows], reps),
                                  best(lambda: np.add.at(values, rows, deltas), reps))
    return found


def breakdown(ids, servers, width, reps):
    """CPU seconds of each step of a pull and a push of each size of ids
    (from ``ids``), timed in this process on a shard of one server's rows:
    ``{step: {size: seconds}}`` (CPU time: steadier than wall time on a
    shared machine)."""
    from paracel.partition import id_servers
    from paracel.rows import group_by_server
    from paracel.server.rowtable import RowShard

    mine = ids[id_servers(ids, servers) == 0]
    shard = RowShard("b", width, np.float64, 0)
    for start in range(0, mine.size, FILL_BATCH):
        shard.push(mine[start:start + FILL_BATCH],
                   np.ones((min(FILL_BATCH, mine.size - start), width)), "add", ())
    found = {}
    for size in SIZES:
        asked = ids[np.random.default_rng(size).integers(0, ids.size, size)]
        here = mine[np.random.default_rng(size).integers(0, mine.size, size // servers)]
        rows = shard.map.find(here)
        deltas = np.ones((here.size, width))

        def add():
            np.add.at(shard._counts, rows, 1)
            for column in range(width):
                np.add.at(shard._values[:, column], rows, deltas[:, column])

        steps = {"worker: place + group the ids": lambda: group_by_server(asked, servers),
                 "server: find the rows (id map)": lambda: shard.map.find(here),
                 "server: gather the values (pull)": lambda: np.take(shard._flat, rows),
                 "server: count + add (push)": add}
        for step, call in steps.items():
            found.setdefault(step, {})[size] = best(call, reps, time.process_time)
    return found


def rank_main(args):
    """Every rank of one mpiexec run; worker 0 prints."""
    from paracel.run import open_mpi_settings

    for name, value in open_mpi_settings(os.environ).items():
        os.environ.setdefault(name, value)
    bench = Bench(args.servers[0], args.reps, args.rows)
    tables = {width: bench.run(width) for width in WIDTHS}
    if not bench.is_server:
        report(args, tables, local_rows(args.reps))


def report(args, tables, local):
    servers = args.servers[0]
    for width, (results, ids) in tables.items():
        rows = []
        for size, pull, raw_pull, push, raw_push, after_pull in results:
            local_pull, local_push = local[width, size]
            rows.append([f"{size:,}", ms(pull), ms(raw_pull), ratio(pull, raw_pull),
                         ms(local_pull), ms(push), ms(raw_push), ratio(push, raw_push),
                         ms(local_push), ms(after_pull), ratio(after_pull, raw_push)])
        print_table(f"width {width}, {servers} server(s), {ids.size:,} rows: ms per call "
                    f"(best of {args.reps}); ratio = paracel / raw mpi4py; numpy: "
                    "values[rows] and np.add.at in one process; push after pull: of the "
                    "ids just pulled",
                    ["ids", "pull", "raw", "ratio", "numpy", "push", "raw", "ratio", "numpy",
                     "push after pull", "ratio"], rows)
        steps = breakdown(ids, servers, width, args.reps)
        print_table(f"where the time goes, width {width}: CPU ms per call, in one process "
                    f"(a server's shard of ~{ids.size // servers:,} rows, 1/{servers} of "
                    "the ids)", ["step", *[f"{size:,} ids" for size in SIZES]],
                    [[step, *[ms(times[size]) for size in SIZES]]
                     for step, times in steps.items()])


def ms(seconds):
    return f"{seconds * 1e3:.2f}"


def ratio(ours, raw):
    return f"{ours / raw:.2f}"


def launch(args):
    """Run this script under mpiexec once per server count."""
    from paracel.run import find_mpiexec, mpiexec_command

    meter = LoadMeter()
    for servers in args.servers:
        command, env = mpiexec_command(find_mpiexec(), servers + 1)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(__file__),
                                                          env.get("PYTHONPATH")]))
        subprocess.run([*command, sys.executable, __file__, "--rank", "--servers",
                        str(servers), "--reps", str(args.reps), "--rows", str(args.rows)],
                       env=env, check=True)
    print(meter.line())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (best kept)")
    parser.add_argument("--rows", type=int, default=ROWS, help="rows in the table")
    parser.add_argument("--quick", action="store_true", help="3 repetitions, 1 M rows")
    parser.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.reps, args.rows = 3, 1_000_000
    if args.rank:
        rank_main(args)
    else:
        launch(args)


if __name__ == "__main__":
    main()
