"""Binary logistic regression on sparse LIBSVM input (``lr``).

What it computes
----------------
Weights ``w`` (one per feature) and an intercept ``b`` that minimise

    F(w, b) = (1/n) * sum_i log(1 + exp(-y_i * (x_i . w + b)))  +  r(w) / (C * n)

over the ``n`` training examples, ``y_i`` in {-1, +1}, with ``r(w) = ||w||^2 / 2``
(``penalty: "l2"``), ``||w||_1`` (``"l1"``) or 0 (``"none"``); the intercept is
not penalised. This is scikit-learn's ``LogisticRegression(penalty=..., C=C)``
objective, ``C * sum_i loss_i + r(w)``, divided by ``C * n``: the same
minimiser, so ``C`` means what it means there. Labels may be -1/+1 or 0/1
(the predictions use the input's convention).

How it uses the parameter server, and why
-----------------------------------------
Each worker loads a contiguous share of the input (:mod:`lr_data`); the
model lives on the servers, so no worker needs more than the weights of the
features its examples use. One module per method, and one table of them
(:data:`lr_train.METHODS`):

* ``lbfgs`` (:mod:`lbfgs`): L-BFGS, OWL-QN for l1. Every vector (weights,
  gradient, direction, correction pairs) is a column of a row table keyed
  by feature id, so only features that occur take memory; the servers do
  the vector operations and the workers exchange scalars. All collective,
  bit-for-bit reproducible.
* ``ftrl`` (:mod:`ftrl`): FTRL-Proximal under SSP; each feature's state
  lives on the servers and a row function folds each mini-batch's gradient
  into it, so concurrent workers never overwrite each other.
* ``sgd`` (:mod:`sgd`): mini-batch SGD under SSP on a dense ``w``. A batch
  pulls only the weights it touches and pushes a step for just those; the
  penalty is applied on the server, atomically with the step, by a row
  update function. The step-size schedule follows a step counter on the
  servers (the steps of all workers together), each of the ``W`` workers
  steps ``eta / W`` (the ``W`` steps of a clock are computed from about the
  same model), and each step is weighted by the worker's share of the data
  over its share of the steps, so a faster worker does not tilt the model
  towards its rows. Not bit-reproducible with more than one worker.
* ``downpour`` (:mod:`downpour`): DistBelief's Downpour SGD: local copies
  trained by mini-batch SGD, fetched every ``n_fetch`` and pushed (the
  update since the last push) every ``n_push`` steps, one clock a step.
  ``ipm`` (:mod:`ipm`): iterative parameter mixing, a local SGD epoch per
  worker, the workers' models mixed on the servers in worker order each
  epoch (one clock). Both keep the model in a row table keyed by feature id.
* ``gd`` (:mod:`gd`): full-batch proximal gradient with FISTA momentum. Each
  worker writes its share's gradient into its own vector on the servers and
  updates the row blocks of ``w`` it owns, summing the workers' gradients in
  worker order: bit-for-bit reproducible, synchronous by nature.

Sums over workers (losses, counts, objectives) are always added in worker
order, so they do not depend on the order messages arrive in. Design notes
and the measurements behind these choices are in ``docs/lr.md``; the
parameters in ``--describe lr`` and the README's ``lr`` section.

``epochs: 0`` trains nothing: it applies ``init_model`` (a model keyed by
id, or a dense ``w``) to the input -- predictions, scores, the held-out
scores of ``test``. With ``test`` every worker scores its share of that
file (``test_log_loss``, ``test_auc`` exact on worker 0, ``test_accuracy``).

Checkpoints and resume
----------------------
A worker's state (:meth:`LogisticRegression.state`) is its method's
progress dataclass (``SGDProgress``, ``GDProgress``, ``lbfgs.Progress``,
``ftrl.Progress``, ``downpour.Progress``, ``ipm.Progress``): all it carries
from one clock to the next; the model, the counters and the partial sums
are on the servers. What a fresh job writes before clock 1 a resumed one
finds on the servers; the SGD methods keep their generator's state and draw
the same shuffles again. After the loop the trained values are copied into
``w`` and ``intercept`` with ``replace``, so a resumed finished job writes
the same output. At staleness 0 a resumed run gives bitwise the
uninterrupted one's results (SGD, FTRL and Downpour: with one worker). SGD
without ``tol`` takes checkpoints at staleness 0 only.

Output
------
``model.h5``: sgd and gd the dense ``w`` and ``intercept``; lbfgs and ftrl
``ids`` (uint64, increasing, 0-based), their ``w`` and ``intercept`` and the
attribute ``zero_based``; sgd and gd also ``w_<worker>`` (``column\\tweight``
for the worker's blocks); with ``predict`` ``pred_<worker>`` (``row\\tlabel\\t
probability``); ``metrics.json`` as the README lists.
"""

from typing import NamedTuple

import numpy as np
from scipy.special import expit

import paracel
from paracel.algorithms import ftrl
from paracel.algorithms.gd import GDProgress, prox  # noqa: F401 (public names)
from paracel.algorithms.logistic import auc, log_losses, penalty_value
from paracel.algorithms.lr_data import (BLOCKS_PER_RANK, MAX_BLOCK_ROWS,  # noqa: F401
                                        block_rows, compact, init_weights, load_dense,
                                        load_sparse)
from paracel.algorithms.lr_train import (METHODS, dense_weights,  # noqa: F401
                                         table_weights)
from paracel.algorithms.sgd import STEP_RATIO, SGDProgress, sgd_l1, sgd_l2  # noqa: F401
from paracel.errors import ConfigError, DataError

#: FTRL's alpha (without ``learning_rate``) and beta.
FTRL_ALPHA = ftrl.ALPHA
FTRL_BETA = ftrl.BETA


class Scores(NamedTuple):
    """A model's scores on examples: count, summed log-loss, right answers."""

    count: float
    loss: float
    right: float

    @classmethod
    def of(cls, z, y):
        return cls(z.size, log_losses(z, y).sum(), np.count_nonzero((z > 0) == (y > 0)))

    def metrics(self, prefix=""):
        """``{prefix}log_loss`` and ``{prefix}accuracy``."""
        count = max(self.count, 1)
        return {f"{prefix}log_loss": float(self.loss / count),
                f"{prefix}accuracy": float(self.right / count)}


class ModelSums(NamedTuple):
    """A dense model's final sums (each worker: its share, its blocks of ``w``)."""

    loss: float
    right: float
    penalty: float
    nonzeros: float


class LogisticRegression(paracel.Algorithm):
    """Binary logistic regression, L2/L1/no penalty, by SGD under SSP or by GD."""

    summary = ("binary logistic regression (L2/L1) on LIBSVM data: L-BFGS/OWL-QN, FTRL, "
               "Downpour, parameter mixing, SGD under SSP or accelerated GD")
    reads = ('LIBSVM lines: "label index:value ..." (labels +1/-1 or 1/0; indices 0- or 1-based, '
             'detected; ids up to 2**64-2 for the id-keyed methods)')
    parameters = {
        "method": paracel.Param(str, "lbfgs", "lbfgs: L-BFGS (l2, none) or OWL-QN (l1); ftrl: "
                                "FTRL-Proximal under SSP; downpour: Downpour SGD (local "
                                "copies, fetch every n_fetch and push every n_push steps); "
                                "ipm: iterative parameter mixing (a local SGD epoch per "
                                "worker, the models averaged) (these four with the model in a "
                                "row table keyed by feature id); sgd: mini-batch SGD under "
                                "SSP; gd: full-batch proximal gradient descent",
                                choices=("lbfgs", "ftrl", "downpour", "ipm", "sgd", "gd")),
        "penalty": paracel.Param(str, "l2", "the penalty r(w) on the weights (not the "
                                 "intercept)", choices=("l2", "l1", "none")),
        "C": paracel.Param(float, 1.0, "inverse penalty strength, as scikit-learn's: "
                           "minimise mean log-loss + r(w) / (C n)", low=0, closed="neither"),
        "fit_intercept": paracel.Param(bool, True, "learn an (unpenalised) intercept"),
        "epochs": paracel.Param(int, 100, "most passes over the data (gd, lbfgs: "
                                "iterations); 0: no training, apply init_model to the input "
                                "(predictions, scores)", low=0),
        "batch_size": paracel.Param(int, None, "sgd, ftrl, downpour, ipm: examples per "
                                    "mini-batch (per worker and step); null: ftrl 1024, the "
                                    "others 32", low=1, nullable=True),
        "learning_rate": paracel.Param(float, None, "step size eta0 (ftrl: alpha); null: "
                                       "sgd, downpour, ipm 10 / L, gd 1 / L (L from the "
                                       "data, see the docs), ftrl 0.5", low=0,
                                       closed="neither", nullable=True),
        "lr_schedule": paracel.Param(str, "inverse", "sgd, downpour, ipm: eta0, eta0 / (1 + "
                                     "lr_decay e) or eta0 / sqrt(1 + lr_decay e) at epoch e",
                                     choices=("constant", "inverse", "inverse_sqrt")),
        "lr_decay": paracel.Param(float, 0.05, "sgd, downpour, ipm: decay rate of the "
                                  "schedule, per epoch", low=0.0),
        "n_fetch": paracel.Param(int, 5, "downpour: a worker fetches the weights every this "
                                 "many of its steps", low=1),
        "n_push": paracel.Param(int, 5, "downpour: a worker pushes its update made since its "
                                "last push every this many of its steps", low=1),
        "acceleration": paracel.Param(bool, True, "gd: FISTA momentum with adaptive restart"),
        "tol": paracel.Param(float, 1e-4, "stopping tolerance (lbfgs: max |gradient|, "
                             "scikit-learn's; sgd: relative improvement of the objective "
                             "since the step size was twice as large; gd: relative weight "
                             "change; ftrl: unused); null: run all epochs", low=0.0,
                             nullable=True),
        "n_iter_no_change": paracel.Param(int, 5, "epochs (gd: iterations) within tol "
                                          "before stopping", low=1),
        "n_features": paracel.Param(int, None, "number of features; null: the largest "
                                    "index in the input", low=1, nullable=True),
        "zero_based": paracel.Param((bool, str), "auto", "whether feature indices start at "
                                    "0 ('auto': only if some index is 0)",
                                    choices=(True, False, "auto")),
        "init_model": paracel.Param(str, None, "a model.h5 of an earlier run to start from "
                                    "(warm start; relative to the job file)", nullable=True,
                                    path=True),
        "trace_every": paracel.Param(int, 0, "sgd: every this many clocks each worker "
                                     "traces its share's log-loss under the current model "
                                     "(share_loss in worker_history; 0: never)", low=0),
        "predict": paracel.Param(bool, False, "write pred_<worker> files (row, label, "
                                 "probability)"),
        "memory": paracel.Param(int, 10, "lbfgs: correction pairs kept (scikit-learn's "
                                "lbfgs keeps 10)", low=1),
        "admit": paracel.Param(int, 0, "lbfgs: a feature gets a weight only if it occurs in "
                               "at least this many training examples (0, 1: every "
                               "feature)", low=0),
        "test": paracel.Param(str, None, "a held-out LIBSVM file (relative to the job file): "
                              "its log-loss, AUC and accuracy after every iteration (lbfgs, "
                              "gd) or pass (ftrl, ipm), and at the end (all)", nullable=True,
                              path=True),
    }

    def __init__(self, **params):
        super().__init__(**params)
        if self.epochs == 0 and self.init_model is None:
            raise ConfigError("params.epochs: 0 applies init_model to the input, but "
                              "init_model is not set")
        if self.admit > 1 and self.method not in ("lbfgs", "ftrl"):
            raise ConfigError(f"params.admit: only lbfgs and ftrl keep their model by "
                              f"feature id; method {self.method!r} cannot admit features")

    def check_job(self, job):
        """Refuse checkpoints for SGD without ``tol`` at a staleness other
        than 0: each worker then stops at its own clock (once all of them
        together made the budget of steps), and a checkpoint needs every
        worker at the same clock."""
        if (job.checkpoint is not None and self.method == "sgd" and self.tol is None
                and job.staleness != 0):
            raise ConfigError("checkpoint: lr's SGD without tol stops each worker at its own "
                              "clock unless staleness is 0, and a checkpoint needs every "
                              "worker at the same clock; set staleness 0 or params.tol")

    # -- the run -----------------------------------------------------------

    def solve(self):
        if self.epochs == 0:
            return self._apply()
        return METHODS[self.method].train(self)

    def state(self):
        """The loop's progress (the method's ``Progress``): all this worker
        carries from one clock to the next. The model, the counters and the
        partial sums are on the servers."""
        return self.progress_.state()

    def restore(self, state):
        """Take back :meth:`state` (SGD and FTRL draw the current pass's
        shuffle again from the generator state it holds)."""
        self.progress_ = METHODS[self.method].progress.from_state(state)

    # -- sgd, gd: the dense vector w -----------------------------------------

    def dense_model(self, share, n_features):
        """The weight vector ``w`` and the intercept on the servers (zeros, or
        the model of ``init_model``)."""
        rows = block_rows(self, n_features)
        w = self.matrix("w", (n_features,), block_rows=rows)
        intercept = self.matrix("intercept", (1,))
        if self.init_model is None:
            return w, intercept
        from paracel.io import h5

        shape, _, _ = h5.matrix_info(self.init_model, "w")
        if shape != (n_features,):
            raise DataError(f"{self.init_model}: its w has shape {shape}, the input "
                            f"has {n_features} features")
        if self.resumed:                              # already loaded, and trained since
            return w, intercept
        w = self.load_model(self.init_model, "w", block_rows=rows, dtype=np.float64)
        if self.fit_intercept:
            try:
                h5.matrix_info(self.init_model, "intercept")
            except DataError:
                pass
            else:
                intercept = self.load_model(self.init_model, "intercept", dtype=np.float64)
        return w, intercept

    def load_dense_share(self, step_scale):
        """Load this worker's share for a dense method; ``(share, w,
        intercept, eta0)``."""
        share, n_features, eta0 = load_dense(self, step_scale)
        if self.worker_id == 0:
            self.log.info("lr: %d examples, %d features, %s with %s penalty, C=%g, eta0=%.4g",
                          share.n, n_features, self.method, self.penalty, self.C, eta0)
        return (share, *self.dense_model(share, n_features), eta0)

    def dense_finish(self, share, w, intercept, eta0, epochs, converged):
        """Final metrics on the training data; model, weights and predictions."""
        weights = w.pull(share.ids)
        bias = float(intercept.pull([0])[0]) if self.fit_intercept else 0.0
        z = share.X @ weights + bias
        mine = self.my_blocks(w)
        blocks = self.read_multi([w.block_key(b) for b in mine]) if mine else []
        part = ModelSums(float(log_losses(z, share.y).sum()),
                         float(((z > 0) == (share.y > 0)).sum()),
                         sum(penalty_value(v, self.penalty) for v in blocks),
                         float(sum(np.count_nonzero(v) for v in blocks)))
        totals = ModelSums(*self.sum_over_workers(list(part)))
        log_loss = totals.loss / share.n
        self.save_model("model.h5", [w, intercept], method=self.method,
                        penalty=self.penalty, C=self.C, fit_intercept=self.fit_intercept,
                        n_features=w.shape[0], examples=share.n, zero_based=self.zero_based_)
        self.dump("w_", [(start + i, repr(float(v)))
                         for b, value in zip(mine, blocks)
                         for start in [w.block_range(b)[0]]
                         for i, v in enumerate(value)])
        if self.predict:
            self.write_predictions(share, z)
        return {"log_loss": float(log_loss),
                "accuracy": float(totals.right / share.n),
                "objective": float(log_loss + share.lam * totals.penalty),
                "nonzeros": int(totals.nonzeros),
                "intercept": bias,
                "epochs": int(epochs),
                "converged": bool(converged),
                "examples": share.n,
                "features": w.shape[0],
                "learning_rate": float(eta0),
                **self.heldout(share, dense_weights(w), bias)}

    # -- lbfgs, ftrl: a row table keyed by feature id -------------------------

    def load_sparse_share(self, admit=True, both=True):
        """Load this worker's share over the feature ids it uses."""
        share = load_sparse(self, admit, both)
        if self.worker_id == 0:
            self.log.info("lr: %d examples, %s with %s penalty, C=%g", share.n, self.method,
                          self.penalty, self.C)
        return share

    def sparse_finish(self, share, table, column, fit):
        """Final metrics on the training data; ``model.h5`` with the
        features' ids and weights (every row but the intercept's); predictions."""
        weights_of = table_weights(table, column)
        z = share.X @ weights_of(share.ids) + fit.bias
        scores = self.total_scores(z, share.y)
        log_loss = scores.loss / share.n
        model = []
        if self.worker_id == 0:
            ids, weights = table.items(columns=[column])
            order = np.argsort(ids)
            order = order[ids[order] != ftrl.INTERCEPT]
            model = [("ids", ids[order]), ("w", weights[order, 0]),
                     ("intercept", np.array([fit.bias]))]
        self.save_model("model.h5", model, method=self.method, penalty=self.penalty, C=self.C,
                        fit_intercept=self.fit_intercept, examples=share.n,
                        zero_based=self.zero_based_)
        if self.predict:
            self.write_predictions(share, z)
        metrics = {"log_loss": float(log_loss), "accuracy": float(scores.right / share.n),
                   "objective": float(log_loss + share.lam * fit.penalty),
                   "nonzeros": int(fit.nonzeros), "intercept": float(fit.bias),
                   "epochs": int(fit.epochs), "converged": bool(fit.converged),
                   "examples": share.n, "features": int(fit.features)}
        if share.features_seen is not None:
            metrics["features_seen"] = int(share.features_seen)
        return {**metrics, **self.heldout(share, weights_of, fit.bias)}

    # -- every method ----------------------------------------------------------

    @classmethod
    def apply_model(cls, worker, model):
        """Score ``worker``'s share of LIBSVM rows with a saved model
        (``predict``): what ``epochs: 0`` with ``init_model`` does, with the
        model's index base; ``pred_<worker>`` lines ``row\tlabel\tprobability``."""
        zero_based = bool(model.attrs.get("zero_based", model.params.get("zero_based") is True))
        applier = cls(**{**model.params, "epochs": 0, "init_model": model.path, "predict": True,
                         "zero_based": zero_based, "test": None})
        return applier.join_run(worker)._apply()

    def _apply(self):
        """``epochs: 0``: score the input with ``init_model`` (any method; no
        training, no model written): predictions, log-loss and accuracy
        against the input's labels (meaningless if they are placeholders),
        held-out scores of ``test``."""
        share = self.load_sparse_share(admit=False, both=False)
        weights, bias = init_weights(self.init_model, share.ids, self.fit_intercept)
        z = share.X @ weights + bias
        scores = self.total_scores(z, share.y)
        if self.predict:
            self.write_predictions(share, z)
        heldout = self.heldout(
            share, lambda ids: init_weights(self.init_model, ids, self.fit_intercept)[0], bias)
        return {**scores.metrics(), "examples": share.n, "epochs": 0, **heldout}

    def total_scores(self, z, y):
        """The :class:`Scores` of margins ``z`` for labels ``y`` over all
        workers (collective)."""
        return Scores(*self.sum_over_workers(list(Scores.of(z, y))))

    def heldout(self, share, weights_of, bias):
        """The held-out metrics of the current model (``{}`` without
        ``test``): ``test_log_loss``, ``test_auc``, ``test_accuracy``. A
        collective call; ``weights_of(ids)`` reads the weights of feature
        ids."""
        if share.test is None:
            return {}
        from paracel.waiting import gather_arrays

        y, X, ids = share.test
        z = X @ weights_of(ids) + bias
        scores = self.total_scores(z, y)
        every_z, every_y = gather_arrays(self.comm, z), gather_arrays(self.comm, y)
        metrics = scores.metrics("test_")
        if self.worker_id == 0:
            metrics["test_auc"] = auc(every_z, every_y)
        return metrics

    def write_predictions(self, share, z):
        """``pred_<worker>``: row, label, probability of this share."""
        probability = expit(z)
        label = np.where(z > 0, 1, share.negative)
        offset = share.offset
        self.dump("pred_", [(offset + i, (int(label[i]), f"{probability[i]:.6g}"))
                            for i in range(len(z))], sep="\t")
