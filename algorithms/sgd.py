"""Mini-batch SGD under SSP for ``lr`` (``method: "sgd"``) on the servers'
dense ``w``.

Each worker shuffles its share every pass and cuts it into the same number
of batches as every other worker (so all workers do the same number of
clocks). For each batch it pulls only the weights of the features the batch
touches and the shared counters (:class:`Counters`: the intercept, the l1
penalty owed, the steps made), pushes a step for just those features and
ends a clock. The penalty is applied on the server, atomically with the
step, by a row update function, so concurrent pushes never undo one
another's shrinking:

* ``l2`` (:func:`sgd_l2`): the step, then a shrink by
  ``(1 + eta*lam)^(1/q_j)``, ``q_j`` the chance that a batch touches feature
  ``j`` (from its document frequency, :func:`shrink_exponents`): lazy
  regularisation for sparse data.
* ``l1`` (:func:`sgd_l1`): truncated gradient with the cumulative penalty
  (Tsuruoka, Tsujii and Ananiadou, ACL 2009), the weight and the penalty
  applied to it in a ``(n_features, 2)`` matrix ``lr.l1``, copied into ``w``
  at the end; weights become exact zeros.
* ``none``: the step is added.

Each of the ``W`` workers steps ``eta / W`` (:class:`Schedule`), ``eta``
following the steps all workers made together, and weighs its batch by
its share of the data over its share of the steps (:class:`Pace`). Without
``tol`` the workers step until together they made ``epochs`` passes' worth
of steps; with ``tol`` they evaluate the objective exactly at each pass's
end and stop once it improved by less than ``tol`` since the step size was
:data:`STEP_RATIO` times as large. Why each rule, with the measurements:
``docs/lr.md``. With more than one worker SGD is not bit-reproducible even
at staleness 0 (a read may or may not include a peer's step of the same
clock); with one it is.

The plain NumPy parts (the schedule, a batch's step, the example weight,
the penalised push) are functions that know nothing of MPI; :class:`SGD`
does the pulls, pushes and clocks around them. Its checkpoint state is
:class:`SGDProgress`: the pass and batch it is at, the pass's loss sums,
the ``tol`` test's terms and the generator's state before the pass's
shuffle, so a resumed job draws the same shuffle and takes the next batch.
"""

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.special import expit

import paracel
from paracel.algorithms.logistic import log_losses, penalty_value
from paracel.algorithms.lr_data import local_columns

#: The ``tol`` test compares the objective with its value when the step
#: size was at least this many times the current one.
STEP_RATIO = 2.0
#: Examples per batch without ``batch_size``.
BATCH_SIZE = 32
#: Learning rate ``STEP_SCALE / L`` without ``learning_rate``.
STEP_SCALE = 10.0


# -- server-side row update functions (registered on every rank at import) --

def _rows_values(name, block, delta, width):
    rows, values = delta
    rows = np.asarray(rows, dtype=np.intp)
    values = np.asarray(values, dtype=np.float64)
    if not isinstance(block, np.ndarray) or values.shape != (len(rows), 2) or (
            block.ndim != width):
        raise paracel.UserError(f"{name} expects a dense block and (rows, values[k, 2])")
    return rows, values


@paracel.update_function("lr_sgd_l2")
def sgd_l2(block, delta):
    """``w[j] = (w[j] + step_j) / shrink_j`` for the pushed rows: an SGD step,
    then the L2 proximal shrink; ``delta = (rows, [[step, shrink], ...])``."""
    rows, values = _rows_values("lr_sgd_l2", block, delta, 1)
    block[rows] = (block[rows] + values[:, 0]) / values[:, 1]
    return block


@paracel.update_function("lr_sgd_l1")
def sgd_l1(block, delta):
    """Truncated gradient with cumulative L1 penalty (Tsuruoka et al., 2009).

    ``block`` rows are ``[weight, q]``, ``q`` the signed total penalty
    applied to the weight so far; ``delta = (rows, [[step, u], ...])``, ``u``
    the total penalty a weight should have received by now. After the step
    the weight moves towards zero by what it is still owed (``u + q`` for a
    positive weight, ``u - q`` for a negative one), never past zero.
    """
    rows, values = _rows_values("lr_sgd_l1", block, delta, 2)
    weight = block[rows, 0] + values[:, 0]
    applied = block[rows, 1]
    owed = values[:, 1]
    new = np.where(weight > 0, np.maximum(0.0, weight - np.maximum(owed + applied, 0.0)),
                   np.where(weight < 0,
                            np.minimum(0.0, weight + np.maximum(owed - applied, 0.0)), 0.0))
    block[rows, 1] = applied + (new - weight)
    block[rows, 0] = new
    return block


# -- plain NumPy: the schedule, a batch's step ------------------------------

@dataclass(frozen=True)
class Schedule:
    """The step size of one worker's batch after ``progress`` epochs: the
    schedule's ``eta`` over the number of workers (the ``W`` steps of a
    clock are computed from about the same model, so together they make
    one step ``eta`` along their mean gradient, whatever ``W``)."""

    eta0: float
    kind: str        # lr_schedule: constant, inverse or inverse_sqrt
    decay: float
    workers: int

    def step_size(self, progress):
        if self.kind == "inverse":
            eta = self.eta0 / (1.0 + self.decay * progress)
        elif self.kind == "inverse_sqrt":
            eta = self.eta0 / np.sqrt(1.0 + self.decay * progress)
        else:
            eta = self.eta0
        return eta / self.workers

    def objective_before(self, objectives):
        """``F`` at the end of the latest pass whose step size was at least
        ``STEP_RATIO`` times the current one (``objectives[p - 1]`` is ``F``
        after pass ``p``, when the progress is ``p`` epochs); ``None`` while
        there is none (early on, or with a constant step)."""
        current = len(objectives)
        for done in range(current - 1, 0, -1):
            if self.step_size(done) >= STEP_RATIO * self.step_size(current):
                return objectives[done - 1]
        return None


class Pace(NamedTuple):
    """How this worker's steps should weigh: per step, every example the
    same, however the shares' sizes and the workers' speeds differ."""

    steps_per_epoch: int  # the non-empty batches of one pass over all shares
    mean_batch: float     # n / steps_per_epoch
    my_share: float       # this worker's share of the steps of a pass

    def example_weight(self, mine, steps):
        """The factor of a batch's summed gradient: over the mean batch
        size, times the correction (clipped to ``[1/4, 4]``) for how much
        more often than its share this worker stepped (``mine`` of
        ``steps`` all workers made so far, smoothed by one pass)."""
        prior = self.steps_per_epoch
        ahead = (mine + self.my_share * prior) / (steps + prior) / self.my_share
        return np.clip(1.0 / ahead, 0.25, 4.0) / self.mean_batch


def pace(sizes, batches, worker):
    """The :class:`Pace` of ``batches`` batches a pass over shares of ``sizes``
    (a share smaller than ``batches`` rows leaves some of its batches empty)."""
    steps_per_epoch = int(sum(min(int(size), batches) for size in sizes))
    return Pace(steps_per_epoch, int(sizes.sum()) / steps_per_epoch,
                min(int(sizes[worker]), batches) / steps_per_epoch)


def batches_per_pass(sizes, batch_size):
    """Batches every worker makes a pass: enough for the largest share."""
    return max(1, int(max(-(-int(size) // batch_size) for size in sizes)))


def shrink_exponents(df, n, mean_batch):
    """``1 / q_j``, ``q_j`` the chance that a batch of ``mean_batch`` examples
    touches a feature of document frequency ``df`` among ``n``: the L2
    shrink of a step that touches it is that of ``1 / q_j`` steps."""
    touch = 1.0 - (1.0 - df / n) ** mean_batch
    return 1.0 / np.maximum(touch, 1e-300)


class BatchStep(NamedTuple):
    """A batch's step: for the features of its columns, the intercept's, and
    its summed log-loss before the step."""

    features: np.ndarray
    intercept: float
    loss: float


def batch_step(X, y, weights, bias, eta, weight):
    """The step ``-eta * weight * gradient`` of a batch (``X`` over its
    features' ``weights``, margins ``X w + bias``)."""
    z = X @ weights + bias
    residual = (expit(z) - y) * weight
    return BatchStep(-eta * (X.T @ residual), -eta * residual.sum(),
                     float(log_losses(z, y).sum()))


def penalised_push(penalty, step, eta, lam, exponents, owed):
    """``(values, row function)`` of a push of ``step`` with the penalty
    applied on the server: the L2 shrink of each feature (``exponents``
    from :func:`shrink_exponents`), the total L1 penalty ``owed``, or none."""
    if penalty == "l2":
        return np.column_stack([step, (1.0 + eta * lam) ** exponents]), "lr_sgd_l2"
    if penalty == "l1":
        return np.column_stack([step, np.full(len(step), owed)]), "lr_sgd_l1"
    return step, "add"


# -- on the servers: the shared counters --------------------------------------

class Counters(NamedTuple):
    """The counters of ``lr.sgd`` on the servers, pulled with every batch:
    the intercept, ``u`` (the sum of ``eta * lam`` over every worker's steps
    so far: the total l1 penalty each weight should have had), the steps of
    all workers (the schedule's clock) and of one worker. The vector holds
    ``[intercept, u, steps, steps of worker 0, 1, ...]``."""

    intercept: float
    owed: float
    steps: float
    mine: float

    @staticmethod
    def rows(worker):
        """The rows of ``lr.sgd`` of :class:`Counters` for ``worker``."""
        return [INTERCEPT, 1, 2, 3 + worker]

    @staticmethod
    def size(workers):
        return 3 + workers


#: The row of the intercept in ``lr.sgd`` (the first of :meth:`Counters.rows`).
INTERCEPT = 0


@dataclass
class SGDProgress:
    """Where this worker's SGD is between two clocks (its checkpoint state)."""

    epoch: int = 0          # passes begun
    batch: int = 0          # batches of the current pass done
    loss_sum: float = 0.0   # the pass's summed batch log-loss so far
    seen: int = 0           # the examples it covers
    objectives: list = field(default_factory=list)  # tol: F at the end of each pass
    stale: int = 0          # tol: passes in a row without improving by tol
    converged: bool = False
    done: bool = False      # the loop is over
    shuffle_rng: dict = None  # the generator's state before the pass's shuffle

    def state(self):
        return asdict(self)

    @classmethod
    def from_state(cls, state):
        return cls(**state)


# -- the driver, on every worker ----------------------------------------------

class SGD:
    """Mini-batch SGD for one ``lr`` job.

    Parameters
    ----------
    algorithm : algorithms.lr.LogisticRegression
        The job's algorithm (parameters, store, clocks).
    share : algorithms.lr_data.Share
        This worker's examples, over the columns of ``w`` they use.
    w, intercept : paracel.matrix.DistMatrix
        The model on the servers.
    eta0 : float
        The schedule's first step size.
    """

    Progress = SGDProgress

    def __init__(self, algorithm, share, w, intercept, eta0):
        self.lr, self.share = algorithm, share
        self.w, self.intercept = w, intercept
        self.schedule = Schedule(eta0, algorithm.lr_schedule, algorithm.lr_decay,
                                 algorithm.num_workers)
        self.batches = batches_per_pass(share.sizes, algorithm.batch_size or BATCH_SIZE)
        self.pace = pace(share.sizes, self.batches, share.worker)
        self.exponents = None

    def run(self):
        """Train; returns ``(epochs run, converged)``.

        The loop runs on ``progress_`` (:class:`SGDProgress`), advanced before
        each clock's ``iter_commit``, so a resumed job takes the next batch
        of the same shuffle. Between two passes, the ``tol`` test (the
        objective of the model the pass's last clock left) is part of the
        next clock.
        """
        lr = self.lr
        target, shared = self._setup()
        # without tol: every worker steps until all of them together made
        # `epochs` passes' worth of steps (so under SSP/async nobody trains
        # alone on its share at the end); with tol: each makes `batches` steps
        # a pass and all meet at each pass's end
        budget = lr.epochs * self.pace.steps_per_epoch if lr.tol is None else None
        if lr.resumed:
            rng = np.random.default_rng()
            rng.bit_generator.state = lr.progress_.shuffle_rng
        else:
            rng = lr.rng()
            lr.progress_ = SGDProgress(batch=self.batches)
        progress = lr.progress_
        pieces = self._shuffle(progress, rng) if progress.epoch else None
        while not progress.done:
            if progress.batch == self.batches:            # between two passes
                if self._stops(progress, budget, target, shared):
                    break
                progress.epoch += 1
                progress.batch, progress.loss_sum, progress.seen = 0, 0.0, 0
                pieces = self._shuffle(progress, rng)
            batch = np.sort(pieces[progress.batch])
            result = self._step(target, shared, batch, budget)
            if result is None:
                break
            loss, epoch = result
            progress.batch += 1
            progress.loss_sum += loss
            progress.seen += batch.size
            lr.trace(batch_loss=loss / max(batch.size, 1))
            lr.report(loss=progress.loss_sum / max(progress.seen, 1), epoch=round(epoch, 4))
            if lr.trace_every and (lr.clock + 1) % lr.trace_every == 0:
                lr.trace(share_loss=[self._share_log_loss(target, shared),
                                     float(len(self.share.y))])
            lr.iter_commit()
        progress.done = True
        lr.sync()
        # the trained values into w and the intercept: copies of what no longer
        # changes, so a resumed finished job may make them again
        if lr.worker_id == 0 and lr.fit_intercept:
            self.intercept.push([0], shared.pull([INTERCEPT]), fn="replace")
        if lr.penalty == "l1":
            self._copy_blocks(target, self.w, from_column=0)   # syncs
        else:
            lr.sync()
        return (progress.epoch if budget is None else lr.epochs), progress.converged

    def _setup(self):
        """The matrices ``(target, shared)``: the weights the steps go to
        (``w``, or for l1 ``lr.l1``: weight and penalty applied) and the
        :class:`Counters`. A fresh job fills them here, before clock 1; a
        resumed one finds them on the servers."""
        lr, share, w = self.lr, self.share, self.w
        fresh = not lr.resumed
        target = w
        if lr.penalty == "l1":
            target = lr.matrix("lr.l1", (w.shape[0], 2), block_rows=w.block_rows)
            if lr.init_model is not None and fresh:
                self._copy_blocks(w, target, into_column=0)
        elif lr.penalty == "l2":
            df = lr.matrix("lr.df", (w.shape[0],), block_rows=w.block_rows)
            if fresh:
                df.push(share.ids, np.diff(share.X.tocsc().indptr).astype(np.float64))
                lr.sync()
            self.exponents = shrink_exponents(df.pull(share.ids), share.n,
                                              self.pace.mean_batch)
        shared = lr.matrix("lr.sgd", (Counters.size(lr.num_workers),))
        if fresh:
            if lr.worker_id == 0 and lr.fit_intercept:
                shared.push([INTERCEPT], self.intercept.pull([0]), fn="replace")
            lr.sync()
        return target, shared

    def _shuffle(self, progress, rng):
        """The current pass's batches (positions in the share), shuffled by
        ``rng``, whose state before the shuffle is kept in the progress: a
        resumed job draws the same pass again."""
        progress.shuffle_rng = rng.bit_generator.state
        return np.array_split(rng.permutation(self.share.X.shape[0]), self.batches)

    def _stops(self, progress, budget, target, shared):
        """At the end of a pass (or before the first): whether to stop. With
        ``tol``, the objective ``F`` of the current model (reported as
        ``objective``) has improved by less than ``tol`` (relative) on its
        value when the step size was ``STEP_RATIO`` times as large, at
        ``n_iter_no_change`` pass ends in a row; without a budget, ``epochs``
        passes are made."""
        lr = self.lr
        if lr.tol is not None and progress.epoch:
            now = self._objective(target, shared)
            progress.objectives.append(now)
            lr.report(objective=now)
            before = self.schedule.objective_before(progress.objectives)
            if before is not None:
                progress.stale = progress.stale + 1 if before - now < lr.tol * now else 0
            progress.converged = progress.stale >= lr.n_iter_no_change
        return progress.converged or (budget is None and progress.epoch >= lr.epochs)

    def _objective(self, target, shared):
        """``F(w, b)`` of the current model, exactly, over all the data: each
        worker adds its share's log-loss and the penalty of its blocks of
        ``w``, summed in worker order. Two barriers: before, so that every
        step of the pass has landed; after the partial sums are written, so
        that nobody steps on before every worker has read the model."""
        lr = self.lr
        lr.sync()
        mine = lr.my_blocks(target)
        blocks = lr.read_multi([target.block_key(b) for b in mine]) if mine else []
        if lr.penalty == "l1":
            blocks = [value[:, 0] for value in blocks]
        part = [self._share_log_loss(target, shared),
                sum(penalty_value(v, lr.penalty) for v in blocks)]
        lr.write(("lr.objective", lr.worker_id), np.array(part))
        lr.sync()
        total = np.zeros(2)
        for value in lr.read_multi([("lr.objective", k) for k in range(lr.num_workers)]):
            total += value                                # worker order: reproducible
        loss, penalty = total
        return float(loss / self.share.n + self.share.lam * penalty)

    def _share_log_loss(self, target, shared):
        """This share's summed log-loss under the current model."""
        share = self.share
        bias, weights = self.lr.pull_many([(shared, [INTERCEPT]), (target, share.ids)])
        if weights.ndim == 2:
            weights = weights[:, 0]
        z = share.X @ weights + bias[0]
        return float(log_losses(z, share.y).sum())

    def _step(self, target, shared, batch, budget):
        """One mini-batch step: ``(summed log-loss of the batch before the step,
        progress in epochs)``, or ``None`` once all workers made ``budget`` steps."""
        lr, share = self.lr, self.share
        used, X = local_columns(share.X[batch])
        features = share.ids[used]
        rows = Counters.rows(lr.worker_id)
        # the counters and the batch's weights in one round trip
        pulled, weights = lr.pull_many([(shared, rows), (target, features)])
        counters = Counters(*pulled)
        if budget is not None and counters.steps >= budget:
            return None
        progress = counters.steps / self.pace.steps_per_epoch
        if not batch.size:
            return 0.0, progress
        eta = self.schedule.step_size(progress)
        owed = counters.owed + eta * share.lam            # this step's share, too
        if weights.ndim == 2:
            weights = weights[:, 0]
        step = batch_step(X, share.y[batch], weights, counters.intercept, eta,
                          self.pace.example_weight(counters.mine, counters.steps))
        exponents = self.exponents[used] if self.exponents is not None else None
        values, fn = penalised_push(lr.penalty, step.features, eta, share.lam, exponents, owed)
        target.push(features, values, fn=fn)
        shared.push(rows, list(Counters(intercept=step.intercept if lr.fit_intercept else 0.0,
                                        owed=eta * share.lam, steps=1.0, mine=1.0)))
        return step.loss, progress

    def _copy_blocks(self, source, target, from_column=None, into_column=None):
        """Copy this worker's blocks of ``source`` into ``target`` (same block
        layout), between a vector and one column of a 2-column matrix; then sync."""
        lr = self.lr
        mine = lr.my_blocks(target)
        if mine:
            values = lr.read_multi([source.block_key(b) for b in mine])
            out = {}
            for block, value in zip(mine, values):
                if from_column is not None:
                    value = np.ascontiguousarray(value[:, from_column])
                if into_column is not None:
                    full = np.zeros(target.block_shape(block))
                    full[:, into_column] = value
                    value = full
                out[target.block_key(block)] = value
            lr.write_multi(out)
        lr.sync()
