"""A single-process NumPy reference of the ``als`` algorithm (ALS-WR).

Written on dense ``users × items`` count and rating matrices: each half-step
forms every row's normal equations ``(Σ_j c_uj x_j x_jᵀ + λ n_u I) f_u =
Σ_j r_uj x_j`` (the Gram sums as the count matrix times the flattened
outer products ``x_j x_jᵀ``) and solves them, rows without ratings keeping
their values. Same held-out split, same centring, same start (item
factors as :meth:`paracel.matrix.DistMatrix.initial_block` makes them for
the algorithm's block layout; user factors zero) as the algorithm.
"""

import numpy as np

from mf_helpers import rmse
from paracel.algorithms.mf import block_rows
from paracel.matrix import DistMatrix


def initial_items(n_items, k, seed, scale):
    """The item factors the servers start from."""
    matrix = DistMatrix(None, "item_factors", (n_items, k), block_rows=block_rows(n_items, k))
    return np.concatenate([matrix.initial_block(b, init="random", seed=seed, scale=scale)
                           for b in range(matrix.num_blocks)])


def _half_step(counts, residuals, fixed, lam, current):
    """New rows for every row of ``counts`` that has ratings."""
    k = fixed.shape[1]
    n = counts.sum(axis=1)
    rated = n > 0
    outer = np.einsum("jk,jl->jkl", fixed, fixed).reshape(len(fixed), k * k)
    gram = (counts[rated] @ outer).reshape(-1, k, k)
    gram += lam * n[rated][:, None, None] * np.eye(k)
    result = current.copy()
    result[rated] = np.linalg.solve(gram, (residuals[rated] @ fixed)[..., None])[..., 0]
    return result


def reference_als(data, *, k, iterations, lam, init_scale, holdout, seed, center=True):
    """ALS-WR on ``data`` (a :class:`mf_helpers.RatingData`).

    Returns
    -------
    dict
        ``train_rmse``, ``validation_rmse``, ``global_mean`` and the final
        ``user_factors`` / ``item_factors``.
    """
    user_ids, item_ids, u_all, i_all = data.indexed()
    held = data.heldout(holdout, seed)
    u, i, r = u_all[~held], i_all[~held], data.ratings[~held]
    mu = r.mean() if center else 0.0
    counts = np.zeros((len(user_ids), len(item_ids)))
    residuals = np.zeros_like(counts)
    np.add.at(counts, (u, i), 1.0)
    np.add.at(residuals, (u, i), r - mu)
    Q = initial_items(len(item_ids), k, seed, init_scale)
    P = np.zeros((len(user_ids), k))
    for _ in range(iterations):
        P = _half_step(counts, residuals, Q, lam, P)
        Q = _half_step(counts.T, residuals.T, P, lam, Q)

    def errors(mask):
        return data.ratings[mask] - (mu + np.sum(P[u_all[mask]] * Q[i_all[mask]], axis=1))

    return {"train_rmse": rmse(errors(~held)), "validation_rmse": rmse(errors(held)),
            "global_mean": mu, "user_factors": P, "item_factors": Q}
