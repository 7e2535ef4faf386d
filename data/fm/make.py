"""Generate ``train.svm`` and ``test.svm`` for ``conf/fm.json``.

Click-like data with a known factorization machine behind it: three
categorical fields -- a user (300 values), an item (120) and a context
(8) -- one-hot encoded (feature ids 1-300, 301-420, 421-428, value 1),
plus one numeric feature (429, standard normal). The planted model has a
weight per feature and a 4-dimensional embedding per feature (normal, scale
0.8), so the label depends on user-item and item-context interactions that
a linear model cannot express; an example is +1 with probability
``sigmoid(yhat)``, else -1. Users and items are drawn from Zipf-like
frequencies, so some features are rare (what ``admit`` is for). 4,000
training and 1,000 held-out rows, LIBSVM format (1-based indices).
Seeded: running it again rewrites the same files::

    python data/fm/make.py
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
FIELDS = (300, 120, 8)


def make(seed=20261125, rows=5000, k=4):
    """``(columns, values, labels)``: 1-based feature ids and values per row."""
    rng = np.random.default_rng(seed)
    features = sum(FIELDS) + 1
    w = rng.normal(scale=0.3, size=features + 1)
    V = rng.normal(scale=0.8, size=(features + 1, k))
    bias = -0.3
    columns, values = [], []
    offset = 1
    for size in FIELDS:
        popularity = 1.0 / np.arange(1, size + 1) ** 0.8
        columns.append(offset + rng.choice(size, rows, p=popularity / popularity.sum()))
        values.append(np.ones(rows))
        offset += size
    columns.append(np.full(rows, offset))
    values.append(np.round(rng.normal(size=rows), 3))
    columns, values = np.column_stack(columns), np.column_stack(values)
    S = np.einsum("rf,rfk->rk", values, V[columns])
    yhat = (bias + (values * w[columns]).sum(1)
            + 0.5 * ((S ** 2).sum(1) - np.einsum("rf,rfk->r", values ** 2, V[columns] ** 2)))
    labels = np.where(rng.random(rows) < 1.0 / (1.0 + np.exp(-yhat)), 1, -1)
    return columns, values, labels


def write(path, columns, values, labels):
    with open(path, "w", encoding="ascii") as handle:
        for label, cols, vals in zip(labels, columns, values):
            pairs = " ".join(f"{c}:{v:.4g}" for c, v in zip(cols, vals))
            handle.write(f"{label:+d} {pairs}\n")


def main():
    columns, values, labels = make()
    write(os.path.join(HERE, "train.svm"), columns[:4000], values[:4000], labels[:4000])
    write(os.path.join(HERE, "test.svm"), columns[4000:], values[4000:], labels[4000:])


if __name__ == "__main__":
    main()
