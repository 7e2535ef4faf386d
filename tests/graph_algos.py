"""Run graph-loader cases on every rank under mpiexec: ``python graph_algos.py SPEC OUT``.

``SPEC`` is a JSON list of cases ``{"name", "loader", "files", "kwargs"}``
where ``loader`` names a function of :mod:`paracel.io.graph`. Every rank of
``MPI.COMM_WORLD`` loads each case as one worker and writes
``OUT/<name>_<rank>.npz`` (its triples, id maps, ranges, matrix) or, when the
loader raised a :class:`~paracel.errors.DataError`, ``OUT/<name>_<rank>.error``
holding the message, for the test to compare across ranks.
"""

import json
import os
import sys

import numpy as np
from mpi4py import MPI

from paracel.errors import DataError
from paracel.io import graph


def run_case(case, comm, out):
    """Load one case as worker ``comm.rank`` and write what it got."""
    load = getattr(graph, case["loader"])
    stem = os.path.join(out, f"{case['name']}_{comm.rank}")
    try:
        triples = load(case["files"], comm, comm.rank, comm.size, **case["kwargs"])
    except DataError as error:
        with open(stem + ".error", "w", encoding="utf-8") as handle:
            handle.write(str(error))
        return
    matrix = triples.matrix()
    np.savez(stem + ".npz", src=triples.src, dst=triples.dst, weight=triples.weight,
             src_ids=triples.src_ids, dst_ids=triples.dst_ids, shape=triples.shape,
             rows=triples.rows, cols=triples.cols, skipped=triples.skipped,
             weighted=triples.weighted, same=triples.src_ids is triples.dst_ids,
             data=matrix.data, indices=matrix.indices, indptr=matrix.indptr)


def main(spec, out):
    """Run every case of the ``spec`` file on this rank."""
    with open(spec, encoding="utf-8") as handle:
        cases = json.load(handle)
    for case in cases:
        run_case(case, MPI.COMM_WORLD, out)


if __name__ == "__main__":
    main(*sys.argv[1:])
