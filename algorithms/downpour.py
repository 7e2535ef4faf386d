"""Downpour SGD for ``lr`` (Dean et al., "Large scale distributed deep
networks", NIPS 2012): asynchronous mini-batch SGD where each worker trains
a local copy of the model and talks to the servers only every few steps.

The model is a row table keyed by feature id (one weight per feature, the
intercept the row of id ``2**64 - 1``). Each worker keeps a local copy of
the weights of its share's features and the intercept, and the update it
has made since its last push (``pending``). Every ``n_fetch`` of its steps
it fetches the weights from the servers; every ``n_push`` steps it pushes
``pending`` with ``add`` and starts a new one. In between, every step is a
mini-batch gradient step on the local copy (the penalty applied to the
whole copy by its proximal map), counted into ``pending``.

What differs from Paracel's downpour: there, a push sent the update
accumulated since the last *fetch*, so with ``n_push < n_fetch`` every push
between two fetches sent again the updates the previous pushes had already
sent, and the servers added them several times. Here a push sends exactly
the update made since the last *push* (:meth:`Replica.take`), so every
local update reaches the servers once; a fetch replaces the local copy by
the servers' weights plus this worker's update not pushed yet (the servers
cannot have it), so no update is lost locally either.

Steps are ``eta / W`` for each of the ``W`` workers, with ``lr``'s SGD
schedule over this worker's passes (:class:`sgd.Schedule`): the
``W`` workers' pushes add up on the servers, so together they make about
one step ``eta`` per round. Each worker makes ``epochs`` passes of the same
number of batches (one clock each, under SSP); at the end every worker
pushes what it still has, and the model is the servers'.
"""

from dataclasses import dataclass, fields

import numpy as np
from scipy.special import expit

from paracel.algorithms.gd import prox
from paracel.algorithms.logistic import log_losses, penalty_value

#: The intercept's id: the one LIBSVM indices never take.
INTERCEPT = np.uint64(2**64 - 1)
#: Examples per batch without ``batch_size``.
BATCH_SIZE = 32


class Replica:
    """A worker's local copy of the model and its update not pushed yet.

    Parameters
    ----------
    size : int
        Entries of the copy (the share's features and the intercept).
    """

    def __init__(self, size):
        self.local = np.zeros(size)
        self.pending = np.zeros(size)

    def fetch(self, pulled):
        """Take the servers' weights: the copy becomes ``pulled`` plus the
        update made since the last push (which the servers do not have)."""
        self.local = np.asarray(pulled, dtype=np.float64) + self.pending

    def apply(self, delta):
        """A local step: ``delta`` (the whole copy's change) is applied to the
        copy and counted in the pending update."""
        self.local += delta
        self.pending += delta

    def take(self):
        """The update made since the last push, which this push sends
        (positions with a change, and the changes); pending starts again
        from zero, so no change is ever sent twice."""
        positions = np.flatnonzero(self.pending)
        delta = self.pending[positions]
        self.pending = np.zeros_like(self.pending)
        return positions, delta

    def state(self):
        return {"local": self.local.copy(), "pending": self.pending.copy()}

    @classmethod
    def from_state(cls, state):
        replica = cls(0)
        replica.local = np.asarray(state["local"], dtype=np.float64)
        replica.pending = np.asarray(state["pending"], dtype=np.float64)
        return replica


def sgd_delta(X, y, weights, bias, eta, lam, penalty, fit_intercept):
    """One mini-batch step on a local copy: ``(change of the weights (all
    of them, the penalty's proximal map applied to each), change of the
    intercept, the batch's summed log-loss)``.

    ``X`` is the batch over the copy's features, ``y`` its 0/1 labels, the
    gradient the batch's mean log-loss gradient."""
    z = X @ weights + bias
    residual = (expit(z) - y) / max(y.size, 1)
    moved = weights - eta * (X.T @ residual)
    new = prox(moved, eta * lam, penalty)
    step_b = -eta * residual.sum() if fit_intercept else 0.0
    return new - weights, step_b, float(log_losses(z, y).sum())


@dataclass
class Progress:
    """Where this worker is between two clocks (its checkpoint state)."""

    epoch: int = 0          # passes begun
    batch: int = 0          # batches of the current pass done
    steps: int = 0          # steps made (fetch and push counters)
    loss_sum: float = 0.0   # the pass's summed batch log-loss so far
    seen: int = 0           # the examples it covers
    shuffle_rng: dict = None  # the generator's state before the pass's shuffle
    replica: Replica = None  # the local copy and its update not pushed yet

    def state(self):
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        plain["replica"] = self.replica.state()
        return plain

    @classmethod
    def from_state(cls, state):
        return cls(**{**state, "replica": Replica.from_state(state["replica"])})


class Learner:
    """Downpour SGD over one ``lr`` job's share.

    Parameters
    ----------
    algorithm : algorithms.lr.LogisticRegression
        The job's algorithm (parameters, store).
    share : algorithms.lr_data.Share
        This worker's examples, over the feature ids they use.
    table : paracel.rows.RowTable
        Width 1, keyed by feature id.
    schedule : algorithms.sgd.Schedule
        The step sizes.
    """

    def __init__(self, algorithm, share, table, schedule):
        self.lr = algorithm
        self.share = share
        self.table = table
        self.schedule = schedule
        self.ids = np.append(share.ids, INTERCEPT)
        batch_size = algorithm.batch_size or BATCH_SIZE
        self.batches = max(1, int(max(-(-int(size) // batch_size) for size in share.sizes)))

    def start(self):
        """The table's first rows (zeros, or ``init_model``'s weights) and a
        fresh replica; collective (a barrier after the writes)."""
        lr = self.lr
        weights, bias = start_weights(lr, self.share)
        self.table.push(self.ids, np.append(weights, bias)[:, None], fn="replace")
        lr.sync()
        return Progress(batch=self.batches, replica=Replica(self.ids.size))

    def shuffle(self, progress, rng):
        """The current pass's batches (positions in the share); the
        generator's state before the shuffle is kept."""
        progress.shuffle_rng = rng.bit_generator.state
        return np.array_split(rng.permutation(self.share.X.shape[0]), self.batches)

    def step(self, progress, replica, batch):
        """One step: fetch first if due, a local step, push after if due;
        the batch's summed log-loss."""
        lr, share = self.lr, self.share
        if progress.steps % lr.n_fetch == 0:
            replica.fetch(self.table.pull(self.ids, columns=[0])[:, 0])
        loss = 0.0
        if batch.size:
            eta = self.schedule.step_size(progress.epoch - 1 + progress.batch / self.batches)
            change, change_b, loss = sgd_delta(share.X[batch], share.y[batch],
                                               replica.local[:-1], replica.local[-1], eta,
                                               share.lam, lr.penalty, lr.fit_intercept)
            replica.apply(np.append(change, change_b))
        progress.steps += 1
        if progress.steps % lr.n_push == 0:
            self.push(replica)
        return loss

    def push(self, replica):
        """Send the update made since the last push (``add``)."""
        positions, delta = replica.take()
        if positions.size:
            self.table.push(self.ids[positions], delta[:, None])

    def finish(self, replica):
        """Push what is left, wait for every worker's; ``[r(w), non-zero
        weights]`` of the servers' model (worker 0 reads it, summed over the
        workers so every one gets it)."""
        self.push(replica)
        self.lr.sync()
        found = np.zeros(2)
        if self.lr.worker_id == 0:
            ids, values = self.table.items(columns=[0])
            w = values[ids != INTERCEPT, 0]
            found = np.array([penalty_value(w, self.lr.penalty), np.count_nonzero(w)])
        return self.lr.sum_over_workers(found)



def default_eta0(algorithm, share):
    """``lr``'s SGD step ``eta0`` for its sparse share (collective):
    ``learning_rate``, or ``10 / L`` with ``L = (mean ||x_i||^2 + 1) / 4``."""
    if algorithm.learning_rate is not None:
        return algorithm.learning_rate
    squares = float(share.X.multiply(share.X).sum())
    total = float(algorithm.sum_over_workers(np.array([squares]))[0])
    curvature = (total + share.n * algorithm.fit_intercept) / (4.0 * share.n)
    return 10.0 / (curvature if curvature > 0 else 0.25)


def schedule(algorithm, share):
    """The :class:`sgd.Schedule` of ``lr``'s SGD from :func:`default_eta0`
    (collective)."""
    from paracel.algorithms.sgd import Schedule

    return Schedule(default_eta0(algorithm, share), algorithm.lr_schedule,
                    algorithm.lr_decay, algorithm.num_workers)


def start_weights(algorithm, share):
    """The starting weights of the share's features and the intercept:
    zeros, or ``init_model``'s."""
    from paracel.algorithms.lr_data import init_weights

    weights, bias = np.zeros(share.ids.size), 0.0
    if algorithm.init_model is not None:
        weights, bias = init_weights(algorithm.init_model, share.ids, algorithm.fit_intercept)
    return weights, (bias if algorithm.fit_intercept else 0.0)
