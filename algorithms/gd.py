"""Full-batch proximal gradient descent for ``lr`` (``method: "gd"``),
FISTA-accelerated with adaptive restart unless ``acceleration`` is false, on
the servers' dense ``w``.

Each iteration is one clock of two phases separated by barriers, whatever
the staleness (a full gradient needs every share):

1. every worker pulls the point ``y`` at the features its share touches,
   computes its share's log-loss and gradient, and writes the gradient into
   its own vector ``lr.grad.<worker>`` on the servers, with its sums
   (:class:`ShareSums`) under ``("lr.gd", worker)``;
2. every worker owns the row blocks ``b`` of ``w`` with ``b mod W`` its
   number; for each it reads every worker's gradient block, sums them in
   worker order and writes ``x = prox(y - eta * gradient)`` and the next
   point ``y`` back (:func:`block_update`).

Summing in a fixed order instead of ``add`` on the servers (whose order of
arrival varies) makes GD bit-for-bit reproducible at any staleness. The
step is ``learning_rate`` or ``1 / L``, ``L = (||X||_F^2 + n) / (4 n)`` an
upper bound of the gradient's Lipschitz constant; the penalty is applied
exactly by its proximal map (:func:`prox`). The restart test (O'Donoghue and
Candes, 2015) uses the previous iteration's sums, one iteration late, so it
costs no extra barrier. With ``tol`` GD stops when
``max |x_new - x| <= tol * max |x|`` (intercept included) for
``n_iter_no_change`` iterations in a row.

The plain NumPy parts (the proximal map, a block's update, the intercept
and momentum step, the stopping test) know nothing of MPI; :class:`GD` does
the reads, writes and clocks around them. Its checkpoint state is
:class:`GDProgress` (the intercept, kept by every worker, the momentum,
restart and ``tol`` terms); iteration ``t`` is clock ``t``.
"""

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import numpy as np
from scipy.special import expit

from paracel.algorithms.logistic import log_losses

#: Learning rate ``STEP_SCALE / L`` without ``learning_rate``.
STEP_SCALE = 1.0


def prox(v, threshold, penalty):
    """The proximal map of ``threshold * r`` at ``v``."""
    if penalty == "l2":
        return v / (1.0 + threshold)
    if penalty == "l1":
        return np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)
    return v


class BlockSums(NamedTuple):
    """What phase 2 found on a worker's blocks, for the next phase 1: the
    restart test's dot product ``(y - x_new) . (x_new - x)``, the largest
    weight change and the largest weight."""

    dot: float = 0.0
    change: float = 0.0
    largest: float = 0.0

    def add(self, y, x, new):
        """These sums and those of one more block (``y``, ``x`` -> ``new``)."""
        return BlockSums(self.dot + float((y - new) @ (new - x)),
                         max(self.change, float(np.abs(new - x).max(initial=0.0))),
                         max(self.largest, float(np.abs(new).max(initial=0.0))))


class ShareSums(NamedTuple):
    """One worker's record of phase 1 (``("lr.gd", worker)`` on the
    servers): its share's summed log-loss and residual at ``y``, and the
    :class:`BlockSums` its previous phase 2 found."""

    loss: float
    residual: float
    found: BlockSums

    def pack(self):
        return np.array([self.loss, self.residual, *self.found])

    @staticmethod
    def total(records):
        """Every worker's packed records (worker order) combined: losses,
        residuals and dot products summed, changes and weights maximised."""
        stats = np.array(records)
        dot, change, largest = (stats[:, 2 + k] for k in range(len(BlockSums._fields)))
        return ShareSums(float(stats[:, 0].sum()), float(stats[:, 1].sum()),
                         BlockSums(float(dot.sum()), float(change.max()),
                                   float(largest.max())))


def block_update(y, x, gradients, eta, n, lam, penalty, beta):
    """``(x_new, y_new)`` of one block: the proximal step from ``y`` along
    the workers' ``gradients`` (summed in their order), then the momentum
    step ``beta`` from ``x``."""
    gradient = gradients[0]
    for part in gradients[1:]:                            # worker order: reproducible
        gradient = gradient + part
    new = prox(y - eta * gradient / n, eta * lam, penalty)
    return new, new + beta * (new - x)


@dataclass
class GDProgress:
    """Where this worker's GD is between two clocks (its checkpoint state):
    the intercept at ``x`` and ``y`` (kept by every worker), the momentum and
    restart terms, the stopping count, and the sums its phase 2 found for the
    next phase 1."""

    x_b: float
    y_b: float
    found: BlockSums
    momentum: float = 1.0
    dot_b: float = 0.0
    change_b: float = np.inf
    within: int = 0
    converged: bool = False

    def state(self):
        return {**asdict(self), "found": list(self.found)}

    @classmethod
    def from_state(cls, state):
        return cls(**{**state, "found": BlockSums(*state["found"])})


def intercept_step(progress, totals, eta, n, acceleration, fit_intercept):
    """``(progress, beta)`` after the momentum (restarted if the last step
    went uphill) and the intercept advance, from every worker's
    :class:`ShareSums` ``totals``: the same numbers on every worker."""
    momentum = progress.momentum
    if totals.found.dot + progress.dot_b > 0.0 or not acceleration:
        momentum = 1.0
    following = (1.0 + np.sqrt(1.0 + 4.0 * momentum * momentum)) / 2.0
    beta = (momentum - 1.0) / following if acceleration else 0.0
    x_b, y_b = progress.x_b, progress.y_b
    new_b = y_b - eta * totals.residual / n if fit_intercept else 0.0
    return replace(progress, momentum=following, dot_b=(y_b - new_b) * (new_b - x_b),
                   change_b=abs(new_b - x_b), y_b=new_b + beta * (new_b - x_b),
                   x_b=new_b), beta


def within_tol(progress, totals, tol):
    """Whether the last iteration changed ``x`` (intercept included) by at
    most ``tol`` times its largest value."""
    change = max(totals.found.change, progress.change_b)
    largest = max(totals.found.largest, abs(progress.x_b))
    return change <= tol * largest


class GD:
    """Full-batch proximal gradient for one ``lr`` job.

    Parameters
    ----------
    algorithm : algorithms.lr.LogisticRegression
        The job's algorithm (parameters, store, clocks).
    share : algorithms.lr_data.Share
        This worker's examples, over the columns of ``w`` they use.
    w, intercept : paracel.matrix.DistMatrix
        The model on the servers.
    eta : float
        The step size.
    heldout : callable
        ``heldout(bias)``: the held-out metrics of ``w`` on the servers and
        ``bias`` (collective).
    """

    Progress = GDProgress

    def __init__(self, algorithm, share, w, intercept, eta, heldout):
        self.lr, self.share = algorithm, share
        self.w, self.intercept, self.eta = w, intercept, eta
        self.heldout = heldout
        size, rows = w.shape[0], w.block_rows
        self.point = algorithm.matrix("lr.y", (size,), block_rows=rows)
        self.grads = [algorithm.matrix(f"lr.grad.{k}", (size,), block_rows=rows)
                      for k in range(algorithm.num_workers)]
        self.mine = list(algorithm.my_blocks(w))

    def run(self):
        """Train; returns ``(iterations run, converged)``. Iteration ``t`` is
        clock ``t``: the loop runs on the clock and ``progress_``
        (:class:`GDProgress`), so a resumed job takes the next iteration."""
        lr = self.lr
        if not lr.resumed:
            lr.progress_ = self._start()
        while not lr.progress_.converged and lr.clock < lr.epochs:
            lr.progress_ = self._iteration(lr.progress_)
            lr.iter_commit()
        # a copy of what no longer changes: a resumed finished job may make it again
        if lr.worker_id == 0 and lr.fit_intercept:
            self.intercept.push([0], [lr.progress_.x_b], fn="replace")
        lr.sync()
        return lr.clock, lr.progress_.converged

    def _start(self):
        """The progress before iteration 1 (and ``y = w`` on the servers for
        a warm start)."""
        lr, w, mine = self.lr, self.w, self.mine
        x_b = float(self.intercept.pull([0])[0]) if lr.fit_intercept else 0.0
        found = BlockSums()
        if mine:
            blocks = lr.read_multi([w.block_key(b) for b in mine])
            if lr.init_model is not None:
                lr.write_multi({self.point.block_key(b): v for b, v in zip(mine, blocks)})
            found = BlockSums(0.0, np.inf, max(float(np.abs(v).max(initial=0.0))
                                               for v in blocks))
        lr.sync()
        return GDProgress(x_b=x_b, y_b=x_b, found=found)

    def _iteration(self, progress):
        """One iteration; the progress after it (its clock still to end)."""
        lr, share = self.lr, self.share
        W, me = lr.num_workers, lr.worker_id
        # phase 1: this share's gradient at y
        z = share.X @ self.point.pull(share.ids) + progress.y_b
        residual = expit(z) - share.y
        self.grads[me].push(share.ids, share.X.T @ residual, fn="replace")
        record = ShareSums(log_losses(z, share.y).sum(), residual.sum(), progress.found)
        lr.write(("lr.gd", me), record.pack())
        lr.sync()
        # phase 2: every worker's sums, then the owned blocks' update
        mine = self.mine
        keys = [("lr.gd", k) for k in range(W)]
        keys += [self.grads[k].block_key(b) for b in mine for k in range(W)]
        keys += [self.point.block_key(b) for b in mine] + [self.w.block_key(b) for b in mine]
        values = lr.read_multi(keys)
        totals, values = ShareSums.total(values[:W]), values[W:]
        lr.report(loss=totals.loss / share.n)
        if lr.clock > 0 and lr.tol is not None:           # the previous iteration's change
            within = progress.within + 1 if within_tol(progress, totals, lr.tol) else 0
            progress = replace(progress, within=within,
                               converged=within >= lr.n_iter_no_change)
            if progress.converged:
                return progress
        progress, beta = intercept_step(progress, totals, self.eta, share.n,
                                        lr.acceleration, lr.fit_intercept)
        progress = replace(progress, found=self._blocks(values, beta))
        lr.sync()
        lr.report(**self.heldout(progress.x_b))
        return progress

    def _blocks(self, values, beta):
        """Phase 2 on this worker's blocks (``values``: every worker's
        gradient of each block, then ``y`` and ``x`` of each); returns what
        it found."""
        lr, W, count = self.lr, self.lr.num_workers, len(self.mine)
        grads = values[:count * W]
        ys, xs = values[count * W:count * W + count], values[count * W + count:]
        updates = {}
        found = BlockSums()
        for i, block in enumerate(self.mine):
            new, following = block_update(ys[i], xs[i], grads[i * W:(i + 1) * W], self.eta,
                                          self.share.n, self.share.lam, lr.penalty, beta)
            updates[self.w.block_key(block)] = new
            updates[self.point.block_key(block)] = following
            found = found.add(ys[i], xs[i], new)
        if updates:
            lr.write_multi(updates)
        return found
