"""Biased matrix factorisation by mini-batch SGD, the parameter-server way.

Computes
--------
The model ``r̂(u, i) = μ + b_u + b_i + p_u · q_i`` (``k`` factors per user
and item) fitted to the training ratings by stochastic gradient descent on
the squared error with L2 regularisation (Funk, Koren). For a rating with
error ``e = r − r̂`` the step is::

    b_u += lr (e − reg b_u)          b_i += lr (e − reg b_i)
    p_u += lr (e q_i − reg p_u)      q_i += lr (e p_u − reg q_i)

``μ`` is the mean training rating (fixed). The ratings are taken in
mini-batches of ``batch_size``: every step of a batch is computed from the
values before the batch, and the steps are summed into the rows
(``np.add.at``), so a row hit twice in one batch takes both steps. The
learning rate of epoch ``e`` (from 0) is ``learning_rate * decay**e``.
Factors start uniform in ``[-init_scale, init_scale)`` (seeded by the job
seed, the same for any number of workers and servers); biases start at 0.

Parallel scheme
---------------
The ratings are loaded with ``load_ratings(partition="fmap")``: each worker
holds the ratings of a contiguous block of users. The model lives on the
servers as two distributed matrices, ``user_factors`` (``n_users × (k+1)``)
and ``item_factors`` (``n_items × (k+1)``), each row ``[factors, bias]``,
in row blocks of at least 64 KiB (at most 64 blocks) spread over the
servers.

Each epoch a worker shuffles its training ratings (generator
``rng(epoch + 1)``) and cuts them into ``clocks_per_epoch`` chunks of whole
mini-batches. For each chunk it pulls the user and item rows the chunk
touches, runs mini-batch SGD on that local copy, pushes the deltas
(new − old) of those rows with ``"add"`` and calls ``iter_commit()``, so the
staleness bound applies between chunks. The workers' deltas of one clock add
up: an item rated in every worker's share moves about ``num_workers`` times
as far per clock as one worker alone would move it, which overshoots when a
clock holds many of its ratings (on MovieLens 100k with 4 workers, one clock
per epoch diverges after 6 epochs while 4 stay within 0.1 % of the
single-process run). Hence several clocks per epoch by default.

Then one evaluation clock: each worker pulls the rows its ratings touch,
writes its squared-error sums (train and held-out) under a key of its own
and commits; worker 0 adds every worker's sums in worker order and reports
the epoch's RMSEs. With staleness 0 these are exactly the RMSEs of the model
after the epoch; with a larger bound they may miss the sums of workers that
are behind (each RMSE is over the ratings whose sums arrived). Each worker
also traces its own sums (``share_sums``: train SSE, count, held-out SSE,
count) in its ``worker_history``, so the RMSE of the whole model over time
can be rebuilt from every worker's latest sums. After the
last epoch every worker syncs and evaluates once more: the final metrics
are those of the final model, at any staleness.

Determinism: with staleness 0 every worker pulls before any worker pushes
in a clock (a barrier between), and the start and every delta are rounded to
multiples of ``2**-40`` (:data:`GRID`), so the servers' sums are exact
whatever order concurrent pushes arrive in: a run is bitwise repeatable.
With one worker and staleness 0 it is the single-process mini-batch SGD up
to that rounding.

Checkpoints and resume
----------------------
The clock a worker starts at ``self.clock == c`` is chunk
``c mod (clocks_per_epoch + 1)`` of epoch ``c // (clocks_per_epoch + 1)``,
the last chunk being the evaluation; the first clock also writes the
workers' rating sums (for ``μ``) and the starting factors. All a clock's
work follows from its number: the epoch's shuffle is drawn again from
``rng(epoch + 1)``, the split is a hash, ``μ`` and the factors are in the
tables; so :meth:`MatrixFactorization.state` is empty. A resumed job loads
and splits its share again, reads ``μ`` back from the workers' sums instead
of writing them, attaches to the factors instead of initialising them, and
continues with the clock it resumed at. Worker 0's report of an evaluation
comes after the evaluation's clock, so after that clock's checkpoint: a job
resumed from it reports that evaluation again first. The final evaluation
writes each worker's sums under its own key (a write, not an add), so a job
resumed from its final checkpoint computes the same metrics and outputs
again. With staleness 0 a resumed run ends bitwise as the uninterrupted one.

Held-out split
--------------
A rating is held out when a hash of ``(user id, item id, seed)`` (BLAKE2b of
each id string, combined by splitmix64) falls below ``holdout``: the split
depends only on the ids and the job seed, not on line order or the number of
workers. Held-out ratings are never trained on; users and items seen only
there keep their initial factors.

Input
-----
Text lines ``user item rating`` (whitespace- or comma-separated, ``#``
comments; see :mod:`paracel.io.graph`). Ids are any strings; a repeated
``(user, item)`` pair counts as two ratings.

Output
------
``model.h5``
    Datasets ``user_factors`` and ``item_factors`` (rows ``[p_u, b_u]`` and
    ``[q_i, b_i]`` in index order, ids sorted numerically when all are
    integers, else as text), ``user_ids`` and ``item_ids`` (the input's ids
    as UTF-8 strings, row ``j`` of each factor matrix being id ``j``); file
    attributes ``global_mean`` and ``k``.
``user_factors_<worker>``, ``item_factors_<worker>``
    ``id<TAB>f1,...,fk,bias`` lines: the users of the worker's block, and
    the worker's share of the items.
``metrics.json``
    ``train_rmse``, ``heldout_rmse`` of the final model, ``global_mean``,
    rating counts; per-epoch RMSEs in ``history``.
"""

import hashlib
from dataclasses import dataclass

import numpy as np

import paracel
from paracel.matrix import DistMatrix

#: A factor matrix is cut into at most MAX_BLOCKS row blocks of at least
#: MIN_BLOCK_BYTES: big enough that a block's rows travel as raw buffers and
#: the servers handle few blocks per request. The layout depends on the shape
#: alone, so the random start is the same for any number of workers and servers.
MAX_BLOCKS = 64
MIN_BLOCK_BYTES = 1 << 16

#: The starting factors and every pushed delta are multiples of GRID, so
#: the servers' sums of concurrent pushes are exact (for values below 2**12
#: in magnitude) and do not depend on the order the pushes arrive in.
GRID = 2.0 ** -40

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Ratings:
    """Rating triples as three aligned arrays (global user and item indices)."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray

    @property
    def size(self):
        """How many ratings."""
        return len(self.rating)

    def take(self, index):
        """The ratings at ``index`` (a mask or positions)."""
        return Ratings(self.user[index], self.item[index], self.rating[index])

    def join(self, other):
        """These ratings followed by ``other``'s."""
        return Ratings(np.concatenate([self.user, other.user]),
                       np.concatenate([self.item, other.item]),
                       np.concatenate([self.rating, other.rating]))


def _splitmix64(x):
    """The splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _id_hashes(ids, index, seed, kind):
    """A 64-bit BLAKE2b hash of the id string of each entry of ``index``
    (each distinct id hashed once)."""
    distinct, inverse = np.unique(index, return_inverse=True)
    hashes = np.fromiter(
        (int.from_bytes(hashlib.blake2b(f"{seed}\x1f{kind}\x1f{name}".encode(),
                                        digest_size=8).digest(), "little")
         for name in ids[distinct].tolist()), np.uint64, len(distinct))
    return hashes[inverse]


def heldout_mask(user_ids, item_ids, users, items, fraction, seed):
    """Which ratings are held out: hash of ``(user id, item id, seed)`` below
    ``fraction``.

    Parameters
    ----------
    user_ids, item_ids : numpy.ndarray of str
        The id of each global user and item index.
    users, items : numpy.ndarray of int
        The ratings' global indices.
    fraction : float
        The share of ratings to hold out, in ``[0, 1]``.
    seed : int
        The job seed.
    """
    if fraction <= 0 or len(users) == 0:
        return np.zeros(len(users), dtype=bool)
    mixed = _splitmix64(_id_hashes(user_ids, users, seed, "user") * _GOLDEN
                        + _id_hashes(item_ids, items, seed, "item"))
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0 ** -53 < fraction


def split_ratings(triples, fraction, seed):
    """``(train, heldout)`` :class:`Ratings` of a loaded share (see :func:`heldout_mask`)."""
    every = Ratings(triples.src, triples.dst, triples.weight)
    held = heldout_mask(triples.src_ids, triples.dst_ids, triples.src, triples.dst,
                        fraction, seed)
    return every.take(~held), every.take(held)


def block_rows(rows, cols):
    """Rows per block of a ``rows × cols`` float64 factor matrix (see
    :data:`MAX_BLOCKS`)."""
    return max(1, -(-rows // MAX_BLOCKS), -(-MIN_BLOCK_BYTES // (8 * cols)))


def on_grid(values):
    """``values`` rounded to the nearest multiples of :data:`GRID`."""
    return np.round(values / GRID) * GRID


def initial_block(matrix, block, seed, scale):
    """One block of a factor matrix at the start: factors uniform in
    ``[-scale, scale)`` (on the grid), last column (the bias) zero."""
    values = matrix.initial_block(block, init="random", seed=seed, scale=2 * scale) - scale
    values[:, -1] = 0.0
    return on_grid(values)


def initial_factors(name, rows, k, seed, scale):
    """The whole starting matrix ``name`` (``rows × (k+1)``), as the servers
    hold it before the first epoch (for single-process references)."""
    matrix = DistMatrix(None, name, (rows, k + 1), block_rows=block_rows(rows, k + 1))
    return np.concatenate([initial_block(matrix, b, seed, scale)
                           for b in range(matrix.num_blocks)])


def predict(user_rows, item_rows, mean):
    """``μ + b_u + b_i + p_u · q_i`` for aligned rows ``[factors, bias]``."""
    return (mean + user_rows[:, -1] + item_rows[:, -1]
            + np.einsum("ij,ij->i", user_rows[:, :-1], item_rows[:, :-1]))


def _steps(err, other, own, reg):
    """Gradient steps (before the learning rate) of rows ``own`` given the
    partner rows ``other``: ``[e·other_factors − reg·own_factors, e − reg·bias]``."""
    step = err[:, None] * other
    step[:, -1] = err
    return step - reg * own


def sgd_pass(P, Q, users, items, ratings, mean, lr, reg, batch_size):
    """Mini-batch SGD over ``ratings`` in order; updates ``P`` and ``Q`` in place.

    ``users[j]`` and ``items[j]`` are row numbers of ``P`` and ``Q`` (rows
    ``[factors, bias]``).
    """
    for start in range(0, len(ratings), batch_size):
        batch = slice(start, start + batch_size)
        u, i = users[batch], items[batch]
        pu, qi = P[u], Q[i]
        err = ratings[batch] - predict(pu, qi, mean)
        np.add.at(P, u, lr * _steps(err, qi, pu, reg))
        np.add.at(Q, i, lr * _steps(err, pu, qi, reg))


def rows_by_id(factors, model_ids, ids):
    """The factor rows of ``ids`` (zero rows for ids the model lacks) and how
    many of them it lacks."""
    index = {name: row for row, name in enumerate(np.asarray(model_ids).tolist())}
    where = np.array([index.get(name, -1) for name in np.asarray(ids).tolist()],
                     dtype=np.int64)
    rows = np.zeros((where.size, factors.shape[1]))
    known = where >= 0
    rows[known] = factors[where[known]]
    return rows, int(where.size - np.count_nonzero(known))


def index_of(ids, lookup):
    """The index ``lookup`` gives each of ``ids`` (-1 for one it lacks)."""
    return np.fromiter((lookup.get(name, -1) for name in ids.tolist()), np.int64, len(ids))


def id_maps(triples):
    """The ``(name, ids)`` pairs a ratings model saves next to its factors:
    ``user_ids`` and ``item_ids``, the original id of each factor row."""
    return [("user_ids", triples.src_ids), ("item_ids", triples.dst_ids)]


def rmse(sse, count):
    """Root mean squared error from a sum and a count (``None`` for no ratings)."""
    return float(np.sqrt(sse / count)) if count else None


class RatingsAlgorithm(paracel.Algorithm):
    """What :class:`MatrixFactorization` and the ALS algorithm share: the
    held-out split, sums over workers, evaluation clocks and factor files.

    A subclass sets ``prefix`` (its keys' first element) and ``held_name``
    (the metric name of the held-out RMSE), and defines ``predict``.
    """

    prefix = "ratings"
    held_name = "heldout_rmse"
    test_ = None   # the ``test`` file's ratings of this worker (load_test)

    @property
    def sums_size(self):
        """Error sums per evaluation: train and held-out, and test with a
        ``test`` file (each an SSE and a count)."""
        return 4 if self.test is None else 6

    def load_test(self, triples):
        """This worker's share of the ``test`` file (collective), as
        :class:`Ratings` indexing the training factors (-1: an id training
        did not see); ``None`` without one."""
        if self.test is None:
            return None
        held = self.load_ratings(files=self.test, partition="fmap")
        return Ratings(index_of(held.src_ids[held.src], triples.src_lookup),
                       index_of(held.dst_ids[held.dst], triples.dst_lookup), held.weight)

    def predict(self, user_rows, item_rows):
        """Predicted ratings for aligned rows of the two factor matrices."""
        raise NotImplementedError

    @classmethod
    def apply_model(cls, worker, model):
        """Predict the ratings of ``worker``'s share of ``user item
        [rating]`` lines with a saved model (``predict``): ``pred_<worker>``
        lines ``user\titem\tprediction``, and the RMSE against the input's
        ratings. A user or item the model does not know has a zero row
        (its prediction falls back to the mean and the other side's bias)."""
        triples = worker.load_ratings(partition="fmap")
        algorithm = cls(**model.params)
        algorithm.mean_ = model.attrs["global_mean"]
        users = triples.src_ids[triples.src] if triples.src.size else np.zeros(0, str)
        items = triples.dst_ids[triples.dst] if triples.dst.size else np.zeros(0, str)
        (user_rows, unknown_users), (item_rows, unknown_items) = (
            rows_by_id(model[f"{side}_factors"], model[f"{side}_ids"], ids)
            for side, ids in (("user", users), ("item", items)))
        predicted = algorithm.predict(user_rows, item_rows)
        worker.dump("pred_", [(u, (i, repr(float(p))))
                              for u, i, p in zip(users.tolist(), items.tolist(), predicted)],
                    sep="\t")
        sse, count, lost_users, lost_items = worker.sum_over_workers(
            [float(((predicted - triples.weight) ** 2).sum()), predicted.size,
             unknown_users, unknown_items])
        return {"rmse": rmse(sse, count), "predictions": int(count),
                "unknown_users": int(lost_users), "unknown_items": int(lost_items)}

    def pull_both(self, P, users, Q, items):
        """Rows of both factor matrices in one round trip to each server."""
        return self.pull_many([(P, users), (Q, items)])

    def split(self, triples):
        """This share's ``(train, heldout)`` ratings (``holdout`` hash split)."""
        return split_ratings(triples, self.holdout, self.seed)

    def worker_total(self, name, values):
        """Sum of every worker's ``values`` (collective, exact at any staleness)."""
        self.write((self.prefix, *name, self.worker_id), np.asarray(values, dtype=np.float64))
        self.sync()
        return self.sum_of_shares(name, len(values))

    def sum_of_shares(self, name, size):
        """Sum of the workers' ``(prefix, *name, worker)`` arrays, in worker
        order (deterministic); a worker that has not written yet counts zero."""
        keys = [(self.prefix, *name, w) for w in range(self.num_workers)]
        return np.sum(self.read_multi(keys, default=np.zeros(size)), axis=0)

    def squared_errors(self, P, Q, train, heldout):
        """``[train SSE, train count, held-out SSE, held-out count]`` of this
        share under the current factors on the servers."""
        both = train.join(heldout)
        if both.size == 0:
            return np.zeros(4)
        users, u = np.unique(both.user, return_inverse=True)
        items, i = np.unique(both.item, return_inverse=True)
        user_rows, item_rows = self.pull_both(P, users, Q, items)
        predicted = self.predict(user_rows[u], item_rows[i])
        squared = (both.rating - predicted) ** 2
        n = train.size
        sums = [squared[:n].sum(), n, squared[n:].sum(), heldout.size]
        return np.array(sums + self.test_errors(P, Q), dtype=float)

    def test_errors(self, P, Q):
        """``[SSE, count]`` of this share of the ``test`` file (``[]``
        without one); an unknown user or item has a zero row."""
        test = self.test_
        if test is None:
            return []
        rows = []
        for matrix, index in ((P, test.user), (Q, test.item)):
            known = index >= 0
            unique, inverse = np.unique(index[known], return_inverse=True)
            full = np.zeros((test.size, matrix.shape[1]))
            if unique.size:
                full[known] = matrix.pull(unique)[inverse]
            rows.append(full)
        error = test.rating - self.predict(*rows)
        return [float(error @ error), test.size]

    def rmses(self, sums):
        """The metrics of error sums: train and held-out RMSE (and test)."""
        found = {"train_rmse": rmse(sums[0], sums[1]), self.held_name: rmse(sums[2], sums[3])}
        if len(sums) > 4:
            found.update(test_rmse=rmse(sums[4], sums[5]), test_ratings=int(sums[5]))
        return found

    def evaluation_clock(self, P, Q, train, heldout, step, **labels):
        """One clock that evaluates the model: every worker writes its sums,
        commits, and worker 0 reports the RMSEs with ``labels``."""
        sums = self.squared_errors(P, Q, train, heldout)
        self.write((self.prefix, "eval", *step, self.worker_id), sums)
        self.trace(share_sums=sums)
        self.iter_commit()
        self.report_evaluation(step, **labels)

    def report_evaluation(self, step, **labels):
        """Worker 0: report the RMSEs of evaluation ``step`` from the sums on
        the servers, with ``labels``. It comes after the evaluation's clock,
        hence after that clock's checkpoint: a job resumed from it calls
        this again."""
        if self.worker_id == 0:
            self.report(**labels, **self.rmses(self.sum_of_shares(("eval", *step),
                                                                  self.sums_size)))

    def final_evaluation(self, P, Q, train, heldout, name):
        """The exact metrics of the model on the servers (collective)."""
        self.sync()
        sums = self.worker_total(name, self.squared_errors(P, Q, train, heldout))
        return {**self.rmses(sums), "train_ratings": int(sums[1]),
                "heldout_ratings": int(sums[3])}

    def write_factor_files(self, P, Q, triples):
        """``user_factors_<w>`` (this worker's user block, ``"fmap"`` share)
        and ``item_factors_<w>`` (an even share of the items)."""
        users = np.arange(*triples.rows)
        items = np.array_split(np.arange(triples.shape[1]), self.num_workers)[self.worker_id]
        for name, matrix, rows, ids in (("user_factors_", P, users, triples.src_ids),
                                        ("item_factors_", Q, items, triples.dst_ids)):
            values = matrix.pull(rows)
            self.dump(name, zip(ids[rows].tolist(), values))


class MatrixFactorization(RatingsAlgorithm):
    """Biased matrix factorisation by mini-batch SGD; see the module docstring."""

    summary = "biased matrix factorisation by mini-batch SGD (factors on the servers)"
    reads = ('"user item rating" lines (whitespace or commas; CSV with a header and chosen columns'
             ' via the job keys header/columns)')
    parameters = {
        "k": paracel.Param(int, 10, "latent factors per user and item", low=1),
        "epochs": paracel.Param(int, 20, "passes over the training ratings", low=1),
        "learning_rate": paracel.Param(float, 0.01, "SGD step size of the first epoch",
                                       low=0),
        "decay": paracel.Param(float, 1.0, "learning rate factor per epoch "
                               "(epoch e uses learning_rate * decay**e)", low=0, high=1),
        "reg": paracel.Param(float, 0.05, "L2 regularisation of factors and biases", low=0),
        "batch_size": paracel.Param(int, 256, "ratings per vectorised mini-batch", low=1),
        "clocks_per_epoch": paracel.Param(int, 4, "pull-SGD-push rounds (SSP clocks) per "
                                          "epoch", low=1),
        "init_scale": paracel.Param(float, 0.1, "factors start uniform in "
                                    "[-init_scale, init_scale); biases at 0", low=0),
        "holdout": paracel.Param(float, 0.1, "fraction of ratings held out for the "
                                 "held-out RMSE (hash of user, item and seed)",
                                 low=0, high=0.9),
        "test": paracel.Param(str, None, "a held-out ratings file (same format) scored at "
                                         "every evaluation: test_rmse; a user or item "
                                         "training did not see has a zero row",
                              nullable=True, path=True),
        "factor_files": paracel.Param(bool, True, "also write user_factors_<w> and "
                                      "item_factors_<w> text files"),
    }
    prefix = "mf"

    def expected_clocks(self):
        """``clocks_per_epoch`` training clocks and one evaluation clock an epoch."""
        return self.epochs * (self.clocks_per_epoch + 1)

    def predict(self, user_rows, item_rows):
        """``μ + b_u + b_i + p_u · q_i``."""
        return predict(user_rows, item_rows, self.mean_)

    def solve(self):
        triples = self.load_ratings(partition="fmap")
        self.test_ = self.load_test(triples)
        train, heldout = self.split(triples)
        self.mean_ = self.global_mean(train)
        P = self.factors("user_factors", triples.shape[0])
        Q = self.factors("item_factors", triples.shape[1])
        self.report_resumed_evaluation()
        for epoch in range(self.clock // (self.clocks_per_epoch + 1), self.epochs):
            self.train_epoch(P, Q, train, epoch)
            self.evaluation_clock(P, Q, train, heldout, (epoch,), epoch=epoch + 1)
        final = self.final_evaluation(P, Q, train, heldout, ("final",))
        self.save_model("model.h5", [P, Q, *id_maps(triples)], global_mean=self.mean_,
                        k=self.k)
        if self.factor_files:
            self.write_factor_files(P, Q, triples)
        return {**final, "global_mean": self.mean_, "epochs": self.epochs,
                "users": triples.shape[0], "items": triples.shape[1]}

    def state(self):
        """Nothing to keep: each clock's work follows from the clock alone (the
        epoch's shuffle is drawn from ``rng(epoch + 1)``, the split is a
        hash), and the mean and the factors are in the tables."""
        return {}

    def restore(self, state):
        """Nothing to take back (see :meth:`state`)."""

    def global_mean(self, train):
        """The mean training rating over all workers (collective), from the
        workers' sums written in the first clock."""
        if self.clock == 0:  # a resumed job finds the sums in the tables
            total, count = self.worker_total(("mean",), [train.rating.sum(), train.size])
        else:
            total, count = self.sum_of_shares(("mean",), 2)
        return total / count if count else 0.0

    def factors(self, name, rows):
        """A factor matrix on the servers, at its random start in the first
        clock (collective)."""
        matrix = self.matrix(name, (rows, self.k + 1), block_rows=block_rows(rows, self.k + 1),
                             create=False)
        if self.clock == 0:  # a resumed job finds the trained factors
            mine = self.my_blocks(matrix)
            self.write_multi({matrix.block_key(b): initial_block(matrix, b, self.seed,
                                                                 self.init_scale)
                              for b in mine})
            self.sync()
        return matrix

    def report_resumed_evaluation(self):
        """In a job resumed right after an evaluation clock, report that
        evaluation again unless the checkpoint's metrics already hold it (a
        checkpoint taken after ``solve()`` returned)."""
        epoch, step = divmod(self.clock, self.clocks_per_epoch + 1)
        if self.resumed and epoch > 0 and step == 0 and self.metrics_.get("epoch") != epoch:
            self.report_evaluation((epoch - 1,), epoch=epoch)

    def train_epoch(self, P, Q, train, epoch):
        """The rest of a pass over this worker's training ratings (all of it
        unless resumed within the epoch) in ``clocks_per_epoch`` clocks, each
        a whole number of mini-batches."""
        lr = self.learning_rate * self.decay ** epoch
        order = self.rng(epoch + 1).permutation(train.size)
        batches = -(-train.size // self.batch_size)
        clocks = self.clocks_per_epoch
        cuts = np.arange(clocks + 1) * batches // clocks * self.batch_size
        for chunk in range(self.clock - epoch * (clocks + 1), clocks):
            self.train_chunk(P, Q, train.take(order[cuts[chunk]:cuts[chunk + 1]]), lr)
            self.iter_commit()

    def train_chunk(self, P, Q, chunk, lr):
        """Pull the rows ``chunk`` touches, run SGD on them, push the deltas.

        With staleness 0 every worker pulls before any pushes (a barrier
        between), so a pull never sees part of the same clock's pushes.
        """
        users, u = np.unique(chunk.user, return_inverse=True)
        items, i = np.unique(chunk.item, return_inverse=True)
        old_p, old_q = self.pull_both(P, users, Q, items)
        new_p, new_q = old_p.copy(), old_q.copy()
        sgd_pass(new_p, new_q, u, i, chunk.rating, self.mean_, lr, self.reg, self.batch_size)
        if self.staleness == 0:
            self.sync()
        P.push(users, on_grid(new_p - old_p), "add")
        Q.push(items, on_grid(new_q - old_q), "add")
