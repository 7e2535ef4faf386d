"""PageRank of an edge-partitioned graph, the parameter-server way.

Computes the PageRank vector ``x`` of a directed (or undirected) weighted
graph by power iteration, exactly as ``networkx.pagerank`` does::

    x_0     = 1/n
    x_{k+1} = d * (x_k P + D_k / n) + (1 - d) / n,   D_k = sum of x_k over dangling nodes

where ``P[u, v] = w(u, v) / out(u)`` (``out(u)`` the sum of the weights of
``u``'s out-edges) and a dangling node (``out(u) == 0``) spreads its rank
uniformly over all nodes. It stops after the first iteration ``k`` whose L1
change ``|x_k - x_{k-1}|_1`` is below ``tol`` (or after ``max_iter``).
networkx's ``tol`` is per node: ``nx.pagerank(G, tol=t)`` stops when the L1
change is below ``n * t``, i.e. ``tol = n * t`` here, and then returns the
same vector after the same number of iterations.

Parallel scheme
---------------
The edges are split over the workers by ``self.load_graph`` (``partition``).
Each worker also owns a contiguous range of nodes (``n * w // W`` to
``n * (w + 1) // W``): it writes their ranks at the end and sums their
share of the dangling mass and of the L1 change. Every
worker needs the ranks of ``rows``: the sources of its edges and its range.
The servers hold:

``pagerank.out`` (vector, n)
    out-weights, summed with ``add`` from every worker's edges at clock 0.
``pagerank.flow0``, ``pagerank.flow1`` (vectors, n)
    the rank carried by links, ``flow = x_k P``, kept as two accumulators
    that together make it: at clock ``k`` every worker adds the *change* of
    its edges' contribution, ``(x_k - x_{k-1})[src] * P``, into accumulator
    ``k % 2`` (into ``flow0`` alone when ``s > 0``, see below).
scalars ``("pagerank", "dangling", 0 | 1, w)`` and ``("pagerank", "l1", k, w)``
    worker ``w``'s shares of the dangling mass ``D_k`` (two accumulators of
    its changes, likewise) and of the L1 change of iteration ``k``; readers
    sum the shares in worker order.

Clock ``k`` of a worker: it knows ``x_k`` on ``rows``; it pushes its changes
into accumulator ``k % 2`` (flow and dangling mass) and, as an owner, its
part of the L1 change of iteration ``k``; then ``iter_commit()``. At clock
``k + 1`` it reads the L1 change of iteration ``k - s`` (complete: every
worker has committed that clock) and stops if it is below ``tol``; else it
pulls accumulator ``k % 2`` on ``rows``, adds the other one as it read it at
clock ``k``, and forms ``x_{k+1}[v] = d * (flow[v] + D_k / n) + (1 - d) / n``.
One clock per iteration.

Why two accumulators: under BSP (``staleness s = 0``) a read at clock
``k + 1`` sees every update of clock ``k``, but may also see some of clock
``k + 1``'s from faster workers. Those go to the other accumulator, and
nobody touches accumulator ``k % 2`` again before every worker has read it
(that is clock ``k + 2``), so each read is exact and the iterates are
networkx's, up to floating-point summation order. Pushing changes rather than
values means no accumulator is ever reset. With ``s > 0`` every change goes to
accumulator 0 alone, so a pull sees each worker's contribution as of some
recent iteration of that worker: an asynchronous iteration that converges to
the same fixed point. The stopping test uses the newest complete L1 change,
so every worker stops at the same clock. ``staleness: null`` is refused (no
L1 change is ever known to be complete).

Determinism: with ``s = 0`` every run takes the same iterations. The
dangling mass and the L1 change are summed in worker order, so their bits
never depend on timing; a flow row gets pushes from one worker only when
the edges of a directed graph are split by destination (``smap``, the
default). So a directed graph with ``smap`` and out-weights that add up
exactly (integer weights) gives the same ranks bit for bit every run.
Otherwise a server adds the float contributions that several workers push
to one row in the order they arrive: the same ranks up to floating-point
rounding (about 1e-16 relative).

Clocks and resuming
-------------------
Clock 0 pushes the out-weights and iteration 0's changes; clock ``k``
pushes iteration ``k``'s, so at clock ``c`` iteration ``c - 1`` is the
newest one pushed. A worker's state (:meth:`PageRank.state`) is the iterate
it last pushed from, ``x_{c-1}`` on ``rows``, and the two flow and dangling
accumulators as it last read them; nothing else is carried between clocks.
A resumed job at clock ``c`` loads its edges again, skips the out-weight
pushes (it pulls the sums), and goes on right after the commit that
brought it to clock ``c``: it reads the L1 change, then stops (the end of a
finished job: the same ranks and metrics again) or forms ``x_c``.

Input
-----
An edge list, ``src dst [weight]`` per line (see ``paracel.io.graph``);
ids are any strings. Each line is one directed edge; repeated edges add their
weights (as networkx does for multigraphs). Weights must be non-negative.
Nodes are those named by the edges (an edge list cannot hold isolated nodes).

Output
------
``OUTPUT/rank_<worker_id>``: ``node\\trank`` lines for the worker's node range
(every node exactly once over all files). Metrics: ``iterations``, ``delta``
(the L1 change of the last iteration), ``converged``, ``nodes``, ``edges``
(directed edges after ``undirected``), ``dangling``.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse

import paracel

NAME = "pagerank"
BLOCKS_PER_SERVER = 16


@dataclass
class Share:
    """What one worker works on each iteration.

    Attributes
    ----------
    rows : numpy.ndarray
        Sorted nodes whose rank it needs: its edges' sources and its range.
    mine : numpy.ndarray
        Positions in ``rows`` of its own node range.
    dangling : numpy.ndarray of bool
        Which of its own nodes have no out-weight.
    targets : numpy.ndarray
        The distinct destinations of its edges.
    links : scipy.sparse.csr_matrix
        ``targets × rows``, ``w / out(src)`` per edge: ``links @ x[rows]`` is
        the rank its edges carry to ``targets``.
    edges : int
        How many directed edges it holds.
    """

    rows: np.ndarray
    mine: np.ndarray
    dangling: np.ndarray
    targets: np.ndarray
    links: scipy.sparse.csr_matrix
    edges: int


class PageRank(paracel.Algorithm):
    """PageRank by power iteration; ranks of an edge list's nodes."""

    summary = "PageRank with dangling nodes (as networkx.pagerank), edges split over workers"
    reads = ('edge lines "src dst [weight]" (whitespace or commas; header/columns choose CSV '
             'columns)')
    parameters = {
        "damping": paracel.Param(float, 0.85, "probability of following a link "
                                 "(networkx's alpha)", low=0.0, high=1.0),
        "tol": paracel.Param(float, 1e-9, "stop when the L1 change of the ranks in one "
                             "iteration is below this (networkx's tol times the node count)",
                             low=0.0),
        "max_iter": paracel.Param(int, 100, "most iterations", low=1),
        "undirected": paracel.Param(bool, False, "each edge also runs backwards "
                                    "(networkx's nx.Graph)"),
        "weighted": paracel.Param(bool, True, "use the third column as edge weight "
                                  "(networkx's weight='weight'); false: every edge weighs 1"),
        "partition": paracel.Param(str, "smap", "split edges by destination ('smap'), "
                                   "source ('fmap') or both ('fsmap')",
                                   choices=("smap", "fmap", "fsmap")),
    }

    def check_job(self, job):
        """Refuse ``staleness: null`` before launch: without a bound no
        iteration's L1 change is ever known complete."""
        if job.staleness is None:
            raise paracel.ConfigError("staleness: pagerank needs a bound (0 for BSP); "
                                      "null never makes an iteration's L1 change complete")

    def solve(self):
        graph = self.load_graph(partition=self.partition)
        n = graph.shape[0]
        own = self.my_range(n)
        share = self.share(graph, own)
        x, iterations, converged = self.iterate(share, n)
        self.dump("rank_", zip(graph.src_ids[own].tolist(), x[share.mine].tolist()))
        self.sync()  # every L1 change is now complete, whatever the staleness
        edges, dangling = self.sum_over_workers([share.edges, share.dangling.sum()])
        return {"iterations": iterations, "delta": float(self.summed(l1_key(iterations))),
                "converged": converged, "nodes": n, "edges": int(edges),
                "dangling": int(dangling)}

    def state(self):
        """The iterate this worker last published and the accumulators as it
        last read them (on ``rows``): the next iterate is made from them."""
        return {"x": self.x_, "seen": self.seen_, "masses": self.masses_}

    def restore(self, state):
        """Take back :meth:`state`; the iteration is the clock's."""
        self.x_, self.seen_, self.masses_ = state["x"], state["seen"], state["masses"]

    def share(self, graph, own):
        """This worker's :class:`Share` of ``graph``, with out-weights summed
        on the servers over every worker's edges (pushed at clock 0)."""
        src, dst, weight = self.edges(graph)
        n = graph.shape[0]
        rows = np.union1d(src, own)
        out = self.matrix(f"{NAME}.out", (n,), block_rows=self.block_rows(n))
        if self.clock == 0:  # not yet pushed (a resumed job finds them on the servers)
            sources, index = np.unique(src, return_inverse=True)
            if sources.size:
                out.push(sources, np.bincount(index, weights=weight), "add")
            self.sync()
        out = out.pull(rows)
        mine = np.searchsorted(rows, own)
        targets, links = local_links(src, dst, weight, rows, out)
        return Share(rows, mine, out[mine] == 0, targets, links, src.size)

    def edges(self, graph):
        """This worker's directed edges ``(src, dst, weight)``, made undirected
        and unweighted as asked."""
        src, dst = graph.src, graph.dst
        weight = graph.weight if self.weighted else np.ones(src.size)
        if weight.size and weight.min() < 0:
            raise paracel.DataError(f"{NAME}: edge weights must be non-negative, "
                                    f"found {weight.min()}")
        if self.undirected:
            back = src != dst
            src, dst = np.concatenate([src, dst[back]]), np.concatenate([dst, src[back]])
            weight = np.concatenate([weight, weight[back]])
        return src, dst, weight

    def block_rows(self, n):
        """Rows per block of the server vectors: a few blocks on every server."""
        return max(1, min(-(-n // (BLOCKS_PER_SERVER * self.num_servers)), 1 << 17))

    def iterate(self, share, n):
        """The power iteration, one clock each (iteration ``k`` is pushed at
        clock ``k``, so a resumed job at clock ``c`` goes on after iteration
        ``c - 1``); returns the last ranks on ``share.rows``, the number of
        iterations and whether ``tol`` was reached."""
        accumulators = 2 if self.staleness == 0 else 1
        flows = [self.matrix(f"{NAME}.flow{parity}", (n,), block_rows=self.block_rows(n))
                 for parity in range(accumulators)]
        if self.clock == 0:
            self.x_ = np.full(share.rows.size, 1.0 / n)
            self.seen_, self.masses_ = np.zeros((2, share.rows.size)), np.zeros(2)
            self.publish(0, self.x_, flows[0], 0, share)
            self.iter_commit()
        while True:
            iteration = self.clock - 1
            change = self.known_change(iteration)
            if change < self.tol or iteration == self.max_iter:
                return self.x_, iteration, change < self.tol
            parity, following = iteration % accumulators, (iteration + 1) % accumulators
            self.seen_[parity] = flows[parity].pull(share.rows)
            self.masses_[parity] = self.summed(mass_key(parity))
            x = (self.damping * (self.seen_.sum(axis=0) + self.masses_.sum() / n)
                 + (1 - self.damping) / n)
            self.publish(iteration + 1, x - self.x_, flows[following], following, share)
            self.x_ = x
            self.iter_commit()

    def publish(self, iteration, change, flow, parity, share):
        """Push the change of this worker's link flow into ``flow``, and as an
        owner its share of the change of the dangling mass (accumulator
        ``parity``) and of the L1 change, under its own keys."""
        if share.targets.size:
            flow.push(share.targets, share.links @ change, "add")
        owned = change[share.mine]
        self.update((*mass_key(parity), self.worker_id), float(owned[share.dangling].sum()),
                    "add")
        if iteration >= 1:
            self.write((*l1_key(iteration), self.worker_id), float(np.abs(owned).sum()))

    def summed(self, prefix):
        """The sum over workers, in worker order, of the scalars under
        ``(*prefix, worker)`` (0 for a worker that has pushed none yet): the
        same bits whatever order the workers' pushes arrived in."""
        keys = [(*prefix, worker) for worker in range(self.num_workers)]
        return sum(self.read_multi(keys, default=0.0))

    def known_change(self, iteration):
        """The L1 change of the newest iteration every worker has committed
        (infinite before the first one)."""
        known = iteration - self.staleness
        if known < 1:
            return np.inf
        change = float(self.summed(l1_key(known)))
        self.report(delta=change)
        return change


def local_links(src, dst, weight, rows, out):
    """``(targets, links)`` of :class:`Share` from this worker's edges and the
    out-weights of ``rows`` (a source with no out-weight passes nothing)."""
    targets, target_index = np.unique(dst, return_inverse=True)
    source_index = np.searchsorted(rows, src)
    out_of_source = out[source_index]
    share = np.divide(weight, out_of_source, out=np.zeros(src.size), where=out_of_source > 0)
    links = scipy.sparse.csr_matrix((share, (target_index, source_index)),
                                    shape=(targets.size, rows.size))
    return targets, links


def mass_key(parity):
    """The key prefix of dangling-mass accumulator ``parity`` (each worker's
    share under ``(*prefix, worker)``)."""
    return (NAME, "dangling", parity)


def l1_key(iteration):
    """The key prefix of iteration ``iteration``'s L1 change (each worker's
    share under ``(*prefix, worker)``)."""
    return (NAME, "l1", iteration)
