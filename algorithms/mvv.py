"""Max vertex value: every vertex learns the largest id among its ancestors.

Douban Paracel's ``mvv``. For a directed graph, vertex ``v`` ends with

    value(v) = max({v} ∪ ancestors(v)),

the ancestors being every vertex with a directed path to ``v``
(``networkx.ancestors``). With ``undirected`` every edge also runs
backwards, so ``value(v)`` is the largest id of ``v``'s connected component
and the number of distinct values is the number of components. "Largest"
is in the loader's id order (``paracel.io.graph``): numeric when every id is
an integer, else as strings; a vertex's value is its index in that order.

It is label propagation in BSP supersteps (a Jacobi iteration of a max):

    x_0(v) = v,   x_{k+1}(v) = max(x_k(v), max over edges u -> v of x_k(u)),

which reaches ``value`` after at most the longest shortest path from a
vertex's largest ancestor to it, and stops at the first superstep that
changes nothing anywhere.

Parallel scheme
---------------
``self.load_graph`` splits the edges over the workers (``partition``).
Each worker also owns a contiguous range of vertices (``n * w // W`` to
``n * (w + 1) // W``): it counts their changes and writes their values.
The values live on the servers in two vectors, ``mvv.value0`` and
``mvv.value1``; iterate ``x_k`` is complete in ``mvv.value{k % 2}`` once
every worker has committed clock ``k - 1``. At clock ``k`` a worker pulls
``x_k`` on the vertices it touches (its edges' ends and its range); the
owners' changes ``x_k != x_{k-1}`` are summed over the workers, and the
job stops when the sum is 0 (or at ``max_iter``). Otherwise it pushes with
the server-side ``max`` row update into the other vector, which holds
``x_{k-1} <= x_{k+1}``: for each of its edges' destinations the largest
value its edges bring, where that beats the destination's ``x_k``, and as an
owner each of its vertices whose value changed (so the vector catches up
from ``x_{k-1}`` to ``x_k`` there). ``max`` is order-independent, so the
result is ``x_{k+1}`` exactly, whatever order the pushes arrive in. Then
``iter_commit()``: one clock per superstep. Nobody pushes into
``value{k % 2}`` before every worker has read it (that is clock ``k + 1``),
which needs BSP: staleness 0 is required. Pushes are only the changes, so
late supersteps move little data.

Every run takes the same supersteps and gives the same values (they are
integers and ``max`` is exact).

Clocks and resuming
-------------------
Clock 0 writes ``x_0`` (into both vectors: ``x_1`` is built on top of it in
``value1``); clock ``k`` reads ``x_k``. A worker's state
(:meth:`MaxVertexValue.state`) is ``x_{c-1}`` on its range, the iterate it
last pushed from, so a job resumed at clock ``c`` pulls ``x_c`` and counts
its changes exactly as the uninterrupted job did.

Input
-----
An edge list, ``src dst [weight]`` per line (see ``paracel.io.graph``);
weights are ignored. Vertices are those named by the edges.

Output
------
``OUTPUT/mvv_<worker_id>``: ``vertex\\tvalue`` lines (ids as in the input)
for the worker's vertex range, every vertex exactly once over all files.
Metrics: ``iterations`` (supersteps run; the last one changed nothing when
``converged``), ``changed`` (vertices changed by the last one),
``converged``, ``nodes``, ``edges`` (directed edges after ``undirected``),
``roots`` (vertices that are their own value: in undirected mode, the
number of connected components).
"""

from dataclasses import dataclass

import numpy as np

import paracel

NAME = "mvv"
BLOCKS_PER_SERVER = 16


@dataclass
class Share:
    """What one worker works on each superstep.

    Attributes
    ----------
    rows : numpy.ndarray
        Sorted vertices whose value it pulls: its edges' ends and its range.
    mine : numpy.ndarray
        Positions in ``rows`` of its own vertex range.
    sources, targets : numpy.ndarray
        Positions in ``rows`` of its edges' sources and destinations.
    edges : int
        How many directed edges it holds.
    """

    rows: np.ndarray
    mine: np.ndarray
    sources: np.ndarray
    targets: np.ndarray
    edges: int


class MaxVertexValue(paracel.Algorithm):
    """Each vertex's largest ancestor id, by BSP max propagation."""

    summary = ("max vertex value: each vertex's largest ancestor id (as networkx.ancestors), "
               "or its component's largest id (undirected), by BSP max propagation")
    reads = ('edge lines "src dst [weight]" (whitespace or commas; weights ignored; '
             'header/columns choose CSV columns)')
    parameters = {
        "undirected": paracel.Param(bool, False, "each edge also runs backwards: the "
                                    "largest id of the vertex's connected component"),
        "max_iter": paracel.Param(int, 1000, "most supersteps (converged in the metrics "
                                  "says whether one changed nothing)", low=1),
        "partition": paracel.Param(str, "smap", "split edges by destination ('smap'), "
                                   "source ('fmap') or both ('fsmap')",
                                   choices=("smap", "fmap", "fsmap")),
    }

    def check_job(self, job):
        """Refuse a staleness other than 0: a superstep reads the vector the
        previous one wrote, complete only under BSP."""
        if job.staleness != 0:
            raise paracel.ConfigError(f"staleness: mvv runs BSP supersteps and needs 0, "
                                      f"not {job.staleness}")

    def solve(self):
        graph = self.load_graph(partition=self.partition)
        n = graph.shape[0]
        own = self.my_range(n)
        share = make_share(*directed_edges(graph.src, graph.dst, self.undirected), own)
        x, iterations, changed = self.propagate(share, n)
        values = x[share.mine]
        self.dump(f"{NAME}_", zip(graph.src_ids[own].tolist(),
                                  graph.src_ids[values.astype(np.int64)].tolist()))
        edges, roots = self.sum_over_workers([share.edges, np.sum(values == own)])
        return {"iterations": iterations, "changed": changed, "converged": changed == 0,
                "nodes": n, "edges": int(edges), "roots": int(roots)}

    def state(self):
        """The values of this worker's range it last pushed from."""
        return {"last": self.last_}

    def restore(self, state):
        """Take back :meth:`state`; the superstep is the clock's."""
        self.last_ = state["last"]

    def block_rows(self, n):
        """Rows per block of the server vectors: a few blocks on every server."""
        return max(1, min(-(-n // (BLOCKS_PER_SERVER * self.num_servers)), 1 << 17))

    def propagate(self, share, n):
        """The supersteps, one clock each; returns the last iterate on
        ``share.rows``, the number of supersteps and the changes of the last."""
        values = [self.matrix(f"{NAME}.value{parity}", (n,), block_rows=self.block_rows(n))
                  for parity in range(2)]
        own = share.rows[share.mine]
        if self.clock == 0:
            x = share.rows.astype(np.float64)
            values[0].push(own, x[share.mine], "max")
            self.push_step(values[1], x, share, np.ones(own.size, dtype=bool))
            self.last_ = x[share.mine]
            self.iter_commit()
        while True:
            step = self.clock
            x = values[step % 2].pull(share.rows)
            moved = x[share.mine] != self.last_
            changed = int(self.sum_over_workers(np.count_nonzero(moved))[0])
            self.report(changed=changed)
            if changed == 0 or step == self.max_iter:
                return x, step, changed
            self.push_step(values[(step + 1) % 2], x, share, moved)
            self.last_ = x[share.mine]
            self.iter_commit()

    def push_step(self, vector, x, share, moved):
        """Push into ``vector`` (holding the iterate before ``x``) what makes
        it the next iterate: the owned values that ``moved``, and each
        destination's larger incoming value."""
        own = share.rows[share.mine]
        if np.any(moved):
            vector.push(own[moved], x[share.mine][moved], "max")
        targets, incoming = incoming_max(x, share.sources, share.targets)
        better = incoming > x[targets]
        if np.any(better):
            vector.push(share.rows[targets[better]], incoming[better], "max")


def directed_edges(src, dst, undirected):
    """The edges ``(src, dst)`` to propagate along: both ways (a self-loop
    once) when ``undirected``."""
    if not undirected:
        return src, dst
    back = src != dst
    return np.concatenate([src, dst[back]]), np.concatenate([dst, src[back]])


def make_share(src, dst, own):
    """The :class:`Share` of a worker with edges ``src -> dst`` and vertex
    range ``own`` (global indices)."""
    rows = np.union1d(np.union1d(src, dst), own)
    return Share(rows, np.searchsorted(rows, own), np.searchsorted(rows, src),
                 np.searchsorted(rows, dst), int(src.size))


def incoming_max(x, sources, targets):
    """For each distinct destination position in ``targets``, the largest
    ``x`` over its edges' sources: ``(destinations, values)``."""
    destinations, index = np.unique(targets, return_inverse=True)
    incoming = np.full(destinations.size, -np.inf)
    np.maximum.at(incoming, index, x[sources])
    return destinations, incoming


def reference_values(src, dst, n, undirected=False):
    """``value`` of every vertex ``0..n-1`` by the same iteration, serially
    (a NumPy check of the kernels): ``(values, supersteps)``."""
    src, dst = directed_edges(np.asarray(src), np.asarray(dst), undirected)
    x, steps = np.arange(n, dtype=np.float64), 0
    while True:
        steps += 1
        new = x.copy()
        np.maximum.at(new, dst, x[src])
        if np.array_equal(new, x):
            return x.astype(np.int64), steps
        x = new
