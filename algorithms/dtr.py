"""Decision trees of "do you like item i?" questions for new-user cold start:
Paracel's ``decision_tree_rec``.

What it computes
----------------
A new user answers a few questions ("do you like item i?"); each answer
sends them down a binary tree, and the node they end at gives them a user
factor vector (the mean factor of the known users who answered the same
way), which a factor model (``als``, ``mf``) turns into recommendations.

Known users are those of the ratings file; their factors ``p_u`` come from
a factor model (see Input). User ``u`` *likes* item ``i`` when it rated
``i`` at least ``threshold`` (any of its ratings of ``i``); every other
user, rated or not, is on the other side. A question ``i`` splits a node's
users ``U`` into likers ``L`` and the rest ``H``; its cost is the
two-cluster squared error::

    E(i) = Σ_{u∈L} |p_u − mean_L|² + Σ_{u∈H} |p_u − mean_H|²

computed from per-side sums (count ``n``, factor sum ``S``, sum of squared
norms ``Q``: ``Q − |S|²/n``), the impurity of a multi-output regression
tree on the like indicators (scikit-learn's ``DecisionTreeRegressor`` with
``squared_error`` chooses the same split). A question must leave users on
both sides (and with ``balance > 0`` the larger side must have fewer than
``balance`` times the smaller's users, Paracel's filter with 3). Each node
asks the question of least ``E`` (costs equal to 12 decimals of the
node's own squared error tie, and the lower item index wins), except tree
``t``'s root, which asks the ``t``-th best root question (t = 0, 1, ...):
``trees`` different trees.

The trees are complete binary trees of ``depth`` questions on every path,
stored in heap order: node ``j``'s children are ``2j + 1`` (likes) and
``2j + 2`` (does not), nodes ``0 .. 2^depth − 2`` ask, nodes
``2^depth − 1 .. 2^(depth+1) − 2`` are the leaves. Every node has the mean
factor of its users. A node with users but no valid question (one user, or
no item splits them) asks nothing and its users stop there; a node without
users is *empty*: it asks nothing and keeps its parent's mean.

Differences from Paracel
------------------------
* Paracel split on the sign of ``p_u · q_i`` (a predicted like from the item
  factors); here a like is an observed rating ``>= threshold``, so the
  questions are about what users actually said.
* Paracel never asked an item twice in one tree, even on different
  branches; here only the node's own users matter (an item asked on the
  path already splits nobody), since a user answers one path only.
* An empty node or a node no item splits made Paracel push no means and
  write the tree and the means misaligned (or read past them); here such
  a node asks nothing and its mean is defined as above.
* Paracel wrote the means of the asking nodes only; here the leaves'
  means, the ones a new user ends at, are written too.
* ``balance`` is off by default (0), so that the root question is the
  regression tree's; Paracel always applied 3.

Parallel scheme
---------------
The ratings are split by user (``partition="fmap"``). The factors go to
the servers first: each worker pushes the rows of its share of the factor
file into ``dtr.factors`` (``n_users × k``), with a count per user in
``dtr.present`` (so a missing or repeated user is an error), and pulls
back its own users' rows. Each level of each tree is then one clock: every
worker adds its users' statistics ``[1, p_u, |p_u|²]`` into the server
matrix ``dtr.stats.<tree>.<level>`` (one row per node of the level and item, the
likers' sums, plus a row of the node's totals), so the servers sum the
statistics of all users; after ``sync()`` each worker pulls the rows of its
share of the items for every node of the level, finds its best candidates,
and all exchange them (``allgather_objects``): every worker then knows each
node's question and both children's statistics, and moves its users down.
The root level is shared by all trees (one clock ranks the root
questions); then ``depth − 1`` clocks per tree.

Clocks and resuming
-------------------
Clock 1 pushes the factors; clock 2 ranks the root questions; then one
clock per tree and level below the root. A level's matrix has rows only for
the nodes that can split (two users or more), so its size is bounded by
the users, not by ``2^depth``; its blocks are removed once read. A worker's state is the trees so
far (questions and node statistics, the same on every worker); a resumed
job reloads its share of the data, pulls its users' factors again and
goes on with the next level. The servers add the statistics in the order
the pushes arrive, so two runs can differ in the last bits of a mean.

Input
-----
The job's ``input``: ``user item rating`` lines. ``factors``: a model file
(``.h5``) of ``als`` or ``mf`` (the ``user_factors`` dataset, or ``P``;
only its first ``k`` columns when the file has a ``k`` attribute, so mf's
bias column is left out); with a ``user_ids`` dataset its rows are matched
to the ratings' users by id, without one its rows must be the ratings'
users in index order (as ``als`` and ``mf`` save them from the same
ratings file). Or a text factor file (or folder, or glob), ``id<TAB>f1,f2,...``
lines (``als``'s ``user_factors_<w>``; ``|`` separators as in Paracel
also read). Users of the factor file without ratings are ignored.

Output
------
``model.h5``: ``question_items`` (``trees × (2^depth − 1)``, item index or
-1), ``item_ids``, ``means`` (``trees × (2^(depth+1) − 1) × k``), ``counts``
(users per node) and ``sse`` (their squared error about the node mean),
attributes ``depth``, ``threshold``, ``k``, ``trees``, ``layout``.
``trees.txt``: ``tree_<t><TAB>item|item|...`` (the questions in heap order,
``-`` for none, as Paracel's ``tree_0``); ``means_<t>.txt``: one line per
node, ``users<TAB>f1,f2,...``. Metrics: ``users``, ``items``, ``k``,
``root_sse``, and per tree ``root_items``, ``sse`` (the squared error of
every user about the mean of the node it stops at) and ``explained``
(``1 − sse / root_sse``).
"""

import math
import re

import numpy as np
import scipy.sparse as sp

import paracel
from paracel.config import input_files
from paracel.errors import DataError
from paracel.io.h5 import _open as open_h5
from paracel.io.h5 import rows_of
from paracel.io.lines import iter_lines, line_number

TIE_DECIMALS = 12
SEPARATORS = re.compile(r"[,|\s]+")


def sse(stats):
    """Squared error about the mean, ``Q − |S|²/n``, of statistics rows
    ``[n, S_1 .. S_k, Q]`` (0 where ``n`` is 0)."""
    n = stats[..., 0]
    sums = stats[..., 1:-1]
    return np.where(n > 0, stats[..., -1] - (sums * sums).sum(axis=-1) / np.maximum(n, 1),
                    0.0)


def split_errors(like, total, balance):
    """The cost of every question at every node.

    Parameters
    ----------
    like : numpy.ndarray
        ``(nodes, items, k + 2)`` the likers' statistics.
    total : numpy.ndarray
        ``(nodes, k + 2)`` the node's statistics.
    balance : float
        0, or the ratio of the sides' sizes at which a question is refused.

    Returns
    -------
    numpy.ndarray
        ``(nodes, items)`` ``E(i)``, ``inf`` where ``i`` is not a valid question.
    """
    hate = total[:, None, :] - like
    errors = sse(like) + sse(hate)
    n_like, n_hate = like[..., 0], hate[..., 0]
    valid = (n_like > 0.5) & (n_hate > 0.5)
    if balance > 0:
        valid &= np.maximum(n_like, n_hate) < balance * np.minimum(n_like, n_hate)
    return np.where(valid, errors, np.inf)


def best_questions(errors, total, items, count):
    """The ``count`` best valid questions of every node: ``[(node, key,
    error, item), ...]`` ordered by (key, item), where the key is the error
    relative to the node's own squared error, rounded to ``TIE_DECIMALS``.

    ``items`` are the global indices of ``errors``' columns.
    """
    found = []
    scale = sse(total)
    for node in range(errors.shape[0]):
        valid = np.flatnonzero(np.isfinite(errors[node]))
        if not valid.size:
            continue
        keys = np.round(errors[node, valid] / (scale[node] if scale[node] > 0 else 1.0),
                        TIE_DECIMALS)
        order = np.lexsort((items[valid], keys))[:count]
        found += [(node, float(keys[j]), float(errors[node, valid[j]]), int(items[valid[j]]))
                  for j in order]
    return found


def user_statistics(factors):
    """Rows ``[1, p_u, |p_u|²]`` of the users' factors."""
    return np.hstack([np.ones((factors.shape[0], 1)), factors,
                      (factors * factors).sum(axis=1, keepdims=True)])


def level_rows(nodes, likes, n_items):
    """What a share of users adds to one level's statistics matrix.

    Parameters
    ----------
    nodes : numpy.ndarray of int
        Each user's node within the level (``0 .. 2^level − 1``), -1 for a
        user not at this level.
    likes : scipy.sparse.csr_matrix
        ``(users, items)`` the users' likes.
    n_items : int
        Items; node ``j``'s rows are ``j (n_items + 1) + i`` for item ``i``
        and ``j (n_items + 1) + n_items`` for its totals.

    Returns
    -------
    rows : numpy.ndarray of int64
        The distinct rows touched.
    members : scipy.sparse.csr_matrix
        ``(len(rows), users)``: which users add into each row (multiply by
        :func:`user_statistics`).
    """
    here = np.flatnonzero(nodes >= 0)
    likes = likes[here].tocoo()
    keys = np.concatenate([nodes[here][likes.row] * (n_items + 1) + likes.col,
                           nodes[here] * (n_items + 1) + n_items])
    users = np.concatenate([here[likes.row], here])
    rows, inverse = np.unique(keys, return_inverse=True)
    members = sp.csr_matrix((np.ones(keys.size), (inverse.ravel(), users)),
                            shape=(rows.size, nodes.size))
    return rows, members


def descend(questions, likes, level):
    """Each user's node (heap index) at ``level`` of a tree, -1 once it
    stopped at a node that asks nothing."""
    node = np.zeros(likes.shape[0], dtype=np.int64)
    for _ in range(level):
        live = np.flatnonzero(node >= 0)
        asked = questions[node[live]]
        stop = asked < 0
        answer = np.asarray(likes[live, np.maximum(asked, 0)]).ravel() > 0
        node[live] = np.where(stop, -1, 2 * node[live] + np.where(answer, 1, 2))
    return node


def node_means(stats):
    """Each node's mean factor; an empty node takes its parent's."""
    means = np.zeros((stats.shape[0], stats.shape[1] - 2))
    for node in range(stats.shape[0]):
        n = stats[node, 0]
        if n > 0.5:
            means[node] = stats[node, 1:-1] / n
        else:
            means[node] = means[(node - 1) // 2]
    return means


class DecisionTreeRecommender(paracel.Algorithm):
    """Cold-start question trees over user factors; statistics on the servers."""

    summary = ("cold-start decision trees of 'do you like item i?' questions minimising "
               "the squared error of user factors; split statistics summed on the servers")
    reads = ('"user item rating" lines (input), and "factors": an als/mf model.h5 (user_factors, '
             'user_ids) or "id<TAB>f1,f2,..." text factor files')
    parameters = {
        "factors": paracel.Param(str, None, "user factors: an als/mf model.h5 (user_factors "
                                 "or P, user_ids if present) or id<TAB>f1,f2,... text "
                                 "file(s); required", nullable=True, path=True),
        "depth": paracel.Param(int, 3, "questions on every path of a tree", low=1, high=16),
        "trees": paracel.Param(int, 1, "trees; tree t's root asks the t-th best root "
                               "question", low=1),
        "threshold": paracel.Param(float, 4.0, "a rating at least this is a like"),
        "balance": paracel.Param(float, 0.0, "refuse a question whose larger side has at "
                                 "least this many times the smaller's users (0: off; "
                                 "Paracel: 3)", low=0),
    }

    def check_job(self, job):
        """The factor file is required."""
        if self.factors is None:
            raise paracel.ConfigError("params.factors: required: a model.h5 or a factor "
                                      "text file")

    def solve(self):
        triples = self.load_ratings(partition="fmap")
        first, stop = triples.rows
        n_items = triples.shape[1]
        likes = sp.csr_matrix(((triples.weight >= self.threshold).astype(np.float64),
                               (triples.src - first, triples.dst)),
                              shape=(stop - first, n_items))
        likes.eliminate_zeros()
        likes.data[:] = 1.0
        factors = self.user_factors(triples)
        stats = user_statistics(factors)
        if self.clock < 2:
            self.rank_roots(likes, stats, n_items)
        while self.clock < 2 + self.trees * (self.depth - 1):
            tree, level = divmod(self.clock - 2, self.depth - 1)
            self.grow(tree, level + 1, likes, stats, n_items)
        return self.finish(triples)

    def state(self):
        """The trees so far: questions and node statistics (the same on every
        worker); the clock says which tree and level come next."""
        return {"questions": self.questions_, "stats": self.stats_}

    def restore(self, state):
        """Take back :meth:`state`."""
        self.questions_, self.stats_ = state["questions"], state["stats"]

    # -- the factors -------------------------------------------------------

    def user_factors(self, triples):
        """This worker's users' factors, through ``dtr.factors`` on the servers
        (clock 1 pushes them; a resumed job pulls them again)."""
        n_users = triples.shape[0]
        if self.clock == 0:
            ids, rows = self.factor_share(triples)
            k = int(self.allgather([rows.shape[1] if ids.size else 0]).max())
            if rows.size and rows.shape[1] != k:
                raise DataError(f"{self.factors}: {rows.shape[1]} factors per user here, "
                                f"{k} elsewhere")
        else:
            k = self.stats_.shape[2] - 2
        P = self.matrix("dtr.factors", (n_users, k), create=self.clock == 0)
        present = self.matrix("dtr.present", (n_users,), create=self.clock == 0)
        if self.clock == 0:
            if ids.size:
                P.push(ids, rows, "replace")
                present.push(ids, np.ones(ids.size))
            self.sync()
            self.start_trees(k)
            self.iter_commit()
        first, stop = triples.rows
        own = np.arange(first, stop)
        rows, counts = self.pull_many([(P, own), (present, own)])
        for bad, what in ((counts < 0.5, "has no factors"), (counts > 1.5, "has more than "
                                                             "one row of factors")):
            if bad.any():
                raise DataError(f"{self.factors}: user {str(triples.src_ids[own[bad][0]])!r} of "
                                f"the ratings {what}")
        return rows

    def factor_share(self, triples):
        """``(user indices, factor rows)`` of this worker's share of the factor
        file, users without ratings left out."""
        paths = input_files(self.factors)
        if len(paths) == 1 and _is_h5(paths[0]):
            names, rows = self.h5_share(paths[0], triples.shape[0])
        else:
            names, rows = self.text_share(paths)
        if names is None:  # rows in the ratings' user order
            return rows[0], rows[1]
        index = np.array([triples.src_lookup.get(name, -1) for name in names], dtype=np.int64)
        keep = index >= 0
        return index[keep], rows[keep]

    def h5_share(self, path, n_users):
        """``(ids or None, rows)`` of this worker's slice of a model file; with
        None the rows are ``(user indices, factors)``."""
        with open_h5(path) as handle:
            name = next((n for n in ("user_factors", "P") if n in handle), None)
            if name is None:
                raise DataError(f"{path}: no user_factors or P dataset; it holds "
                                f"{', '.join(sorted(handle)) or 'nothing'}")
            data = handle[name]
            if data.ndim != 2:
                raise DataError(f"{path}:{name}: expected a 2-d dataset, got shape "
                                f"{data.shape}")
            k = int(handle.attrs.get("k", data.shape[1]))
            start, stop = rows_of(data.shape[0], self.worker_id, self.num_workers)
            rows = np.asarray(data[start:stop, :min(k, data.shape[1])], dtype=np.float64)
            if not np.isfinite(rows).all():
                raise DataError(f"{path}:{name}: factors must be finite")
            if "user_ids" in handle:
                return [_text(value) for value in handle["user_ids"][start:stop]], rows
            if data.shape[0] != n_users:
                raise DataError(f"{path}:{name}: {data.shape[0]} rows and no user_ids, but "
                                f"the ratings have {n_users} users: rows must be the "
                                "ratings' users in index order (the same ratings file)")
        return None, (np.arange(start, stop), rows)

    def text_share(self, paths):
        """``(ids, rows)`` of this worker's share of text factor files."""
        ids, rows, width = [], [], None
        for path, offset, line in iter_lines(paths, self.worker_id, self.num_workers):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, tab, values = line.partition("\t")
            fields = [field for field in SEPARATORS.split(values.strip()) if field]
            try:
                row = [float(field) for field in fields]
            except ValueError:
                row = []
            if not tab or not name.strip() or not row or not all(map(math.isfinite, row)) \
                    or (width is not None and len(row) != width):
                raise DataError(f"{path}:{line_number(path, offset)}: expected "
                                f"'id<TAB>f1,f2,...' with {width or 'some'} finite factors")
            width = len(row)
            ids.append(name.strip())
            rows.append(row)
        return ids, np.array(rows, dtype=np.float64).reshape(len(rows), width or 0)

    # -- the trees ---------------------------------------------------------

    def start_trees(self, k):
        """Empty trees: no questions, zero statistics."""
        asking, nodes = 2 ** self.depth - 1, 2 ** (self.depth + 1) - 1
        self.questions_ = np.full((self.trees, asking), -1, dtype=np.int64)
        self.stats_ = np.zeros((self.trees, nodes, k + 2))

    def level_statistics(self, name, width, nodes, likes, stats, n_items):
        """Clear the server matrix ``name`` (``width`` nodes), add this
        share's statistics, sync, and pull this worker's items' rows:
        ``(matrix, like, total, items)`` with ``like`` ``(width, my items,
        k + 2)`` and ``total`` ``(width, k + 2)``."""
        M = self.matrix(name, (width * (n_items + 1), stats.shape[1]), create=False)
        M.create(self.my_blocks(M))
        self.sync()
        rows, members = level_rows(nodes, likes, n_items)
        if rows.size:
            M.push(rows, members @ stats)
        self.sync()
        start, stop = rows_of(n_items, self.worker_id, self.num_workers)
        items = np.arange(start, stop)
        base = np.arange(width)[:, None] * (n_items + 1)
        wanted = np.concatenate([(base + items).ravel(), base.ravel() + n_items])
        pulled = M.pull(wanted)
        like = pulled[:width * items.size].reshape(width, items.size, -1)
        return M, like, pulled[width * items.size:], items

    def my_blocks(self, matrix):
        """The blocks of ``matrix`` this worker creates and removes."""
        return range(self.worker_id, matrix.num_blocks, self.num_workers)

    def release(self, matrix):
        """Drop this worker's blocks of a level's statistics once every worker
        has read them (after the exchange of candidates)."""
        for block in self.my_blocks(matrix):
            self.remove(matrix.block_key(block))

    def rank_roots(self, likes, stats, n_items):
        """Clock 2: the ``trees`` best root questions (every tree's root)."""
        nodes = np.zeros(likes.shape[0], dtype=np.int64)
        M, like, total, items = self.level_statistics("dtr.stats.root", 1, nodes, likes, stats,
                                                      n_items)
        errors = split_errors(like, total, self.balance)
        mine = [(key, item, like[0, item - items[0]])
                for _, key, _, item in best_questions(errors, total, items, self.trees)]
        every = sorted((c for part in self.allgather_objects(mine) for c in part),
                       key=lambda c: (c[0], c[1]))
        self.release(M)
        if len(every) < self.trees:
            raise DataError(f"{', '.join(self.input_files)}: only {len(every)} item(s) split "
                            f"the users; params.trees is {self.trees}")
        for tree, (_, item, like_stats) in enumerate(every[:self.trees]):
            self.ask(tree, 0, item, total[0], like_stats)
        self.iter_commit()

    def grow(self, tree, level, likes, stats, n_items):
        """One clock: the questions of ``tree``'s nodes at ``level``. Only
        nodes with two users or more can split: the server matrix has rows
        for those alone (at most half the users, whatever the depth)."""
        offset = 2 ** level - 1
        live = np.flatnonzero(self.stats_[tree, offset:2 * offset + 1, 0] > 1.5)
        if live.size:
            compact = np.full(offset + 1, -1, dtype=np.int64)
            compact[live] = np.arange(live.size)
            nodes = descend(self.questions_[tree], likes, level)
            nodes = np.where(nodes >= 0, compact[np.maximum(nodes - offset, 0)], -1)
            M, like, total, items = self.level_statistics(
                f"dtr.stats.{tree}.{level}", live.size, nodes, likes, stats, n_items)
            errors = split_errors(like, total, self.balance)
            mine = [(node, key, item, like[node, item - items[0]])
                    for node, key, _, item in best_questions(errors, total, items, 1)]
            every = sorted((c for part in self.allgather_objects(mine) for c in part),
                           key=lambda c: (c[0], c[1], c[2]))
            self.release(M)
            chosen = {}
            for node, _, item, like_stats in every:
                chosen.setdefault(node, (item, like_stats))
            for node, (item, like_stats) in sorted(chosen.items()):
                at = offset + live[node]
                self.ask(tree, at, item, self.stats_[tree, at], like_stats)
        self.iter_commit()

    def ask(self, tree, node, item, total, like_stats):
        """Node ``node`` of ``tree`` asks ``item``: its children's statistics."""
        self.stats_[tree, node] = total
        self.questions_[tree, node] = item
        self.stats_[tree, 2 * node + 1] = like_stats
        self.stats_[tree, 2 * node + 2] = total - like_stats

    # -- output ------------------------------------------------------------

    def finish(self, triples):
        """Write the model and text files (worker 0) and return the metrics."""
        means = np.stack([node_means(stats) for stats in self.stats_])
        counts = np.rint(self.stats_[..., 0]).astype(np.int64)
        errors = sse(self.stats_)
        stopped = [self.stopping_sse(t, errors[t]) for t in range(self.trees)]
        item_ids = triples.dst_ids
        self.save_model("model.h5", [("question_items", self.questions_),
                                     ("item_ids", np.array(item_ids.tolist(), dtype="S")),
                                     ("means", means), ("counts", counts), ("sse", errors)],
                        depth=self.depth, threshold=self.threshold, k=means.shape[2],
                        trees=self.trees, layout="heap order: node j asks question_items[j]; "
                        "its children are 2j+1 (likes) and 2j+2 (does not)")
        if self.worker_id == 0:
            with self.open_output("trees.txt") as handle:
                for tree, questions in enumerate(self.questions_):
                    handle.write(f"tree_{tree}\t" + "|".join(
                        item_ids[q] if q >= 0 else "-" for q in questions) + "\n")
            for tree in range(self.trees):
                with self.open_output(f"means_{tree}.txt") as handle:
                    for count, mean in zip(counts[tree], means[tree]):
                        handle.write(f"{count}\t" + ",".join(map(repr, mean.tolist())) + "\n")
        root = float(errors[0, 0])
        return {"users": int(counts[0, 0]), "items": len(item_ids), "k": means.shape[2],
                "root_sse": root, "sse": stopped,
                "explained": [1 - s / root if root > 0 else 0.0 for s in stopped],
                "root_items": [item_ids[q] for q in self.questions_[:, 0]]}

    def stopping_sse(self, tree, errors):
        """The squared error of every user about the mean of the node it
        stops at (a leaf, or a node that asks nothing)."""
        asking = self.questions_.shape[1]
        total = 0.0
        for node in range(errors.size):
            if node >= asking or self.questions_[tree, node] < 0:
                total += errors[node]
        return float(total)


def _is_h5(path):
    with open(path, "rb") as handle:
        return handle.read(8) == b"\x89HDF\r\n\x1a\n"


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)
