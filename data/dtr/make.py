"""Generate ``user_factors.txt``: user factors of ``data/ratings/ratings.txt``
(300 users x 200 items) for ``conf/dtr.json``.

ALS with weighted-lambda regularisation in NumPy (k = 3, lambda = 0.05, 10
iterations on the ratings minus their mean, item factors starting uniform
in [0, 0.1) from seed 0), the model ``conf/als.json`` fits; written as
``als`` writes its text factor files: ``user<TAB>f1,f2,f3`` (``repr``
floats), users in id order. The job could equally read an ``als`` job's
``model.h5`` or ``user_factors_<w>`` files.

Run ``python data/dtr/make.py`` to rewrite the file (same bytes every time
on one machine; the last bits of the floats may differ across BLAS builds).
"""

import os

import numpy as np

K, LAMBDA, ITERATIONS = 3, 0.05, 10
HERE = os.path.dirname(os.path.abspath(__file__))


def solve(other, rows, cols, values, n_rows):
    """Each row's ``(Σ x xᵀ + λ n I) f = Σ r x`` over its ratings."""
    out = np.zeros((n_rows, other.shape[1]))
    for row in range(n_rows):
        mine = rows == row
        X = other[cols[mine]]
        gram = X.T @ X + LAMBDA * mine.sum() * np.eye(other.shape[1])
        out[row] = np.linalg.solve(gram, X.T @ values[mine])
    return out


def main():
    triples = np.loadtxt(os.path.join(HERE, "..", "ratings", "ratings.txt"))
    users, u = np.unique(triples[:, 0].astype(np.int64), return_inverse=True)
    items, i = np.unique(triples[:, 1].astype(np.int64), return_inverse=True)
    r = triples[:, 2] - triples[:, 2].mean()
    Q = np.random.default_rng(0).random((len(items), K)) * 0.1
    for _ in range(ITERATIONS):
        P = solve(Q, u, i, r, len(users))
        Q = solve(P, i, u, r, len(items))
    with open(os.path.join(HERE, "user_factors.txt"), "w", encoding="ascii") as handle:
        for user, row in zip(users, P):
            handle.write(f"{user}\t" + ",".join(repr(float(x)) for x in row) + "\n")


if __name__ == "__main__":
    main()
