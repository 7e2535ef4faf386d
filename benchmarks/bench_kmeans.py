"""``kmeans`` on 4 workers against scikit-learn in one process, on real data.

Data: scikit-learn's ``load_digits`` (default; or ``--dataset iris|wine``),
standardized, written as ``id,f1,...`` lines to a temporary folder. Two
comparisons, each a paracel job (``python -m paracel.run`` on a temporary
job file, ``-n 5 --servers 1``: 4 workers, 1 server, launched by this
script) against ``sklearn.cluster.KMeans(algorithm="lloyd")``:

1. **given init**: both start from the same centers
   (``sklearn.cluster.kmeans_plusplus(random_state=0)``); ``n_init=1``.
2. **k-means++**: each seeds itself, ``n_init`` runs (``--n-init``, default
   10), the best kept.

Printed per comparison: the job's wall time (launch included) and its
``solve`` time from ``metrics.json``, scikit-learn's wall time, the ratios,
and the final inertia and iteration count of each; then how busy the machine
was (the cores are shared, so ratios measured under load mean little).
``--json PATH`` also writes the rows as JSON (``_common.result_row``).

The launcher gives the job's ranks one BLAS thread each unless set (see
``bench_sim.py`` for why).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_kmeans.py [--dataset digits] [--n-init 10] [--json PATH]
"""

import argparse
import os
import tempfile
import time

from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.preprocessing import StandardScaler

from _common import (LoadMeter, print_table, result_row, run_paracel, write_json)

DATASETS = {"iris": (load_iris, 3), "wine": (load_wine, 3), "digits": (load_digits, 10)}
ALGORITHM = "paracel.algorithms.kmeans:KMeans"


def write_rows(path, X, ids):
    with open(path, "w", encoding="ascii") as handle:
        for i, row in enumerate(X):
            handle.write((f"{i}," if ids else "") + ",".join(map(repr, row.tolist())) + "\n")


def run_job(folder, name, points, params, processes=5, servers=1):
    """Run one paracel job; returns (wall seconds, metrics.json)."""
    run = run_paracel(folder, name, {"algorithm": ALGORITHM, "input": points, "params": params},
                      processes, servers)
    return run.wall, run.metrics


def reference(X, k, **options):
    start = time.perf_counter()
    model = KMeans(k, algorithm="lloyd", **options).fit(X)
    return time.perf_counter() - start, model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="digits")
    parser.add_argument("--n-init", type=int, default=10)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    loader, k = DATASETS[args.dataset]
    X = StandardScaler().fit_transform(loader().data)
    meter = LoadMeter()
    described = f"{args.dataset} ({X.shape[0]} x {X.shape[1]}), k={k}"
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_kmeans_") as folder:
        points, init_path = os.path.join(folder, "points.csv"), os.path.join(folder, "init.txt")
        write_rows(points, X, ids=True)
        init, _ = kmeans_plusplus(X, k, random_state=0)
        write_rows(init_path, init, ids=False)
        cases = [("given init", {"k": k, "init_centers": init_path}, {"init": init, "n_init": 1}),
                 (f"k-means++ x{args.n_init}", {"k": k, "n_init": args.n_init},
                  {"n_init": args.n_init, "random_state": 0})]
        for index, (label, params, options) in enumerate(cases):
            wall, metrics = run_job(folder, f"job{index}", points, params)
            ref_wall, model = reference(X, k, **options)
            solve = metrics["timings"]["solve_seconds"]
            rows.append([label, f"{wall:.2f}", f"{solve:.3f}", f"{ref_wall:.3f}",
                         f"{wall / ref_wall:.1f}", f"{solve / ref_wall:.1f}",
                         f"{metrics['metrics']['inertia']:.6f}", f"{model.inertia_:.6f}",
                         metrics["metrics"]["iterations"], model.n_iter_])
            results.append(result_row(
                label, described, wall, solve, ref_wall, "inertia",
                metrics["metrics"]["inertia"], model.inertia_, metrics["timings"],
                f"iterations {metrics['metrics']['iterations']} / {model.n_iter_}"))
    header = ["case", "job wall s", "job solve s", "sklearn s", "wall/sk", "solve/sk",
              "paracel inertia", "sklearn inertia", "p iters", "sk iters"]
    print_table(f"kmeans on {args.dataset} ({X.shape[0]} x {X.shape[1]}, k={k}): "
                "4 workers + 1 server vs scikit-learn in one process", header, rows)
    print(meter.line())
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
