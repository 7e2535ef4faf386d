"""LDA on Reuters: a 4-worker Paracel job against the PyPI ``lda`` package.

The data: the whole of ``lda.datasets.load_reuters()`` (395 documents,
4258-word vocabulary, 84 010 tokens), written as ``doc_id word_id:count``
lines to a temporary folder.

1. The job: ``python -m paracel.run JOB -n 5 --servers 1`` (4 workers, 1
   server; ``--processes``/``--servers``/``--staleness`` change it), 20
   topics, alpha 0.1, beta 0.01, 100 sweeps, timed from launch to exit; its
   ``solve_seconds`` (slowest worker) and the sweeps alone (after worker 0's
   first clock) come from ``metrics.json``.
2. The reference, in this process: ``lda.LDA(20, n_iter=100, alpha=0.1,
   eta=0.01).fit(X)`` (Cython, one core) on the same matrix, timed.

Printed: the wall times and their ratio, and the final complete
log-likelihood ``log p(w, z)`` of each (they are different Gibbs chains, so
they agree only statistically), and the other load on the machine during the
job. ``--json PATH`` also writes the result (solve against the package) as
JSON (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_lda.py [--processes 5] [--servers 1] [--staleness 0]
        [--json PATH]
"""

import argparse
import logging
import os
import tempfile
import time

import lda as lda_pkg
import numpy as np
import scipy.sparse
from lda import datasets

from _common import (print_table, result_row, run_paracel, write_json)

TOPICS, SWEEPS, ALPHA, ETA = 20, 100, 0.1, 0.01


def write_reuters(folder):
    """Reuters in ``folder`` as bag-of-words lines; returns ``(path, X)``."""
    X = scipy.sparse.csr_matrix(datasets.load_reuters())
    path = os.path.join(folder, "reuters.bow")
    with open(path, "w", encoding="ascii") as handle:
        for d in range(X.shape[0]):
            row = X[d]
            handle.write(f"{d} " + " ".join(f"{w}:{c}" for w, c in zip(row.indices, row.data))
                         + "\n")
    return path, X


def run_job(folder, data, vocab_size, args):
    """Run the job; returns ``(wall seconds, metrics.json, other-load line)``."""
    job = {"algorithm": "paracel.algorithms.lda:LDA", "input": data, "seed": 1,
           "staleness": args.staleness, "log_level": "info",
           "params": {"topics": TOPICS, "iterations": SWEEPS, "alpha": ALPHA, "beta": ETA,
                      "vocab_size": vocab_size}}
    run = run_paracel(folder, "out", job, args.processes, args.servers)
    return run.wall, run.metrics, run.load


def reference(X):
    """The ``lda`` package on the same matrix: ``(seconds, final log-likelihood)``."""
    logging.getLogger("lda").setLevel(logging.WARNING)
    start = time.perf_counter()
    model = lda_pkg.LDA(TOPICS, n_iter=SWEEPS, alpha=ALPHA, eta=ETA, random_state=1,
                        refresh=SWEEPS).fit(X)
    return time.perf_counter() - start, model.loglikelihood()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--staleness", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_lda_") as folder:
        data, X = write_reuters(folder)
        wall, metrics, load = run_job(folder, data, X.shape[1], args)
        ref_seconds, ref_ll = reference(X)
    result = metrics["metrics"]
    solve = metrics["timings"]["solve_seconds"]
    sweeps = solve - metrics["history"][0]["elapsed"]
    workers = args.processes - args.servers
    print_table(f"LDA of Reuters ({result['documents']} documents, {result['tokens']} tokens, "
                f"V = {result['vocab_size']}), K = {TOPICS}, {SWEEPS} sweeps, "
                f"staleness {args.staleness}",
                ["run", "seconds", "vs lda package", "final log p(w, z)", "per token"],
                [[f"paracel job, {workers} workers + {args.servers} server(s), wall",
                  f"{wall:.2f}", f"{wall / ref_seconds:.2f}x", f"{result['loglik']:.1f}",
                  f"{result['loglik_per_token']:.4f}"],
                 ["  its solve() (slowest worker)", f"{solve:.2f}",
                  f"{solve / ref_seconds:.2f}x", "", ""],
                 [f"  its sweeps 2..{SWEEPS}", f"{sweeps:.2f}", f"{sweeps / ref_seconds:.2f}x",
                  "", ""],
                 ["lda package (Cython, 1 core)", f"{ref_seconds:.2f}", "1.00x",
                  f"{ref_ll:.1f}", f"{ref_ll / np.asarray(X.sum()):.4f}"]])
    print(f"\nlog-likelihood: paracel / lda package = {result['loglik'] / ref_ll:.4f}")
    print(load)
    if args.json:
        write_json(args.json, [result_row(
            f"staleness {args.staleness}",
            f"Reuters ({result['documents']} documents), K={TOPICS}, {SWEEPS} sweeps",
            wall, solve, ref_seconds, "log p(w, z)", result["loglik"], ref_ll,
            metrics["timings"], "different Gibbs chains: agree only statistically")])


if __name__ == "__main__":
    main()
