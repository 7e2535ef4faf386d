"""LIBSVM loading and distributed-vector row pulls, against their baselines.

Two measurements, each in fresh processes started by this script:

1. **LIBSVM loading.** A LIBSVM file of ``--size-mb`` MB (10^6 bytes;
   labels ±1, 20–40 features per line out of 1,000,000, strictly increasing
   1-based indices, values with 6 significant digits) is generated once and
   cached (``--data``, default under ``/tmp``; it is never committed). It is
   read once before timing, so every load below finds it in the page cache.
   ``paracel.io.libsvm.load(files, comm, rank, size)`` is timed under
   ``mpiexec -n W`` for each W of ``--workers`` (default 1, 2, 4; every rank
   a worker), from a non-spinning barrier to the last rank's return; and
   ``sklearn.datasets.load_svmlight_file`` is timed on the same file in one
   plain process. Reported: seconds, aggregate MB/s (file MB / wall),
   per-worker MB/s (aggregate / W), the ratios of both to scikit-learn's
   MB/s, CPU seconds of all ranks, MB per CPU-second (robust when the
   machine is shared) and its ratio to scikit-learn's, the largest peak RSS
   of one rank; and a sanity check that every load agrees with scikit-learn
   on shape, nnz and the sums of values and labels.
2. **Row pulls.** A float64 vector of shape ``(10_000_000,)`` is a
   :class:`paracel.matrix.DistMatrix` on 2 servers (``mpiexec -n 3``: one
   worker, wired up as :func:`paracel.run._run_role` does it, without the
   clock table). The worker times ``matrix.pull(rows)`` for 10,000 random
   rows, 10,000 contiguous rows and 1,000,000 random rows, against a minimal
   raw mpi4py request/reply on the same ranks: each server rank holds one
   contiguous half of the vector, the worker ``Send``\\ s each server the
   int64 indices of its rows and ``Recv``\\ s the float64 values into a
   numpy buffer. Raw and paracel sessions alternate round by round; the
   median wall time per pull is reported, with the ratio paracel / raw, and
   the worker's own CPU time per pull (what the worker spends, whatever the
   servers and other processes do).

Run (from the project folder, outside mpiexec; it launches the MPI jobs
itself, with the launch options of :func:`paracel.mpiexec.command`)::

    .venv/bin/python benchmarks/bench_io.py [--size-mb 1000] [--workers 1 2 4]

``--skip-load`` / ``--skip-pulls`` run one half only; ``--role`` is internal
(what the script runs as inside its own ``mpiexec`` jobs).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import machine_cpu_seconds, other_load_line, print_table, children_cpu_seconds

MB = 10**6
N_FEATURES = 1_000_000
MIN_NNZ, MAX_NNZ = 20, 40
CHUNK_LINES = 20_000
VECTOR_ROWS = 10_000_000
PULL_SERVERS = 2
TAG_ROWS = 91
TAG_VALUES = 92
RTOL = 1e-9


# -- the data file ---------------------------------------------------------------


def data_path(args):
    """Where the LIBSVM file lives: ``--data`` or a cached name under /tmp."""
    if args.data:
        return args.data
    folder = os.path.join(tempfile.gettempdir(), "paracel_bench_io")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"libsvm_{args.size_mb}MB_seed{args.seed}.svm")


def format_chunk(rng, lines):
    """``lines`` random LIBSVM lines as ASCII bytes.

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of randomness.
    lines : int
        How many lines.

    Returns
    -------
    bytes
        Lines ``label idx:val ...`` with 20–40 strictly increasing 1-based
        indices below 1,000,000 and ``%.6g`` values, each ending in ``\\n``.
    """
    counts = rng.integers(MIN_NNZ, MAX_NNZ + 1, size=lines)
    labels = rng.choice(np.array([-1.0, 1.0]), size=lines)
    text = [None] * lines
    for k in np.unique(counts).tolist():
        where = np.flatnonzero(counts == k)
        # sorted draws from [1, N - k + 1] plus 0..k-1 are strictly increasing
        indices = np.sort(rng.integers(1, N_FEATURES - k + 2, size=(where.size, k)), axis=1)
        table = np.empty((where.size, 1 + 2 * k))
        table[:, 0] = labels[where]
        table[:, 1::2] = indices + np.arange(k)
        table[:, 2::2] = rng.standard_normal((where.size, k))
        fmt = "%d" + " %d:%.6g" * k
        for position, row in zip(where.tolist(), table.tolist()):
            text[position] = fmt % tuple(row)
    return ("\n".join(text) + "\n").encode("ascii")


def generate(path, size_bytes, seed):
    """Write a LIBSVM file of about ``size_bytes`` (whole lines) to ``path``.

    Returns
    -------
    float
        Seconds it took.
    """
    start, rng, written = time.perf_counter(), np.random.default_rng(seed), 0
    partial = path + ".part"
    with open(partial, "wb") as out:
        while written < size_bytes:
            chunk = format_chunk(rng, CHUNK_LINES)
            if written + len(chunk) > size_bytes:  # the last chunk: cut at a line end
                chunk = chunk[:chunk.rfind(b"\n", 0, size_bytes - written) + 1]
                size_bytes = written  # stop after this one
            out.write(chunk)
            written += len(chunk)
    os.replace(partial, path)
    return time.perf_counter() - start


def warm(path):
    """Read ``path`` once so that every timed load finds it in the page cache."""
    with open(path, "rb") as handle:
        while handle.read(64 * MB):
            pass


# -- role: one process loading with scikit-learn ----------------------------------


def peak_rss_mb():
    """This process's peak resident set size in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def cpu_seconds():
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def summary(labels, X):
    """Shape, nnz and checksums of a loaded (labels, X): what loads must agree on."""
    return {"rows": int(X.shape[0]), "cols": int(X.shape[1]), "nnz": int(X.nnz),
            "value_sum": float(X.data.sum()), "label_sum": float(np.sum(labels))}


def role_sklearn(args):
    """Time ``load_svmlight_file`` ``--reps`` times; write the result as JSON."""
    from sklearn.datasets import load_svmlight_file

    seconds, cpu = [], []
    for _ in range(args.reps):
        start, cpu_start = time.perf_counter(), cpu_seconds()
        X, labels = load_svmlight_file(args.path)
        seconds.append(time.perf_counter() - start)
        cpu.append(cpu_seconds() - cpu_start)
        check = summary(labels, X)
        del X, labels
    write_json(args.json, {"seconds": statistics.median(seconds), "cpu": statistics.median(cpu),
                           "rss_mb": peak_rss_mb(), "check": check})


# -- role: W ranks loading with paracel ----------------------------------------------


def role_load(args):
    """Every rank loads its share ``--reps`` times; rank 0 writes the JSON result."""
    from mpi4py import MPI

    from paracel.io import libsvm
    from paracel.waiting import wait_request

    comm = MPI.COMM_WORLD.Dup()
    rank, size = comm.Get_rank(), comm.Get_size()
    walls, cpus = [], []
    for _ in range(args.reps):
        wait_request(comm.Ibarrier())
        start, cpu_start = time.perf_counter(), cpu_seconds()
        labels, X, _ = libsvm.load([args.path], comm, rank, size)
        mine = (time.perf_counter() - start, cpu_seconds() - cpu_start, summary(labels, X))
        del labels, X
        everyone = comm.gather(mine, root=0)
        if rank == 0:
            walls.append(max(part[0] for part in everyone))
            cpus.append(sum(part[1] for part in everyone))
            check = merge_checks([part[2] for part in everyone])
    rss = comm.gather(peak_rss_mb(), root=0)
    if rank == 0:
        write_json(args.json, {"seconds": statistics.median(walls),
                               "cpu": statistics.median(cpus), "rss_mb": max(rss),
                               "check": check})


def merge_checks(parts):
    """The whole file's summary from the workers' shares."""
    cols = {part["cols"] for part in parts}
    if len(cols) != 1:
        raise AssertionError(f"workers disagree on the column count: {sorted(cols)}")
    return {"rows": sum(part["rows"] for part in parts), "cols": cols.pop(),
            "nnz": sum(part["nnz"] for part in parts),
            "value_sum": sum(part["value_sum"] for part in parts),
            "label_sum": sum(part["label_sum"] for part in parts)}


# -- role: row pulls, 1 worker + 2 servers --------------------------------------------


class PullBench:
    """This rank's role in the pull benchmark, its communicators and data.

    Parameters
    ----------
    world : mpi4py.MPI.Comm
        ``MPI.COMM_WORLD`` of exactly ``1 + PULL_SERVERS`` ranks.
    seed : int
        Seed of the vector's values and of the random rows.
    """

    def __init__(self, world, seed):
        from paracel import topology
        from paracel.client import Client
        from paracel.partition import Ring

        self.top = topology.split(world, PULL_SERVERS)
        self.raw = world.Dup()
        self.is_server = self.top.role == "server"
        self.vector = np.random.default_rng(seed).random(VECTOR_ROWS)
        self.bounds = [VECTOR_ROWS * s // PULL_SERVERS for s in range(PULL_SERVERS + 1)]
        self.client = None if self.is_server else Client(
            self.top.ps, self.top.server_ranks, Ring(self.top.num_servers))

    def idle(self):
        """Barrier of every rank that sleeps while it waits (no spinning)."""
        from paracel.waiting import wait_request

        wait_request(self.raw.Ibarrier())


def pull_cases(seed):
    """``[(name, rows)]``: the row sets the worker pulls."""
    rng = np.random.default_rng(seed + 1)
    start = int(rng.integers(0, VECTOR_ROWS - 10_000))
    return [("10,000 random", rng.integers(0, VECTOR_ROWS, size=10_000)),
            ("10,000 contiguous", np.arange(start, start + 10_000)),
            ("1,000,000 random", rng.integers(0, VECTOR_ROWS, size=1_000_000))]


def raw_serve(bench):
    """Answer raw row requests from the worker until an empty one arrives."""
    from mpi4py import MPI

    comm, status = bench.raw, MPI.Status()
    low, high = bench.bounds[bench.top.index], bench.bounds[bench.top.index + 1]
    mine = np.ascontiguousarray(bench.vector[low:high])
    while True:
        comm.Probe(source=0, tag=TAG_ROWS, status=status)
        rows = np.empty(status.Get_count(MPI.INT64_T), dtype=np.int64)
        comm.Recv(rows, source=0, tag=TAG_ROWS)
        if not rows.size:
            return
        rows -= low
        comm.Send(mine[rows], dest=0, tag=TAG_VALUES)


def raw_pull(bench, rows):
    """Values of ``rows`` by raw ``Send``/``Recv``: indices out, values back."""
    comm, out = bench.raw, np.empty(rows.size)
    owner = np.searchsorted(bench.bounds, rows, side="right") - 1
    asked = []
    for server, rank in enumerate(bench.top.server_ranks):
        mask = owner == server
        if mask.any():
            comm.Send(np.ascontiguousarray(rows[mask], dtype=np.int64), dest=rank, tag=TAG_ROWS)
            asked.append((rank, mask, np.empty(int(mask.sum()))))
    for rank, mask, values in asked:
        comm.Recv(values, source=rank, tag=TAG_VALUES)
        out[mask] = values
    return out


def timed_pulls(pull, bench, cases, inner):
    """``{case: [(wall, worker cpu) seconds per pull]}``, after one checked pull."""
    times = {}
    for name, rows in cases:
        if not np.array_equal(pull(rows), bench.vector[rows]):
            raise AssertionError(f"pull of {name} rows returned wrong values")
        times[name] = []
        for _ in range(inner):
            start, cpu_start = time.perf_counter(), time.process_time()
            pull(rows)
            times[name].append((time.perf_counter() - start, time.process_time() - cpu_start))
    return times


def raw_session(bench, cases, inner):
    """One round of raw pulls; the worker's times (``None`` on servers)."""
    result = None
    if bench.is_server:
        raw_serve(bench)
    else:
        result = timed_pulls(lambda rows: raw_pull(bench, rows), bench, cases, inner)
        for rank in bench.top.server_ranks:
            bench.raw.Send(np.empty(0, dtype=np.int64), dest=rank, tag=TAG_ROWS)
    bench.idle()
    return result


def paracel_session(bench, cases, inner):
    """One round of ``DistMatrix.pull``; the worker's times (``None`` on servers)."""
    from paracel.matrix import DistMatrix
    from paracel.server.serve import Server

    result = None
    if bench.is_server:
        Server(bench.top.ps, bench.top.index, bench.top.num_workers).serve()
    else:
        matrix = DistMatrix(bench.client, "v", (VECTOR_ROWS,))
        matrix.assign(bench.vector)
        bench.client.flush()
        result = timed_pulls(matrix.pull, bench, cases, inner)
        bench.client.done()
    bench.idle()
    return result


def role_pulls(args):
    """Alternate raw and paracel rounds; the worker writes the medians as JSON."""
    from mpi4py import MPI

    bench = PullBench(MPI.COMM_WORLD, args.seed)
    cases = pull_cases(args.seed)
    raw, fw = {}, {}
    for _ in range(args.pull_rounds):
        for store, session in ((raw, raw_session), (fw, paracel_session)):
            times = session(bench, cases, args.pull_inner)
            for name, values in (times or {}).items():
                store.setdefault(name, []).extend(values)
    if not bench.is_server:
        write_json(args.json, [{"case": name, "rows": int(rows.size),
                                "raw": median_of(raw[name], 0), "paracel": median_of(fw[name], 0),
                                "raw_cpu": median_of(raw[name], 1),
                                "paracel_cpu": median_of(fw[name], 1)}
                               for name, rows in cases])


def median_of(pairs, index):
    """Median of item ``index`` over a list of tuples."""
    return statistics.median(pair[index] for pair in pairs)


# -- the driver ------------------------------------------------------------------------


def write_json(path, value):
    """Write ``value`` as JSON to ``path``."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)


def run_role(args, role, json_path, processes=None):
    """Run this script as ``role`` (under mpiexec with ``processes`` ranks if given).

    Returns
    -------
    object
        What the role wrote to ``json_path``.
    """
    command, env = [sys.executable], dict(os.environ)
    if processes is not None:
        from paracel import mpiexec

        command, env = mpiexec.command(mpiexec.find(), processes)
        command.append(sys.executable)
        for name, value in mpiexec.OPEN_MPI_DEFAULTS.items():
            env.setdefault(name, value)
    command += [os.path.abspath(__file__), "--role", role, "--json", json_path,
                "--path", args.path, "--reps", str(args.reps), "--seed", str(args.seed),
                "--pull-rounds", str(args.pull_rounds), "--pull-inner", str(args.pull_inner)]
    subprocess.run(command, env=env, check=True, timeout=args.timeout)
    with open(json_path, encoding="utf-8") as handle:
        return json.load(handle)


def prepare_data(args):
    """Generate the data file if it is not cached; then warm the page cache."""
    args.path = data_path(args)
    if not os.path.exists(args.path):
        print(f"generating {args.path} ({args.size_mb} MB) ...", flush=True)
        seconds = generate(args.path, args.size_mb * MB, args.seed)
        print(f"  generated in {seconds:.1f} s", flush=True)
    warm(args.path)
    return os.path.getsize(args.path) / MB


def load_results(args, folder):
    """``(sklearn result, {workers: paracel result})``."""
    sk = run_role(args, "sklearn", os.path.join(folder, "sklearn.json"))
    paracel = {}
    for workers in args.workers:
        paracel[workers] = run_role(args, "load", os.path.join(folder, f"load{workers}.json"),
                                    workers)
    return sk, paracel


def agrees(check, reference):
    """Whether a load's summary matches scikit-learn's (sums to a relative 1e-9)."""
    exact = all(check[key] == reference[key] for key in ("rows", "cols", "nnz"))
    return exact and all(abs(check[key] - reference[key]) <= RTOL * max(1.0, abs(reference[key]))
                         for key in ("value_sum", "label_sum"))


def load_rows(megabytes, sk, paracel):
    """Formatted rows of the loading table."""
    sk_rate, sk_cpu_rate = megabytes / sk["seconds"], megabytes / sk["cpu"]
    rows = [["sklearn", 1, f"{sk['seconds']:.2f}", f"{sk_rate:.1f}", f"{sk_rate:.1f}", "1.00",
             "1.00", f"{sk['cpu']:.1f}", f"{sk_cpu_rate:.1f}", "1.00", f"{sk['rss_mb']:.0f}",
             "reference"]]
    for workers, result in sorted(paracel.items()):
        aggregate = megabytes / result["seconds"]
        per_worker = aggregate / workers
        cpu_rate = megabytes / result["cpu"]
        rows.append(["paracel", workers, f"{result['seconds']:.2f}", f"{aggregate:.1f}",
                     f"{per_worker:.1f}", f"{per_worker / sk_rate:.2f}",
                     f"{aggregate / sk_rate:.2f}", f"{result['cpu']:.1f}", f"{cpu_rate:.1f}",
                     f"{cpu_rate / sk_cpu_rate:.2f}", f"{result['rss_mb']:.0f}",
                     "ok" if agrees(result["check"], sk["check"]) else "MISMATCH"])
    return rows


def print_load(args, megabytes, sk, paracel):
    """Print the loading table and the file's shape."""
    check = sk["check"]
    print_table(f"LIBSVM load of {args.path}: {megabytes:.0f} MB, {check['rows']:,} rows x "
                f"{check['cols']:,} cols, nnz {check['nnz']:,} (page cache warm; "
                f"median of {args.reps})",
                ["loader", "workers", "seconds", "agg MB/s", "MB/s/worker",
                 "per-worker/sk", "agg/sk", "cpu s", "MB/cpu-s", "cpu-rate/sk",
                 "max RSS MB", "vs sklearn"],
                load_rows(megabytes, sk, paracel))


def print_pulls(args, results):
    """Print the pull table."""
    rows = [[r["case"], f"{r['rows'] * 8 / 1024:,.0f}", f"{r['raw'] * 1e3:.3f}",
             f"{r['paracel'] * 1e3:.3f}", f"{r['paracel'] / r['raw']:.2f}",
             f"{r['rows'] / r['paracel'] / 1e6:.2f}", f"{r['raw_cpu'] * 1e3:.3f}",
             f"{r['paracel_cpu'] * 1e3:.3f}", f"{r['paracel_cpu'] / r['raw_cpu']:.2f}"]
            for r in results]
    print_table(f"Row pulls from a ({VECTOR_ROWS:,},) float64 DistMatrix on {PULL_SERVERS} "
                f"servers, 1 worker (median of {args.pull_rounds} x {args.pull_inner} pulls; "
                "cpu = the worker's own CPU time per pull)",
                ["rows pulled", "values KiB", "raw ms", "paracel ms", "paracel/raw",
                 "paracel Mrows/s", "raw cpu ms", "paracel cpu ms", "cpu paracel/raw"], rows)


def driver(args):
    """Prepare the data, run every role in its own processes, print the tables."""
    machine_start, wall_start = machine_cpu_seconds(), time.perf_counter()
    children_start = children_cpu_seconds()
    with tempfile.TemporaryDirectory(prefix="bench_io_") as folder:
        if not args.skip_load:
            megabytes = prepare_data(args)
            sk, paracel = load_results(args, folder)
        if not args.skip_pulls:
            args.path = args.path or ""
            pulls = run_role(args, "pulls", os.path.join(folder, "pulls.json"),
                             1 + PULL_SERVERS)
    if not args.skip_load:
        print_load(args, megabytes, sk, paracel)
    if not args.skip_pulls:
        print_pulls(args, pulls)
    wall = time.perf_counter() - wall_start
    own = children_cpu_seconds() - children_start + cpu_seconds()
    print("\n" + other_load_line(machine_cpu_seconds() - machine_start, own, wall))


def parse_args(argv=None):
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000,
                        help="size of the generated LIBSVM file in MB (default 1000)")
    parser.add_argument("--data", help="LIBSVM file to use (generated there if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--reps", type=int, default=1, help="timed loads per loader")
    parser.add_argument("--pull-rounds", type=int, default=5,
                        help="alternating raw/paracel rounds of pulls")
    parser.add_argument("--pull-inner", type=int, default=5, help="timed pulls per round")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-pulls", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per child job")
    parser.add_argument("--role", choices=["driver", "sklearn", "load", "pulls"],
                        default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main():
    """Run as the driver, or as one of the roles it launches."""
    args = parse_args()
    roles = {"driver": driver, "sklearn": role_sklearn, "load": role_load, "pulls": role_pulls}
    roles[args.role](args)


if __name__ == "__main__":
    main()
