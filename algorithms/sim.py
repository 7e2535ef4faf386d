"""Cosine similarity with the top-k neighbours of every item: within one
set, or each item of a set A against the items of a set B.

What it computes
----------------
For every item ``i`` the ``topk`` items ``j`` with the highest cosine
similarity ``<v_i, v_j> / (||v_i|| ||v_j||)`` (0 when either vector is
zero), as scikit-learn's ``cosine_similarity`` gives it. Without a
``reference`` the candidates are the other items of the input; with one
(A-B similarity, Paracel's ``ab_sim_dense``) the input is A, the reference
files are B, and every item of A gets its neighbours from B only; an item
with the same id in both is not its own neighbour. Neighbours come in
decreasing score; scores equal to 12 decimals count as equal (so rounding
noise never decides an order), and ties go to the lower item index (of B).
Every candidate counts, even at score 0, unless a bound drops it: a pair
scoring below ``simbar`` or above ``simubar`` is never a neighbour (as
Paracel's ``simbar``/``sim_bar`` and ``sim_ubar``; the upper bound drops
near-duplicates), so an item may get fewer than ``topk`` neighbours, or
none.

Parallel scheme
---------------
Items are split across the workers in contiguous ranges. Each worker
normalises its items' vectors and pushes them into the distributed matrix
``sim.items`` (``n_items x n_features``, rows in blocks of ``block_items``,
sparse for ratings, dense for vectors), then all ``sync()``. With a
``reference`` it is B's items that go to the servers (each worker pushes its
share of B) and each worker keeps its share of A. Each worker then
pulls the matrix block by block (starting at a different block per worker,
so they do not queue on one server), multiplies its own vectors with the
block, and folds the scores into a running top-k per item. The servers hold
the only copy of the whole matrix; no worker holds more than its own items
and one block. There is one pass over a fixed matrix, so ``staleness`` plays
no part.

Clocks and resuming
-------------------
One clock: the pushes (and the ``sync()`` that makes them complete) end with
``iter_commit()`` at clock 1. The state is empty: a resumed job (clock 1,
after that clock's checkpoint or the final one) finds the matrix on the
servers and skips the pushes (sparse rows are pushed with ``add``: pushing
them again would double every score); it loads and normalises its items
again and computes the top-k lists as an uninterrupted run does.

Input
-----
``input_format: "ratings"``: ``user item value`` lines (``load_ratings``,
split by item); an item's vector is its values over all users (duplicate
pairs summed), items numbered in sorted id order (numeric when all ids are
integers). ``input_format: "sparse"``: ``id feature value`` lines, the same
with the columns' roles swapped: a sparse row per id of the first column
(Paracel's ``fsv``; on a ratings file this gives user-user similarity).
``input_format: "dense"``: ``id,f1,...,fk`` lines (``load_dense``); each
line is an item, numbered in input order. A reference is read in the same
format; for the sparse formats A's and B's feature ids are matched by name
(their union, sorted, is the feature space), dense vectors must have the
same width.

Output
------
``OUTPUT/sim_<worker>``: one line per item of that worker,
``item\\tneighbour:score,neighbour:score,...`` (ids as in the input, scores
as Python ``repr`` floats; nothing after the tab when the bounds left no
neighbour). Metrics: ``items``, ``reference_items`` (B's, or the input's
again), ``features``, ``topk``, ``mean_top1`` (mean best-neighbour score
over the items that have one), ``pairs`` (neighbours written), ``blocks``
(blocks each worker pulled).
"""

import numpy as np
import scipy.sparse

import paracel
from paracel.errors import DataError
from paracel.io.graph import _sorted_ids as sorted_ids

MATRIX = "sim.items"
TIE_DECIMALS = 12


class CosineSimilarity(paracel.Algorithm):
    """Top-k cosine neighbours of every item; item vectors on the servers."""

    summary = ("cosine similarity, top-k neighbours within a set or of set A against set B, "
               "with score bounds; vectors on the servers")
    reads = ('input_format "ratings": "user item value" lines (items are the vectors); '
             '"sparse": "id feature value" lines (ids are the vectors); "dense": "id,f1,...,fk" '
             'lines; a reference (set B) in the same format')
    parameters = {
        "topk": paracel.Param(int, 10, "neighbours kept per item", low=1),
        "input_format": paracel.Param(str, "ratings", "'ratings' (user item value lines, "
                                      "vectors per item), 'sparse' (id feature value lines, "
                                      "vectors per id) or 'dense' (id,f1,...,fk lines)",
                                      choices=("ratings", "sparse", "dense")),
        "block_items": paracel.Param(int, 128, "item vectors per block (one pull each)", low=1),
        "reference": paracel.Param(str, None, "A-B similarity: file, folder or glob of set B "
                                   "(same format as the input); each input item's "
                                   "neighbours are taken from B only (an item with the same "
                                   "id in both is not its own neighbour)", nullable=True,
                                   path=True),
        "simbar": paracel.Param(float, None, "drop pairs scoring below this (null: keep all)",
                                nullable=True),
        "simubar": paracel.Param(float, None, "drop pairs scoring above this, e.g. "
                                 "near-duplicates (null: keep all)", nullable=True),
    }

    def __init__(self, **params):
        super().__init__(**params)
        if self.simbar is not None and self.simubar is not None and self.simubar < self.simbar:
            raise paracel.ConfigError(f"params.simubar: {self.simubar!r} is below "
                                      f"params.simbar {self.simbar!r}; no pair could be kept")

    def solve(self):
        mine, first, ids, features = self.load_items(None)
        if self.reference is None:
            theirs, their_first, their_ids = mine, first, ids
        else:
            theirs, their_first, their_ids, their_features = self.load_items(self.reference)
            mine, theirs = self.common_features(mine, features, theirs, their_features)
        mine = _normalise(mine)
        items = self.publish(_normalise(theirs), their_first, len(their_ids))
        lookup = {name: index for index, name in enumerate(their_ids.tolist())}
        same = np.array([lookup.get(name, -1) for name in ids[first:first + mine.shape[0]]],
                        dtype=np.int64)
        scores, neighbours = self.top_neighbours(mine, same, items)
        self.dump("sim_", _lines(ids[first:], their_ids, scores, neighbours))
        top1 = scores[:, 0][np.isfinite(scores[:, 0])] if scores.size else np.zeros(0)
        kept = np.isfinite(scores).sum()
        total, count, pairs = self.sum_over_workers([top1.sum(), top1.size, kept])
        return {"items": len(ids), "reference_items": len(their_ids),
                "features": items.shape[1], "topk": self.topk,
                "mean_top1": float(total / max(count, 1)), "pairs": int(pairs),
                "blocks": items.num_blocks}

    def state(self):
        """Nothing to keep: the matrix is complete on the servers after clock 1,
        and this worker's own items are loaded again from its share."""
        return {}

    def restore(self, state):
        """Nothing to take back (see :meth:`state`)."""

    # -- input -------------------------------------------------------------

    def load_items(self, files):
        """This worker's item vectors of ``files`` (the input if None), in
        the format of ``input_format`` (collective).

        Returns
        -------
        mine : scipy.sparse.csr_matrix or numpy.ndarray
            This worker's items' vectors, one row each.
        first : int
            The global index of its first item.
        ids : numpy.ndarray of str
            Every item's id, in index order.
        features : numpy.ndarray of str or None
            The feature id of each column (None for dense input).
        """
        if self.input_format == "dense":
            return (*self.load_dense_items(files), None)
        by_item = self.input_format == "ratings"
        triples = self.load_ratings(files, partition="smap" if by_item else "fmap")
        first, stop = triples.cols if by_item else triples.rows
        if by_item:
            mine = triples.matrix()[:, first:stop].T.tocsr()
            return mine, first, triples.dst_ids, triples.src_ids
        return triples.matrix()[first:stop].tocsr(), first, triples.src_ids, triples.dst_ids

    def load_dense_items(self, files):
        """This worker's item vectors (dense rows), first index, all item ids."""
        ids, X = self.load_dense(files)
        every = self.allgather_objects(ids)
        first = sum(len(part) for part in every[:self.worker_id])
        return X, first, np.array([name for part in every for name in part], dtype=str)

    def common_features(self, mine, features, theirs, their_features):
        """The input's and the reference's vectors over one feature space:
        sparse columns renumbered into the sorted union of both feature id
        sets; dense rows must have the same width."""
        if features is None:
            if mine.shape[1] != theirs.shape[1]:
                raise DataError(f"{self.reference}: reference vectors have "
                                f"{theirs.shape[1]} features, the input's "
                                f"{', '.join(self.input_files)} have {mine.shape[1]}")
            return mine, theirs
        union = sorted_ids(set(features.tolist()) | set(their_features.tolist()))
        lookup = {name: index for index, name in enumerate(union.tolist())}
        return (_renumbered(mine, features, lookup, len(union)),
                _renumbered(theirs, their_features, lookup, len(union)))

    # -- the distributed matrix --------------------------------------------

    def publish(self, mine, first, n_items):
        """Create ``sim.items`` on the servers and push this worker's rows in
        clock 1 (collective); a resumed job attaches to it."""
        sparse = scipy.sparse.issparse(mine)
        items = self.matrix(MATRIX, (n_items, mine.shape[1]), sparse=sparse,
                            block_rows=self.block_items)
        if self.clock == 0:  # not yet pushed (a resumed job finds them on the servers)
            if mine.shape[0]:
                items.push(np.arange(first, first + mine.shape[0]), mine,
                           "add" if sparse else "replace")
            self.sync()
            self.iter_commit()
        return items

    def top_neighbours(self, mine, same, items):
        """Scores and indices (``n_mine x topk``) of each own item's best
        neighbours among the rows of ``items``; ``same[r]`` is the row of
        own item ``r``'s own id there (never its neighbour), or -1."""
        scores = np.full((mine.shape[0], self.topk), -np.inf)
        neighbours = np.full((mine.shape[0], self.topk), -1, dtype=np.int64)
        start_block = self.worker_id * items.num_blocks // self.num_workers
        for block in np.roll(np.arange(items.num_blocks), -start_block):
            start, stop = items.block_range(block)
            block_scores = _bounded(_dense(mine @ items.pull(np.arange(start, stop)).T),
                                    self.simbar, self.simubar)
            inside = (same >= start) & (same < stop)
            block_scores[np.flatnonzero(inside), same[inside] - start] = -np.inf
            scores, neighbours = _merge(scores, neighbours, block_scores,
                                        np.arange(start, stop), self.topk)
        return scores, neighbours


def _normalise(X):
    """Rows scaled to unit length (zero rows stay zero), as sklearn's ``normalize``."""
    squares = X.multiply(X).sum(axis=1) if scipy.sparse.issparse(X) else (X * X).sum(axis=1)
    norms = np.sqrt(np.asarray(squares, dtype=np.float64).ravel())
    norms[norms == 0] = 1.0
    if scipy.sparse.issparse(X):
        X = X.astype(np.float64, copy=True)
        X.data /= np.repeat(norms, np.diff(X.indptr))
        return X
    return X / norms[:, None]


def _renumbered(X, features, lookup, width):
    """Sparse ``X`` with column ``j`` moved to ``lookup[features[j]]``."""
    X = X.tocoo()
    columns = np.array([lookup[name] for name in features.tolist()], dtype=np.int64)
    return scipy.sparse.csr_matrix((X.data, (X.row, columns[X.col])),
                                   shape=(X.shape[0], width))


def _bounded(block_scores, low, high):
    """Scores outside ``[low, high]`` (either bound None: open) set to ``-inf``."""
    if low is not None:
        block_scores[block_scores < low] = -np.inf
    if high is not None:
        block_scores[block_scores > high] = -np.inf
    return block_scores


def _dense(product):
    return product.toarray() if scipy.sparse.issparse(product) else np.asarray(product)


def _merge(scores, neighbours, block_scores, block_items, k):
    """The top ``k`` of the running lists and a block's scores, row by row:
    by score (rounded to ``TIE_DECIMALS``) descending, then item index."""
    block_scores, block_items = _candidates(block_scores, block_items, k)
    all_scores = np.hstack([scores, block_scores])
    all_items = np.hstack([neighbours, block_items])
    order = np.lexsort((all_items, -np.round(all_scores, TIE_DECIMALS)), axis=-1)[:, :k]
    return (np.take_along_axis(all_scores, order, axis=1),
            np.take_along_axis(all_items, order, axis=1))


def _candidates(block_scores, block_items, k):
    """Per row, the block's columns that can be in its top ``k``: those whose
    rounded score is at least the row's k-th best (ties included), padded
    with ``-inf``; so the final sort only sees a few columns per row."""
    items = np.broadcast_to(block_items, block_scores.shape)
    if block_scores.shape[1] <= k:
        return block_scores, items
    rounded = np.round(block_scores, TIE_DECIMALS)
    kth = -np.partition(-rounded, k - 1, axis=1)[:, k - 1:k]
    keep = rounded >= kth
    columns = np.argsort(~keep, axis=1, kind="stable")[:, :int(keep.sum(axis=1).max())]
    kept = np.take_along_axis(keep, columns, axis=1)
    return (np.where(kept, np.take_along_axis(block_scores, columns, axis=1), -np.inf),
            np.take_along_axis(items, columns, axis=1))


def _lines(own_ids, their_ids, scores, neighbours):
    """``(item id, "neighbour:score,...")`` for each own item (``own_ids``
    from the first own item on)."""
    for row, (row_scores, row_items) in enumerate(zip(scores.tolist(), neighbours.tolist())):
        pairs = [f"{their_ids[j]}:{s!r}" for s, j in zip(row_scores, row_items) if s > -np.inf]
        yield own_ids[row], ",".join(pairs)
