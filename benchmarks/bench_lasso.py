"""``lasso`` on 4 workers against scikit-learn's ``Lasso`` in one process.

Data: ``bench_ridge.py``'s synthetic set (200,000 x 100 by default, 30 true
non-zero weights, LIBSVM, read back so both sides see the same numbers).

One case, **fista**: a paracel job (``-n 5 --servers 1``: 4 workers, 1
server) with ``alpha`` (``--alpha``, default 0.05) and ``tol`` (``--tol``,
default 1e-6) against ``sklearn.linear_model.Lasso`` with the same ``alpha``
and ``tol`` (both stop on the duality gap, scaled alike).

Printed: the job's wall time (launch and load included), its ``solve``
time (loading included), scikit-learn's fit time (load not included), the
ratios, scikit-learn's load and fit time, the objective
``||y - Xw - b||^2 / (2n) + alpha ||w||_1`` of both, the largest coefficient
difference, iterations and non-zeros; then how busy the machine was.
``--json PATH`` also writes the row as JSON.

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_lasso.py [--rows 200000] [--features 100] [--json PATH]
"""

import argparse
import os
import tempfile
import time

import h5py
import numpy as np
from sklearn.linear_model import Lasso

from _common import LoadMeter, print_table, result_row, run_paracel, write_json
from bench_ridge import write_set


def lasso_objective(X, y, w, b, alpha):
    r = y - X @ w - b
    return float(r @ r / (2 * len(y)) + alpha * np.abs(w).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    meter = LoadMeter()
    described = f"synthetic ({args.rows} x {args.features}), alpha={args.alpha:g}"
    with tempfile.TemporaryDirectory(prefix="bench_lasso_") as folder:
        data = os.path.join(folder, "train.svm")
        X, y, load_s = write_set(data, args.rows, args.features)
        start = time.perf_counter()
        ref = Lasso(alpha=args.alpha, tol=args.tol, max_iter=100_000).fit(X, y)
        ref_wall = time.perf_counter() - start
        best = lasso_objective(X, y, ref.coef_, ref.intercept_, args.alpha)
        run = run_paracel(folder, "fista", {"algorithm": "lasso", "input": data,
                                            "params": {"alpha": args.alpha, "tol": args.tol}})
        with h5py.File(os.path.join(run.output, "model.h5"), "r") as handle:
            w, b = handle["w"][...], float(handle["intercept"][0])
    found = lasso_objective(X, y, w, b, args.alpha)
    solve = run.metrics["timings"]["solve_seconds"]
    diff = float(np.abs(w - ref.coef_).max())
    metrics = run.metrics["metrics"]
    rows = [["fista", f"{run.wall:.2f}", f"{solve:.3f}", f"{ref_wall:.3f}",
             f"{run.wall / ref_wall:.1f}", f"{solve / ref_wall:.1f}",
             f"{(ref_wall + load_s):.3f}", f"{found:.9g}",
             f"{best:.9g}", f"{diff:.2g}", f"{metrics['iterations']} / {ref.n_iter_}",
             f"{metrics['nonzeros']} / {np.count_nonzero(ref.coef_)}"]]
    header = ["case", "job wall s", "job solve s", "sklearn s", "wall/sk", "solve/sk",
              "sk load+fit s", "paracel objective", "sklearn objective", "max |dw|", "iters p/sk",
              "nonzeros p/sk"]
    print_table(f"lasso on {described}, tol={args.tol:g}: 4 workers + 1 server vs "
                "scikit-learn Lasso in one process", header, rows)
    print(meter.line())
    if args.json:
        write_json(args.json, [result_row(
            "fista", described, run.wall, solve, ref_wall, "objective", found, best,
            run.metrics["timings"], f"max coefficient difference {diff:.1g}; iterations "
            f"{metrics['iterations']} / {ref.n_iter_}")])


if __name__ == "__main__":
    main()
