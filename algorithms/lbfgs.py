"""Distributed L-BFGS and OWL-QN for ``lr``: the vectors on the servers, only
scalars on the workers.

The model and every vector of the method live as columns of one row table
keyed by feature id (:meth:`paracel.Algorithm.rows`), so each server holds
its features' rows and no rank ever holds a whole vector:

====================  ==========================================================
column                what
====================  ==========================================================
``X``                 the weights
``G``                 the gradient at ``X`` (L2: of the objective; L1: of the
                      mean log-loss, the smooth part)
``P``                 the (pseudo-)gradient the direction is built from
``D``                 the search direction
``S[k]``, ``Y[k]``    the ``memory`` most recent steps and gradient changes
``GW[j]``             worker ``j``'s share of the loss gradient (summed on the
                      servers in worker order, so every run adds the same bits)
====================  ==========================================================

This is DistBelief's Sandblaster L-BFGS in the *vector-free* form of Chen,
Wang and Zhou (NIPS 2014): the two-loop recursion only needs the dot
products among the ``2 m + 1`` vectors ``S, Y, P``; the servers compute the
new ones after each step (one pass over their rows), the workers run the
recursion on those scalars (:func:`two_loop`) and the servers form the
direction as a linear combination of their columns. The line search moves
along the direction without touching the servers: each worker pulls ``X``
and ``D`` for its features once per iteration, so the margins at any step
``a`` are ``X x + a X d`` and a trial costs a sum over the examples and one
exchange of three numbers. With ``l1`` (OWL-QN, Andrew and Gao, ICML 2007)
the direction is built from the pseudo-gradient, kept in its orthant, and
the trial points are projected onto it (each worker projects its features;
the servers return the penalty and the predicted decrease).

The intercept is one more coordinate of every vector, unpenalised; being
one number, each worker keeps it (the same on all of them).
"""

from dataclasses import asdict, dataclass, field

import numpy as np

import paracel
from paracel.algorithms.logistic import log_losses, residuals

X, G, P, D = 0, 1, 2, 3
#: The first history column.
HISTORY = 4


def width(memory, workers):
    """Columns of the table for ``memory`` pairs and ``workers`` workers."""
    return HISTORY + 2 * memory + workers


def basis_columns(memory):
    """The columns of the basis ``S[0..m-1], Y[0..m-1], P`` of the recursion."""
    return list(range(HISTORY, HISTORY + 2 * memory)) + [P]


# -- the recursion, on scalars ----------------------------------------------

def two_loop(dots, order, memory):
    """Coefficients of the L-BFGS direction over the basis.

    Parameters
    ----------
    dots : numpy.ndarray
        ``(2m + 1, 2m + 1)`` dot products among ``S[0..m-1], Y[0..m-1], P``.
    order : sequence of int
        The slots holding accepted pairs, oldest first.
    memory : int
        ``m``.

    Returns
    -------
    numpy.ndarray
        ``c`` with ``direction = sum_j c[j] * basis[j]``: ``-H P`` for the
        L-BFGS inverse Hessian approximation ``H`` of the pairs in ``order``
        (``-P`` without pairs).
    """
    m = memory
    coefficients = np.zeros(2 * m + 1)
    coefficients[2 * m] = -1.0
    alphas = {}
    for k in reversed(order):
        alphas[k] = (coefficients @ dots[k]) / dots[k, m + k]
        coefficients[m + k] -= alphas[k]
    if order:
        newest = order[-1]
        coefficients *= dots[newest, m + newest] / dots[m + newest, m + newest]
    for k in order:
        beta = (coefficients @ dots[m + k]) / dots[k, m + k]
        coefficients[k] += alphas[k] - beta
    return coefficients


def pseudo_gradient(gradient, x, lam):
    """OWL-QN's pseudo-gradient of ``f + lam ||x||_1`` (``gradient`` of ``f``):
    the gradient of the penalty's side ``x`` is on, and at ``x = 0`` the
    one-sided derivative that descends, or 0 if neither does."""
    signed = gradient + lam * np.sign(x)
    at_zero = np.where(gradient + lam < 0, gradient + lam,
                       np.where(gradient - lam > 0, gradient - lam, 0.0))
    return np.where(x != 0, signed, at_zero)


def orthant_step(x, direction, pseudo, step):
    """``x + step * direction`` projected onto the orthant of ``x`` (where
    ``x = 0``: of ``-pseudo``): coordinates that would change sign become 0."""
    orthant = np.where(x != 0, np.sign(x), -np.sign(pseudo))
    moved = x + step * direction
    return np.where(np.sign(moved) == orthant, moved, 0.0)


class WolfeSearch:
    """A line search for the strong Wolfe conditions, as a state machine:
    :meth:`tell` the value and slope at the step it asked for, get the next
    step or ``None`` once one is accepted (:attr:`step`).

    Brackets the step, then bisects the bracket by safeguarded cubic
    interpolation (Nocedal and Wright, algorithms 3.5 and 3.6).
    """

    def __init__(self, value, slope, step, c1=1e-4, c2=0.9, tries=40):
        self.value0, self.slope0 = value, slope
        self.c1, self.c2, self.tries = c1, c2, tries
        self.low = (0.0, value, slope)
        self.high = None
        self.step = step

    def tell(self, value, slope):
        """Take ``(value, slope)`` at :attr:`step`; the next step to try,
        or ``None`` when :attr:`step` satisfies the conditions (or the
        tries are used up: then :attr:`step` is the best step seen, 0 if
        none descended)."""
        self.tries -= 1
        here = (self.step, value, slope)
        if value > self.value0 + self.c1 * self.step * self.slope0 or value >= self.low[1]:
            self.high = here
        elif abs(slope) <= -self.c2 * self.slope0:
            return None
        elif slope * (self.step - self.low[0]) >= 0:
            self.high, self.low = self.low, here
        else:
            self.low = here
        if self.tries <= 0:
            self.step = self.low[0]
            return None
        self.step = self._next()
        return self.step

    def _next(self):
        if self.high is None:
            return 2.0 * self.step                        # still looking for a bracket
        (a, fa, ga), (b, fb, gb) = self.low, self.high
        left, right = min(a, b), max(a, b)
        guess = _cubic_minimiser(a, fa, ga, b, fb, gb)
        margin = 0.1 * (right - left)
        if guess is None or not left + margin <= guess <= right - margin:
            return 0.5 * (left + right)
        return guess


def _cubic_minimiser(a, fa, ga, b, fb, gb):
    """The minimiser of the cubic through ``(a, fa, ga)`` and ``(b, fb, gb)``,
    or ``None`` if it has none."""
    d1 = ga + gb - 3.0 * (fa - fb) / (a - b)
    square = d1 * d1 - ga * gb
    if square < 0:
        return None
    d2 = np.sign(b - a) * np.sqrt(square)
    denominator = gb - ga + 2.0 * d2
    if denominator == 0:
        return None
    return b - (b - a) * (gb + d2 - d1) / denominator


# -- table functions: what the servers do -----------------------------------

def _columns(values, columns):
    return values[:, columns]


@paracel.table_function("lr_lbfgs_start")
def start(values, params):
    """``G`` and ``P`` from the workers' gradient columns at ``X``;
    returns ``[P . basis (2m + 1), penalty r(X), max |P|, nonzeros of X]``
    (the maximum of this server; the caller takes it over the servers)."""
    memory, workers, lam, l1 = params
    _gradient(values, memory, workers, lam, l1)
    return _found(values, memory, [], l1)


@paracel.table_function("lr_lbfgs_direction")
def direction(values, params):
    """``D = basis @ coefficients`` (with ``l1``: kept in the orthant of
    ``-P``); returns ``[P . D, X . D, D . D]``."""
    memory, coefficients, l1 = params
    coefficients = np.asarray(coefficients, dtype=np.float64)
    moved = _history(values, memory) @ coefficients[:2 * memory]
    moved += coefficients[2 * memory] * values[:, P]
    if l1:
        moved[moved * values[:, P] >= 0] = 0.0
    values[:, D] = moved
    return np.array([values[:, P] @ moved, values[:, X] @ moved, moved @ moved])


@paracel.table_function("lr_lbfgs_l1_trial")
def l1_trial(values, params):
    """At step ``a`` along ``D`` (projected): ``[||x_a||_1, P . (x_a - X)]``."""
    (step,) = params
    moved = orthant_step(values[:, X], values[:, D], values[:, P], step)
    return np.array([np.abs(moved).sum(), values[:, P] @ (moved - values[:, X])])


@paracel.table_function("lr_lbfgs_step")
def step(values, params):
    """Take step ``a`` along ``D``; the new pair into slot ``k``; ``G``, ``P``
    at the new point. Returns ``[S[k] . basis, Y[k] . basis, P . basis,
    r(X), max |P|, nonzeros of X]`` (``2m + 1`` each, then three numbers)."""
    memory, workers, lam, l1, size, slot = params
    s, y = HISTORY + slot, HISTORY + memory + slot
    if l1:
        moved = orthant_step(values[:, X], values[:, D], values[:, P], size)
        values[:, s] = moved - values[:, X]
    else:
        np.multiply(values[:, D], size, out=values[:, s])
    values[:, X] += values[:, s]
    np.negative(values[:, G], out=values[:, y])
    _gradient(values, memory, workers, lam, l1)
    values[:, y] += values[:, G]
    return _found(values, memory, [s, y], l1)


@paracel.table_function("lr_lbfgs_finish")
def finish(values, params):
    """``[r(X), nonzeros of X]`` for the final metrics."""
    (l1,) = params
    weights = values[:, X]
    penalty = np.abs(weights).sum() if l1 else 0.5 * weights @ weights
    return np.array([penalty, np.count_nonzero(weights)], dtype=np.float64)


def _gradient(values, memory, workers, lam, l1):
    """``G`` = the workers' gradient columns added in worker order (plus
    ``lam X`` for L2); ``P`` = ``G``, or its pseudo-gradient for L1."""
    first = HISTORY + 2 * memory
    total = values[:, first].copy()
    for column in range(first + 1, first + workers):
        total += values[:, column]
    if not l1:
        total += lam * values[:, X]
    values[:, G] = total
    values[:, P] = pseudo_gradient(total, values[:, X], lam) if l1 else total


def _history(values, memory):
    """The columns ``S[0..m-1], Y[0..m-1]`` (a view: contiguous when the
    table is stored by columns)."""
    return values[:, HISTORY:HISTORY + 2 * memory]


def _found(values, memory, new, l1):
    """The dot products of the columns ``new`` and ``P`` with the basis, the
    penalty, this server's max ``|P|`` and its non-zero weights."""
    vectors = values[:, new + [P]]
    dots = np.empty((vectors.shape[1], 2 * memory + 1))
    dots[:, :2 * memory] = (_history(values, memory).T @ vectors).T
    dots[:, 2 * memory] = values[:, P] @ vectors
    dots = dots.ravel()
    weights = values[:, X]
    penalty = np.abs(weights).sum() if l1 else 0.5 * weights @ weights
    return np.concatenate([dots, [penalty, np.abs(values[:, P]).max(initial=0.0),
                                  np.count_nonzero(weights)]])


# -- the driver, on every worker ----------------------------------------------

@dataclass
class Progress:
    """What every worker carries between two iterations (its checkpoint
    state): the scalars of the method, the same on every worker."""

    memory: int
    objective: float = np.inf
    dots: list = None                 # (2m+1)^2 dot products among S, Y, P
    order: list = field(default_factory=list)   # slots of the accepted pairs, oldest first
    intercept: list = None            # the intercept's coordinate of X, G, P, D
    pairs: list = None                # of S[k], Y[k]: (2, m)
    slope: float = 0.0                # P . D, the directional derivative
    x_dot_d: float = 0.0
    d_dot_d: float = 0.0
    penalty: float = 0.0              # r(X)
    largest: float = np.inf           # max |P|, intercept included
    nonzeros: int = 0
    iterations: int = 0
    converged: bool = False
    failed: bool = False              # the line search found no descent

    def __post_init__(self):
        size = 2 * self.memory + 1
        self.dots = np.asarray(self.dots if self.dots is not None
                               else np.zeros((size, size)), dtype=np.float64)
        self.intercept = np.asarray(self.intercept if self.intercept is not None
                                    else np.zeros(4), dtype=np.float64)
        self.pairs = np.asarray(self.pairs if self.pairs is not None
                                else np.zeros((2, self.memory)), dtype=np.float64)

    def state(self):
        """As plain values (a checkpoint's)."""
        plain = asdict(self)
        for key in ("dots", "intercept", "pairs"):
            plain[key] = getattr(self, key).tolist()
        return plain

    @classmethod
    def from_state(cls, state):
        return cls(**state)

    def basis_intercepts(self):
        """The intercept's coordinate of ``S[0..m-1], Y[0..m-1], P``."""
        return np.concatenate([self.pairs[0], self.pairs[1], [self.intercept[P]]])


class Solver:
    """L-BFGS (``l2``, ``none``) or OWL-QN (``l1``) for one ``lr`` job.

    Parameters
    ----------
    algorithm : algorithms.lr.LogisticRegression
        The job's algorithm (the store and the parameters).
    share : algorithms.lr_data.Share
        This worker's examples, over the feature ids they use.
    table : paracel.rows.RowTable
        The table of :func:`width` columns holding the features' rows.
    memory : int
        Pairs kept (``m``).
    """

    def __init__(self, algorithm, share, table, memory):
        self.lr = algorithm
        self.share = share
        self.table = table
        self.memory = memory
        self.l1 = algorithm.penalty == "l1"
        self.lam = share.lam

    # -- one worker's share -----------------------------------------------

    def _share_gradient(self, z):
        """Push this share's gradient of the mean log-loss at margins ``z``
        into its column; the intercept's part and the summed log-loss."""
        share = self.share
        residual = residuals(z, share.y) / share.n
        column = HISTORY + 2 * self.memory + self.lr.worker_id
        self.table.push(share.ids, (share.X.T @ residual)[:, None], fn="replace",
                        columns=[column])
        return float(residual.sum()), float(log_losses(z, share.y).sum())

    def _margins(self, progress):
        """``(X x + b, X d + d_b, x, d, pseudo)`` of this share at the current
        point and direction (one pull)."""
        share = self.share
        pulled = self.table.pull(share.ids, columns=[X, D, P] if self.l1 else [X, D])
        x, d = pulled[:, 0], pulled[:, 1]
        pseudo = pulled[:, 2] if self.l1 else None
        return (share.X @ x + progress.intercept[X], share.X @ d + progress.intercept[D],
                x, d, pseudo)

    # -- the iterations ------------------------------------------------------

    def start(self, intercept=0.0):
        """The gradient at the starting point (the weights in the table and
        ``intercept``; a fresh job's, before clock 1) and the first
        direction; returns the progress."""
        lr, share = self.lr, self.share
        progress = Progress(memory=self.memory)
        progress.intercept[X] = intercept
        pulled = self.table.pull(share.ids, columns=[X])[:, 0]
        intercept_grad, loss = self._share_gradient(share.X @ pulled + progress.intercept[X])
        lr.sync()
        found = None
        if lr.worker_id == 0:
            found = self._combine(self.table.map(
                "lr_lbfgs_start", (self.memory, lr.num_workers, self.lam, self.l1), each=True))
        totals = self._share(found, [intercept_grad, loss], 2 * self.memory + 4)
        intercept_grad, loss, found = totals[0], totals[1], totals[2:]
        progress.intercept[G] = progress.intercept[P] = intercept_grad if lr.fit_intercept \
            else 0.0
        self._take(progress, found, new_slot=None)
        progress.objective = loss / share.n + self.lam * progress.penalty
        self._direction(progress)
        return progress

    def iteration(self, progress):
        """One iteration: a line search along ``D``, the step, the next
        direction; sets ``converged`` or ``failed`` when it stops."""
        lr, share = self.lr, self.share
        z, zd, x, d, pseudo = self._margins(progress)
        size, loss, intercept_grad = self._line_search(progress, z, zd, x, d, pseudo)
        if size == 0.0:
            progress.failed = True
            return
        if self.l1:
            moved = orthant_step(x, d, pseudo, size)
            margins = share.X @ moved + progress.intercept[X] + size * progress.intercept[D]
        else:
            margins = z + size * zd
        intercept_grad, _ = self._share_gradient(margins)
        lr.sync()
        slot = self._free_slot(progress)
        found = None
        if lr.worker_id == 0:
            found = self._combine(self.table.map(
                "lr_lbfgs_step", (self.memory, lr.num_workers, self.lam, self.l1, size, slot),
                each=True))
        totals = self._share(found, [intercept_grad], 6 * self.memory + 6)
        previous = progress.objective
        old = progress.intercept.copy()
        progress.intercept[X] = old[X] + size * old[D]
        progress.intercept[G] = progress.intercept[P] = totals[0] if lr.fit_intercept else 0.0
        progress.pairs[:, slot] = [progress.intercept[X] - old[X],
                                   progress.intercept[G] - old[G]]
        self._take(progress, totals[1:], new_slot=slot)
        progress.objective = loss / share.n + self.lam * progress.penalty
        progress.iterations += 1
        change = (previous - progress.objective) / max(abs(previous), abs(progress.objective),
                                                       1.0)
        progress.converged = progress.largest <= (lr.tol or 0.0) or change <= FTOL
        if not progress.converged:
            self._direction(progress)

    def _line_search(self, progress, z, zd, x, d, pseudo):
        """The accepted step, with the summed log-loss and the intercept's
        gradient share there (the step is 0 if none descends)."""
        share = self.share
        slope0 = progress.slope + progress.intercept[P] * progress.intercept[D]
        # the first step is 1 / ||d|| (d = -P then), later 1: L-BFGS's d is scaled
        first = 1.0 if progress.order else 1.0 / max(
            np.sqrt(progress.d_dot_d + progress.intercept[D] ** 2), 1e-12)
        if self.l1:
            return self._backtrack(progress, first, x, d, pseudo)
        search = WolfeSearch(progress.objective, slope0, first)
        size = search.step
        while True:
            margins = z + size * zd
            residual = residuals(margins, share.y)
            local = [float(log_losses(margins, share.y).sum()), float(residual @ zd),
                     float(residual.sum())]
            loss, slope, intercept_grad = self._share(None, local, 0)
            quadratic = progress.penalty * 2.0
            value = loss / share.n + 0.5 * self.lam * (quadratic + 2 * size * progress.x_dot_d
                                                       + size * size * progress.d_dot_d)
            derivative = slope / share.n + self.lam * (progress.x_dot_d + size * progress.d_dot_d)
            following = search.tell(value, derivative)
            if following is None:
                break
            size = following
        if search.step != size:               # the best earlier step was kept
            return self._evaluate(search.step, z, zd, progress)
        return size, loss, intercept_grad

    def _evaluate(self, size, z, zd, progress):
        margins = z + size * zd
        local = [float(log_losses(margins, self.share.y).sum()),
                 float((residuals(margins, self.share.y)).sum())]
        loss, intercept_grad = self._share(None, local, 0)
        return size, loss, intercept_grad

    def _backtrack(self, progress, size, x, d, pseudo):
        """OWL-QN's backtracking along the projected path: halve the step
        until the objective falls by ``1e-4`` times the decrease the
        pseudo-gradient predicts."""
        lr, share = self.lr, self.share
        for _ in range(40):
            moved = orthant_step(x, d, pseudo, size)
            margins = share.X @ moved + progress.intercept[X] + size * progress.intercept[D]
            found = None
            if lr.worker_id == 0:
                found = self.table.map("lr_lbfgs_l1_trial", (size,))
            local = [float(log_losses(margins, share.y).sum()),
                     float((residuals(margins, share.y)).sum())]
            loss, intercept_grad, l1, predicted = self._share(found, local, 2)
            predicted += progress.intercept[P] * size * progress.intercept[D]
            value = loss / share.n + self.lam * l1
            if value <= progress.objective + 1e-4 * predicted:
                return size, loss, intercept_grad
            size *= 0.5
        return 0.0, 0.0, 0.0

    # -- scalars ------------------------------------------------------------

    def _share(self, found, local, size):
        """Every worker's ``local`` numbers summed (worker order), followed
        by worker 0's ``found`` (``size`` numbers): one exchange."""
        mine = np.zeros(len(local) + size)
        mine[:len(local)] = local
        if found is not None:
            mine[len(local):] = found
        return self.lr.sum_over_workers(mine)

    def _combine(self, results):
        """The servers' results of ``start``/``step``: sums, but maxima of
        ``max |P|``."""
        total = results[0].copy()
        for result in results[1:]:
            total += result
        total[-2] = max(result[-2] for result in results)
        return total

    def _free_slot(self, progress):
        """The slot for the next pair: an unused one, else the oldest."""
        unused = [k for k in range(self.memory) if k not in progress.order]
        return unused[0] if unused else progress.order[0]

    def _take(self, progress, found, new_slot):
        """Fold the servers' new dot products (and the intercept's part) into
        the progress; accept the new pair if its curvature is positive."""
        m = self.memory
        size = 2 * m + 1
        rows = [] if new_slot is None else [new_slot, m + new_slot]
        rows.append(2 * m)
        dots = np.asarray(found[:len(rows) * size]).reshape(len(rows), size)
        intercepts = progress.basis_intercepts()
        for row, values in zip(rows, dots):
            values = values + intercepts[row] * intercepts
            progress.dots[row, :] = values
            progress.dots[:, row] = values
        progress.penalty, largest, progress.nonzeros = found[len(rows) * size:]
        progress.largest = max(largest, abs(progress.intercept[P]))
        if new_slot is None:
            return
        if new_slot in progress.order:
            progress.order.remove(new_slot)
        curvature = progress.dots[new_slot, m + new_slot]
        if curvature > 1e-10 * progress.dots[m + new_slot, m + new_slot]:
            progress.order.append(new_slot)

    def _direction(self, progress):
        """The next direction on the servers (worker 0 asks) and its dot
        products, shared with every worker."""
        lr = self.lr
        coefficients = two_loop(progress.dots, progress.order, self.memory)
        found = None
        if lr.worker_id == 0:
            found = self.table.map("lr_lbfgs_direction", (self.memory, coefficients, self.l1))
        progress.slope, progress.x_dot_d, progress.d_dot_d = self._share(found, [], 3)
        d_b = float(coefficients @ progress.basis_intercepts()) if lr.fit_intercept else 0.0
        progress.intercept[D] = d_b


#: Stop when an iteration lowers the objective by less than this, relatively
#: (scikit-learn's lbfgs: 64 machine epsilons).
FTOL = 64 * np.finfo(float).eps
