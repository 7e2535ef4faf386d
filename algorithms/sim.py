"""Item-item cosine similarity with the top-k neighbours of every item.

What it computes
----------------
For every item ``i`` the ``topk`` other items ``j`` with the highest cosine
similarity ``<v_i, v_j> / (||v_i|| ||v_j||)`` (0 when either vector is
zero), as scikit-learn's ``cosine_similarity`` gives it. Neighbours come in
decreasing score; scores equal to 12 decimals count as equal (so rounding
noise never decides an order), and ties go to the lower item index. An item
is never its own neighbour; every other item is a candidate, even at score 0.

Parallel scheme
---------------
Items are split across the workers in contiguous ranges. Each worker
normalises its items' vectors and pushes them into the distributed matrix
``sim.items`` (``n_items x n_features``, rows in blocks of ``block_items``,
sparse for ratings, dense for vectors), then all ``sync()``. Each worker then
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
integers). ``input_format: "dense"``: ``id,f1,...,fk`` lines
(``load_dense``); each line is an item, numbered in input order.

Output
------
``OUTPUT/sim_<worker>``: one line per item of that worker,
``item\\tneighbour:score,neighbour:score,...`` (ids as in the input, scores
as Python ``repr`` floats). Metrics: ``items``, ``features``, ``topk``,
``mean_top1`` (mean best-neighbour score), ``blocks`` (blocks each worker
pulled).
"""

import numpy as np
import scipy.sparse

import paracel

MATRIX = "sim.items"
TIE_DECIMALS = 12


class CosineSimilarity(paracel.Algorithm):
    """Top-k cosine neighbours of every item; item vectors on the servers."""

    summary = "item-item cosine similarity, top-k neighbours; item vectors on the servers"
    reads = ('input_format "ratings": "user item value" lines (items are the vectors); "dense": '
             '"id,f1,...,fk" lines')
    parameters = {
        "topk": paracel.Param(int, 10, "neighbours kept per item", low=1),
        "input_format": paracel.Param(str, "ratings", "'ratings' (user item value lines) or "
                                      "'dense' (id,f1,...,fk lines, one item each)",
                                      choices=("ratings", "dense")),
        "block_items": paracel.Param(int, 128, "item vectors per block (one pull each)", low=1),
    }

    def solve(self):
        mine, first, ids = (self.load_rating_items() if self.input_format == "ratings"
                            else self.load_dense_items())
        mine = _normalise(mine)
        items = self.publish(mine, first, len(ids))
        scores, neighbours = self.top_neighbours(mine, first, items)
        self.dump("sim_", _lines(ids, first, scores, neighbours))
        top1 = scores[:, 0][np.isfinite(scores[:, 0])] if scores.size else np.zeros(0)
        total, count = self.sum_over_workers([top1.sum(), top1.size])
        return {"items": len(ids), "features": items.shape[1], "topk": self.topk,
                "mean_top1": float(total / max(count, 1)), "blocks": items.num_blocks}

    def state(self):
        """Nothing to keep: the matrix is complete on the servers after clock 1,
        and this worker's own items are loaded again from its share."""
        return {}

    def restore(self, state):
        """Nothing to take back (see :meth:`state`)."""

    # -- input -------------------------------------------------------------

    def load_rating_items(self):
        """This worker's item vectors (csr, items x users), first index, all item ids."""
        triples = self.load_ratings(partition="smap")
        first, stop = triples.cols
        mine = triples.matrix()[:, first:stop].T.tocsr()
        return mine, first, triples.dst_ids

    def load_dense_items(self):
        """This worker's item vectors (dense rows), first index, all item ids."""
        ids, X = self.load_dense()
        every = self.allgather_objects(ids)
        first = sum(len(part) for part in every[:self.worker_id])
        return X, first, np.array([name for part in every for name in part], dtype=str)

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

    def top_neighbours(self, mine, first, items):
        """Scores and indices (``n_mine x topk``) of each own item's best neighbours."""
        scores = np.full((mine.shape[0], self.topk), -np.inf)
        neighbours = np.full((mine.shape[0], self.topk), -1, dtype=np.int64)
        own = np.arange(first, first + mine.shape[0])
        start_block = self.worker_id * items.num_blocks // self.num_workers
        for block in np.roll(np.arange(items.num_blocks), -start_block):
            start, stop = items.block_range(block)
            block_scores = _dense(mine @ items.pull(np.arange(start, stop)).T)
            inside = (own >= start) & (own < stop)
            block_scores[np.flatnonzero(inside), own[inside] - start] = -np.inf
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


def _lines(ids, first, scores, neighbours):
    """``(item id, "neighbour:score,...")`` for each own item."""
    for row, (row_scores, row_items) in enumerate(zip(scores.tolist(), neighbours.tolist())):
        pairs = [f"{ids[j]}:{s!r}" for s, j in zip(row_scores, row_items) if s > -np.inf]
        yield ids[first + row], ",".join(pairs)
