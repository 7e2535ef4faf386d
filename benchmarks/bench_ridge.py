"""``ridge`` on 4 workers against scikit-learn's ``Ridge`` in one process.

Data (made here, seeded; ``--rows``, ``--features``): 200,000 x 100
correlated Gaussian features (pairwise correlation 0.3), a target
``y = 3 + X w + noise`` with 30 non-zero weights and noise of standard
deviation 1, written as LIBSVM (``%.6g`` values) to a temporary folder and
read back with ``load_svmlight_file`` so both sides see the same numbers;
``bench_lasso.py`` uses the same set (:func:`write_set`).

Cases, each a paracel job (``-n 5 --servers 1``: 4 workers, 1 server)
against ``sklearn.linear_model.Ridge(alpha)`` (``--alpha``, default 1):

1. **exact**: the normal equations summed on the servers;
2. **cg**: conjugate gradients, the products summed on the servers;
3. **ipm-10**: iterative parameter mixing, 10 rounds of one local SGD pass in
   mini-batches of 256.

Printed per case: the job's wall time (launch and load included), its
``solve`` time from ``metrics.json`` (loading included: the algorithm loads
inside ``solve``), scikit-learn's fit time (load not included), the ratios, scikit-learn's
load (``load_svmlight_file``) and fit time,
the objective ``||y - Xw - b||^2 + alpha ||w||^2`` of both and the largest
coefficient difference; then how busy the machine was. ``--json PATH``
also writes the rows as JSON (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_ridge.py [--rows 200000] [--features 100] [--json PATH]
"""

import argparse
import os
import tempfile
import time

import h5py
import numpy as np
from sklearn.datasets import load_svmlight_file
from sklearn.linear_model import Ridge

from _common import LoadMeter, print_table, result_row, run_paracel, write_json


def write_set(path, rows, features, seed=7, informative=30, rho=0.3):
    """Write the benchmark's regression set as LIBSVM and read it back:
    ``(X dense, y, seconds scikit-learn took to load it)``, the numbers
    exactly as the job reads them."""
    rng = np.random.default_rng(seed)
    w = np.zeros(features)
    chosen = rng.choice(features, min(informative, features), replace=False)
    w[chosen] = rng.choice([-1, 1], chosen.size) * rng.uniform(0.5, 3.0, chosen.size)
    common = rng.normal(size=(rows, 1))
    X = np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.normal(size=(rows, features))
    y = 3.0 + X @ w + rng.normal(size=rows)
    fmt = "%.6g " + " ".join(f"{j + 1}:%.6g" for j in range(features))
    np.savetxt(path, np.column_stack([y, X]), fmt=fmt)
    start = time.perf_counter()
    Xs, ys = load_svmlight_file(path, n_features=features)
    X = Xs.toarray()
    return X, ys, time.perf_counter() - start


def ridge_objective(X, y, w, b, alpha):
    r = y - X @ w - b
    return float(r @ r + alpha * (w @ w))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    meter = LoadMeter()
    described = f"synthetic ({args.rows} x {args.features}), alpha={args.alpha:g}"
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_ridge_") as folder:
        data = os.path.join(folder, "train.svm")
        X, y, load_s = write_set(data, args.rows, args.features)
        start = time.perf_counter()
        ref = Ridge(alpha=args.alpha).fit(X, y)
        ref_wall = time.perf_counter() - start
        best = ridge_objective(X, y, ref.coef_, ref.intercept_, args.alpha)
        for label, params in (("exact", {}), ("cg", {"method": "cg"}),
                              ("ipm-10", {"method": "ipm", "max_iter": 10,
                                          "batch_size": 256})):
            run = run_paracel(folder, label, {"algorithm": "ridge", "input": data,
                                              "params": {"alpha": args.alpha, **params}})
            with h5py.File(os.path.join(run.output, "model.h5"), "r") as handle:
                w, b = handle["w"][...], float(handle["intercept"][0])
            found = ridge_objective(X, y, w, b, args.alpha)
            solve = run.metrics["timings"]["solve_seconds"]
            diff = float(np.abs(w - ref.coef_).max())
            rows.append([label, f"{run.wall:.2f}", f"{solve:.3f}", f"{ref_wall:.3f}",
                         f"{run.wall / ref_wall:.1f}", f"{solve / ref_wall:.1f}",
                         f"{(ref_wall + load_s):.3f}", f"{found:.9g}", f"{best:.9g}",
                         f"{diff:.2g}"])
            results.append(result_row(label, described, run.wall, solve, ref_wall,
                                      "objective", found, best, run.metrics["timings"],
                                      f"max coefficient difference {diff:.1g}"))
    header = ["case", "job wall s", "job solve s", "sklearn s", "wall/sk", "solve/sk",
              "sk load+fit s", "paracel objective", "sklearn objective", "max |dw|"]
    print_table(f"ridge on {described}: 4 workers + 1 server vs scikit-learn Ridge in one "
                "process", header, rows)
    print(meter.line())
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
