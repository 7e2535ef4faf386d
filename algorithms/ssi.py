"""Steady-state inversion: vertex scores whose random walk has a given
stationary distribution.

Given a weighted graph ``w_ij >= 0`` and a target distribution ``p > 0``
over its vertices (a file, or uniform), find scores ``s > 0`` such that the
random walk that leaves ``i`` for ``j`` with probability

    P_ij = w_ij s_j / r_i,    r_i = sum_j w_ij s_j    (P = D_r^-1 W D_s)

has ``p`` as its stationary distribution: ``p P = p``. Douban Paracel's
``steady_state_inversion`` raised under-visited vertices one at a time by
Newton steps, for a fixed number of sweeps, converged or not; here it is
solved as the matrix-balancing problem it is, by a method that converges.
Write ``a = p / r``: then ``M = D_a W D_s`` has row sums ``p``
(``a_i r_i = p_i``) and column sums ``s_j (W^T a)_j = (p P)_j``, and
``p P = p`` is exactly "``M`` has row and column sums ``p``": find the
diagonal scalings ``a``, ``s`` of ``W`` to the marginals ``(p, p)``, with
``P = D_p^-1 M``. A solution exists (unique up to ``s -> t s``, which leaves
``P`` alone) when ``W`` has total support, e.g. a strongly connected graph
with a self-loop on every vertex (``self_loop``), or a connected undirected
one with them.

Sinkhorn–Knopp alternates ``a = p / (W s)`` and ``s = p / (W^T a)``, two
dependent products, so two supersteps an iteration. Here both scalings move
at once, from the same ``(a_k, s_k)``, a fraction ``ω`` (``step``) of the
way in log scale to the values that would fit exactly:

    a_{k+1} = a_k (p / (a_k W s_k))^ω,    s_{k+1} = s_k (p / (s_k W^T a_k))^ω,

one superstep an iteration, with Sinkhorn–Knopp's fixed points. In log scale
the error contracts by the eigenvalues of the linearised map. With ``ω = 1``
the iterates are two interleaved Sinkhorn–Knopp sequences: its rate per
superstep, which is the best constant ``ω`` for a general (directed) ``W``.
With symmetric weights (``undirected``) and ``a_0 = s_0`` the iterates keep
``a_k = s_k`` and this is the symmetric balancing iteration
``x = x (p / (x W x))^ω`` (cf. Knight 2008), whose error contracts by
``1 - ω (1 + μ)`` for the eigenvalues ``μ`` of the balanced walk: ``ω = 1/2``
makes slowly mixing directions (``μ`` near 1, e.g. communities) vanish at
once, where Sinkhorn–Knopp contracts by ``μ²``. So ``step`` defaults to
``1/2`` with ``undirected`` and to ``1`` otherwise. Only eigenvalues near
-1 (a nearly bipartite walk) stay slow; self-loops (``self_loop``) move
them away.

Convergence is judged by the stationarity residual of the scores
themselves: ``||p P(s_k) - p||_1``, with ``P(s_k)`` normalised as above
(``a = p / (W s_k)``); it stops at the first ``s_k`` whose residual is at most
``tol``, and outputs that ``s_k``. After ``max_iter`` iterations, or if the
scalings stop being finite (no solution: ``W`` lacks total support), it
stops with ``converged: false`` and says so.

Parallel scheme
---------------
The edges are split over the workers by ``self.load_graph``
(``partition``); each worker also owns a contiguous range of vertices
(``n * w // W`` to ``n * (w + 1) // W``), whose self-loop it adds, whose
residual it sums and whose scores it writes. It keeps ``a`` and ``s`` on
``rows``, the vertices its edges touch and its range. The servers hold
three rotating ``n × 3`` accumulators ``ssi.sums{k % 3}``: at clock ``k``
every worker adds its edges' partial ``W s_k`` (column 0, at sources),
``W^T a_k`` (column 1, at destinations) and ``W^T (p / W s_{k-1})`` (column
2, the product the residual of ``s_{k-1}`` needs). At clock ``k + 1`` the
worker pulls ``ssi.sums{k % 3}`` on ``rows`` (complete: every worker has
committed clock ``k``), the owners sum the residual of ``s_{k-1}``
(``sum_over_workers``), and it forms ``a_{k+1}``, ``s_{k+1}``. The owners
reset their range of ``ssi.sums{(k + 2) % 3}`` (read at clock ``k``, next
pushed at clock ``k + 2``), so no accumulator is read while it is written.
This needs BSP: staleness 0 is required. The target is ``ssi.target``
(each vertex's probability and line count, added from the file at clock 0),
the final scores ``ssi.scores``.
Several workers add floats into one row in arrival order, so runs agree to
rounding, not bit for bit.

Clocks and resuming
-------------------
Clock ``k`` pushes iteration ``k``'s products. A worker's state
(:meth:`SteadyStateInversion.state`) is ``a_k``, ``s_k`` on ``rows`` and
``s_{k-1}`` on its range (the scores whose residual the next clock
learns), so a resumed job continues the same iterations.

Input
-----
An edge list, ``src dst [weight]`` per line (see ``paracel.io.graph``);
repeated edges add their weights; weights must be non-negative. The
target: ``vertex probability`` lines (whitespace or a comma; ``#``
comments), every vertex of the graph exactly once, each probability
positive; they are scaled to sum 1. Every vertex needs positive out- and
in-weight (after ``undirected`` and ``self_loop``).

Output
------
``OUTPUT/ssi_<worker_id>``: ``vertex\\tscore`` lines for the worker's range
(every vertex once over all files), scores scaled to sum 1.
``OUTPUT/model.h5``: datasets ``ids`` (UTF-8 vertex ids), ``scores`` and
``target`` (``p``), in the same order; attributes ``residual``,
``converged``, ``iterations``. Metrics: ``residual`` (of the scores
written), ``converged``, ``iterations``, ``nodes``, ``edges``.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse

import paracel

NAME = "ssi"
ROTATION = 3
BLOCKS_PER_SERVER = 16


@dataclass
class Share:
    """What one worker works on each iteration.

    Attributes
    ----------
    rows : numpy.ndarray
        Sorted vertices it keeps ``a`` and ``s`` on: its edges' ends and its range.
    mine : numpy.ndarray
        Positions in ``rows`` of its own vertex range.
    W : scipy.sparse.csr_matrix
        Its edges' weights, ``rows × rows`` (repeated edges summed).
    p : numpy.ndarray
        The target on ``rows``.
    touched : numpy.ndarray
        Positions in ``rows`` of the vertices its edges touch (where its
        products go).
    edges : int
        How many directed edges it holds (self-loops it added included).
    """

    rows: np.ndarray
    mine: np.ndarray
    W: scipy.sparse.csr_matrix
    p: np.ndarray
    touched: np.ndarray
    edges: int


class SteadyStateInversion(paracel.Algorithm):
    """Scores whose score-weighted random walk has a given stationary distribution."""

    summary = ("steady-state inversion: scores s with p P = p for P_ij ∝ w_ij s_j, "
               "by Sinkhorn-style balancing in one superstep an iteration, residual "
               "||pP - p||_1 checked")
    reads = ('edge lines "src dst [weight]" (whitespace or commas; weights >= 0; '
             'header/columns choose CSV columns); target: "vertex probability" lines')
    parameters = {
        "target": paracel.Param(str, None, "the stationary distribution: 'vertex "
                                "probability' lines (relative to the job file); null: "
                                "uniform", nullable=True, path=True),
        "tol": paracel.Param(float, 1e-9, "stop at the first scores whose residual "
                             "||pP - p||_1 is at most this", low=0.0),
        "max_iter": paracel.Param(int, 1000, "most iterations (converged in the metrics "
                                  "says whether tol was reached)", low=1),
        "step": paracel.Param(float, None, "how far each iteration moves the scalings, in "
                              "log scale (1: Sinkhorn-Knopp's rate, best for directed "
                              "weights; 1/2: far faster for symmetric ones); null: 1/2 with "
                              "undirected, else 1", low=0.0, high=1.0, closed="right",
                              nullable=True),
        "self_loop": paracel.Param(float, 0.0, "weight added to every vertex's self-loop "
                                   "(a lazy walk; makes a connected graph balanceable)",
                                   low=0.0),
        "undirected": paracel.Param(bool, False, "each edge also runs backwards (a "
                                    "self-loop once), as networkx's nx.Graph"),
        "weighted": paracel.Param(bool, True, "use the third column as edge weight; "
                                  "false: every edge weighs 1"),
        "partition": paracel.Param(str, "smap", "split edges by destination ('smap'), "
                                   "source ('fmap') or both ('fsmap')",
                                   choices=("smap", "fmap", "fsmap")),
    }

    def check_job(self, job):
        """Refuse a staleness other than 0: a clock reads the sums the
        previous one wrote, complete only under BSP."""
        if job.staleness != 0:
            raise paracel.ConfigError(f"staleness: ssi runs BSP supersteps and needs 0, "
                                      f"not {job.staleness}")

    def solve(self):
        graph = self.load_graph(partition=self.partition)
        n = graph.shape[0]
        own = self.my_range(n)
        share = self.share(graph, own)
        self.step_ = self.step if self.step is not None else (0.5 if self.undirected else 1.0)
        # made before the first clock, so a resumed job finds it in the checkpoint
        self.scores_ = self.matrix(f"{NAME}.scores", (n, 2), block_rows=self.block_rows(n))
        scores, iterations, residual = self.iterate(share, graph.src_ids, n)
        converged = bool(residual <= self.tol)
        self.write_scores(share, graph.src_ids, scores, iterations, residual, converged)
        edges = self.sum_over_workers(share.edges)[0]
        return {"residual": residual, "converged": converged, "iterations": iterations,
                "nodes": n, "edges": int(edges)}

    def state(self):
        """``a`` and ``s`` on ``rows`` as last pushed, and the scores on this
        worker's range whose residual the next clock learns."""
        return {"a": self.a_, "s": self.s_, "last": self.last_}

    def restore(self, state):
        """Take back :meth:`state`; the iteration is the clock's."""
        self.a_, self.s_, self.last_ = state["a"], state["s"], state["last"]

    def block_rows(self, n):
        """Rows per block of the server vectors: a few blocks on every server."""
        return max(1, min(-(-n // (BLOCKS_PER_SERVER * self.num_servers)), 1 << 17))

    def share(self, graph, own):
        """This worker's :class:`Share`: its edges (made undirected, with the
        self-loops of its range) and the target on its rows."""
        src, dst, weight = directed_edges(graph, self.weighted, self.undirected)
        if self.self_loop > 0:
            src, dst = np.concatenate([src, own]), np.concatenate([dst, own])
            weight = np.concatenate([weight, np.full(own.size, self.self_loop)])
        rows = np.union1d(np.union1d(src, dst), own)
        W = scipy.sparse.csr_matrix((weight, (np.searchsorted(rows, src),
                                              np.searchsorted(rows, dst))),
                                    shape=(rows.size, rows.size))
        W.sum_duplicates()
        p = self.target_on(rows, own, graph)
        touched = np.union1d(np.flatnonzero(np.diff(W.indptr)), W.indices)
        return Share(rows, np.searchsorted(rows, own), W, p, touched, int(src.size))

    def target_on(self, rows, own, graph):
        """``p`` on ``rows``, summing to 1 over all vertices: uniform, or read
        from the target file into ``ssi.target`` at clock 0 and checked."""
        n = graph.shape[0]
        if self.target is None:
            return np.full(rows.size, 1.0 / n)
        vector = self.matrix(f"{NAME}.target", (n, 2), block_rows=self.block_rows(n))
        if self.clock == 0:
            records = read_target(self.target, self.worker_id, self.num_workers,
                                  graph.src_lookup)
            self.agree(records.error)
            if records.index.size:
                vector.push(records.index, np.column_stack(
                    [records.value, np.ones(records.index.size)]), "add")
            self.sync()
            given = vector.pull(own)
            self.agree_coverage(target_coverage(self.target, own, given[:, 1],
                                                graph.src_ids), records)
        total = self.sum_over_workers(vector.pull(own)[:, 0].sum())[0]
        return vector.pull(rows)[:, 0] / total

    def agree(self, error):
        """Raise, on every worker, the first worker's error message (if any)."""
        errors = [found for found in self.allgather_objects(error) if found]
        if errors:
            raise paracel.DataError(errors[0])

    def agree_coverage(self, problem, records):
        """Raise, on every worker, the first worker's coverage problem
        ``(message, repeated index or None)``, naming the lines of a
        repeated vertex (every worker looks in its own share)."""
        found = [item for item in self.allgather_objects(problem) if item]
        if not found:
            return
        message, repeated = found[0]
        if repeated is not None:
            from paracel.io.lines import line_number

            mine = [f"{path}:{line_number(path, offset)}" for index, (path, offset)
                    in zip(records.index.tolist(), records.where) if index == repeated]
            lines = [line for part in self.allgather_objects(mine) for line in part]
            message += f" (lines {', '.join(lines)})"
        raise paracel.DataError(message)

    def iterate(self, share, ids, n):
        """The iterations, one clock each; returns the scores on this
        worker's range, the number of iterations and their residual."""
        sums = [self.matrix(f"{NAME}.sums{i}", (n, 3), block_rows=self.block_rows(n))
                for i in range(ROTATION)]
        own = share.rows[share.mine]
        if self.clock == 0:
            self.a_ = np.ones(share.rows.size)
            self.s_ = np.ones(share.rows.size)
            self.last_ = self.s_[share.mine]
            self.push_products(sums[0], share, None)
            self.iter_commit()
        while True:
            clock = self.clock
            pulled = sums[(clock - 1) % ROTATION].pull(share.rows)
            r, c = pulled[:, 0], pulled[:, 1]
            if clock == 1:
                self.agree(check_degrees(r[share.mine], c[share.mine], ids[own]))
            else:
                iteration = clock - 2
                residual = float(self.sum_over_workers(stationarity_residual(
                    self.last_, pulled[share.mine, 2], share.p[share.mine]))[0])
                self.report(residual=residual)
                if not np.isfinite(residual):
                    self.log.warning("ssi: the scalings stopped being finite after %d "
                                     "iterations: the graph admits no scores for this "
                                     "target (it needs total support)", iteration)
                if residual <= self.tol or iteration == self.max_iter or not np.isfinite(
                        residual):
                    return self.last_, iteration, residual
                sums[(clock + 1) % ROTATION].push(own, np.zeros((own.size, 3)), "replace")
            self.last_ = self.s_[share.mine]
            self.a_, self.s_ = balance_step(self.a_, self.s_, r, c, share.p, self.step_)
            self.push_products(sums[clock % ROTATION], share, r)
            self.iter_commit()

    def push_products(self, vector, share, r):
        """Add this worker's partial ``W s``, ``W^T a`` and (with ``r``, the
        previous ``W s``) ``W^T (p / r)`` into ``vector``'s three columns."""
        W = share.W
        products = np.column_stack([W @ self.s_, W.T @ self.a_,
                                    np.zeros(share.rows.size) if r is None else
                                    W.T @ safe_divide(share.p, r)])
        if share.touched.size:
            vector.push(share.rows[share.touched], products[share.touched], "add")

    def write_scores(self, share, ids, scores, iterations, residual, converged):
        """Scale the scores to sum 1, write ``ssi_<worker>`` and ``model.h5``
        (through ``ssi.scores``)."""
        own = share.rows[share.mine]
        total = self.sum_over_workers(scores.sum())[0]
        scores = scores / total
        self.dump(f"{NAME}_", zip(ids[own].tolist(), scores.tolist()))
        vector = self.scores_
        vector.push(own, np.column_stack([scores, share.p[share.mine]]), "replace")
        self.sync()
        model = []
        if self.worker_id == 0:
            whole = vector.to_numpy()
            model = [("ids", ids),
                     ("scores", whole[:, 0]), ("target", whole[:, 1])]
        self.save_model("model.h5", model, residual=residual, converged=converged,
                        iterations=iterations, step=self.step_,
                        walk="P[i, j] = w_ij scores[j] / sum_k w_ik scores[k]")


def directed_edges(graph, weighted, undirected):
    """The worker's edges ``(src, dst, weight)``, unweighted and made
    undirected as asked; negative weights refused."""
    src, dst = graph.src, graph.dst
    weight = graph.weight if weighted else np.ones(src.size)
    if weight.size and weight.min() < 0:
        raise paracel.DataError(f"{NAME}: edge weights must be non-negative, "
                                f"found {weight.min()}")
    if undirected:
        back = src != dst
        src, dst = np.concatenate([src, dst[back]]), np.concatenate([dst, src[back]])
        weight = np.concatenate([weight, weight[back]])
    return src, dst, weight


def safe_divide(numerator, denominator):
    """``numerator / denominator``, 0 where the denominator is 0 (rows whose
    sums this worker does not use)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                     where=denominator != 0)


def balance_step(a, s, r, c, p, step):
    """One balancing step: each scaling moved a fraction ``step`` of the way
    (in log scale) to the one that would fit ``r = W s`` or ``c = W^T a``
    exactly, ``(move(a, p / r, step), move(s, p / c, step))``. A position
    where ``r`` or ``c`` is 0 keeps its value."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        new_a = np.where(r != 0, move(a, p / r, step), a)
        new_s = np.where(c != 0, move(s, p / c, step), s)
    return new_a, new_s


def move(x, target, step):
    """``x (target / x)^step``: exactly ``target`` at 1, ``sqrt(x target)``
    at 1/2."""
    if step == 1.0:
        return target
    if step == 0.5:
        return np.sqrt(x * target)
    return x * (target / x) ** step


def stationarity_residual(s, q, p):
    """``sum |s q - p|``: this range's part of ``||p P(s) - p||_1``, where
    ``q = W^T (p / W s)`` on the range."""
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.abs(s * q - p).sum())


def check_degrees(out_weight, in_weight, ids):
    """A message naming the first vertex with no out- or in-weight, or None."""
    for name, weights, walk in (("out", out_weight, "leave"), ("in", in_weight, "reach")):
        bad = np.flatnonzero(weights <= 0)
        if bad.size:
            return (f"{NAME}: vertex {str(ids[bad[0]])!r} has no {name}-edge of positive "
                    f"weight ({bad.size} such in one worker's range): the walk could not "
                    f"{walk} it (add self_loop, or use undirected)")
    return None


@dataclass
class Target:
    """One worker's share of a target file: graph indices, probabilities, and
    where each line is, or the first error."""

    index: np.ndarray
    value: np.ndarray
    where: list
    error: str = None


def read_target(path, part, parts, lookup):
    """Parse share ``part`` of ``parts`` of the target file ``path``
    (``vertex probability`` lines), mapping ids with ``lookup``."""
    from paracel.io.lines import iter_lines, line_number

    index, value, where = [], [], []
    try:
        for file, offset, line in iter_lines([path], part, parts):
            text = line.split("#", 1)[0]
            if not text.strip():
                continue
            fields = ([item.strip() for item in text.split(",")] if "," in text
                      else text.split())
            problem = target_problem(fields, lookup)
            if problem:
                return Target(np.array([], np.int64), np.array([]), [],
                              f"{file}:{line_number(file, offset)}: {problem}: {line[:80]!r}")
            index.append(lookup[fields[0]])
            value.append(float(fields[1]))
            where.append((file, offset))
    except paracel.DataError as error:
        return Target(np.array([], np.int64), np.array([]), [], str(error))
    return Target(np.array(index, np.int64), np.array(value), where)


def target_problem(fields, lookup):
    """What is wrong with a target line's fields, or None."""
    if len(fields) != 2:
        return f"expected 2 fields (vertex probability), found {len(fields)}"
    if fields[0] not in lookup:
        return f"vertex {fields[0]!r} is not in the graph"
    try:
        value = float(fields[1])
    except ValueError:
        return f"probability {fields[1]!r} is not a number"
    if not (np.isfinite(value) and value > 0):
        return f"probability {fields[1]!r} must be a positive finite number"
    return None


def target_coverage(path, own, counts, ids):
    """``(message, repeated vertex or None)`` if a vertex of ``own`` is
    missing from the target file or given more than once (``counts`` of
    lines per vertex, from the servers), else None."""
    missing = np.flatnonzero(counts == 0)
    if missing.size:
        return (f"{path}: vertex {str(ids[own[missing[0]]])!r} of the graph has no probability "
                f"({missing.size} such vertices in one worker's range)", None)
    repeated = np.flatnonzero(counts > 1)
    if repeated.size:
        vertex = int(own[repeated[0]])
        return (f"{path}: vertex {str(ids[vertex])!r} is given {int(counts[repeated[0]])} "
                f"times", vertex)
    return None


def balance(W, p, tol=1e-9, max_iter=1000, step=0.5):
    """The same iteration serially with scipy.sparse (the benchmark's
    reference): ``(scores summing to 1, iterations, residual)``."""
    W = scipy.sparse.csr_matrix(W)
    a, s = np.ones(W.shape[0]), np.ones(W.shape[0])
    for iteration in range(max_iter + 1):
        r, c = W @ s, W.T @ a
        residual = float(np.abs(s * (W.T @ (p / r)) - p).sum())
        if residual <= tol or iteration == max_iter or not np.isfinite(residual):
            return s / s.sum(), iteration, residual
        a, s = move(a, p / r, step), move(s, p / c, step)
