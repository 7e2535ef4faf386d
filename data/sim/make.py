"""Generate ``ratings.txt``: synthetic ``user item rating`` lines for ``conf/sim.json``.

150 users and 60 items with 3 hidden tastes: a user rates about 30 % of the
items, 0.5 to 5 stars in half steps, higher for items of the taste the user
prefers. Seeded, so running this script again rewrites the same file::

    python data/sim/make.py
"""

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main(seed=20240602, users=150, items=60, tastes=3, density=0.3):
    rng = np.random.default_rng(seed)
    user_taste = rng.dirichlet(np.full(tastes, 0.3), size=users)
    item_taste = rng.integers(tastes, size=items)
    stars = 1.0 + 4.0 * user_taste[:, item_taste] + rng.normal(scale=0.5, size=(users, items))
    stars = np.clip(np.round(stars * 2) / 2, 0.5, 5.0)
    rated = rng.random((users, items)) < density
    with open(os.path.join(HERE, "ratings.txt"), "w", encoding="ascii") as handle:
        for user, item in zip(*np.nonzero(rated)):
            handle.write(f"{user + 1} {item + 1} {stars[user, item]}\n")


if __name__ == "__main__":
    main()
