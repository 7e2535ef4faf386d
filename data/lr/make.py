"""Generate ``train.svm``: 2,000 examples x 500 features for ``conf/lr.json``.

A sparse binary classification problem with a known answer: a true weight
vector with 40 non-zero entries (``true_w.txt``, ``column<TAB>weight``,
0-based columns) and intercept -0.5; each example has 20 non-zero features
chosen uniformly at random, with standard normal values, and its label is
+1 with probability ``sigmoid(x . w_true - 0.5)``, else -1. Written in
LIBSVM format (1-based indices, 4 significant digits), so an L1-penalised
fit should find mostly the true support. Seeded: running it again rewrites
the same files::

    python data/lr/make.py
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def make(seed=20240611, examples=2000, features=500, per_example=20, support=40,
         intercept=-0.5):
    """The data: ``(rows, labels, true_w)``, rows as (columns, values) pairs."""
    rng = np.random.default_rng(seed)
    true_w = np.zeros(features)
    chosen = rng.choice(features, support, replace=False)
    true_w[chosen] = rng.choice([-1.0, 1.0], support) * rng.uniform(1.0, 3.0, support)
    rows, labels = [], []
    for _ in range(examples):
        columns = np.sort(rng.choice(features, per_example, replace=False))
        values = np.round(rng.normal(size=per_example), 3)
        margin = values @ true_w[columns] + intercept
        labels.append(1 if rng.random() < 1.0 / (1.0 + np.exp(-margin)) else -1)
        rows.append((columns, values))
    return rows, np.array(labels), true_w


def main():
    rows, labels, true_w = make()
    with open(os.path.join(HERE, "train.svm"), "w", encoding="ascii") as handle:
        for label, (columns, values) in zip(labels, rows):
            pairs = " ".join(f"{c + 1}:{v:.4g}" for c, v in zip(columns, values) if v != 0)
            handle.write(f"{label:+d} {pairs}\n")
    with open(os.path.join(HERE, "true_w.txt"), "w", encoding="ascii") as handle:
        for column in np.flatnonzero(true_w):
            handle.write(f"{column}\t{true_w[column]:.6g}\n")


if __name__ == "__main__":
    main()
