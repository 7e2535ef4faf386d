"""L1-penalised least squares (``lasso``).

What it computes
----------------
Weights ``w`` and an (unpenalised) intercept ``b`` that minimise
scikit-learn's ``Lasso`` objective

    P(w, b) = (1 / (2 n)) ||y - X w - b||^2 + alpha ||w||_1

over the ``n`` training rows, to the optimum: weights that are exact zeros
where the optimum has them.

How
---
Accelerated proximal gradient (FISTA, Beck and Teboulle 2009) with adaptive
restart (O'Donoghue and Candes 2015), the gradient summed over the
workers' rows on the servers. Iteration ``t`` is clock ``t``:

1. every worker computes, at the current point ``v = (w, b)``, its share's
   ``X_k^T r_k`` and ``[sum r, sum r^2, r . y]`` (``r = y - X w - b``) and
   writes them under its own key ``("lasso.partial", worker, t % 2)`` (two
   slots, so a fast worker never overwrites what a slow one still reads),
   then ends the clock (``iter_commit``; with a staleness other than 0 also
   a barrier, ``sync``: a full gradient needs every share);
2. every worker reads every partial and sums them in worker order (the
   same bits on every worker and in every run), and takes the same step
   ``x = prox(v - grad / L)`` (soft threshold ``alpha / L`` on ``w``), the
   momentum, and the restart test, so all hold the same model.

``L`` is ``1 / learning_rate`` or, by default, 1.05 times the largest
eigenvalue of ``A^T A / n`` (``A = [X, 1]``), found by 100 power iterations
whose products ``A_k^T A_k u`` are summed over the workers.

Stopping, as scikit-learn: the duality gap at ``v``, computed from the same
sums (no extra round trip), with the intercept at its optimum given ``w``
(``b + mean(r)``), as scikit-learn computes it on centred data. The run
stops when the gap is at most ``tol * ||y - mean(y)||^2 / n`` (``y``
uncentred without an intercept), and returns that ``v``; or after
``max_iter`` iterations (``converged: false``).

Paracel's lasso ran stochastic coordinate descent (Shotgun-style) over the
features doubled into ``+x`` and ``-x`` copies, which reaches the optimum
only approximately; this is exact. The sums exchanged are ``d + 3`` numbers
per worker and iteration, and every worker keeps the whole ``w``: fine for
dense inputs and for sparse ones with up to a few million features.

Checkpoints and resume
----------------------
A worker's state (:class:`Progress`) is the point, the last iterate, the
momentum and whether the partials of its current clock are written but not
yet read: a resumed job reads them from the restored servers and goes on.

Output
------
``model.h5`` (``w``, ``intercept``; attributes as ``ridge``'s), with
``predict`` ``pred_<worker>``; metrics ``objective`` (``P``), ``gap``
(duality gap, same scale), ``rmse``, ``r2``, ``nonzeros``, ``intercept``,
``iterations``, ``converged``, ``learning_rate``, ``examples``,
``features``, with ``test`` ``test_rmse`` and ``test_r2``; each clock
reports ``objective`` and ``gap``.
"""

from dataclasses import asdict, dataclass

import numpy as np

import paracel
from paracel.algorithms import linear

PARTIAL = "lasso.partial"
#: Power iterations for the step size, and the safety factor on their estimate.
POWER_ITERATIONS = 100
SAFETY = 1.05


def soft_threshold(v, threshold):
    """The proximal map of ``threshold * ||.||_1``."""
    return np.sign(v) * np.maximum(np.abs(v) - threshold, 0.0)


def duality_gap(xtr, sums, w, alpha, n, col_sums, y_sums, fit_intercept):
    """Primal value and duality gap of the lasso at ``w`` (intercept at its
    optimum given ``w``), both on the scale of ``P``.

    Parameters
    ----------
    xtr : numpy.ndarray of shape (d,)
        ``X^T r`` summed over every row, ``r = y - X w - b``.
    sums : array of 3 floats
        ``sum r``, ``sum r^2``, ``r . y``.
    w : numpy.ndarray of shape (d,)
    alpha : float
    n : int
    col_sums : numpy.ndarray of shape (d,)
        Column sums of ``X``.
    y_sums : pair of floats
        ``sum y``, ``sum y^2``.
    fit_intercept : bool

    Returns
    -------
    primal, gap, y_norm2 : float
        ``y_norm2`` is ``||y - mean(y)||^2`` (``||y||^2`` without an
        intercept), the scale of scikit-learn's tolerance.
    """
    sum_r, sum_rr, r_y = sums
    sum_y, sum_yy = y_sums
    if fit_intercept:
        mean_r = sum_r / n
        xtr = xtr - mean_r * col_sums
        rr = sum_rr - sum_r * mean_r
        r_y = r_y - mean_r * sum_y
        y_norm2 = sum_yy - sum_y * sum_y / n
    else:
        rr, y_norm2 = sum_rr, sum_yy
    l1 = float(np.abs(w).sum())
    dual_norm = float(np.abs(xtr).max(initial=0.0))
    if dual_norm > alpha * n:
        const = alpha * n / dual_norm
        gap = 0.5 * (rr + rr * const * const)
    else:
        const = 1.0
        gap = rr
    gap += alpha * n * l1 - const * r_y
    return 0.5 * rr / n + alpha * l1, gap / n, y_norm2


@dataclass
class Progress:
    """Where this worker's FISTA is between two clocks (its checkpoint state)."""

    x: np.ndarray            # the last iterate (w, then b)
    v: np.ndarray            # the point the current gradient is taken at
    t: float = 1.0           # the momentum term
    pending: bool = False    # partials of this clock written, not yet read
    converged: bool = False
    objective: float = np.inf
    gap: float = np.inf


class Lasso(paracel.Algorithm):
    """Lasso by FISTA with the gradient summed on the servers, stopped on the
    duality gap."""

    summary = ("lasso (L1 least squares): FISTA with the gradient summed over the workers "
               "on the servers, stopped on the duality gap")
    reads = ('LIBSVM lines "target index:value ..." (format libsvm), or dense lines '
             '"target,f1,...,fk" (format dense; header/columns choose CSV columns, the first '
             'feature column being the target)')
    parameters = {
        **linear.COMMON_PARAMETERS,
        "max_iter": paracel.Param(int, 1000, "most iterations (clocks)", low=1),
        "tol": paracel.Param(float, 1e-4, "stop when the duality gap is at most tol x "
                             "||y - mean(y)||^2 / n (scikit-learn's rule)", low=0.0),
        "learning_rate": paracel.Param(float, None, "step size 1 / L; null: from the largest "
                                       "eigenvalue of A^T A / n (power iterations)", low=0,
                                       closed="neither", nullable=True),
    }

    def expected_clocks(self):
        return self.max_iter

    def solve(self):
        share = linear.load_share(self)
        test = linear.load_test(self, share.d)
        d, p = share.d, share.d + int(self.fit_intercept)
        col_sums = self.sum_over_workers(np.asarray(share.X.sum(axis=0)).ravel()) \
            if d else np.zeros(0)
        y_sums = self.sum_over_workers([share.y.sum(), share.y @ share.y])
        step = self.learning_rate or 1.0 / (SAFETY * self._largest_eigenvalue(share, p))
        if self.worker_id == 0:
            self.log.info("lasso: %d examples x %d features, alpha=%g, step %.4g", share.n, d,
                          self.alpha, step)
        if not self.resumed:
            start = np.zeros(p)
            if self.fit_intercept:
                start[-1] = y_sums[0] / share.n
            self.progress_ = Progress(x=start, v=start.copy())
        progress = self.progress_
        while True:
            if progress.pending:
                self._step(progress, share, step, col_sums, y_sums)
            if progress.converged or self.clock >= self.max_iter:
                break
            self._write_partial(progress.v, share)
            progress.pending = True
            self.iter_commit()
        w, b = progress.x[:d], float(progress.x[d]) if self.fit_intercept else 0.0
        metrics = {"objective": progress.objective, "gap": progress.gap,
                   "iterations": self.clock, "converged": progress.converged,
                   "learning_rate": float(step)}
        return linear.finish(self, share, test, w, b, metrics, method="fista", tol=self.tol)

    @classmethod
    def apply_model(cls, worker, model):
        """Predict the target of new rows with a saved model (``predict``;
        see :func:`linear.apply_model`)."""
        return linear.apply_model(worker, model)

    def state(self):
        """The loop's progress (:class:`Progress`)."""
        return asdict(self.progress_)

    def restore(self, state):
        """Take back :meth:`state`."""
        self.progress_ = Progress(**state)

    def _largest_eigenvalue(self, share, p):
        """The largest eigenvalue of ``A^T A / n`` by power iterations
        (collective; the same on every worker)."""
        A = linear.design(share.X, self.fit_intercept)
        u = np.ones(p) / np.sqrt(max(p, 1))
        value = 0.0
        for _ in range(POWER_ITERATIONS):
            product = self.sum_over_workers(np.asarray(A.T @ (A @ u)).ravel()) / share.n
            value = float(u @ product)
            norm = np.linalg.norm(product)
            if norm == 0:
                break
            u = product / norm
        return max(value, np.finfo(float).tiny)

    def _write_partial(self, v, share):
        d = share.d
        b = v[d] if self.fit_intercept else 0.0
        xtr, sums = linear.residual_sums(share.X, share.y, v[:d], b)
        linear.write_partial(self, PARTIAL, np.concatenate([xtr, sums]))

    def _step(self, progress, share, step, col_sums, y_sums):
        """Sum the partials of this clock in worker order; test the gap at
        ``v``; take the proximal step, the momentum and the restart test."""
        d = share.d
        total = linear.sum_partials(self, PARTIAL)
        xtr, sums = total[:d], total[d:]
        v = progress.v
        primal, gap, y_norm2 = duality_gap(xtr, sums, v[:d], self.alpha, share.n, col_sums,
                                           y_sums, self.fit_intercept)
        progress.objective, progress.gap, progress.pending = float(primal), float(gap), False
        self.report(objective=progress.objective, gap=progress.gap)
        if gap <= self.tol * y_norm2 / share.n:
            progress.x = v.copy()
            if self.fit_intercept:
                progress.x[d] += sums[0] / share.n
            progress.converged = True
            return
        gradient = -np.concatenate([xtr, sums[:1]] if self.fit_intercept else [xtr]) / share.n
        new = v - step * gradient
        new[:d] = soft_threshold(new[:d], self.alpha * step)
        t = progress.t
        if (v - new) @ (new - progress.x) > 0:
            t = 1.0
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
        progress.v = new + (t - 1.0) / t_next * (new - progress.x)
        progress.x, progress.t = new, t_next
