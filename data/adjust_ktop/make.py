"""Generate ``user_sim.txt``: each user's top-10 most similar users over the
ratings of ``data/sim/ratings.txt`` (150 users x 60 items), for
``conf/adjust_ktop.json``.

The similarity is the cosine of the users' rating vectors, ranked as the
``sim`` algorithm ranks it (score rounded to 12 decimals, descending, then
user index) and written as ``sim`` writes it with ``input_format:
"sparse"``: ``user<TAB>neighbour:score,...`` (``repr`` floats). The job
``conf/adjust_ktop.json`` could equally read a ``sim`` job's output.

Run ``python data/adjust_ktop/make.py`` to rewrite the file (same bytes every time).
"""

import os

import numpy as np

TOPK = 10
HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    triples = np.loadtxt(os.path.join(HERE, "..", "sim", "ratings.txt"))
    users, u = np.unique(triples[:, 0].astype(np.int64), return_inverse=True)
    items, i = np.unique(triples[:, 1].astype(np.int64), return_inverse=True)
    M = np.zeros((len(users), len(items)))
    np.add.at(M, (u, i), triples[:, 2])
    norms = np.linalg.norm(M, axis=1)
    norms[norms == 0] = 1.0
    unit = M / norms[:, None]
    S = unit @ unit.T
    np.fill_diagonal(S, -np.inf)
    index = np.broadcast_to(np.arange(len(users)), S.shape)
    order = np.lexsort((index, -np.round(S, 12)), axis=-1)[:, :TOPK]
    with open(os.path.join(HERE, "user_sim.txt"), "w", encoding="ascii") as handle:
        for row, user in enumerate(users):
            pairs = ",".join(f"{users[j]}:{float(S[row, j])!r}" for j in order[row])
            handle.write(f"{user}\t{pairs}\n")


if __name__ == "__main__":
    main()
