"""Generate ``ratings.txt``: a small synthetic ratings set for ``conf/mf.json``
and ``conf/als.json``.

300 users × 200 items, 8,000 observed pairs drawn uniformly without
replacement (seeded). Each rating is ``3.5 + b_u + b_i + p_u · q_i + noise``
with rank-3 factors (``N(0, 0.6²)`` entries), biases ``N(0, 0.3²)`` and noise
``N(0, 0.3²)``, rounded to one decimal and clipped to ``[1, 5]``. Lines are
``user item rating`` with integer ids from 1, in random order.

Run ``python data/ratings/make.py`` to rewrite the file (same bytes every time).
"""

import os

import numpy as np

USERS, ITEMS, RATINGS, RANK, SEED = 300, 200, 8000, 3, 20240


def make(seed=SEED):
    """The ``(users, items, ratings)`` arrays of the data set."""
    rng = np.random.default_rng(seed)
    P = rng.normal(0, 0.6, (USERS, RANK))
    Q = rng.normal(0, 0.6, (ITEMS, RANK))
    bu, bi = rng.normal(0, 0.3, USERS), rng.normal(0, 0.3, ITEMS)
    pairs = rng.choice(USERS * ITEMS, RATINGS, replace=False)
    users, items = np.divmod(pairs, ITEMS)
    values = 3.5 + bu[users] + bi[items] + np.einsum("ij,ij->i", P[users], Q[items])
    values += rng.normal(0, 0.3, RATINGS)
    return users + 1, items + 1, np.clip(np.round(values, 1), 1.0, 5.0)


def main():
    users, items, ratings = make()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ratings.txt")
    with open(path, "w", encoding="ascii") as handle:
        handle.writelines(f"{u} {i} {r:.1f}\n" for u, i, r in zip(users, items, ratings))


if __name__ == "__main__":
    main()
