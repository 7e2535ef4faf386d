"""Alternating least squares with weighted-λ regularisation (ALS-WR).

Computes
--------
User factors ``p_u`` and item factors ``q_i`` (``k`` each) of the model
``r̂(u, i) = μ + p_u · q_i`` minimising (Zhou et al., 2008)::

    Σ_(u,i) (r − r̂)² + λ (Σ_u n_u |p_u|² + Σ_i n_i |q_i|²)

where ``n_u`` and ``n_i`` count the training ratings of user ``u`` and item
``i``. ``μ`` is the mean training rating with ``center`` (the default), or 0
for Zhou's plain ``p_u · q_i``. Each iteration is two exact half-steps: with
the item factors fixed every user row solves
``(Q_uᵀ Q_u + λ n_u I) p_u = Q_uᵀ (r_u − μ)`` (``Q_u`` the rows of the items
``u`` rated), then the items the same way with the new user factors. Item
factors start uniform in ``[0, init_scale)`` (seeded by the job seed, the
same for any number of workers and servers); a user or item without training
ratings keeps its start (users: zero).

For each λ of ``lambdas`` the fit starts afresh from the same item factors
and runs ``iterations`` iterations; the λ with the lowest validation RMSE
wins (ties: the first), and its factors are what the output holds.

Parallel scheme
---------------
The ratings are loaded twice: by user (``partition="fmap"``: each worker
holds the ratings of a contiguous block of users) and by item (``"smap"``).
The factors being fitted live on the servers as distributed matrices
``als.user_factors`` (``n_users × k``) and ``als.item_factors``
(``n_items × k``), in row blocks of at least 64 KiB (at most 64 blocks
each); the best λ's so far are copied into ``user_factors`` and
``item_factors``, the same shapes and blocks.

User half-step: each worker pulls the item rows its users rated, builds its
users' ``k × k`` systems at once (a sparse indicator times the items'
flattened outer products ``q qᵀ``), solves them stacked with
``np.linalg.solve`` and writes its users' rows (``push(..., "replace")``:
each row has exactly one writer), then ``iter_commit()``. The item half-step
is the same on the by-item share, then one evaluation clock: each worker
writes its squared-error sums (training and validation ratings of its user
block) and worker 0 reports the RMSEs. So an iteration is three clocks. With
staleness 0 this is exactly sequential ALS; with a larger bound a half-step
may read factors one or more half-steps old. A λ's last evaluation clock
starts with a sync, so it evaluates the final factors exactly at any
staleness; before it commits, the workers meet again, each adds up every
worker's sums (the λ's metrics) and, if the λ is the best so far, copies its
blocks of both factor matrices into ``user_factors`` and ``item_factors``.
The output is written from those after the last λ.

Checkpoints and resume
----------------------
Every push is made within a clock: the zero user factors and the sums for
μ in the first (before the first half-step), each λ's starting item factors
in its first clock (with the user half-step), the best λ's copy in its
last. A worker's state (:meth:`ALS.state`) is μ and the error sums of the λs
finished so far; which λ, iteration and half-step come next follows from
the clock (three clocks an iteration, ``3 × iterations`` a λ). A resumed job
loads and splits the ratings again, skips what precedes the first half-step,
has worker 0 report the evaluation clock it resumed after (if it did), and
goes on with the next clock. The output only reads the servers, so a
finished job that is resumed writes it again the same. With staleness 0 a
resumed job's results are bitwise those of an uninterrupted run.

Validation split
----------------
The ``holdout`` share of the ratings is set aside by a hash of
``(user id, item id, seed)`` (:func:`paracel.algorithms.mf.heldout_mask`):
the same ratings for any line order or worker count. They are never trained
on; their RMSE selects λ.

Input
-----
Text lines ``user item rating`` (see :mod:`paracel.io.graph`); a repeated
``(user, item)`` pair counts as two ratings.

Output
------
``model.h5``
    Datasets ``user_factors`` and ``item_factors`` (rows in index order, ids
    sorted numerically when all are integers, else as text) of the chosen λ,
    ``user_ids`` and ``item_ids`` (the input's ids as UTF-8 strings, row
    ``j`` of each factor matrix being id ``j``); file attributes ``lambda``, ``global_mean`` (the μ used) and ``k``.
``user_factors_<worker>``, ``item_factors_<worker>``
    ``id<TAB>f1,...,fk`` lines of the chosen λ's factors.
``metrics.json``
    ``best_lambda`` (also as ``lam``), its ``train_rmse`` and
    ``validation_rmse``, and ``validation_rmse_by_lambda`` /
    ``train_rmse_by_lambda`` for every λ; per-iteration RMSEs (with ``lam``
    and ``iteration``) in ``history``.
"""

import numpy as np
import scipy.sparse as sp

import paracel
from paracel.algorithms.mf import RatingsAlgorithm, block_rows, id_maps
from paracel.matrix import DistMatrix


def solve_rows(other, rows, cols, values, lam, n_rows):
    """Weighted-λ least squares for ``n_rows`` rows at once.

    Row ``j`` solves ``(Σ x xᵀ + λ n_j I) f = Σ r x`` over its ratings
    ``(rows[t] == j, other[cols[t]], values[t])``.

    Parameters
    ----------
    other : numpy.ndarray
        ``(m, k)`` factors of the fixed side.
    rows, cols : numpy.ndarray of int
        Each rating's row (``0 .. n_rows-1``) and its row of ``other``.
    values : numpy.ndarray
        The ratings (already centred if need be).
    lam : float
        λ.
    n_rows : int
        How many rows to solve; each must have a rating.
    """
    m, k = other.shape
    shape = (n_rows, m)
    counts = sp.csr_matrix((np.ones(len(values)), (rows, cols)), shape=shape)
    weighted = sp.csr_matrix((values, (rows, cols)), shape=shape)
    outer = (other[:, :, None] * other[:, None, :]).reshape(m, k * k)
    gram = np.asarray(counts @ outer).reshape(n_rows, k, k)
    gram += lam * np.bincount(rows, minlength=n_rows)[:, None, None] * np.eye(k)
    return np.linalg.solve(gram, np.asarray(weighted @ other)[..., None])[..., 0]


class ALS(RatingsAlgorithm):
    """ALS with weighted-λ regularisation; see the module docstring."""

    summary = "ALS with weighted-lambda regularisation, lambda chosen on a validation split"
    reads = ('"user item rating" lines (whitespace or commas; CSV with a header and chosen columns'
             ' via the job keys header/columns)')
    parameters = {
        "k": paracel.Param(int, 10, "latent factors per user and item", low=1),
        "iterations": paracel.Param(int, 10, "alternations (user half-step, item "
                                    "half-step) per lambda", low=1),
        "lambdas": paracel.Param(list, [0.05], "lambda values to compare on the validation "
                                 "split; the best one's factors are kept", min_items=1,
                                 items=paracel.Param(float, low=0, closed="neither")),
        "center": paracel.Param(bool, True, "fit r - mean (mean training rating) rather "
                                "than r"),
        "init_scale": paracel.Param(float, 0.1, "item factors start uniform in "
                                    "[0, init_scale)", low=0),
        "holdout": paracel.Param(float, 0.1, "fraction of ratings held out for validation "
                                 "(hash of user, item and seed)", low=0, high=0.9),
        "test": paracel.Param(str, None, "a held-out ratings file (same format) scored at "
                                         "every evaluation: test_rmse; a user or item "
                                         "training did not see has a zero row",
                              nullable=True, path=True),
        "factor_files": paracel.Param(bool, True, "also write user_factors_<w> and "
                                      "item_factors_<w> text files"),
    }
    prefix = "als"
    held_name = "validation_rmse"

    def __init__(self, **params):
        super().__init__(**params)
        if len(self.lambdas) > 1 and self.holdout == 0:
            raise paracel.ConfigError("params.holdout: must be > 0 to choose among several "
                                      "lambdas")

    def predict(self, user_rows, item_rows):
        """``μ + p_u · q_i``."""
        return self.mean_ + np.einsum("ij,ij->i", user_rows, item_rows)

    def solve(self):
        by_user = self.load_ratings(partition="fmap")
        by_item = self.load_ratings(partition="smap")
        self.test_ = self.load_test(by_user)
        user_train, user_valid = self.split(by_user)
        item_train, _ = self.split(by_item)
        if not self.resumed:
            total, count = self.worker_total(("mean",), [user_train.rating.sum(),
                                                        user_train.size])
            self.mean_ = total / count if self.center and count else 0.0
            self.sums_ = np.zeros((0, self.sums_size))
        n_users, n_items = by_user.shape
        users, items = block_rows(n_users, self.k), block_rows(n_items, self.k)
        P = self.matrix("als.user_factors", (n_users, self.k), block_rows=users)
        Q = self.matrix("als.item_factors", (n_items, self.k), block_rows=items, create=False)
        chosen = (self.matrix("user_factors", (n_users, self.k), block_rows=users, create=False),
                  self.matrix("item_factors", (n_items, self.k), block_rows=items, create=False))
        if self.resumed and self.clock % 3 == 0:        # resumed after an evaluation clock
            self.report_evaluation()
        while self.clock < 3 * self.iterations * len(self.lambdas):
            index, it, phase = self.position()
            lam = self.lambdas[index]
            if phase == 0:
                if it == 0:
                    self.start_items(Q)
                self.half_step(P, Q, user_train.user, user_train.item, user_train.rating, lam)
            elif phase == 1:
                self.half_step(Q, P, item_train.item, item_train.user, item_train.rating, lam)
            else:
                self.evaluation(P, Q, user_train, user_valid, chosen)
        results = [self.lambda_result(sums) for sums in self.sums_]
        self.keep(*chosen, self.lambdas[self.best(results)], by_user)
        return self.summarise(results, n_users, n_items)

    def state(self):
        """μ and the error sums of every λ finished so far: all a worker
        carries between clocks. Which λ, iteration and half-step come next
        follows from the clock; the factors, and the best λ's copy, are on the
        servers."""
        return {"mean": self.mean_, "sums": self.sums_}

    def restore(self, state):
        """Take back :meth:`state`."""
        self.mean_, self.sums_ = state["mean"], state["sums"]

    def position(self, clock=None):
        """``(λ index, iteration, phase)`` of the clock after ``clock`` (by
        default the current one): phase 0 is the user half-step, 1 the item
        half-step, 2 the evaluation."""
        index, rest = divmod(self.clock if clock is None else clock, 3 * self.iterations)
        return (index, *divmod(rest, 3))

    def start_items(self, Q):
        """Write this worker's blocks of ``Q`` at the start every λ begins
        from (``item_factors`` uniform in ``[0, init_scale)``), then sync."""
        start = DistMatrix(None, "item_factors", Q.shape, block_rows=Q.block_rows)
        self.write_multi({Q.block_key(b): start.initial_block(b, init="random", seed=self.seed,
                                                              scale=self.init_scale)
                          for b in self.my_blocks(Q)})
        self.sync()

    def evaluation(self, P, Q, train, valid, chosen):
        """The evaluation clock: every worker writes its error sums and
        commits, then worker 0 reports the RMSEs. After a λ's last iteration
        the workers first meet (so the sums are of the final factors at any
        staleness) and the λ is finished before the commit (see
        :meth:`finish_lambda`)."""
        index, it, _ = self.position()
        last = it == self.iterations - 1
        if last:
            self.sync()
        sums = self.squared_errors(P, Q, train, valid)
        self.write((self.prefix, "eval", index, it, self.worker_id), sums)
        self.trace(share_sums=sums)
        if last:
            self.finish_lambda(P, Q, chosen, index, it)
        self.iter_commit()
        self.report_evaluation()

    def finish_lambda(self, P, Q, chosen, index, it):
        """Once every worker's sums of λ ``index``'s last evaluation are in:
        keep them, and copy the factors into ``chosen`` (``user_factors``,
        ``item_factors``) if this λ is the best so far."""
        self.sync()
        latest = self.sum_of_shares(("eval", index, it), self.sums_size)
        self.sums_ = np.vstack([self.sums_, latest])
        if self.best([self.lambda_result(sums) for sums in self.sums_]) == index:
            pairs = [(source.block_key(b), target.block_key(b))
                     for source, target in zip((P, Q), chosen)
                     for b in self.my_blocks(source)]
            if pairs:
                values = self.read_multi([source for source, _ in pairs])
                self.write_multi({target: value for (_, target), value in zip(pairs, values)})

    def report_evaluation(self):
        """Worker 0 reports the RMSEs of the evaluation clock just committed
        (every worker's sums are in at staleness 0)."""
        if self.worker_id == 0:
            index, it, _ = self.position(self.clock - 1)
            self.report(lam=self.lambdas[index], iteration=it + 1,
                        **self.rmses(self.sum_of_shares(("eval", index, it), self.sums_size)))

    def lambda_result(self, sums):
        """The metrics of one λ from its final error sums."""
        return {**self.rmses(sums), "train_ratings": int(sums[1]),
                "heldout_ratings": int(sums[3])}

    def half_step(self, target, fixed, own, other, ratings, lam):
        """Solve the ``target`` rows of this share's ratings given the ``fixed``
        side, write them, and end the clock."""
        rows, r = np.unique(own, return_inverse=True)
        if rows.size:
            cols, c = np.unique(other, return_inverse=True)
            solved = solve_rows(fixed.pull(cols), r, c, ratings - self.mean_, lam,
                                rows.size)
            target.push(rows, solved, "replace")
        self.iter_commit()

    def best(self, results):
        """Index of the best run so far: lowest validation RMSE (the first on
        ties; the first run when nothing is held out)."""
        scores = [r[self.held_name] for r in results]
        if any(score is None for score in scores):
            return 0
        return int(np.argmin(scores))

    def keep(self, P, Q, lam, triples):
        """Write the chosen λ's factors as the output (collective; reads only,
        so a resumed finished job writes the same again)."""
        self.save_model("model.h5", [P, Q, *id_maps(triples)], **{"lambda": lam, "global_mean": self.mean_,
                                               "k": self.k})
        if self.factor_files:
            self.write_factor_files(P, Q, triples)

    def summarise(self, results, n_users, n_items):
        """The final metrics: the chosen λ's, and every λ's RMSEs."""
        best = self.best(results)
        return {**results[best], "best_lambda": self.lambdas[best],
                "lam": self.lambdas[best], "iteration": self.iterations,
                "validation_rmse_by_lambda": {str(lam): r[self.held_name]
                                              for lam, r in zip(self.lambdas, results)},
                "train_rmse_by_lambda": {str(lam): r["train_rmse"]
                                         for lam, r in zip(self.lambdas, results)},
                "global_mean": self.mean_, "iterations": self.iterations,
                "users": n_users, "items": n_items}
