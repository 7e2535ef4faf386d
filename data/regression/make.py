"""Generate a small regression set with a known sparse linear model.

``train.csv`` (1,500 rows) and ``test.csv`` (500 rows), comma-separated
with a header ``y,x1,...,x20``: 20 correlated Gaussian features (pairwise
correlation 0.3), a target ``y = 3 + X w + noise`` with 8 non-zero weights
(``true_w.txt``, one per line) and Gaussian noise of standard deviation 1.
Input for ``conf/ridge.json`` and ``conf/lasso.json`` (``format: dense``,
``header: true``). Seeded, so running this script again rewrites the same
files::

    python data/regression/make.py
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main(seed=20261125, train=1500, test=500, dims=20, informative=8, rho=0.3):
    rng = np.random.default_rng(seed)
    w = np.zeros(dims)
    w[rng.choice(dims, informative, replace=False)] = rng.choice([-1, 1], informative) * \
        rng.uniform(0.5, 3.0, informative)
    cov = np.full((dims, dims), rho) + (1 - rho) * np.eye(dims)
    X = rng.multivariate_normal(np.zeros(dims), cov, size=train + test)
    y = 3.0 + X @ w + rng.normal(size=train + test)
    header = "y," + ",".join(f"x{j + 1}" for j in range(dims)) + "\n"
    for name, rows in (("train.csv", slice(0, train)), ("test.csv", slice(train, None))):
        with open(os.path.join(HERE, name), "w", encoding="ascii") as handle:
            handle.write(header)
            for target, row in zip(y[rows], X[rows]):
                handle.write(f"{target:.6f}," + ",".join(f"{v:.6f}" for v in row) + "\n")
    with open(os.path.join(HERE, "true_w.txt"), "w", encoding="ascii") as handle:
        handle.write("".join(f"{v:.6f}\n" for v in w))


if __name__ == "__main__":
    main()
