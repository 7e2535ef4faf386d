"""``lr`` on 4 workers against scikit-learn's ``LogisticRegression``.

Data: scikit-learn's breast-cancer set, standardised and repeated ``--copies``
times with small noise (so the job has work to spread), written as a LIBSVM
file to a temporary folder. The paracel job (``python -m paracel.run`` on a
temporary job file, ``-n 5 --servers 1``: 4 workers and 1 server) runs
full-batch GD, mini-batch SGD with staleness 0, 2 and null, Downpour SGD
(staleness 2) and iterative parameter mixing; the reference
is ``LogisticRegression(C, solver="lbfgs")`` on the same rows in one process.

Printed per case: the job's wall time (launch included) and ``solve`` time,
the reference's time, the ratios, and the final log-loss and accuracy of
each. ``--json PATH`` also writes the rows as JSON (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_lr.py [--copies 20] [--epochs 30] [--json PATH]
"""

import argparse
import os
import tempfile
import time

import numpy as np
from sklearn.datasets import dump_svmlight_file, load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.preprocessing import StandardScaler

from _common import (print_table, result_row, run_paracel, write_json)

C = 0.1


def data(copies):
    """Standardised breast cancer, repeated with noise, labels ±1."""
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.default_rng(0)
    X = np.vstack([X + 0.05 * rng.normal(size=X.shape) for _ in range(copies)])
    return X, np.tile(np.where(y == 1, 1, -1), copies)


def run_job(folder, name, path, staleness, params):
    """Run one paracel job; returns (wall seconds, metrics.json)."""
    run = run_paracel(folder, name, {"algorithm": "lr", "input": path, "staleness": staleness,
                                     "seed": 1, "params": params})
    return run.wall, run.metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    X, y = data(args.copies)
    with tempfile.TemporaryDirectory(prefix="paracel-bench-lr-") as folder:
        rows, results = run_cases(folder, X, y, args.epochs, args.copies)
    print_table(f"lr on breast cancer x{args.copies} ({X.shape[0]} x {X.shape[1]}), C={C}: "
                "4 workers + 1 server vs scikit-learn lbfgs in one process",
                ["case", "job wall s", "solve s", "sklearn s", "solve/sk", "log-loss",
                 "sk log-loss", "accuracy", "sk accuracy"], rows)
    if args.json:
        write_json(args.json, results)


def run_cases(folder, X, y, epochs, copies):
    """The reference and every paracel case: (printed rows, JSON rows)."""
    path = os.path.join(folder, "train.svm")
    dump_svmlight_file(X, y, path, zero_based=False)
    start = time.perf_counter()
    reference = LogisticRegression(C=C, max_iter=1000).fit(X, y)
    ref_seconds = time.perf_counter() - start
    ref_loss = log_loss(y, reference.predict_proba(X))
    ref_acc = accuracy_score(y, reference.predict(X))
    cases = [("gd", 0, {"method": "gd", "epochs": 500, "tol": 1e-6}),
             ("sgd", 0, {"method": "sgd", "epochs": epochs, "tol": None}),
             ("sgd", 2, {"method": "sgd", "epochs": epochs, "tol": None}),
             ("sgd", None, {"method": "sgd", "epochs": epochs, "tol": None}),
             ("downpour", 2, {"method": "downpour", "epochs": epochs}),
             ("ipm", 0, {"method": "ipm", "epochs": epochs})]
    described = f"breast cancer x{copies} ({X.shape[0]} x {X.shape[1]})"
    rows, results = [], []
    for method, staleness, params in cases:
        name = f"{method}-{staleness}"
        wall, metrics = run_job(folder, name, path, staleness, {**params, "C": C})
        solve = metrics["timings"]["solve_seconds"]
        found = metrics["metrics"]
        rows.append([name, f"{wall:.2f}", f"{solve:.2f}", f"{ref_seconds:.2f}",
                     f"{solve / ref_seconds:.1f}", f"{found['log_loss']:.5f}",
                     f"{ref_loss:.5f}", f"{found['accuracy']:.4f}", f"{ref_acc:.4f}"])
        results.append(result_row(name, described, wall, solve, ref_seconds, "log-loss",
                                  found["log_loss"], ref_loss, metrics["timings"],
                                  f"accuracy {found['accuracy']:.4f} / {ref_acc:.4f}"))
    return rows, results


if __name__ == "__main__":
    main()
