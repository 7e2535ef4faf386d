"""FTRL-Proximal for ``lr``: per-coordinate learning rates, L1 and L2, the
state on the servers (McMahan et al., "Ad click prediction: a view from the
trenches", KDD 2013).

Each feature's row in a row table keyed by feature id holds FTRL's ``z``
and ``n`` (the sums of its adjusted gradients and of their squares), its
current weight ``w``, and whether it is the unpenalised intercept (the row
of id ``2**64 - 1``). A worker pulls the weights of the features of its
mini-batch, computes the batch's summed gradient and pushes it with the row
function :func:`update`, which folds it into ``z`` and ``n`` and recomputes
``w`` on the server, in one step no other push interleaves with: concurrent
workers never overwrite each other's updates, and a feature's learning rate
``alpha / (beta + sqrt(n))`` follows from all of them.

The penalties are those of the batch objective ``mean log-loss + r(w) / (C
n)``: FTRL's regulariser is weighed against the losses summed over the
examples seen, so after ``e`` passes it is ``e / C`` times ``r``
(``lambda1`` for l1, ``lambda2`` for l2), every push carrying the current
factor. Finished, every weight is recomputed with the final factor.
"""

from dataclasses import asdict, dataclass

import numpy as np

import paracel
from paracel.algorithms.logistic import log_losses, residuals
from paracel.algorithms.lr_data import local_columns

Z, N, W, FREE = range(4)
#: Columns of the table.
WIDTH = 4
#: The intercept's id: the one LIBSVM indices never take.
INTERCEPT = np.uint64(2**64 - 1)
#: Examples per batch without ``batch_size``.
BATCH_SIZE = 1024
#: alpha without ``learning_rate``, and beta.
ALPHA = 0.5
BETA = 1.0


def weights(z, n, alpha, beta, l1, l2):
    """FTRL-Proximal's closed-form weights from ``z`` and ``n``: 0 while
    ``|z| <= l1``, else ``-(z - sign(z) l1) / ((beta + sqrt(n)) / alpha + l2)``."""
    shrunk = z - np.sign(z) * l1
    return np.where(np.abs(z) <= l1, 0.0, -shrunk / ((beta + np.sqrt(n)) / alpha + l2))


@paracel.row_function("lr_ftrl")
def update(rows, deltas, params):
    """Fold gradients into the rows: ``deltas[:, 0]`` the summed gradient,
    ``deltas[:, 1]`` 1 for the unpenalised intercept; ``params = (alpha,
    beta, l1, l2)``."""
    alpha, beta, l1, l2 = params
    gradient = deltas[:, 0]
    rows[:, FREE] = deltas[:, 1] > 0
    sigma = (np.sqrt(rows[:, N] + gradient * gradient) - np.sqrt(rows[:, N])) / alpha
    rows[:, Z] += gradient - sigma * rows[:, W]
    rows[:, N] += gradient * gradient
    penalised = rows[:, FREE] == 0
    rows[:, W] = weights(rows[:, Z], rows[:, N], alpha, beta, l1 * penalised, l2 * penalised)


@paracel.table_function("lr_ftrl_finish")
def finish(values, params):
    """Recompute every weight with the final penalties ``params = (alpha,
    beta, l1, l2, l1_norm)``; returns ``[r(w), non-zero weights]`` over the
    penalised rows (``r`` the L1 norm if ``l1_norm``, else half the squared
    L2 norm)."""
    alpha, beta, l1, l2, l1_norm = params
    penalised = values[:, FREE] == 0
    values[:, W] = weights(values[:, Z], values[:, N], alpha, beta, l1 * penalised,
                           l2 * penalised)
    w = values[penalised, W]
    penalty = np.abs(w).sum() if l1_norm else 0.5 * w @ w
    return np.array([penalty, np.count_nonzero(w)], dtype=np.float64)


@dataclass
class Progress:
    """Where this worker is between two clocks (its checkpoint state)."""

    epoch: int = 0          # passes begun
    batch: int = 0          # batches of the current pass done
    loss_sum: float = 0.0   # the pass's summed batch log-loss so far
    seen: int = 0           # the examples it covers
    shuffle_rng: dict = None  # the generator's state before the pass's shuffle

    def state(self):
        return asdict(self)

    @classmethod
    def from_state(cls, state):
        return cls(**state)


class Learner:
    """FTRL-Proximal over one ``lr`` job's share.

    Parameters
    ----------
    algorithm : algorithms.lr.LogisticRegression
        The job's algorithm (parameters, store).
    share : algorithms.lr_data.Share
        This worker's examples, over the feature ids they use.
    table : paracel.rows.RowTable
        ``WIDTH`` columns, keyed by feature id.
    alpha, beta : float
        FTRL's learning-rate parameters.
    """

    def __init__(self, algorithm, share, table, alpha, beta):
        self.lr = algorithm
        self.share = share
        self.table = table
        self.alpha, self.beta = alpha, beta
        batch_size = algorithm.batch_size or BATCH_SIZE
        self.batches = max(1, int(max(-(-int(size) // batch_size) for size in share.sizes)))

    def warm_start(self, weights, bias):
        """Rows of this share's features (and the intercept) whose weights
        are ``weights`` and ``bias`` (``z`` chosen so that FTRL's closed form
        gives them with ``n = 0``); before clock 1."""
        alpha, beta = self.alpha, self.beta
        l1, l2 = self.penalties(1.0)
        z = -weights * (beta / alpha + l2) - np.sign(weights) * l1
        rows = np.column_stack([z, np.zeros_like(z), weights, np.zeros_like(z)])
        ids = self.share.ids
        if self.lr.fit_intercept:
            ids = np.append(ids, INTERCEPT)
            rows = np.vstack([rows, [-bias * beta / alpha, 0.0, bias, 1.0]])
        self.table.push(ids, rows, fn="replace")
        self.lr.sync()

    def bias(self):
        """The intercept's current weight (0 without one)."""
        if not self.lr.fit_intercept:
            return 0.0
        return float(self.table.pull([INTERCEPT], columns=[W])[0, 0])

    def penalties(self, passes):
        """``(l1, l2)`` after ``passes`` passes over the data."""
        strength = passes / self.lr.C
        penalty = self.lr.penalty
        return (strength if penalty == "l1" else 0.0, strength if penalty == "l2" else 0.0)

    def shuffle(self, progress, rng):
        """The current pass's batches (positions in the share); the
        generator's state before the shuffle is kept, so a resumed job
        draws the same pass."""
        progress.shuffle_rng = rng.bit_generator.state
        return np.array_split(rng.permutation(self.share.X.shape[0]), self.batches)

    def step(self, progress, batch):
        """One mini-batch: pull its weights, push its gradient; the batch's
        summed log-loss before the step."""
        lr, share = self.lr, self.share
        used, X = local_columns(share.X[batch])
        ids = np.append(share.ids[used], INTERCEPT)
        pulled = self.table.pull(ids, columns=[W])[:, 0]
        y = share.y[batch]
        z = X @ pulled[:-1] + (pulled[-1] if lr.fit_intercept else 0.0)
        residual = residuals(z, y)
        deltas = np.zeros((ids.size, 2))
        deltas[:-1, 0] = X.T @ residual
        deltas[-1] = [residual.sum(), 1.0]
        if not lr.fit_intercept:
            ids, deltas = ids[:-1], deltas[:-1]
        passes = progress.epoch - 1 + (progress.batch + 1) / self.batches
        self.table.push(ids, deltas, fn="lr_ftrl",
                        params=(self.alpha, self.beta, *self.penalties(passes)))
        return float(log_losses(z, y).sum())

    def finish(self, passes):
        """Recompute every weight with the final penalties (worker 0; the
        others wait in the next collective call); ``[r(w), non-zeros]``."""
        found = np.zeros(2)
        if self.lr.worker_id == 0:
            found = self.table.map("lr_ftrl_finish", (self.alpha, self.beta,
                                                      *self.penalties(passes),
                                                      self.lr.penalty == "l1"))
        return self.lr.sum_over_workers(found)
