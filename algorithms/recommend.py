"""Exact top-k recommendations from saved factors, seen items excluded.

Computes
--------
For every user of the input ratings, the ``topk`` items with the highest
score among the items of a factor model saved by ``mf`` or ``als``
(``model.h5`` with ``user_factors``, ``item_factors`` and the id maps
``user_ids``, ``item_ids``), leaving out the items the user rated in the
input (``exclude_seen``). With ``score: "predict"`` the score is the model's
predicted rating (``mf``: ``μ + b_u + b_i + p_u·q_i``; ``als``:
``μ + p_u·q_i``); with ``"dot"`` it is the inner product ``p_u·q_i`` of the
factors alone. Either is an inner product of augmented vectors
(``[p_u, 1]·[q_i, b_i]``) plus a per-user constant, so this is exact maximum
inner-product search. Items come in decreasing score; scores equal to 12
decimals count as equal (so rounding noise never decides an order), and ties
go to the lower item index (the model's row order: ids sorted numerically
when all are integers, else as text). A user with fewer than ``topk``
unseen items gets them all.

Paracel's original used a ball tree for the search; here it is brute force
by blocked matrix products, which the benchmark measured faster at these
sizes (factors of rank 10 to 50 leave a tree little to prune).

Parallel scheme
---------------
The ratings are loaded by user (``load_ratings(partition="fmap")``): each
worker holds the ratings of a contiguous block of users, which are the
users it recommends for and their seen items. The item factors are read
from the model file into the servers (``load_model``, the distributed
matrix ``item_factors``); each worker pulls them (one request per server)
and reads its own users' rows of ``user_factors`` from the file. It scores
its users in blocks of ``block_users`` against all items (one matrix
product per block), sets the seen items' scores to ``-inf`` and keeps each
row's top ``topk`` with ``np.argpartition`` (only rows whose ``topk``-th
score is tied look further). One clock: clock 0 loads the item factors onto
the servers and commits; the scoring reads only.

Checkpoints and resume
----------------------
The state is empty: after clock 0 the item factors are on the servers, and
a resumed job loads its ratings again and scores as an uninterrupted run
does (the model file is read again for the users' rows).

Input
-----
``user item rating`` lines (``load_ratings``; the rating value is not used):
the users to recommend for and the items each has seen. Users of the input
that the model does not know are skipped and counted (``unknown_users``);
items it does not know are ignored (``unknown_items``).

Output
------
``recommend_<worker>``: one line per known user of the worker,
``user<TAB>item:score item:score ...`` (ids as in the model, scores as
Python ``repr`` floats). Metrics: ``users``, ``items``, ``topk``,
``unknown_users``, ``unknown_items``, ``excluded`` (seen pairs left out),
``mean_top1`` (mean best score).
"""

import os

import numpy as np

import paracel
from paracel import config
from paracel.algorithms.mf import block_rows
from paracel.errors import DataError

TIE_DECIMALS = 12
MATRIX = "item_factors"


# -- pure NumPy kernels ------------------------------------------------------

def augmented(user_rows, item_rows, k, biased, score, mean):
    """``(users, items, constants)`` such that a score is
    ``users @ items.T + constants[:, None]``.

    Parameters
    ----------
    user_rows, item_rows : numpy.ndarray
        Rows of the model's factor matrices (``[p, b]`` for ``mf``, ``p`` for ``als``).
    k : int
        Factors per row.
    biased : bool
        Whether the rows end with a bias column (``mf``).
    score : {"predict", "dot"}
    mean : float
        The model's ``global_mean``.
    """
    if score == "dot":
        return user_rows[:, :k], item_rows[:, :k], np.zeros(len(user_rows))
    if not biased:
        return user_rows[:, :k], item_rows[:, :k], np.full(len(user_rows), mean)
    users = np.hstack([user_rows[:, :k], np.ones((len(user_rows), 1))])
    return users, item_rows[:, :k + 1], mean + user_rows[:, k]


def top_items(scores, topk):
    """Each row's ``topk`` best columns: by score rounded to
    :data:`TIE_DECIMALS` descending, then column index; ``-inf`` scores are
    never chosen (a row may get fewer).

    Returns
    -------
    columns : numpy.ndarray of int64, shape (rows, topk)
        ``-1`` where a row has fewer than ``topk`` finite scores.
    values : numpy.ndarray, shape (rows, topk)
        Their (unrounded) scores, ``-inf`` for the padding.
    """
    rows, n = scores.shape
    take = min(topk, n)
    columns = np.full((rows, topk), -1, dtype=np.int64)
    values = np.full((rows, topk), -np.inf)
    if rows == 0 or take == 0:
        return columns, values
    rounded = np.round(scores, TIE_DECIMALS)
    if take < n:
        picked = np.argpartition(-rounded, take - 1, axis=1)[:, :take]
    else:
        picked = np.broadcast_to(np.arange(n), (rows, n)).copy()
    kth = np.take_along_axis(rounded, picked, axis=1).min(axis=1)
    tied = np.flatnonzero(((rounded >= kth[:, None]).sum(axis=1) > take) | ~np.isfinite(kth))
    order = np.lexsort((picked, -np.take_along_axis(rounded, picked, axis=1)), axis=-1)
    picked = np.take_along_axis(picked, order, axis=1)
    for row in tied:        # the topk-th score is tied (or -inf): look at every candidate
        candidates = np.flatnonzero((rounded[row] >= kth[row]) & np.isfinite(rounded[row]))
        best = candidates[np.lexsort((candidates, -rounded[row, candidates]))][:take]
        picked[row, :] = -1
        picked[row, :best.size] = best
    found = picked >= 0
    columns[:, :take] = picked
    chosen = np.take_along_axis(scores, np.maximum(picked, 0), axis=1)
    values[:, :take] = np.where(found, chosen, -np.inf)
    return columns, values


def recommend_block(users, items, constants, seen, topk):
    """Top items of a block of users: ``users @ items.T + constants``, the
    ``seen`` (row, item) pairs set to ``-inf``; see :func:`top_items`."""
    scores = users @ items.T
    scores += constants[:, None]
    if seen[0].size:
        scores[seen] = -np.inf
    return top_items(scores, topk)


def lines(user_ids, item_ids, columns, values):
    """``(user id, "item:score item:score ...")`` pairs."""
    for name, row_items, row_values in zip(user_ids, columns.tolist(), values.tolist()):
        yield name, " ".join(f"{item_ids[j]}:{s!r}" for j, s in zip(row_items, row_values)
                             if j >= 0)


# -- the algorithm -----------------------------------------------------------

class Recommend(paracel.Algorithm):
    """Exact top-k items per user from mf/als factors; see the module docstring."""

    summary = "exact top-k items per user from saved mf/als factors, seen items excluded"
    reads = ('"user item rating" lines: the users to recommend for and the items each has seen '
             '(the rating is not used; CSV with a header and chosen columns via the job keys '
             'header/columns)')
    parameters = {
        "model": paracel.Param(str, config.REQUIRED, "an mf or als model.h5 with id maps "
                               "(relative to the job file's folder)", path=True),
        "topk": paracel.Param(int, 10, "items recommended per user", low=1),
        "exclude_seen": paracel.Param(bool, True, "leave out the items a user rated in the "
                                      "input"),
        "score": paracel.Param(str, "predict", "'predict' (the model's predicted rating) or "
                               "'dot' (p_u . q_i of the factors alone)",
                               choices=("predict", "dot")),
        "block_users": paracel.Param(int, 256, "users scored per matrix product", low=1),
    }

    def solve(self):
        path = self.model_path()
        info = read_model_info(path)
        triples = self.load_ratings(partition="fmap")
        items = self.item_factors(path, info)
        users, rows, position, unknown = self.my_users(triples, info)
        seen, unknown_items = self.seen_pairs(triples, info, position)
        user_rows = read_rows(path, "user_factors", rows)
        U, Q, constants = augmented(user_rows, items.to_numpy(), info["k"], info["biased"],
                                    self.score, info["mean"])
        columns, values = self.score_blocks(U, Q, constants, seen)
        self.dump("recommend_", lines(users, info["item_ids"], columns, values))
        top1 = values[:, 0][np.isfinite(values[:, 0])] if len(values) else np.zeros(0)
        totals = self.sum_over_workers([len(users), unknown, unknown_items,
                                        seen[0].size, top1.sum(), top1.size])
        return {"users": int(totals[0]), "items": len(info["item_ids"]), "topk": self.topk,
                "unknown_users": int(totals[1]), "unknown_items": int(totals[2]),
                "excluded": int(totals[3]),
                "mean_top1": float(totals[4] / totals[5]) if totals[5] else None}

    def state(self):
        """Nothing to keep: the item factors are on the servers after clock 0,
        and the ratings and the users' rows are read again."""
        return {}

    def restore(self, state):
        """Nothing to take back (see :meth:`state`)."""

    def model_path(self):
        """``model`` (made absolute by the launcher, relative to the job file)."""
        return os.path.abspath(os.path.expanduser(self.model))

    def item_factors(self, path, info):
        """The item factors on the servers: loaded from the file in clock 0
        (collective), attached to in a resumed job."""
        shape = info["item_shape"]
        if self.clock == 0:
            items = self.load_model(path, MATRIX, block_rows=block_rows(*shape))
            self.iter_commit()
            return items
        return self.matrix(MATRIX, shape, block_rows=block_rows(*shape), create=False)

    @staticmethod
    def my_users(triples, info):
        """This worker's users known to the model: their ids, model rows,
        position among them of each global user index (``-1``: not one of
        them), and how many of its users the model does not know."""
        start, stop = triples.rows
        names = triples.src_ids[start:stop]
        rows = np.array([info["user_index"].get(name, -1) for name in names.tolist()],
                        dtype=np.int64)
        known = rows >= 0
        position = np.full(triples.shape[0], -1, dtype=np.int64)
        position[start + np.flatnonzero(known)] = np.arange(int(known.sum()))
        return names[known].tolist(), rows[known], position, int((~known).sum())

    def seen_pairs(self, triples, info, position):
        """``(position among this worker's users, model item)`` pairs to leave
        out, and how many of the worker's ratings name an unknown item."""
        if not self.exclude_seen:
            return (np.zeros(0, np.int64), np.zeros(0, np.int64)), 0
        lookup = np.array([info["item_index"].get(name, -1)
                           for name in triples.dst_ids.tolist()], dtype=np.int64)
        user, item = position[triples.src], lookup[triples.dst]
        keep = (user >= 0) & (item >= 0)
        return (user[keep], item[keep]), int(((user >= 0) & (item < 0)).sum())

    def score_blocks(self, U, Q, constants, seen):
        """Top items of every user, ``block_users`` at a time."""
        columns = np.full((len(U), self.topk), -1, dtype=np.int64)
        values = np.full((len(U), self.topk), -np.inf)
        order = np.argsort(seen[0], kind="stable")
        user, item = seen[0][order], seen[1][order]
        for start in range(0, len(U), self.block_users):
            stop = min(start + self.block_users, len(U))
            lo, hi = np.searchsorted(user, [start, stop])
            block = (user[lo:hi] - start, item[lo:hi])
            columns[start:stop], values[start:stop] = recommend_block(
                U[start:stop], Q, constants[start:stop], block, self.topk)
        return columns, values


def read_model_info(path):
    """What scoring needs from an ``mf``/``als`` model file: the id maps and
    their lookups, ``k``, whether rows carry a bias, ``global_mean`` and the
    item matrix's shape. Refuses a file without them, naming what is missing."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path}: params.model is not a readable model file ({error})") from None
    with handle:
        missing = [name for name in ("user_factors", "item_factors", "user_ids", "item_ids")
                   if name not in handle]
        if missing:
            raise DataError(f"{path}: not an mf/als model with id maps: no "
                            f"{', '.join(missing)} (models saved before the id maps were "
                            "added need a rerun of mf or als)")
        if "k" not in handle.attrs:
            raise DataError(f"{path}: no attribute k (factors per row)")
        k = int(handle.attrs["k"])
        user_shape, item_shape = handle["user_factors"].shape, handle["item_factors"].shape
        user_ids = handle["user_ids"].asstr()[...].astype(str)
        item_ids = handle["item_ids"].asstr()[...].astype(str)
        mean = float(handle.attrs.get("global_mean", 0.0))
    width = item_shape[1] if len(item_shape) == 2 else -1
    if width not in (k, k + 1) or user_shape != (len(user_ids), width) \
            or item_shape[0] != len(item_ids):
        raise DataError(f"{path}: user_factors {user_shape}, item_factors {item_shape}, "
                        f"{len(user_ids)} user ids and {len(item_ids)} item ids do not make "
                        f"an mf/als model with k = {k}")
    return {"k": k, "biased": width == k + 1, "mean": mean, "item_shape": item_shape,
            "user_ids": user_ids, "item_ids": item_ids,
            "user_index": {name: j for j, name in enumerate(user_ids.tolist())},
            "item_index": {name: j for j, name in enumerate(item_ids.tolist())}}


def read_rows(path, name, rows):
    """Rows ``rows`` (any order) of dataset ``name`` in the model file."""
    import h5py

    with h5py.File(path, "r") as handle:
        data = handle[name]
        if len(rows) == 0:
            return np.zeros((0, data.shape[1]))
        distinct, inverse = np.unique(rows, return_inverse=True)
        return data[distinct][inverse]
