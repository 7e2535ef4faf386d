"""Ridge regression (``ridge``).

What it computes
----------------
Weights ``w`` and an intercept ``b`` that minimise scikit-learn's ``Ridge``
objective

    F(w, b) = ||y - X w - b||^2 + alpha ||w||^2

over the ``n`` training rows. The intercept is not penalised unless
``penalize_intercept`` (Douban's Paracel penalised it: its ridge treated the
intercept as one more weight; ``penalize_intercept: true`` gives that
objective, ``+ alpha b^2``).

Methods
-------
``method: "exact"`` (the default) solves the normal equations. With
``A = [X, 1]`` (``X`` alone without an intercept) the minimiser solves
``(A^T A + alpha D) theta = A^T y``, ``D`` the identity with a 0 at the
intercept. ``A^T A`` and ``A^T y`` are sums over the rows, so every worker
computes its share's blocks and pushes them with ``add`` into two matrices
on the servers (``ridge.gram``, ``(p, p)``, and ``ridge.rhs``, ``(p,)``,
``p = d + 1``), cut in row blocks over the servers; the pushes make clock 1.
Then every worker reads the summed system back and solves it (symmetric
LDL^T solve, least squares if singular), so all hold the same model.
The work over the data, ``O(n d^2)``, is spread over the workers; the solve
is ``O(d^3)`` and the system ``d^2`` numbers, which is fine for the feature
counts of dense inputs: a system beyond ``MAX_EXACT_FEATURES`` is refused
(use ``cg``).

``method: "cg"`` solves the same system by conjugate gradients without
forming it, for many (sparse) features: the product ``(A^T A + alpha D) p``
is ``sum_k A_k^T (A_k p) + alpha D p``, and every iteration (a clock) each
worker writes its share's ``A_k^T (A_k p)`` under its own key
(:func:`linear.write_partial`), ends the clock and sums every worker's in
worker order (:func:`linear.sum_partials`); all workers then take the same
CG step, so the run is bit-for-bit reproducible. ``A^T y`` is summed once
before. It stops when ``||A^T y - M theta|| <= tol ||A^T y||`` or after
``max_iter`` iterations. In exact arithmetic CG ends within ``p`` steps;
ill-conditioned data (weak ``alpha``, correlated features) take more.

``method: "ipm"`` is Paracel's iterative parameter mixing: the model
``theta = (w, b)`` lives on the servers (``ridge.w``); every round each
worker reads it, runs ``local_epochs`` passes of mini-batch SGD over its own
share on the objective ``F / n`` (the intercept starts at the mean target),
and pushes ``(theta_local - theta) * n_k / n`` with ``add``, so that after
all workers pushed the servers hold the share-weighted average of the local
models. A round is a clock: with ``staleness`` ``s`` a worker may start
round ``t`` from a model that lacks up to ``s`` rounds of its peers'
pushes. The step size of round ``t`` is ``eta0 / (1 + lr_decay t)``,
``eta0`` being ``learning_rate`` or ``0.5 / mean_i(||x_i||^2 + 1)``. Mixing
SGD models converges only near the optimum (the local models drift towards
their shares' optima between mixings): use it for its low communication
(one model exchange per round), not for the last digits.

Checkpoints and resume
----------------------
``exact``: clock 1 is the pushes; a resumed job finds the sums on the
servers and solves again (nothing to keep on the worker). ``ipm``: a
worker's state is its generator's state (the shuffles to come); the model
is on the servers, a round is a clock. ``cg``: the iterate, residual,
direction and whether the clock's partials still wait to be read
(:class:`CGProgress`).

Output
------
``model.h5`` (``w``, ``intercept``; attributes ``format``, ``n_features``,
``fit_intercept``, ``penalize_intercept``, ``alpha``, ``method``, and
``zero_based`` for LIBSVM input), with ``predict`` ``pred_<worker>``
(``row\\ttarget\\tprediction``); metrics ``objective`` (``F``), ``rmse``,
``r2``, ``nonzeros``, ``intercept``, ``examples``, ``features``, ``rounds``
(clocks), for ``cg`` ``converged``, and with ``test`` ``test_rmse``,
``test_r2``; each clock ``ipm`` reports ``round`` and ``step``, ``cg`` the
``residual``'s norm. See :mod:`linear` for the input formats.
"""

from dataclasses import asdict, dataclass

import numpy as np

import paracel
from paracel.algorithms import linear
from paracel.errors import ConfigError

#: The largest system (features plus intercept) ``exact`` forms: 4096^2
#: float64 are 128 MiB on the servers and on every worker.
MAX_EXACT_FEATURES = 4096


def objective(sse, w, b, alpha, penalize_intercept):
    """``F`` from the summed squared residual: ``sse + alpha ||w||^2`` (and
    ``+ alpha b^2`` when the intercept is penalised)."""
    return float(sse + alpha * (w @ w + (b * b if penalize_intercept else 0.0)))


def local_sgd(X, y, theta, eta, alpha_n, epochs, batch_size, rng, fit_intercept,
              penalize_intercept):
    """``epochs`` passes of mini-batch SGD over one share from ``theta``.

    The step of a batch ``B`` is ``eta * (X_B^T r_B / |B| - alpha_n w)``
    (and ``eta * mean(r_B)`` for the intercept, less ``eta alpha_n b`` when
    penalised), ``r = y - X w - b``: the gradient of half of
    ``mean_i r_i^2 + alpha_n ||w||^2``, ``alpha_n = alpha / n``.

    Returns
    -------
    numpy.ndarray
        The local ``theta`` (``w``, then ``b`` with an intercept).
    """
    theta = np.array(theta, dtype=np.float64)
    d = X.shape[1]
    w = theta[:d]
    for _ in range(epochs):
        order = rng.permutation(y.size)
        for start in range(0, y.size, batch_size):
            rows = order[start:start + batch_size]
            b = theta[d] if fit_intercept else 0.0
            r = y[rows] - X[rows] @ w - b
            step = np.asarray(X[rows].T @ r).ravel() / rows.size - alpha_n * w
            w += eta * step
            if fit_intercept:
                theta[d] += eta * (r.mean() - (alpha_n * b if penalize_intercept else 0.0))
    return theta


#: ``max_iter`` when null, by method.
DEFAULT_MAX_ITER = {"exact": 1, "ipm": 50, "cg": 1000}
#: The key of ``cg``'s per-worker partial products.
PRODUCT = "ridge.product"


@dataclass
class CGProgress:
    """Where this worker's conjugate gradients are between two clocks."""

    theta: np.ndarray        # the iterate (w, then b)
    residual: np.ndarray     # A^T y - M theta
    direction: np.ndarray    # p
    norm2: float             # ||residual||^2
    pending: bool = False    # partials of this clock written, not yet read
    converged: bool = False


def cg_step(progress, product, limit):
    """One conjugate-gradient step, given ``product = M p`` for the current
    direction ``p``; marks the progress converged once the residual's norm
    is at most ``limit``."""
    curvature = float(progress.direction @ product)
    progress.pending = False
    if curvature <= 0:
        progress.converged = True        # M p = 0: nothing left to move along
        return
    step = progress.norm2 / curvature
    progress.theta = progress.theta + step * progress.direction
    progress.residual = progress.residual - step * product
    norm2 = float(progress.residual @ progress.residual)
    progress.direction = progress.residual + (norm2 / progress.norm2) * progress.direction
    progress.norm2 = norm2
    progress.converged = bool(np.sqrt(norm2) <= limit)


class Ridge(paracel.Algorithm):
    """Ridge regression: exact normal equations summed on the servers,
    conjugate gradients, or iterative parameter mixing of local SGD."""

    summary = ("ridge regression: normal equations summed on the servers (exact), conjugate "
               "gradients (cg) or iterative parameter mixing of local SGD (ipm)")
    reads = ('LIBSVM lines "target index:value ..." (format libsvm), or dense lines '
             '"target,f1,...,fk" (format dense; header/columns choose CSV columns, the first '
             'feature column being the target)')
    parameters = {
        **linear.COMMON_PARAMETERS,
        "method": paracel.Param(str, "exact", "exact: solve the normal equations summed on "
                                "the servers; cg: conjugate gradients, products summed on the "
                                "servers (many features); ipm: iterative parameter mixing of "
                                "local SGD (Paracel's)", choices=("exact", "cg", "ipm")),
        "penalize_intercept": paracel.Param(bool, False, "add alpha b^2 to the objective "
                                            "(Paracel's ridge did)"),
        "max_iter": paracel.Param(int, None, "ipm: rounds (clocks) of local SGD and mixing; "
                                  "cg: most iterations (clocks); null: ipm 50, cg 1000", low=1,
                                  nullable=True),
        "tol": paracel.Param(float, 1e-10, "cg: stop when the residual of the normal "
                             "equations is at most tol x ||A^T y||", low=0.0),
        "local_epochs": paracel.Param(int, 1, "ipm: passes over the worker's share per round",
                                      low=1),
        "batch_size": paracel.Param(int, 16, "ipm: rows per SGD step", low=1),
        "learning_rate": paracel.Param(float, None, "ipm: step size eta0; null: "
                                       "0.5 / mean(||x||^2 + 1)", low=0, closed="neither",
                                       nullable=True),
        "lr_decay": paracel.Param(float, 0.05, "ipm: step eta0 / (1 + lr_decay t) in round t",
                                  low=0.0),
    }

    def expected_clocks(self):
        return 1 if self.method == "exact" else self._max_iter()

    def _max_iter(self):
        """``max_iter``, or its default for the method."""
        return self.max_iter or DEFAULT_MAX_ITER[self.method]

    def solve(self):
        share = linear.load_share(self)
        test = linear.load_test(self, share.d)
        p = share.d + int(self.fit_intercept)
        if self.worker_id == 0:
            self.log.info("ridge: %d examples x %d features, %s, alpha=%g", share.n, share.d,
                          self.method, self.alpha)
        if self.method == "exact":
            if p > MAX_EXACT_FEATURES:
                raise ConfigError(f"params.method: exact forms a {p} x {p} system (more than "
                                  f"{MAX_EXACT_FEATURES}); use method cg for this many "
                                  "features")
            w, b, rounds = *self._exact(share, p), 1
        elif self.method == "cg":
            w, b, rounds = self._cg(share, p)
        else:
            w, b, rounds = *self._ipm(share, p), self._max_iter()
        sse = linear.scores(self, share.X, share.y, w, b)["rmse"] ** 2 * share.n
        metrics = {"objective": objective(sse, w, b, self.alpha, self.penalize_intercept),
                   "rounds": rounds}
        if self.method == "cg":
            metrics["converged"] = self.progress_.converged
        return linear.finish(self, share, test, w, b, metrics, method=self.method,
                             penalize_intercept=self.penalize_intercept)

    @classmethod
    def apply_model(cls, worker, model):
        """Predict the target of new rows with a saved model (``predict``;
        see :func:`linear.apply_model`)."""
        return linear.apply_model(worker, model)

    def state(self):
        """``ipm``: the generator's state (the model is on the servers);
        ``cg``: :class:`CGProgress`; ``exact``: nothing."""
        if self.method == "ipm":
            return {"rng": self.rng_.bit_generator.state}
        return asdict(self.progress_) if self.method == "cg" else {}

    def restore(self, state):
        """Take back :meth:`state`."""
        if self.method == "ipm":
            self.rng_ = np.random.default_rng()
            self.rng_.bit_generator.state = state["rng"]
        elif self.method == "cg":
            self.progress_ = CGProgress(**state)

    def _exact(self, share, p):
        """Push this share's normal equations (clock 1), read the sums, solve."""
        gram = self.matrix("ridge.gram", (p, p))
        rhs = self.matrix("ridge.rhs", (p,))
        if self.clock == 0:
            G, r = linear.augmented_gram(share.X, share.y, self.fit_intercept)
            gram.push(np.arange(p), G, "add")
            rhs.push(np.arange(p), r, "add")
            self.iter_commit()
        self.sync()
        return linear.ridge_solve(gram.to_numpy(), rhs.to_numpy(), self.alpha,
                                  self.fit_intercept, self.penalize_intercept)

    def _cg(self, share, p):
        """Conjugate gradients on the normal equations, the products summed
        over the workers on the servers; returns ``(w, b, iterations)``."""
        A = linear.design(share.X, self.fit_intercept)
        penalty = linear.penalty_diagonal(p, self.alpha, self.fit_intercept, self.penalize_intercept)
        rhs = self.sum_over_workers(np.asarray(A.T @ share.y).ravel())
        limit = self.tol * float(np.linalg.norm(rhs))
        if not self.resumed:
            norm2 = float(rhs @ rhs)
            self.progress_ = CGProgress(theta=np.zeros(p), residual=rhs.copy(),
                                        direction=rhs.copy(), norm2=norm2,
                                        converged=bool(np.sqrt(norm2) <= limit))
        progress = self.progress_
        while True:
            if progress.pending:
                product = linear.sum_partials(self, PRODUCT) + penalty * progress.direction
                cg_step(progress, product, limit)
                self.report(residual=float(np.sqrt(progress.norm2)))
            if progress.converged or self.clock >= self._max_iter():
                break
            linear.write_partial(self, PRODUCT, np.asarray(A.T @ (A @ progress.direction)).ravel())
            progress.pending = True
            self.iter_commit()
        theta = progress.theta
        w, b = (theta[:-1], float(theta[-1])) if self.fit_intercept else (theta, 0.0)
        return w, b, self.clock

    def _ipm(self, share, p):
        """Rounds of local SGD from the servers' model, mixed there by ``add``."""
        count, sum_y, norms = self.sum_over_workers(
            [share.y.size, share.y.sum(), linear.squared_norm(share.X)])
        eta0 = self.learning_rate or 0.5 / (norms / count + 1.0)
        model = self.matrix("ridge.w", (p,))
        if not self.resumed:
            self.rng_ = self.rng()
            if self.fit_intercept and self.worker_id == 0:
                model.push([p - 1], [sum_y / count], "replace")
            self.sync()
        weight = share.y.size / share.n
        while self.clock < self._max_iter():
            theta = model.to_numpy()
            eta = eta0 / (1.0 + self.lr_decay * self.clock)
            local = local_sgd(share.X, share.y, theta, eta, self.alpha / share.n,
                              self.local_epochs, self.batch_size, self.rng_,
                              self.fit_intercept, self.penalize_intercept)
            model.push(np.arange(p), (local - theta) * weight, "add")
            self.report(round=self.clock + 1, step=eta)
            self.iter_commit()
        self.sync()
        theta = model.to_numpy()
        return (theta[:-1], float(theta[-1])) if self.fit_intercept else (theta, 0.0)
