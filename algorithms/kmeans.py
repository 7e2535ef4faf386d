"""k-means clustering: parallel k-means++ seeding, then Lloyd iterations.

What it computes
----------------
``k`` centers ``c_1 .. c_k`` that (locally) minimise the inertia
``sum_i min_j ||x_i - c_j||^2`` over the input points, each point's label
(the index of its nearest center, ties to the lower index) and the inertia.
Lloyd's algorithm as in scikit-learn's ``KMeans(algorithm="lloyd")``: each
iteration assigns every point to its nearest center, then moves every center
to the mean of its points (a center with no points stays where it is; this is
where it differs from scikit-learn, which moves it to a far point). It stops
after ``max_iter`` iterations, when no label changed, or when the summed
squared center shift is at most ``tol`` times the mean per-feature variance
of the data (scikit-learn's rule); then one last assignment gives the labels
and the inertia of the final centers.

Parallel scheme
---------------
The points are split across the workers (each loads only its share); the
model lives on the servers.

* **Seeding** (greedy k-means++, as scikit-learn: ``2 + int(ln k)``
  candidates per step, the one that lowers the potential most wins). Every
  worker keeps its points' ``D^2`` (squared distance to the nearest chosen
  center). All workers draw the same numbers from one generator seeded by the
  job's seed; the per-worker ``D^2`` totals (``allgather``) say which
  worker owns each draw, and that worker picks the point by the cumulative
  sum of its ``D^2``. Owners write the candidate points to the servers
  (``("kmeans.cand", run, step, trial)``), every worker reads them back, and the
  candidates' potentials are summed over workers in worker order. The first
  center is drawn the same way with every weight 1 (uniform).
* **Lloyd**: per iteration each worker assigns its points and writes one
  partial ``[per-center sums, per-center counts, inertia, labels changed,
  iteration]`` under its own key ``("kmeans.partial", run, worker, iteration % 2)``
  (two slots, so a fast worker never overwrites the one a slow worker is
  still reading), then ``iter_commit()``, then reads every worker's partial
  and sums them in worker order. Every worker thus derives the same next
  centers, with no second round trip; the sum in a fixed order (rather than
  ``add`` on the servers, whose order of arrival varies) keeps a run
  bit-for-bit reproducible.
* **End** of a run: worker 0 writes the final centers to the servers as the
  distributed matrix ``kmeans.centers`` (one row per block); every worker
  reads them, labels its points, and the final partials give the inertia.
  Every key carries the run number (``n_init`` runs), so runs never see each
  other's values.

Staleness
---------
With ``staleness: 0`` (BSP, the default) every worker sees all partials of
the iteration, so this is exactly Lloyd's algorithm, and a run is
deterministic. With ``s > 0`` (SSP) or ``null`` a worker uses, for each other
worker, its newest partial of an iteration not after its own (at most ``s``
iterations old): each point still counts once, in its owner's newest
assignment, so the centers are means of a slightly stale assignment
(asynchronous Lloyd). Workers may then stop at different iterations; each
one that stops writes ``("kmeans.done", run, worker)`` and keeps committing
clocks (so it holds no one back) until all have stopped and all can see it;
the final centers are worker 0's. Results are then no longer bit-reproducible.
(Under BSP this hand-shake costs one extra clock per run.)

Clocks and resuming
-------------------
A run's clocks are its Lloyd iterations (one each) and the hand-shake. The
seeding and the end of a run make no clock: what they put on the servers is
written (``write``, never ``add``) and the same whenever it is made (keys
carry the run, step and worker), so making it again after a resume changes
nothing. A worker's state (:meth:`KMeans.state`) is the finished runs
(:class:`_Run`: final centers, inertia, iterations, converged, cluster
sizes) and where the current one stands (:class:`_Progress`: its centers,
this worker's labels, the iterations committed, whether Lloyd converged
once it stopped, the hand-shake's target clock). A resumed job loads its
points again and goes on right after the commit it stopped at: in Lloyd it
sums that iteration's partials and moves the centers; in the hand-shake it
reads the flags (its own is not written again: its value is the clock it
stopped at); later runs seed as usual. The best run's labels are not kept:
they are assigned again from its centers, as the end of the run did, so a
job resumed after its last clock writes the same results.

Input
-----
Dense vectors, one per line: ``id,f1,...,fk`` (commas or whitespace), read
with ``load_dense``.

Output
------
``OUTPUT/centers.txt``: ``k`` lines of comma-separated coordinates, and
``OUTPUT/model.h5`` (dataset ``centers``; see ``paracel.load_model``).
``OUTPUT/labels_<worker>``: ``id\\tlabel`` for each point of that worker's
share. Metrics: ``inertia``, ``iterations``, ``converged``, ``best_run``,
``n_points``, ``cluster_sizes``, ``run_inertias``; the clock after each
iteration logs ``inertia`` (of the centers the iteration started from),
``shift`` and ``changed``.
"""

import os
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse

import paracel
from paracel.errors import DataError, UserError

PARTIAL = "kmeans.partial"
CANDIDATE = "kmeans.cand"
DONE = "kmeans.done"
FINAL = "kmeans.final"
CENTERS = "kmeans.centers"
SEED_STREAM = 0x6B6D65616E73  # "kmeans": the shared draws of k-means++


@dataclass
class _Run:
    """The outcome of one seeding + Lloyd run (the same on every worker)."""

    run: int
    centers: np.ndarray
    inertia: float
    iterations: int
    converged: bool
    sizes: list


@dataclass
class _Progress:
    """Where the current run stands between two clocks.

    Attributes
    ----------
    run : int
        Which of the ``n_init`` runs.
    centers : numpy.ndarray
        While Lloyd runs, the centers of the last assignment; then the final ones.
    labels : numpy.ndarray
        This worker's labels from the last assignment (-1 before the first).
    iteration : int
        Lloyd partials written and committed so far.
    converged : bool or None
        ``None`` while Lloyd runs; then whether it met its stopping rule.
    target : int or None
        The clock at which every worker has stopped and sees it, once known.
    """

    run: int
    centers: np.ndarray
    labels: np.ndarray
    iteration: int = 0
    converged: bool | None = None
    target: int | None = None


class KMeans(paracel.Algorithm):
    """k-means (Lloyd) with parallel k-means++ seeding."""

    summary = "k-means: parallel k-means++ seeding, Lloyd iterations, partial sums on servers"
    reads = ('dense vectors, one per line: "id,f1,...,fk" (commas or whitespace); "columns": '
             '{"id": null} when there is no id column; header/columns choose CSV columns')
    parameters = {
        "k": paracel.Param(int, 8, "number of clusters", low=1),
        "max_iter": paracel.Param(int, 300, "most Lloyd iterations", low=1),
        "tol": paracel.Param(float, 1e-4, "stop when the summed squared center shift is at "
                             "most tol x the mean feature variance", low=0.0),
        "init_centers": paracel.Param(str, None, "file of k initial centers, one per line "
                                      "(relative to the job file); null: k-means++",
                                      nullable=True, path=True),
        "n_init": paracel.Param(int, 1, "k-means++ runs, the lowest final inertia wins "
                                "(ignored with init_centers)", low=1),
        "n_local_trials": paracel.Param(int, None, "k-means++ candidates per step; "
                                        "null: 2 + int(ln k)", low=1, nullable=True),
    }

    def solve(self):
        ids, X = self.load_dense()
        n_points = int(self.sum_over_workers(len(X))[0])
        if n_points < self.k:
            raise UserError(f"kmeans: k={self.k} clusters but only {n_points} points")
        threshold = self.tol * self.mean_variance(X, n_points)
        if not self.resumed:
            self.runs_, self.progress_ = [], None
        for run in range(len(self.runs_), 1 if self.init_centers else self.n_init):
            self.runs_.append(self.one_run(X, threshold, run))
        best = min(self.runs_, key=lambda r: r.inertia)
        self.write_results(ids, _nearest(X, best.centers), best)
        return {"inertia": best.inertia, "iterations": best.iterations,
                "converged": best.converged, "best_run": best.run, "n_points": n_points,
                "cluster_sizes": best.sizes, "run_inertias": [r.inertia for r in self.runs_]}

    def state(self):
        """The finished runs and where the current one stands (see :class:`_Progress`)."""
        return {"runs": [asdict(run) for run in self.runs_],
                "progress": None if self.progress_ is None else asdict(self.progress_)}

    def restore(self, state):
        """Take back :meth:`state`."""
        self.runs_ = [_Run(**run) for run in state["runs"]]
        self.progress_ = None if state["progress"] is None else _Progress(**state["progress"])

    def one_run(self, X, threshold, run):
        """Seed, iterate, and label with the final centers (one of ``n_init``
        runs), or finish the run a resumed job was in."""
        if self.progress_ is None:
            centers = (self.read_init(X.shape[1]) if self.init_centers
                       else self.kmeans_plusplus(X, run))
            self.progress_ = _Progress(run, centers, np.full(len(X), -1))
        progress = self.progress_
        if progress.converged is None:
            progress.converged = self.lloyd(X, threshold, progress)
            self.write((DONE, run, self.worker_id), self.clock)
            self.iter_commit()
        self.wait_for_all(progress)
        centers = self.share_final_centers(progress.centers)
        totals = self.final_assignment(X, centers, run)
        sizes = _split(totals, *centers.shape)[1].astype(int).tolist()
        self.progress_ = None
        return _Run(run, centers, float(totals[-3]), progress.iteration, progress.converged,
                    sizes)

    # -- helpers over all workers --------------------------------------------

    def mean_variance(self, X, n_points):
        """The mean over features of the data's variance (two passes)."""
        mean = self.sum_over_workers(X.sum(axis=0)) / n_points
        return float(np.mean(self.sum_over_workers(((X - mean) ** 2).sum(axis=0)) / n_points))

    def read_init(self, dims):
        """The ``k x dims`` initial centers from ``init_centers`` (every worker reads it)."""
        path = os.path.abspath(self.init_centers)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read().replace(",", " ")
            centers = np.loadtxt(text.splitlines(), ndmin=2)
        except OSError as error:
            raise UserError(f"{path}: cannot read init_centers: {error.strerror}") from None
        except ValueError as error:
            raise UserError(f"{path}: not a table of numbers: {error}") from None
        if centers.shape != (self.k, dims):
            raise UserError(f"{path}: expected {self.k} centers of {dims} features, "
                            f"got shape {centers.shape}")
        return centers

    # -- k-means++ -------------------------------------------------------------

    def kmeans_plusplus(self, X, run):
        """Greedy k-means++ over all workers' points; the same centers on every worker."""
        rng = np.random.default_rng([self.seed, SEED_STREAM, run])
        trials = self.n_local_trials or 2 + int(np.log(self.k))
        d2 = np.ones(len(X))  # the first center is drawn uniformly
        centers = []
        for step in range(self.k):
            candidates = self.draw_candidates((run, step), X, d2, rng,
                                              1 if step == 0 else trials)
            dist = _sq_dist(X, candidates)
            if step:
                dist = np.minimum(d2[:, None], dist)
            best = int(np.argmin(self.sum_over_workers(dist.sum(axis=0))))
            centers.append(candidates[best])
            d2 = dist[:, best]
        return np.array(centers)

    def draw_candidates(self, step, X, d2, rng, trials):
        """``trials`` points drawn with probability proportional to ``d2`` over
        all workers; owners put them on the servers, every worker reads them."""
        weights = self.allgather(d2.sum())[:, 0]
        if not weights.sum() > 0:  # fewer distinct points than k: draw uniformly
            d2 = np.ones(len(X))
            weights = self.allgather(len(X))[:, 0]
        bounds = np.cumsum(weights)
        draws = rng.random(trials) * bounds[-1]
        owners = np.minimum(np.searchsorted(bounds, draws, side="right"),
                            np.flatnonzero(weights > 0)[-1])
        mine = np.flatnonzero(owners == self.worker_id)
        if mine.size:
            local = np.searchsorted(np.cumsum(d2), draws[mine] - (bounds - weights)[owners[mine]],
                                    side="right").clip(max=len(X) - 1)
            self.write_multi({(CANDIDATE, *step, int(t)): X[i] for t, i in zip(mine, local)})
        self.sync()
        return np.array(self.read_multi([(CANDIDATE, *step, t) for t in range(trials)]))

    # -- Lloyd ---------------------------------------------------------------

    def lloyd(self, X, threshold, progress):
        """Lloyd iterations from where ``progress`` stands (a resumed job goes
        on after its last committed partial), moving ``progress.centers``;
        returns whether they converged."""
        while True:
            if progress.iteration:  # a committed partial: move the centers
                totals = self.sum_partials(progress.run, progress.iteration)
                centers = _centers(totals, progress.centers)
                shift = float(((centers - progress.centers) ** 2).sum())
                progress.centers = centers
                self.report(inertia=float(totals[-3]), shift=shift, changed=int(totals[-2]))
                if totals[-2] == 0 or shift <= threshold:
                    return True
                if progress.iteration == self.max_iter:
                    return False
            self.assign(X, progress)

    def assign(self, X, progress):
        """Assign this worker's points to ``progress.centers``, write the
        partial of the next iteration and end the clock."""
        labels = _nearest(X, progress.centers)
        iteration = progress.iteration + 1
        partial = _partial(X, labels, progress.centers, np.sum(labels != progress.labels),
                           iteration)
        progress.labels, progress.iteration = labels, iteration
        self.write((PARTIAL, progress.run, self.worker_id, iteration % 2), partial)
        self.iter_commit()

    def sum_partials(self, run, iteration):
        """Every worker's freshest partial of an iteration not after
        ``iteration``, summed in worker order."""
        slots = self.read_multi([(PARTIAL, run, w, s) for w in range(self.num_workers)
                                 for s in (0, 1)], default=None)
        chosen = [_freshest(slots[2 * w:2 * w + 2], iteration) for w in range(self.num_workers)]
        return np.sum([part for part in chosen if part is not None], axis=0)

    def wait_for_all(self, progress):
        """Keep committing clocks until every worker has stopped and all can see it.

        Called after this worker wrote its ``DONE`` flag (the clock it stopped
        at) and committed once. Under BSP all stop together and this adds no
        clock. Under SSP each worker ends at the same clock (last stop + s +
        1), by which time every worker sees every flag, so no one waits on a
        worker that has left.
        """
        keys = [(DONE, progress.run, w) for w in range(self.num_workers)]
        while True:
            if progress.target is None:
                stops = self.read_multi(keys, default=None)
                if all(stop is not None for stop in stops):
                    progress.target = (self.clock if self.staleness is None
                                       else max(stops) + self.staleness + 1)
            if progress.target is not None and self.clock >= progress.target:
                return
            self.iter_commit()

    # -- the end -----------------------------------------------------------------

    def share_final_centers(self, centers):
        """Worker 0's centers, through the distributed matrix on the servers."""
        matrix = self.matrix(CENTERS, centers.shape, block_rows=1, create=False)
        if self.worker_id == 0:
            matrix.assign(centers)
        self.sync()
        return matrix.to_numpy()

    def final_assignment(self, X, centers, run):
        """The summed final partials (inertia, cluster sizes)."""
        labels = _nearest(X, centers)
        self.write((FINAL, run, self.worker_id), _partial(X, labels, centers, 0, 0))
        self.sync()
        parts = self.read_multi([(FINAL, run, w) for w in range(self.num_workers)])
        return np.sum(parts, axis=0)

    @classmethod
    def apply_model(cls, worker, model):
        """Label the points of ``worker``'s share with the nearest of the
        model's centers (``predict``): ``pred_<worker>`` lines ``id\tlabel``
        and the inertia of the input."""
        ids, X = worker.load_dense()
        centers = model["centers"]
        _check_width(X, centers, model)
        labels = _nearest(X, centers) if len(X) else np.zeros(0, dtype=np.int64)
        inertia = float(_sq_dist(X, centers).min(axis=1).sum()) if len(X) else 0.0
        worker.dump("pred_", zip(ids, labels.tolist()), sep="\t")
        points, total = worker.sum_over_workers([len(X), inertia])
        return {"n_points": int(points), "inertia": float(total)}

    def write_results(self, ids, labels, best):
        """``labels_<worker>`` on every worker; ``centers.txt`` and
        ``model.h5`` (``centers``, and the inertia) on worker 0."""
        self.dump("labels_", zip(ids, labels.tolist()))
        if self.worker_id == 0:
            with self.open_output("centers.txt") as handle:
                for row in best.centers:
                    handle.write(",".join(repr(float(v)) for v in row) + "\n")
        self.save_model("model.h5", [("centers", best.centers)], inertia=float(best.inertia))


def _check_width(X, centers, model):
    if X.shape[1] != centers.shape[1]:
        raise DataError(f"the input has {X.shape[1]} features, the model {model.path}'s "
                        f"centers {centers.shape[1]}")


def _sq_dist(X, centers):
    """Squared Euclidean distances, ``len(X) x len(centers)``."""
    d2 = ((X ** 2).sum(axis=1)[:, None] - 2.0 * X @ centers.T
          + (centers ** 2).sum(axis=1)[None, :])
    return np.maximum(d2, 0.0)


def _nearest(X, centers):
    """Index of each point's nearest center (the lower index on ties)."""
    return np.argmin(_sq_dist(X, centers), axis=1)


def _partial(X, labels, centers, changed, iteration):
    """This worker's flat partial: sums, counts, inertia, changed, iteration."""
    k = len(centers)
    members = scipy.sparse.csr_matrix((np.ones(len(X)), (labels, np.arange(len(X)))),
                                      shape=(k, len(X)))
    sums = members @ X
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    inertia = float(((X - centers[labels]) ** 2).sum())
    return np.concatenate([sums.ravel(), counts, [inertia, float(changed), float(iteration)]])


def _split(totals, k, dims):
    """``(sums, counts)`` of a summed partial."""
    return totals[:k * dims].reshape(k, dims), totals[k * dims:k * dims + k]


def _centers(totals, centers):
    """The means of the summed partial; an empty cluster keeps its center."""
    sums, counts = _split(totals, *centers.shape)
    new = centers.copy()
    full = counts > 0
    new[full] = sums[full] / counts[full, None]
    return new


def _freshest(slots, iteration):
    """Of a worker's two partial slots, the newest of an iteration not after
    ``iteration`` (else the oldest there is; ``None`` if it wrote none)."""
    present = [slot for slot in slots if slot is not None]
    past = [slot for slot in present if slot[-1] <= iteration]
    if past:
        return max(past, key=lambda slot: slot[-1])
    return min(present, key=lambda slot: slot[-1]) if present else None
