"""Rank-k truncated SVD by randomized subspace (block power) iteration.

Computes
--------
The ``k`` largest singular values ``σ_1 ≥ … ≥ σ_k`` of a matrix ``A``
(``m × n``, dense rows or sparse ratings) and their singular vectors:
``A ≈ U diag(σ) Vᵀ`` with ``U`` (``m × k``) and ``V`` (``n × k``)
orthonormal, as ``np.linalg.svd`` or ``scipy.sparse.linalg.svds`` give them
(each pair of singular vectors is determined up to a common sign; here the
largest entry in magnitude of each column of ``V`` is positive, the first of
equal ones).

The method (Halko, Martinsson and Tropp, 2011, algorithm 4.4 on ``AᵀA``):
start from a Gaussian ``n × l`` block ``Ω`` (``l = k + oversampling``),
orthonormalise it into ``V_0``, then repeat ``V_{t+1} = orth(Aᵀ A V_t)``.
The span of ``V_t`` converges to the top right singular subspace; the
singular values of ``A V_t`` (a Rayleigh–Ritz estimate, never above the
true ones) converge to ``σ_1 … σ_l`` with the ratio ``(σ_{l+1}/σ_i)^(2t)``.
It stops once the top-``k`` estimates change by at most ``tol`` (relative)
between two iterations, or after ``iterations``. The result comes from the
last ``V_t``: ``A V_t = Q R`` (a tall-skinny QR), ``R = U_r S V_rᵀ`` (a small
SVD), ``σ = S``, ``V = V_t V_r`` and ``U = A V / σ``, the first ``k`` of
each. The whole ``A`` never meets in one place, and ``AᵀA`` is never formed.

Orthonormalisation is Cholesky-QR: ``G = ZᵀZ``, ``R = chol(G)``,
``V = Z R⁻¹``, done twice (CholQR2: one pass leaves ``VᵀV`` off the identity
by about ``κ(Z)² u``, the second pass brings it to ``u``). When ``G`` is too
ill-conditioned for Cholesky (it fails, or ``R``'s diagonal spans more than
1e5), the first pass is shifted, ``chol(G + s I)`` with Fukaya et al.'s
``s = 11 (n l + l (l + 1)) u ‖G‖`` (shifted CholQR3: three passes). A ``Z``
of rank below ``l`` (a matrix of rank below ``k + oversampling``) is refused
with a message: ask for fewer components or less oversampling.

Parallel scheme
---------------
Each worker holds a share of the rows of ``A``: a block of users of the
ratings (``load_ratings(partition="fmap")``, a csr matrix over all items) or
its lines of the dense input (``load_dense``). The servers hold two
``n × l`` matrices in row blocks: ``svd.V`` (the current orthonormal block)
and ``svd.Z`` (the accumulator of ``AᵀA V``). One iteration, one clock:

1. every worker pulls the rows of ``svd.V`` its share touches (for sparse
   input only the columns its rows use), forms ``Y_w = A_w V`` and the ``R``
   factor of ``Y_w``; the ``R`` factors are gathered (``allgather``, ``l × l``
   each), stacked in worker order and factored again: the singular values of
   ``A V``, the same on every worker (the convergence test);
2. every worker pushes ``A_wᵀ Y_w`` into ``svd.Z`` with ``add`` (sparse
   input: only the rows of its columns), then all ``sync()``: the servers
   hold ``Z = AᵀA V``;
3. Cholesky-QR by row blocks: each worker reads its blocks of ``Z``, the
   ``l × l`` Gram matrices are summed over the workers (``sum_over_workers``,
   in worker order), every worker factors the same ``G`` and writes its
   blocks of the new ``V`` (and zeros into its blocks of ``Z``); twice
   (three times when shifted); ``sync()``, ``iter_commit()``.

The first clock orthonormalises ``Ω`` the same way (each block of ``Ω`` is
drawn from the job's seed and the block number, so the start does not depend
on the number of workers or servers). The servers add pushes in arrival
order, so two runs may differ in the last bits; the Gram sums and the final
QR are in worker order. A power iteration needs the whole product before it
goes on, so the ``sync()`` of step 2 makes ``staleness`` irrelevant.

Checkpoints and resume
----------------------
After clock ``t`` the servers hold ``V_t`` (and a zero ``Z``); a worker
carries only the last singular-value estimate (for the convergence test):
that is :meth:`TruncatedSVD.state`. A resumed job loads its share again and
continues with the iteration after its clock; the output is computed from
``V`` on the servers, so a job resumed after its end writes it again.

Input
-----
``input_format: "ratings"``: ``row column value`` lines (``load_ratings``;
ids are any strings, rows and columns numbered in sorted id order, numeric
when all ids are integers; a repeated pair adds up; absent pairs are 0).
``input_format: "dense"``: ``id,f1,...,fn`` lines (``load_dense``), one row
of ``A`` each, in input order.

Output
------
``model.h5``
    Datasets ``singular_values`` (``k``), ``V`` (``n × k``, rows in column
    order of ``A``) and ``column_ids`` (the id of each row of ``V``: item ids
    for ratings, ``"0" … "n-1"`` for dense input); attributes ``k``,
    ``rows``, ``cols``, ``iterations``, ``converged``.
``U_<worker>``
    ``row id<TAB>u_1,...,u_k`` lines for the worker's rows of ``A``.
``metrics.json``
    ``singular_values``, ``iterations``, ``converged``, ``change`` (the last
    relative change of the estimates), ``rows``, ``cols``; per-iteration
    ``change`` and ``sigma_1`` in ``history``.
"""

import numpy as np
import scipy.sparse

import paracel
from paracel.algorithms.mf import block_rows
from paracel.errors import DataError

#: Above this spread of ``R``'s diagonal (``√κ(G)``) the first Cholesky-QR
#: pass is shifted.
MAX_SPREAD = 1e5
#: The last pass works on a nearly orthonormal block, so its ``R`` is
#: nearly the identity; a larger spread means ``Z`` had lost rank.
FINAL_SPREAD = 2.0
UNIT = np.finfo(np.float64).eps / 2
#: After a first pass (shifted or not) the block's condition number is at
#: most about ``u^(-1/2)``; a later ``R`` spreading more means lost rank.
LATER_SPREAD = UNIT ** -0.5


# -- pure NumPy kernels ------------------------------------------------------

def gaussian_block(seed, block, shape):
    """Block ``block`` of the starting ``Ω``: standard normal, seeded by the
    job seed and the block number only."""
    return np.random.default_rng([seed, 0x535644, block]).standard_normal(shape)


def cholesky_factor(gram, shift=0.0):
    """The upper Cholesky factor ``R`` of ``gram + shift·I`` (``RᵀR``), or
    ``None`` if it is not numerically positive definite."""
    try:
        lower = np.linalg.cholesky(gram + shift * np.eye(len(gram)))
    except np.linalg.LinAlgError:
        return None
    diagonal = np.abs(np.diag(lower))
    if not np.all(np.isfinite(lower)) or diagonal.min() <= 0:
        return None
    return lower.T


def spread(R):
    """``max |R_ii| / min |R_ii|``: a cheap lower bound on ``κ(R)``."""
    diagonal = np.abs(np.diag(R))
    return np.inf if diagonal.min() == 0 else diagonal.max() / diagonal.min()


def shift_for(gram, rows):
    """Fukaya et al.'s shift for ``rows × l`` data: ``11 (rows·l + l(l+1)) u ‖G‖``
    (the trace bounds ``‖G‖_2``)."""
    width = len(gram)
    return 11.0 * (rows * width + width * (width + 1)) * UNIT * np.trace(gram)


def apply_inverse(Z, R):
    """``Z R⁻¹`` (``R`` upper triangular)."""
    if Z.shape[0] == 0:
        return Z.copy()
    import scipy.linalg

    return scipy.linalg.solve_triangular(R, Z.T, trans="T", lower=False).T


def cholesky_qr(blocks, rows, gram):
    """Orthonormalise the column space of a matrix given as row ``blocks``.

    Parameters
    ----------
    blocks : list of numpy.ndarray
        Row blocks (``* × l``) of ``Z``; in a job, this worker's blocks.
    rows : int
        Rows of the whole ``Z`` (for the shift).
    gram : callable
        ``gram(blocks)``: ``ZᵀZ`` of the whole matrix (in a job, summed over
        the workers; called the same number of times on every worker).

    Returns
    -------
    blocks : list of numpy.ndarray
        The same rows of ``Q`` (``QᵀQ = I``, ``span Q = span Z``).
    passes : int
        2 (CholQR2), or 3 when the first pass was shifted.

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``Z`` is numerically rank-deficient (a Cholesky factorisation
        fails, a later pass is still ill-conditioned, or the last pass is
        far from the identity).
    """
    G = gram(blocks)
    R, passes = cholesky_factor(G), 2
    if R is None or spread(R) > MAX_SPREAD:
        R, passes = cholesky_factor(G, shift_for(G, rows)), 3
    for done in range(passes):
        if R is None or (done > 0 and spread(R) > LATER_SPREAD) or (
                done == passes - 1 and spread(R) > FINAL_SPREAD):
            raise np.linalg.LinAlgError("Z is numerically rank-deficient")
        blocks = [apply_inverse(block, R) for block in blocks]
        if done < passes - 1:
            R = cholesky_factor(gram(blocks))
    return blocks, passes


def padded_r(Y):
    """The ``l × l`` R factor of ``Y`` (``m_w × l``), zero rows added when
    ``m_w < l``."""
    width = Y.shape[1]
    R = np.linalg.qr(Y, mode="r") if Y.shape[0] else np.zeros((0, width))
    out = np.zeros((width, width))
    out[:R.shape[0]] = R
    return out


def small_svd(stacked):
    """``(S, V_r)`` of the matrix whose R factors are ``stacked`` (workers'
    ``R_w`` one under the other): the SVD of ``A V`` without ``A V``."""
    R = np.linalg.qr(stacked, mode="r")
    _, S, Vt = np.linalg.svd(R)
    return S, Vt.T


def sign_flips(V):
    """``±1`` per column so that each column's largest entry (in magnitude;
    the first of equal ones) becomes positive."""
    if V.shape[0] == 0:
        return np.ones(V.shape[1])
    picks = V[np.argmax(np.abs(V), axis=0), np.arange(V.shape[1])]
    return np.where(picks < 0, -1.0, 1.0)


def relative_change(new, old):
    """Largest relative change between two estimates of the top singular values."""
    if len(old) != len(new):
        return np.inf
    scale = np.maximum(np.abs(new), np.finfo(float).tiny)
    return float(np.max(np.abs(new - old) / scale))


# -- the algorithm -----------------------------------------------------------

class TruncatedSVD(paracel.Algorithm):
    """Rank-k truncated SVD by randomized subspace iteration; see the module
    docstring."""

    summary = ("rank-k truncated SVD by randomized subspace iteration (A^T A V summed "
               "on the servers, Cholesky-QR)")
    reads = ('input_format "ratings": "row column value" lines, a sparse matrix (CSV with a '
             'header and chosen columns via the job keys header/columns); "dense": "id,f1,...,fn"'
             ' lines, one row each')
    parameters = {
        "k": paracel.Param(int, 10, "singular values and vectors to compute", low=1),
        "oversampling": paracel.Param(int, 10, "extra columns in the iterated block "
                                      "(l = k + oversampling)", low=0),
        "iterations": paracel.Param(int, 30, "most subspace iterations (products A^T A V)",
                                    low=0),
        "tol": paracel.Param(float, 1e-10, "stop when no top-k singular value estimate "
                             "changes by more than this (relative) in an iteration; 0: run "
                             "all iterations", low=0),
        "input_format": paracel.Param(str, "ratings", "'ratings' (row column value lines, "
                                      "sparse) or 'dense' (id,f1,...,fn lines, one row each)",
                                      choices=("ratings", "dense")),
        "u_files": paracel.Param(bool, True, "write the rows of U (U_<worker> files)"),
    }

    def solve(self):
        A, row_ids, column_ids, m = self.load()
        n = A.shape[1]
        width = self.block_width(m, n)
        if not self.resumed:
            self.sigma_, self.change_, self.at_ = np.zeros(0), np.inf, -1
        V = self.matrix("svd.V", (n, width), block_rows=block_rows(n, width), create=False)
        Z = self.matrix("svd.Z", (n, width), block_rows=V.block_rows, create=False)
        if self.clock == 0:
            self.start(V, Z)
        columns, A = self.compact(A)
        converged = False
        while True:
            Y = self.product(A, V, columns)
            S, Vr = self.ritz(Y)
            if self.at_ != self.clock:  # a job resumed after its end has it already
                self.change_ = relative_change(S[:self.k], self.sigma_)
                self.sigma_, self.at_ = S[:self.k], self.clock
            converged = self.tol > 0 and self.change_ <= self.tol
            if converged or self.clock > self.iterations:
                break
            self.accumulate(Z, A, Y, columns)
            self.orthonormalise(Z, V)
            self.report(iteration=self.clock - 1, sigma_1=float(S[0]),
                        change=float(self.change_) if np.isfinite(self.change_) else None)
            self.iter_commit()
        return self.finish(V, Y, S, Vr, row_ids, column_ids, m, n, converged)

    def state(self):
        """The last top-k singular-value estimate, its change and the clock it
        was made at: all a worker carries between clocks (``V`` is on the
        servers)."""
        return {"sigma": self.sigma_, "change": self.change_, "at": self.at_}

    def restore(self, state):
        """Take back :meth:`state`."""
        self.sigma_, self.change_, self.at_ = state["sigma"], state["change"], state["at"]

    # -- input -------------------------------------------------------------

    def load(self):
        """This worker's rows ``A_w``, their ids, the column ids and the total
        row count ``m`` (collective)."""
        if self.input_format == "ratings":
            triples = self.load_ratings(partition="fmap")
            start, stop = triples.rows
            A = triples.matrix()[start:stop].tocsr()
            return A, triples.src_ids[start:stop], triples.dst_ids, triples.shape[0]
        ids, X = self.load_dense()
        m = int(self.sum_over_workers([len(ids)])[0])
        return X, np.array(ids, dtype=str), np.arange(X.shape[1]).astype(str), m

    def block_width(self, m, n):
        """``l = k + oversampling``, at most ``min(m, n)``; refuses a ``k``
        larger than the matrix."""
        if self.k > min(m, n):
            raise paracel.ConfigError(f"params.k: {self.k} exceeds the matrix's rank bound "
                                      f"min(rows, columns) = min({m}, {n})")
        return min(self.k + self.oversampling, m, n)

    @staticmethod
    def compact(A):
        """``(columns, A_c)``: for a sparse share, the columns it uses (the rows
        of ``V`` it needs) and its rows over those columns only; for dense
        rows ``(None, A)``."""
        if not scipy.sparse.issparse(A):
            return None, A
        columns = np.unique(A.indices)
        return columns, A[:, columns].tocsr()

    # -- the iteration -----------------------------------------------------

    def start(self, V, Z):
        """Clock 0: write this worker's blocks of the Gaussian start into
        ``svd.Z``, orthonormalise into ``svd.V`` and commit (collective)."""
        self.write_multi({Z.block_key(b): gaussian_block(self.seed, b, Z.block_shape(b))
                          for b in self.my_blocks(Z)})
        self.sync()
        self.orthonormalise(Z, V)
        self.iter_commit()

    def ritz(self, Y):
        """Singular values and right vectors ``(S, V_r)`` of ``A V`` from every
        worker's ``R`` factor of ``Y_w`` (collective, worker order)."""
        width = Y.shape[1]
        every = self.allgather(padded_r(np.asarray(Y)).ravel())
        return small_svd(every.reshape(-1, width))

    @staticmethod
    def product(A, V, columns):
        """``Y_w = A_w V`` from the rows of ``svd.V`` this share needs."""
        if columns is None:
            return np.asarray(A @ V.to_numpy())
        if columns.size == 0:
            return np.zeros((A.shape[0], V.shape[1]))
        return np.asarray(A @ V.pull(columns))

    def accumulate(self, Z, A, Y, columns):
        """Push ``A_wᵀ Y_w`` into ``svd.Z`` with ``add`` (sparse: only the rows
        of the share's columns), then sync: the servers hold ``AᵀA V``."""
        if A.shape[0] and (columns is None or columns.size):
            rows = np.arange(A.shape[1]) if columns is None else columns
            Z.push(rows, np.asarray(A.T @ Y), "add")
        self.sync()

    def orthonormalise(self, Z, V):
        """Cholesky-QR of ``svd.Z`` by row blocks into ``svd.V`` (collective):
        a first pass, shifted if ill-conditioned, then one plain pass (two
        after a shift); ``svd.Z`` is left zero. Ends with ``sync()``."""
        mine = list(self.my_blocks(Z))
        blocks = self.read_multi([Z.block_key(b) for b in mine]) if mine else []
        try:
            blocks, _ = cholesky_qr(blocks, Z.shape[0],
                                         lambda parts: self.gram(parts, Z.shape[1]))
        except np.linalg.LinAlgError:
            raise DataError(f"{self.input_files[0]}: the matrix has rank below "
                            f"k + oversampling = {Z.shape[1]} (or the iteration lost it); "
                            "ask for fewer components or less oversampling") from None
        values = {V.block_key(b): block for b, block in zip(mine, blocks)}
        values.update({Z.block_key(b): np.zeros(Z.block_shape(b)) for b in mine})
        if values:
            self.write_multi(values)
        self.sync()

    def gram(self, blocks, width):
        """``ZᵀZ`` summed over every worker's blocks (collective, worker order)."""
        mine = np.zeros((width, width))
        for block in blocks:
            mine += block.T @ block
        total = self.sum_over_workers(mine.ravel()).reshape(width, width)
        return (total + total.T) / 2

    # -- the end -----------------------------------------------------------

    def finish(self, V, Y, S, Vr, row_ids, column_ids, m, n, converged):
        """Write the model and ``U`` from the last ``V`` and its ``A V``."""
        k = self.k
        if self.worker_id == 0:
            right = V.to_numpy() @ Vr[:, :k]
            flips = sign_flips(right)
            model = [("singular_values", S[:k]), ("V", right * flips),
                     ("column_ids", np.asarray(column_ids, dtype=str))]
        else:
            flips, model = None, []
        flips = self.allgather(flips if flips is not None else np.zeros(k))[0]
        iterations = max(self.clock - 1, 0)
        self.save_model("model.h5", model, k=k, rows=m, cols=n, iterations=iterations,
                        converged=bool(converged))
        if self.u_files:
            with np.errstate(divide="ignore", invalid="ignore"):
                U = np.asarray(Y) @ Vr[:, :k] / S[:k] * flips
            U[:, S[:k] == 0] = 0.0
            self.dump("U_", zip(row_ids.tolist(), U))
        change = float(self.change_) if np.isfinite(self.change_) else None
        return {"singular_values": S[:k].tolist(), "iterations": iterations,
                "converged": bool(converged), "change": change, "rows": m, "cols": n}
