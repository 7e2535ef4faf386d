"""The neighbourhood size of neighbourhood-based rating prediction, tuned
per user (or per item): Paracel's ``adjust_ktop``.

What it computes
----------------
The input is a ratings file (``user item rating``) and a similarity file as
:mod:`paracel.algorithms.sim` writes it (``id<TAB>neighbour:score,...``,
best first). With ``side: "users"`` the similarity file lists users' most
similar users (``sim`` with ``input_format: "sparse"`` on the ratings gives
it); with ``side: "items"`` it lists items' most similar items (``sim`` on
the ratings, ``input_format: "ratings"``). Call the entities that have
neighbour lists *nodes*, the other side *others*; below for users.

For a user ``u`` with neighbours ``v_1, v_2, ...`` in the file's order
(``sim`` writes them best first, equal scores by index; Paracel sorted
them by score again) with scores ``s_1, s_2, ...`` and a size ``k``,
``u``'s rating of item ``i`` is predicted from those of its top ``k``
neighbours that rated ``i`` (Paracel's formula)::

    r̂_k(u, i) = Σ_{j <= k, v_j rated i} s_j r(v_j, i) / Σ_{j <= k, v_j rated i} s_j

and the user's squared residual is ``E_u(k) = Σ_i (r(u, i) − r̂_k(u, i))²``
over the items ``u`` rated. A rating without a prediction (no neighbour in
the top ``k`` rated the item, or the weights sum to 0) is predicted by the
global mean rating with ``fallback: "mean"``, so every ``k`` is judged on
all of the user's ratings; with ``fallback: "none"`` it is left out of
``E_u(k)``, as in Paracel (which favours small ``k``: fewer ratings are
predicted, so fewer terms are summed). The chosen size is the ``k`` in
``[low, high]`` with the smallest ``E_u(k)`` (the smallest such ``k`` on
ties; with ``"none"`` only sizes that predict at least one rating count,
and ``low`` if none does). A ``k`` beyond the length of a user's list means
the whole list. ``high`` defaults to the longest list in the file.

Reported: the base RMSE, every user with ``k = high`` (Paracel's base is the
whole list), and the adjusted RMSE, every user with its own ``k``; each the
square root of the summed residuals over the number of ratings they cover.

Differences from Paracel
------------------------
* Paracel's search started adding neighbours at the ``low``-th: with
  ``low > 1`` the top ``low − 1`` neighbours were never used, so its "k"
  neighbours were neighbours ``low .. k``. Here size ``k`` always means the
  top ``k``.
* Paracel divided both RMSEs by every rating, predicted or not; here the
  divisor is the ratings that were predicted (all of them with
  ``"mean"``), reported as ``base_predicted`` and ``predicted``.
* Paracel's ``fallback`` was ``"none"`` and a size that predicted nothing
  was skipped only until a first size predicted something; a user without
  any got the list length. Here such a user gets ``low``.
* A repeated ``(user, item)`` pair is one rating, their mean (Paracel kept
  whichever it stored last).

Parallel scheme
---------------
The ratings are split by node (``partition="fmap"`` for users, ``"smap"``
for items). Each worker pushes its nodes' rating rows into two sparse
server matrices, ``adjust_ktop.ratings`` (the values) and
``adjust_ktop.rated`` (1 where a rating exists, so a rating of 0 counts),
and the neighbour lists of its share of the similarity file's lines into
two dense ones, ``adjust_ktop.neighbours`` (node indices, -1 past a list's
end or for a neighbour without ratings) and ``adjust_ktop.scores``
(``n_nodes × high``); a count per node (``adjust_ktop.lines``) finds a node
listed twice. Then all ``sync()`` and commit clock 1. Each worker then
takes its own nodes in chunks: it pulls their lists, then the rating rows of
every neighbour they name (one grouped pull of both matrices), computes
``E(k)`` for every ``k`` at once (cumulative sums over the neighbours) and
picks each node's size. The residual sums are added over the workers.

Clocks and resuming
-------------------
One clock (the pushes). The state is empty: a resumed job finds the
matrices on the servers, skips the pushes (sparse pushes add, and would
count twice) and computes the sizes again, as an uninterrupted run does.

Output
------
``OUTPUT/ktop_<worker>``: ``node<TAB>k`` for each node of that worker with
a neighbour list. Metrics: ``base_rmse``, ``adjusted_rmse``,
``base_predicted``, ``predicted``, ``ratings`` (of the nodes with a list),
``nodes``, ``mean_k``, ``base_k`` (= ``high``), ``low``,
``nodes_without_list`` (nodes with ratings but no line in the similarity
file) and ``listed_without_ratings`` (lines whose node has no rating).
"""

import math

import numpy as np
import scipy.sparse as sp

import paracel
from paracel.config import input_files
from paracel.errors import DataError
from paracel.io.lines import iter_lines, line_number

CHUNK = 512


def neighbour_ratings(keys, values, neighbours, others, n_others):
    """The ratings of each rating's neighbours, looked up by key.

    Parameters
    ----------
    keys : numpy.ndarray of int64
        Sorted ``node * n_others + other`` of every known rating.
    values : numpy.ndarray
        Their ratings.
    neighbours : numpy.ndarray of int64
        ``(n_ratings, W)``: the node's neighbours for each rating (-1: none).
    others : numpy.ndarray of int64
        ``(n_ratings,)``: the rated other of each rating.
    n_others : int
        The number of others.

    Returns
    -------
    found : numpy.ndarray
        ``(n_ratings, W)`` the neighbour's rating of the same other (0 if none).
    rated : numpy.ndarray of bool
        Whether it exists.
    """
    wanted = neighbours * n_others + others[:, None]
    position = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
    rated = (neighbours >= 0) & (keys[position] == wanted) if len(keys) else \
        np.zeros(wanted.shape, dtype=bool)
    found = np.where(rated, values[position] if len(keys) else 0.0, 0.0)
    return found, rated


def squared_errors(ratings, found, rated, scores, fallback):
    """Squared error of every rating's prediction from its top ``k``
    neighbours, for ``k = 1 .. W`` at once.

    Parameters
    ----------
    ratings : numpy.ndarray
        ``(n,)`` the ratings to predict.
    found, rated : numpy.ndarray
        ``(n, W)`` from :func:`neighbour_ratings`.
    scores : numpy.ndarray
        ``(n, W)`` the similarity of each neighbour.
    fallback : float or None
        The prediction when no neighbour in the top ``k`` rated the item;
        None leaves the rating out.

    Returns
    -------
    errors : numpy.ndarray
        ``(n, W)``; column ``k - 1`` is size ``k``'s squared error (0 where
        not counted).
    counted : numpy.ndarray of bool
        ``(n, W)``: whether the rating counts at that size.
    """
    weights = np.where(rated, scores, 0.0)
    numerator = np.cumsum(weights * found, axis=1)
    denominator = np.cumsum(weights, axis=1)
    predicted = denominator != 0
    prediction = np.divide(numerator, denominator, out=np.zeros_like(numerator),
                           where=predicted)
    if fallback is None:
        counted = predicted
    else:
        prediction[~predicted] = fallback
        counted = np.ones_like(predicted)
    errors = np.where(counted, (ratings[:, None] - prediction) ** 2, 0.0)
    return errors, counted


def choose_sizes(residuals, counts, low, require_counted):
    """Each node's size: the ``k >= low`` with the smallest residual.

    Parameters
    ----------
    residuals, counts : numpy.ndarray
        ``(n_nodes, W)`` summed squared errors and counted ratings per size
        (column ``k - 1``).
    low : int
        The smallest size allowed.
    require_counted : bool
        Only sizes with a counted rating are candidates (``low`` when none is).

    Returns
    -------
    numpy.ndarray of int
        The chosen sizes (``low .. W``; ``low`` when ``low > W``).
    """
    n, width = residuals.shape
    if low > width:
        return np.full(n, low, dtype=np.int64)
    candidates = residuals[:, low - 1:].copy()
    if require_counted:
        candidates[counts[:, low - 1:] == 0] = np.inf
    best = np.argmin(candidates, axis=1)
    best[~np.isfinite(candidates[np.arange(n), best])] = 0
    return best + low


def parse_similarity_line(line, path, offset):
    """``(node id, [neighbour ids], [scores])`` of one similarity line;
    DataError naming the file and line if it is malformed."""
    node, tab, pairs = line.partition("\t")
    if not tab or not node.strip():
        raise DataError(f"{path}:{line_number(path, offset)}: expected "
                        "'id<TAB>neighbour:score,...'")
    names, scores = [], []
    for pair in pairs.replace("|", ",").split(","):
        if not pair.strip():
            continue
        name, colon, score = pair.strip().rpartition(":")
        try:
            value = float(score)
        except ValueError:
            value = math.nan
        if not colon or not name or not math.isfinite(value):
            raise DataError(f"{path}:{line_number(path, offset)}: {pair.strip()!r} is not "
                            "'neighbour:score' with a finite score")
        names.append(name)
        scores.append(value)
    return node.strip(), names, scores


class AdjustKtop(paracel.Algorithm):
    """Per-node neighbourhood size minimising the prediction residual."""

    summary = ("per-user (or per-item) neighbourhood size of similarity-weighted rating "
               "prediction, base and adjusted RMSE; ratings and lists on the servers")
    reads = ('"user item rating" lines (input), and "similarity": lines as sim writes them, '
             '"node<TAB>neighbour:score,neighbour:score,..." (best first)')
    parameters = {
        "similarity": paracel.Param(str, None, "the similarity file(s), as sim writes them "
                                    "(id<TAB>neighbour:score,...); required", nullable=True,
                                    path=True),
        "side": paracel.Param(str, "users", "whose neighbours the similarity file lists: "
                              "'users' (first column of the ratings) or 'items' (second)",
                              choices=("users", "items")),
        "low": paracel.Param(int, 1, "smallest neighbourhood size", low=1),
        "high": paracel.Param(int, None, "largest neighbourhood size, also the base RMSE's "
                              "(null: the longest list in the file)", low=1, nullable=True),
        "fallback": paracel.Param(str, "mean", "a rating no neighbour predicts: 'mean' "
                                  "(predicted by the global mean) or 'none' (left out, "
                                  "as Paracel)", choices=("mean", "none")),
    }

    def __init__(self, **params):
        super().__init__(**params)
        if self.high is not None and self.high < self.low:
            raise paracel.ConfigError(f"params.high: {self.high} is below params.low "
                                      f"{self.low}")

    def check_job(self, job):
        """The similarity file is required."""
        if self.similarity is None:
            raise paracel.ConfigError("params.similarity: required: the similarity file "
                                      "(as sim writes it)")

    def solve(self):
        triples = self.load_ratings(partition="fmap" if self.side == "users" else "smap")
        users = self.side == "users"
        ids, other_ids = (triples.src_ids, triples.dst_ids) if users else (triples.dst_ids,
                                                                          triples.src_ids)
        first, stop = triples.rows if users else triples.cols
        nodes, others, values = _distinct(triples.src if users else triples.dst,
                                          triples.dst if users else triples.src, triples.weight)
        total, count = self.sum_over_workers([values.sum(), values.size])
        self.mean_ = total / count
        lookup = triples.src_lookup if users else triples.dst_lookup
        listed, lists, width = self.read_lists(lookup, len(ids))
        matrices = self.publish(nodes, others, values, listed, lists, (len(ids), len(other_ids)),
                                width)
        listed_here = self.check_lines(matrices[4], first, stop, ids)
        sums, sizes = self.sizes(matrices, nodes, others, values, first, stop, listed_here,
                                 len(other_ids))
        self.dump("ktop_", ((ids[first + row], int(k)) for row, k in sizes))
        return self.summarise(self.sum_over_workers(sums), width, len(ids))

    def state(self):
        """Nothing to keep: the matrices are complete on the servers after
        clock 1, and the sizes are computed again from them."""
        return {}

    def restore(self, state):
        """Nothing to take back (see :meth:`state`)."""

    # -- input -------------------------------------------------------------

    def read_lists(self, lookup, n_nodes):
        """This worker's share of the similarity file's lines.

        Returns
        -------
        listed : numpy.ndarray of int64
            The node index of each line whose node has ratings.
        lists : (numpy.ndarray, numpy.ndarray)
            ``(len(listed), width)`` neighbour indices (-1: none or unrated)
            and scores, in the file's order.
        width : int
            ``high``, or the longest list over all workers.
        """
        rows, unknown = [], 0
        for path, offset, line in iter_lines(input_files(self.similarity), self.worker_id,
                                             self.num_workers):
            if not line.strip():
                continue
            node, names, scores = parse_similarity_line(line, path, offset)
            if node not in lookup:
                unknown += 1
                continue
            rows.append((lookup[node], [lookup.get(name, -1) for name in names], scores))
        longest, self.unknown_ = self.allgather([max((len(r[1]) for r in rows), default=0),
                                                 unknown]).T
        width = self.high or max(int(longest.max()), 1)
        neighbours = np.full((len(rows), width), -1, dtype=np.int64)
        scores = np.zeros((len(rows), width))
        for row, (_, names, values) in enumerate(rows):
            neighbours[row, :min(len(names), width)] = names[:width]
            scores[row, :min(len(values), width)] = values[:width]
        listed = np.array([r[0] for r in rows], dtype=np.int64)
        return listed, (neighbours, scores), width

    # -- the server matrices -----------------------------------------------

    def publish(self, nodes, others, values, listed, lists, shape, width):
        """Create the five server matrices and push this worker's ratings and
        lines in clock 1 (collective); a resumed job attaches to them."""
        n_nodes, n_others = shape
        ratings = self.matrix("adjust_ktop.ratings", shape, sparse=True)
        rated = self.matrix("adjust_ktop.rated", shape, sparse=True)
        neighbours = self.matrix("adjust_ktop.neighbours", (n_nodes, width), init="constant",
                                 value=-1.0)
        scores = self.matrix("adjust_ktop.scores", (n_nodes, width))
        lines = self.matrix("adjust_ktop.lines", (n_nodes,))
        if self.clock == 0:  # not yet pushed (a resumed job finds them on the servers)
            if nodes.size:
                rows, local = np.unique(nodes, return_inverse=True)
                shape_here = (rows.size, n_others)
                ratings.push(rows, sp.csr_matrix((values, (local, others)), shape=shape_here))
                rated.push(rows, sp.csr_matrix((np.ones(values.size), (local, others)),
                                               shape=shape_here))
            if listed.size:
                neighbours.push(listed, lists[0].astype(np.float64), "replace")
                scores.push(listed, lists[1], "replace")
                lines.push(listed, np.ones(listed.size))
            self.sync()
            self.iter_commit()
        return ratings, rated, neighbours, scores, lines

    def check_lines(self, lines, first, stop, ids):
        """Which of this worker's nodes have a line; a node with two is an error."""
        counts = lines.pull(np.arange(first, stop)) if stop > first else np.zeros(0)
        twice = np.flatnonzero(counts > 1)
        if twice.size:
            raise DataError(f"{self.similarity}: id {str(ids[first + twice[0]])!r} has "
                            f"{int(counts[twice[0]])} lines; one line per id")
        return counts > 0

    # -- the sizes ---------------------------------------------------------

    def sizes(self, matrices, nodes, others, values, first, stop, listed_here, n_others):
        """Each own listed node's size, and this worker's sums
        ``[base residual, base count, residual, count, nodes, ratings, sizes]``."""
        ratings, rated, neighbours_m, scores_m, _ = matrices
        sums = np.zeros(7)
        chosen = []
        order = np.argsort(nodes, kind="stable")
        nodes, others, values = nodes[order], others[order], values[order]
        fallback = self.mean_ if self.fallback == "mean" else None
        own = first + np.flatnonzero(listed_here)
        for start in range(0, own.size, CHUNK):
            chunk = own[start:start + CHUNK]
            lists, scores = self.pull_many([(neighbours_m, chunk), (scores_m, chunk)])
            lists = lists.astype(np.int64)
            lo, hi = np.searchsorted(nodes, [chunk[0], chunk[-1] + 1])
            mine = np.searchsorted(chunk, nodes[lo:hi])
            keep = chunk[np.minimum(mine, chunk.size - 1)] == nodes[lo:hi]
            mine, own_others, own_values = mine[keep], others[lo:hi][keep], values[lo:hi][keep]
            keys, known = self.known_ratings(ratings, rated, lists, n_others)
            found, has = neighbour_ratings(keys, known, lists[mine], own_others, n_others)
            errors, counted = squared_errors(own_values, found, has, scores[mine], fallback)
            per_node = sp.csr_matrix((np.ones(mine.size), (mine, np.arange(mine.size))),
                                     shape=(chunk.size, mine.size))
            residuals, counts = per_node @ errors, per_node @ counted.astype(np.float64)
            k = choose_sizes(residuals, counts, self.low, fallback is None)
            at = np.minimum(k, residuals.shape[1]) - 1
            rows = np.arange(chunk.size)
            sums += [residuals[:, -1].sum(), counts[:, -1].sum(), residuals[rows, at].sum(),
                     counts[rows, at].sum(), chunk.size, mine.size, k.sum()]
            chosen += list(zip((chunk - first).tolist(), k.tolist()))
        return sums, chosen

    def known_ratings(self, ratings, rated, lists, n_others):
        """Sorted keys ``node * n_others + other`` and values of every rating
        of the nodes named in ``lists`` (one grouped pull)."""
        wanted = np.unique(lists[lists >= 0])
        if not wanted.size:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        values, exists = (part.tocoo() for part in
                          self.pull_many([(ratings, wanted), (rated, wanted)]))
        keys = np.sort(wanted[exists.row] * n_others + exists.col)
        found = np.zeros(keys.size)  # a stored value always has its entry in ``rated``
        found[np.searchsorted(keys, wanted[values.row] * n_others + values.col)] = values.data
        return keys, found

    def summarise(self, sums, width, n_nodes):
        """The metrics from the summed ``sums`` of :meth:`sizes`."""
        base, base_count, adjusted, count, nodes, ratings, sizes = sums
        return {"base_rmse": math.sqrt(base / base_count) if base_count else None,
                "adjusted_rmse": math.sqrt(adjusted / count) if count else None,
                "base_predicted": int(base_count), "predicted": int(count),
                "ratings": int(ratings), "nodes": int(nodes),
                "mean_k": sizes / nodes if nodes else None, "base_k": width, "low": self.low,
                "nodes_without_list": n_nodes - int(nodes),
                "listed_without_ratings": int(self.unknown_.sum()),
                "mean_rating": self.mean_}


def _distinct(nodes, others, values):
    """One rating per ``(node, other)`` pair: the mean of repeated ones."""
    if not nodes.size:
        return nodes, others, values
    pairs, inverse = np.unique(np.stack([nodes, others]), axis=1, return_inverse=True)
    inverse = inverse.ravel()
    sums = np.bincount(inverse, weights=values, minlength=pairs.shape[1])
    return pairs[0], pairs[1], sums / np.bincount(inverse, minlength=pairs.shape[1])
