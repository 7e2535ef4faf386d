"""How each of ``lr``'s methods trains, in one table (:data:`METHODS`): a
function ``train(algorithm) -> metrics`` per method (load the share, run the
method's driver clock by clock, finish) and the class of its checkpoint
state. The drivers are in their modules (:mod:`lbfgs`, :mod:`ftrl`,
:mod:`downpour`, :mod:`ipm`, :mod:`sgd`, :mod:`gd`); loading and finishing
are :class:`lr.LogisticRegression`'s.
"""

from typing import Callable, NamedTuple

import numpy as np

from paracel.algorithms import downpour, ftrl, gd, ipm, lbfgs, sgd
from paracel.algorithms.gd import GD, GDProgress
from paracel.algorithms.lr_data import init_weights
from paracel.algorithms.sgd import SGD, SGDProgress


class Fit(NamedTuple):
    """What training a row-table model (lbfgs, ftrl, downpour, ipm) ended with."""

    bias: float
    epochs: int
    converged: bool
    penalty: float      # r(w)
    nonzeros: int
    features: int       # features with a weight


def dense_weights(w):
    """``weights_of(ids)`` for :meth:`LogisticRegression.heldout` from the
    dense ``w`` (features beyond its length weigh 0: training never saw them)."""
    def weights_of(ids):
        known = ids < w.shape[0]
        out = np.zeros(ids.size)
        if known.any():
            out[known] = w.pull(ids[known].astype(np.int64))
        return out
    return weights_of


def table_weights(table, column):
    """``weights_of(ids)`` from a row table's ``column``."""
    return lambda ids: table.pull(ids, columns=[column])[:, 0]


# -- the methods: how each trains ---------------------------------------------

def train_sgd(lr):
    share, w, intercept, eta0 = lr.load_dense_share(sgd.STEP_SCALE)
    epochs, converged = SGD(lr, share, w, intercept, eta0).run()
    return lr.dense_finish(share, w, intercept, eta0, epochs, converged)


def train_gd(lr):
    share, w, intercept, eta0 = lr.load_dense_share(gd.STEP_SCALE)
    weights_of = dense_weights(w)
    epochs, converged = GD(lr, share, w, intercept, eta0,
                           lambda bias: lr.heldout(share, weights_of, bias)).run()
    return lr.dense_finish(share, w, intercept, eta0, epochs, converged)


def train_lbfgs(lr):
    """Load, train by :class:`lbfgs.Solver`, finish; iteration ``t`` is
    clock ``t``."""
    share = lr.load_sparse_share()
    table = lr.rows("lr.lbfgs", width=lbfgs.width(lr.memory, lr.num_workers))
    solver = lbfgs.Solver(lr, share, table, lr.memory)
    if not lr.resumed:
        # every feature of this share a row (before clock 1): zeros, or init_model's
        weights, bias = np.zeros(share.ids.size), 0.0
        if lr.init_model is not None:
            weights, bias = init_weights(lr.init_model, share.ids, lr.fit_intercept)
        table.push(share.ids, weights[:, None], fn="replace", columns=[lbfgs.X])
        lr.sync()
        lr.progress_ = solver.start(bias)
    progress = lr.progress_
    weights_of = table_weights(table, lbfgs.X)
    while not (progress.converged or progress.failed) and lr.clock < lr.epochs:
        solver.iteration(progress)
        lr.report(objective=progress.objective, gradient=progress.largest,
                  **lr.heldout(share, weights_of, progress.intercept[lbfgs.X]))
        lr.iter_commit()
    if progress.failed and lr.worker_id == 0:
        lr.log.warning("lr: the line search found no step that lowers the objective "
                       "(converged as far as float64 allows, or a bad learning problem); "
                       "stopping after %d iterations", progress.iterations)
    return lr.sparse_finish(share, table, lbfgs.X, Fit(
        progress.intercept[lbfgs.X], progress.iterations, progress.converged,
        progress.penalty, progress.nonzeros, table.size()))


def train_ftrl(lr):
    """Load, train by :class:`ftrl.Learner` for ``epochs`` passes (every
    worker the same number of batches a pass, a clock each), finish."""
    share = lr.load_sparse_share(admit=False)
    table = lr.rows("lr.ftrl", width=ftrl.WIDTH, admit=lr.admit)
    learner = ftrl.Learner(lr, share, table, lr.learning_rate or ftrl.ALPHA, ftrl.BETA)
    if lr.resumed:
        rng = np.random.default_rng()
        rng.bit_generator.state = lr.progress_.shuffle_rng
    else:
        if lr.init_model is not None:
            learner.warm_start(*init_weights(lr.init_model, share.ids, lr.fit_intercept))
        rng = lr.rng()
        lr.progress_ = ftrl.Progress(batch=learner.batches)
    progress = lr.progress_
    pieces = learner.shuffle(progress, rng) if progress.epoch else None
    while progress.batch < learner.batches or progress.epoch < lr.epochs:
        if progress.batch == learner.batches:
            progress.epoch += 1
            progress.batch, progress.loss_sum, progress.seen = 0, 0.0, 0
            pieces = learner.shuffle(progress, rng)
        batch = np.sort(pieces[progress.batch])
        loss = learner.step(progress, batch) if batch.size else 0.0
        progress.batch += 1
        progress.loss_sum += loss
        progress.seen += batch.size
        lr.report(loss=progress.loss_sum / max(progress.seen, 1),
                  epoch=round(progress.epoch - 1 + progress.batch / learner.batches, 4))
        if progress.batch == learner.batches:
            lr.report(**lr.heldout(share, table_weights(table, ftrl.W), learner.bias()))
        lr.iter_commit()
    penalty, nonzeros = learner.finish(lr.epochs)
    return lr.sparse_finish(share, table, ftrl.W, Fit(
        learner.bias(), lr.epochs, False, penalty, nonzeros, table.size() - lr.fit_intercept))


def train_downpour(lr):
    """Load, train by :class:`downpour.Learner` for ``epochs`` passes
    (every worker the same number of batches a pass, a clock each), finish
    from the servers' model."""
    share = lr.load_sparse_share(admit=False)
    schedule = downpour.schedule(lr, share)
    table = lr.rows("lr.downpour", width=1)
    learner = downpour.Learner(lr, share, table, schedule)
    if lr.resumed:
        rng = np.random.default_rng()
        rng.bit_generator.state = lr.progress_.shuffle_rng
    else:
        rng = lr.rng()
        lr.progress_ = learner.start()
    progress = lr.progress_
    pieces = learner.shuffle(progress, rng) if progress.epoch else None
    while progress.batch < learner.batches or progress.epoch < lr.epochs:
        if progress.batch == learner.batches:
            progress.epoch += 1
            progress.batch, progress.loss_sum, progress.seen = 0, 0.0, 0
            pieces = learner.shuffle(progress, rng)
        batch = np.sort(pieces[progress.batch])
        progress.loss_sum += learner.step(progress, progress.replica, batch)
        progress.batch += 1
        progress.seen += batch.size
        lr.report(loss=progress.loss_sum / max(progress.seen, 1),
                  epoch=round(progress.epoch - 1 + progress.batch / learner.batches, 4))
        lr.iter_commit()
    penalty, nonzeros = learner.finish(progress.replica)
    return lr.sparse_finish(share, table, 0, Fit(
        table_bias(lr, table, 0), lr.epochs, False, penalty, nonzeros, table.size() - 1))


def train_ipm(lr):
    """Load, train by :class:`ipm.Learner`: epoch ``e`` is clock ``e``."""
    share = lr.load_sparse_share(admit=False)
    schedule = downpour.schedule(lr, share)
    table = lr.rows("lr.ipm", width=1 + lr.num_workers)
    learner = ipm.Learner(lr, share, table, schedule)
    if lr.resumed:
        rng = np.random.default_rng()
        rng.bit_generator.state = lr.progress_.rng
    else:
        rng = lr.rng()
        learner.start()
        lr.progress_ = ipm.Progress()
    while lr.clock < lr.epochs:
        loss = learner.epoch(rng)
        lr.progress_.rng = rng.bit_generator.state
        total = lr.sum_over_workers(np.array([loss]))[0]
        lr.report(loss=float(total) / share.n,
                  **lr.heldout(share, table_weights(table, 0), table_bias(lr, table, 0)))
        lr.iter_commit()
    penalty, nonzeros = learner.finish()
    return lr.sparse_finish(share, table, 0, Fit(
        table_bias(lr, table, 0), lr.epochs, False, penalty, nonzeros, table.size() - 1))


def table_bias(lr, table, column):
    """The intercept's row of a table keyed by feature id (0 without one)."""
    if not lr.fit_intercept:
        return 0.0
    return float(table.pull([ftrl.INTERCEPT], columns=[column])[0, 0])


class Method(NamedTuple):
    """How a method trains (``train(algorithm) -> metrics``) and the class of
    its progress (``from_state`` restores a checkpoint's)."""

    train: Callable
    progress: type


#: Every method, by the name ``params.method`` gives.
METHODS = {
    "lbfgs": Method(train_lbfgs, lbfgs.Progress),
    "ftrl": Method(train_ftrl, ftrl.Progress),
    "downpour": Method(train_downpour, downpour.Progress),
    "ipm": Method(train_ipm, ipm.Progress),
    "sgd": Method(train_sgd, SGDProgress),
    "gd": Method(train_gd, GDProgress),
}
