"""Algorithms for the data and matrix MPI tests (imported on every rank).

Each worker's pushes are derived from ``(seed, worker)`` so worker 0 can
recompute every worker's deltas and check the servers' matrices against a
plain NumPy version of the same computation.
"""

import os

import numpy as np
import scipy.sparse as sp

import paracel

SHAPE = (1000, 8)
VECTOR = 10_007


def deltas_of(worker, rows=300):
    """The rows and deltas worker ``worker`` pushes (repeats included)."""
    rng = np.random.default_rng([11, worker])
    chosen = rng.integers(0, SHAPE[0], rows)
    return chosen, rng.normal(size=(rows, SHAPE[1]))


class MatrixOps(paracel.Algorithm):
    """Push/pull on dense and sparse matrices and a vector; compare with NumPy."""

    parameters = {"block_rows": paracel.Param(int, 64, "rows per block")}

    def solve(self):
        me, n = self.worker_id, self.num_workers
        W = self.matrix("W", SHAPE, block_rows=self.block_rows, init="constant", value=0.5)
        v = self.matrix("v", (VECTOR,), block_rows=self.block_rows)
        S = self.matrix("S", (200, 50), sparse=True, block_rows=32)
        R = self.matrix("R", SHAPE, block_rows=self.block_rows, init="random", scale=2.0)
        rows, deltas = deltas_of(me)
        W.push(rows, deltas).wait()
        v.push(np.arange(me, VECTOR, n), np.ones(len(range(me, VECTOR, n))))
        S.push(np.array([me % 200, 7]), sp.csr_matrix(np.eye(2, 50, k=me)))
        self.sync()
        reference = np.full(SHAPE, 0.5)
        for worker in range(n):
            np.add.at(reference, *deltas_of(worker))
        ask = np.random.default_rng(me).integers(0, SHAPE[0], 500)
        np.testing.assert_allclose(W.pull(ask), reference[ask], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(W.to_numpy(), reference, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(v.pull([0, VECTOR - 1, 5, 5]), np.ones(4))
        s_ref = np.zeros((200, 50))
        for worker in range(n):
            s_ref[[worker % 200, 7]] += np.eye(2, 50, k=worker)
        np.testing.assert_array_equal(S.to_numpy().toarray(), s_ref)
        np.testing.assert_array_equal(S.pull([7, 0]).toarray(), s_ref[[7, 0]])
        random = R.to_numpy()
        assert random.min() >= 0 and random.max() < 2.0 and random.std() > 0.3
        if me == 0:
            np.save(os.path.join(self.output, "W.npy"), W.to_numpy())
            np.save(os.path.join(self.output, "R.npy"), random)
        W.push(rows[:3], np.zeros((3, SHAPE[1])), fn="replace").wait()
        np.testing.assert_array_equal(W.pull(rows[:3]), np.zeros((3, SHAPE[1])))
        self.sync()
        self.save_model("model.h5", [W, v, S], note="test")
        return {"matrix_ok": True}


class LoadModel(paracel.Algorithm):
    """Warm start: read a model file written by another job, save what came back."""

    parameters = {"model": paracel.Param(str, paracel.config.REQUIRED, "model file")}

    def solve(self):
        W = self.load_model(self.model, "W", block_rows=37)
        S = self.load_model(self.model, "S")
        if self.worker_id == 0:
            np.save(os.path.join(self.output, "W.npy"), W.to_numpy())
            sp.save_npz(os.path.join(self.output, "S.npz"), S.to_numpy())
        return {}


class LoadShares(paracel.Algorithm):
    """Each worker loads its share of LIBSVM / lines / dense input and saves it."""

    parameters = {"kind": paracel.Param(str, "libsvm", "what to load",
                                        choices=("libsvm", "lines", "dense", "mtx", "graph", "ratings"))}

    def solve(self):
        out = os.path.join(self.output, f"share_{self.worker_id}")
        if self.kind == "libsvm":
            y, X = self.load_libsvm()
            sp.save_npz(out + ".npz", X)
            np.save(out + "_y.npy", y)
        elif self.kind == "lines":
            lines = self.load_lines()
            count = self.for_each_line(lambda line: None)
            assert count == len(lines)
            self.dump("lines_", enumerate(lines), merge_as="lines.txt")
        elif self.kind == "dense":
            ids, X = self.load_dense()
            np.save(out + ".npy", X)
            with open(out + "_ids.txt", "w") as handle:
                handle.write("\n".join(ids))
        elif self.kind in ("graph", "ratings"):
            if self.kind == "graph":
                triples = self.load_graph(partition="fsmap")
            else:
                triples = self.load_ratings(partition="smap")
            sp.save_npz(out + ".npz", triples.matrix())
        else:
            sp.save_npz(out + ".npz", self.load_mtx().tocsr())
        return {}


class GrowingInput(paracel.Algorithm):
    """The input grows once the job has started (worker ``grower`` appends to
    it before loading): every worker must still read exactly the lines that
    were there at the start, each once."""

    parameters = {"grower": paracel.Param(int, 1, "the worker that appends")}

    def solve(self):
        if self.worker_id == self.grower:
            with open(self.input_files[0], "a", encoding="utf-8") as handle:
                handle.write("".join(f"late {i}\n" for i in range(5000)))
        self.sync()
        lines = self.load_lines()
        everyone = self.comm.allgather(lines)
        return {"lines": [line for share in everyone for line in share]}
