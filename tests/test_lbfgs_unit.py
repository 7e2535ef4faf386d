"""The scalar side of ``lr``'s L-BFGS / OWL-QN (``algorithms/lbfgs.py``) and
the held-out scores, against plain NumPy, SciPy and scikit-learn, without MPI.

* :func:`two_loop` on dot products equals the textbook two-loop recursion
  on vectors (relative 1e-12);
* the server's table functions, run on a table in memory, keep the columns
  the layout says, and the Wolfe search finds steps that satisfy the strong
  Wolfe conditions of a real logistic objective;
* a whole L-BFGS run driven by these pieces on one "server" reaches SciPy's
  L-BFGS-B minimum of the same objective (1e-8 in the weights);
* ``auc`` equals ``sklearn.metrics.roc_auc_score`` exactly, ties included.
"""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from paracel.algorithms import lbfgs
from paracel.algorithms.logistic import auc, log_losses


def textbook_direction(gradient, pairs):
    """``-H g`` by the two-loop recursion on vectors (Nocedal and Wright 7.4)."""
    q = gradient.copy()
    alphas = []
    for s, y in reversed(pairs):
        alpha = (s @ q) / (s @ y)
        alphas.append(alpha)
        q -= alpha * y
    s, y = pairs[-1]
    q *= (s @ y) / (y @ y)
    for (s, y), alpha in zip(pairs, reversed(alphas)):
        beta = (y @ q) / (s @ y)
        q += (alpha - beta) * s
    return -q


@pytest.mark.parametrize("count,memory", [(0, 3), (1, 3), (3, 3), (2, 5)])
def test_two_loop_on_dot_products_is_the_textbook_recursion(count, memory):
    rng = np.random.default_rng(count)
    n = 40
    slots = list(rng.permutation(memory)[:count])     # any slots, oldest first
    basis = np.zeros((2 * memory + 1, n))
    pairs = []
    for slot in slots:
        s = rng.normal(size=n)
        y = s + 0.1 * rng.normal(size=n)              # positive curvature
        basis[slot], basis[memory + slot] = s, y
        pairs.append((s, y))
    basis[2 * memory] = gradient = rng.normal(size=n)
    coefficients = lbfgs.two_loop(basis @ basis.T, slots, memory)
    expected = textbook_direction(gradient, pairs) if pairs else -gradient
    np.testing.assert_allclose(coefficients @ basis, expected, rtol=1e-12, atol=1e-12)


def test_pseudo_gradient_and_orthant_step():
    g = np.array([0.5, -0.5, 2.0, -2.0, 0.3, 0.0])
    x = np.array([1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    lam = 1.0
    np.testing.assert_allclose(lbfgs.pseudo_gradient(g, x, lam),
                               [1.5, -1.5, 1.0, -1.0, 0.0, 0.0])
    d = np.array([-3.0, 0.5, -1.0, 1.0, 0.0, 1.0])
    pseudo = lbfgs.pseudo_gradient(g, x, lam)
    # x[0] would cross zero: stopped at 0; x = 0 moves only against the pseudo-gradient
    np.testing.assert_allclose(lbfgs.orthant_step(x, d, pseudo, 1.0),
                               [0.0, -0.5, -1.0, 1.0, 0.0, 0.0])


def problem():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    lam = 1.0 / (0.1 * len(y))

    def objective(w):
        z = X @ w
        r = expit(z) - y
        return log_losses(z, y).mean() + 0.5 * lam * w @ w, X.T @ r / len(y) + lam * w

    return X, y, lam, objective


def test_wolfe_search_satisfies_the_strong_wolfe_conditions():
    X, _, _, objective = problem()
    w = np.zeros(X.shape[1])
    value0, gradient = objective(w)
    direction = -gradient
    slope0 = gradient @ direction
    for start in (1e-3, 1.0, 100.0):                   # too short, about right, far too long
        search = lbfgs.WolfeSearch(value0, slope0, start)
        step = search.step
        while step is not None:
            value, g = objective(w + step * direction)
            step = search.tell(value, g @ direction)
        value, g = objective(w + search.step * direction)
        assert value <= value0 + 1e-4 * search.step * slope0
        assert abs(g @ direction) <= 0.9 * abs(slope0)


class OneServer:
    """The table functions of :mod:`lbfgs` on one in-memory shard, driven as
    :class:`lbfgs.Solver` drives them (one worker, no intercept)."""

    def __init__(self, objective, n, memory):
        self.objective, self.memory = objective, memory
        self.values = np.zeros((n, lbfgs.width(memory, 1)))

    def gradient_column(self):
        return lbfgs.HISTORY + 2 * self.memory

    def run(self, lam, iterations):
        m = self.memory
        progress = lbfgs.Progress(memory=m)
        value, gradient = self.objective(self.values[:, lbfgs.X])
        self.values[:, self.gradient_column()] = gradient - lam * self.values[:, lbfgs.X]
        found = lbfgs.start(self.values, (m, 1, lam, False))
        self.take(progress, found, None)
        progress.objective = value
        for _ in range(iterations):
            self.direction(progress)
            x, d = self.values[:, lbfgs.X].copy(), self.values[:, lbfgs.D].copy()
            step = 1.0 if progress.order else 1.0 / np.sqrt(d @ d)
            search = lbfgs.WolfeSearch(progress.objective, progress.slope, step)
            while step is not None:
                value, g = self.objective(x + step * d)
                step = search.tell(value, g @ d)
            value, g = self.objective(x + search.step * d)
            self.values[:, self.gradient_column()] = g - lam * (x + search.step * d)
            slot = next((k for k in range(m) if k not in progress.order), None)
            slot = progress.order[0] if slot is None else slot
            found = lbfgs.step(self.values, (m, 1, lam, False, search.step, slot))
            self.take(progress, found, slot)
            progress.objective = value
        return self.values[:, lbfgs.X]

    def take(self, progress, found, slot):
        solver = lbfgs.Solver.__new__(lbfgs.Solver)
        solver.memory = self.memory
        solver._take(progress, found, slot)

    def direction(self, progress):
        coefficients = lbfgs.two_loop(progress.dots, progress.order, self.memory)
        progress.slope, _, _ = lbfgs.direction(self.values, (self.memory, coefficients, False))


def test_table_functions_drive_l_bfgs_to_scipys_minimum():
    X, _, lam, objective = problem()
    expected = minimize(objective, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B",
                        options={"gtol": 1e-12, "ftol": 0, "maxiter": 10_000}).x
    found = OneServer(objective, X.shape[1], memory=10).run(lam, iterations=200)
    np.testing.assert_allclose(found, expected, atol=1e-8)


def test_auc_is_scikit_learns_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, size=500).astype(float)
    scores = np.round(rng.normal(size=500) + labels, 1)    # many ties
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-15)
    assert np.isnan(auc(scores, np.ones(500)))
