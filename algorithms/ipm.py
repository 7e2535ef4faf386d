"""Iterative parameter mixing for ``lr`` (McDonald, Hall and Mann,
"Distributed training strategies for the structured perceptron", NAACL
2010; Zinkevich et al., NIPS 2010, for one round).

Each epoch, every worker starts from the current model, runs one epoch of
local mini-batch SGD over its own share (no communication), and the
servers replace the model by the mixture of the workers' models, weighted
by their shares' sizes: ``w = sum_k (n_k / n) w_k``. Epoch ``e`` is clock
``e``.

The model is a row table keyed by feature id with ``W + 1`` columns:
column 0 the weights (the intercept the row of id ``2**64 - 1``), column
``1 + k`` worker ``k``'s change ``w_k - w`` in the current epoch, which it
writes with ``replace`` after its local epoch. After a barrier, worker 0
runs the table function :func:`mix` on the servers, which adds the changes
to column 0 in worker order and clears them, and a second barrier lets
everyone read the mixed model. Mixing in worker order on the servers makes
a job bit-for-bit reproducible at any staleness (the two barriers make it
synchronous, as the method is). Only the changes move: a worker pulls and
pushes the rows of its share's features once an epoch.

The local SGD steps a worker takes are ``lr``'s SGD steps without the
``1 / W`` (each worker trains its own model, nothing adds up until the
mixture): ``eta`` at epoch ``e`` by ``lr_schedule``, the mean log-loss
gradient of the batch, then the penalty's proximal map (step ``eta / (C
n)``) on every weight of the local copy.
"""

from dataclasses import asdict, dataclass

import numpy as np

import paracel
from paracel.algorithms.downpour import BATCH_SIZE, INTERCEPT, sgd_delta, start_weights
from paracel.algorithms.logistic import penalty_value


@paracel.table_function("lr_ipm_mix")
def mix(values, params):
    """``params = (n_1 / n, ..., n_W / n)``: column 0 += sum over workers
    ``k`` (in order) of ``params[k]`` times column ``1 + k``, which is then
    cleared."""
    for k, weight in enumerate(params):
        values[:, 0] += weight * values[:, 1 + k]
        values[:, 1 + k] = 0.0


@dataclass
class Progress:
    """What a worker carries between two epochs (its checkpoint state): its
    generator's state (epoch ``e`` is clock ``e``, the model on the servers)."""

    rng: dict = None

    def state(self):
        return asdict(self)

    @classmethod
    def from_state(cls, state):
        return cls(**state)


class Learner:
    """Iterative parameter mixing over one ``lr`` job's share.

    Parameters
    ----------
    algorithm : algorithms.lr.LogisticRegression
        The job's algorithm (parameters, store).
    share : algorithms.lr_data.Share
        This worker's examples, over the feature ids they use.
    table : paracel.rows.RowTable
        Width ``W + 1``, keyed by feature id.
    schedule : algorithms.sgd.Schedule
        ``lr``'s SGD step sizes (whose ``1 / W`` this method leaves out).
    """

    def __init__(self, algorithm, share, table, schedule):
        self.lr = algorithm
        self.share = share
        self.table = table
        self.schedule = schedule
        self.ids = np.append(share.ids, INTERCEPT)
        self.batches = max(1, -(-share.X.shape[0] // (algorithm.batch_size or BATCH_SIZE)))
        self.weights = tuple(float(size) / share.n for size in share.sizes)

    def start(self):
        """The table's first weights (zeros, or ``init_model``'s); collective."""
        lr = self.lr
        weights, bias = start_weights(lr, self.share)
        self.table.push(self.ids, np.append(weights, bias)[:, None], fn="replace",
                        columns=[0])
        lr.sync()

    def epoch(self, rng):
        """One epoch (collective): local SGD from the current model, write
        the change, mix. Returns this share's summed batch log-loss."""
        lr, share = self.lr, self.share
        start = self.table.pull(self.ids, columns=[0])[:, 0]
        local = start.copy()
        # lr's step, without the 1 / W
        eta = self.schedule.step_size(lr.clock) * lr.num_workers
        loss = 0.0
        for batch in np.array_split(rng.permutation(share.X.shape[0]), self.batches):
            if not batch.size:
                continue
            batch = np.sort(batch)
            change, change_b, batch_loss = sgd_delta(share.X[batch], share.y[batch],
                                                     local[:-1], local[-1], eta, share.lam,
                                                     lr.penalty, lr.fit_intercept)
            local[:-1] += change
            local[-1] += change_b
            loss += batch_loss
        self.table.push(self.ids, (local - start)[:, None], fn="replace",
                        columns=[1 + lr.worker_id])
        lr.sync()
        if lr.worker_id == 0:
            self.table.map("lr_ipm_mix", self.weights)
        lr.sync()
        return loss

    def finish(self):
        """``[r(w), non-zero weights]`` of the model (worker 0 reads it,
        summed over the workers so every one gets it)."""
        found = np.zeros(2)
        if self.lr.worker_id == 0:
            ids, values = self.table.items(columns=[0])
            w = values[ids != INTERCEPT, 0]
            found = np.array([penalty_value(w, self.lr.penalty), np.count_nonzero(w)])
        return self.lr.sum_over_workers(found)
