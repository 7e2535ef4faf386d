"""``lr``'s share of the data: this worker's examples, what the workers agree
on about them (sizes, the label convention), the held-out set, and the
weights of ``init_model`` at given features.

:class:`Share` is plain data, built once by :func:`load_dense` (``sgd``,
``gd``: columns of the dense vector ``w``) or :func:`load_sparse` (``lbfgs``,
``ftrl``, ``epochs: 0``: feature ids of a row table) and handed to the
method's driver; the loaders are the only part that talks to the other
workers.
"""

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import scipy.sparse

from paracel.errors import DataError

#: Most row blocks per worker (or server) that ``w`` is cut into; more blocks
#: spread the model over the servers and the GD updates over the workers.
BLOCKS_PER_RANK = 4
#: The largest block (rows), as a distributed matrix's default (1 MiB of float64).
MAX_BLOCK_ROWS = 1 << 17


class HeldOut(NamedTuple):
    """This worker's share of the ``test`` file."""

    y: np.ndarray               # 0/1 labels
    X: scipy.sparse.csr_matrix  # column j is feature ids[j]
    ids: np.ndarray             # uint64 feature ids


@dataclass(frozen=True)
class Share:
    """This worker's training examples over the features they use, and what
    every worker agreed on."""

    y: np.ndarray               # 0/1 labels
    X: scipy.sparse.csr_matrix  # column j is feature ids[j]
    ids: np.ndarray             # dense methods: columns of w; else uint64 feature ids
    sizes: np.ndarray           # every worker's example count (int64, worker order)
    worker: int                 # this worker's number
    lam: float                  # the penalty's weight 1 / (C n); 0 without a penalty
    negative: int               # the input's label of class 0: -1 or 0
    zero_based: bool            # whether the input's indices were 0-based
    test: Optional[HeldOut] = None
    features_seen: Optional[int] = None  # lbfgs with admit: features before admission

    @property
    def n(self):
        """Training examples over all workers."""
        return int(self.sizes.sum())

    @property
    def offset(self):
        """The input row of this share's first example."""
        return int(self.sizes[:self.worker].sum())


def compact(X, columns):
    """``X`` restricted to ``columns`` (sorted, holding every column ``X`` uses),
    renumbered ``0 .. len(columns) - 1``."""
    return scipy.sparse.csr_matrix(
        (X.data, np.searchsorted(columns, X.indices), X.indptr),
        shape=(X.shape[0], len(columns)))


def local_columns(X):
    """``(used, X over used)``: the columns ``X`` uses (sorted) and ``X``
    renumbered over them."""
    used, local = np.unique(X.indices, return_inverse=True)
    return used, type(X)((X.data, local, X.indptr), shape=(X.shape[0], used.size))


def label_convention(seen, source):
    """The label of class 0 (-1 or 0) for the labels ``seen`` over all
    workers, or a :class:`DataError` naming ``source``."""
    if not seen:
        raise DataError(f"{source}: no examples in the input")
    if not seen <= {-1.0, 0.0, 1.0} or {-1.0, 0.0} <= seen:
        raise DataError(f"{source}: labels must be -1/+1 or 0/1; found "
                        f"{', '.join(f'{v:g}' for v in sorted(seen))}")
    return -1 if -1.0 in seen else 0


def _labels(lr, labels, both=True):
    """``(0/1 labels, label of class 0)`` of this share, once every worker's
    agree on a convention (-1/+1 or 0/1, with ``both``: both classes present)."""
    seen = set()
    for values in lr.allgather_objects(np.unique(labels).tolist()):
        seen.update(values)
    negative = label_convention(seen, lr.input_files[0])
    if both and (1.0 not in seen or len(seen) < 2):
        raise DataError(f"{lr.input_files[0]}: every label is {min(seen):g}; "
                        "logistic regression needs both classes")
    return (labels > 0).astype(np.float64), negative


def _sizes(lr, rows):
    """Every worker's example count, in worker order."""
    return lr.allgather(rows)[:, 0].astype(np.int64)


def _lam(lr, sizes):
    return 0.0 if lr.penalty == "none" else 1.0 / (lr.C * int(sizes.sum()))


def load_dense(lr, step_scale):
    """This worker's share for ``w`` (its columns), the feature count and
    the step size ``eta0``: ``learning_rate`` or ``step_scale / L``, ``L``
    the mean per-example bound of the log-loss's curvature."""
    labels, X = lr.load_libsvm(n_features=lr.n_features, zero_based=lr.zero_based)
    X.sum_duplicates()
    y, negative = _labels(lr, labels)
    columns = np.unique(X.indices)                    # the features this share touches
    sizes = _sizes(lr, X.shape[0])
    n = int(sizes.sum())
    squares = float(X.multiply(X).sum())
    total = float(lr.allgather(squares)[:, 0].sum())
    curvature = (total + n * lr.fit_intercept) / (4.0 * n)
    curvature = curvature if curvature > 0 else 0.25
    eta0 = lr.learning_rate if lr.learning_rate is not None else step_scale / curvature
    share = Share(y=y, X=compact(X, columns), ids=columns, sizes=sizes, worker=lr.worker_id,
                  lam=_lam(lr, sizes), negative=negative, zero_based=lr.zero_based_,
                  test=load_test(lr) if lr.test else None)
    return share, X.shape[1], eta0


def block_rows(lr, n_features):
    """Rows per block of ``w`` (see :data:`BLOCKS_PER_RANK`)."""
    width = max(lr.num_workers, lr.num_servers) * BLOCKS_PER_RANK
    return int(min(MAX_BLOCK_ROWS, max(1, -(-n_features // width))))


def load_sparse(lr, admit=True, both=True):
    """This worker's share over the feature ids it uses, without the
    features below the admission count (with ``admit``)."""
    labels, X, ids = lr.load_libsvm(n_features=lr.n_features, zero_based=lr.zero_based,
                                    compact=True)
    X.sum_duplicates()
    y, negative = _labels(lr, labels, both)
    sizes = _sizes(lr, X.shape[0])
    seen = None
    if admit and lr.admit > 1:
        X, ids, seen = _admitted(lr, X, ids)
    return Share(y=y, X=X, ids=ids, sizes=sizes, worker=lr.worker_id, lam=_lam(lr, sizes),
                 negative=negative, zero_based=lr.zero_based_,
                 test=load_test(lr) if lr.test else None, features_seen=seen)


def _admitted(lr, X, ids):
    """``X`` and ``ids`` without the features that occur in fewer than
    ``admit`` examples over all shares (counted on the servers), and (on
    worker 0) how many features occur at all."""
    counts = lr.rows("lr.df", width=1)
    if not lr.resumed:
        counts.push(ids, np.diff(X.tocsc().indptr).astype(np.float64))
    lr.sync()
    kept = np.flatnonzero(counts.pull(ids)[:, 0] >= lr.admit)
    seen = counts.size() if lr.worker_id == 0 else None
    return X[:, kept].tocsr(), ids[kept], seen


def load_test(lr):
    """This worker's share of the ``test`` file, its indices read with the
    training input's base."""
    labels, X, ids = lr.load_libsvm(files=[lr.test], zero_based=lr.zero_based_, compact=True)
    X.sum_duplicates()
    return HeldOut((labels > 0).astype(np.float64), X, ids)


def weights_at(known, weights, ids):
    """The ``weights`` of features ``known`` at ``ids`` (0 for the others)."""
    order = np.argsort(known)
    known, weights = known[order], weights[order]
    if not known.size:
        return np.zeros(ids.size)
    where = np.minimum(np.searchsorted(known, ids), known.size - 1)
    return np.where(known[where] == ids, weights[where], 0.0)


def init_weights(path, ids, fit_intercept):
    """The weights of the model at ``path`` at feature ``ids`` (0 for the
    features it does not have) and its intercept; a model keyed by id
    (``ids``, ``w``) or a dense one (``w``, feature ``j`` at position ``j``)."""
    import h5py

    with h5py.File(path, "r") as handle:
        weights = np.asarray(handle["w"], dtype=np.float64)
        known = np.asarray(handle["ids"], dtype=np.uint64) if "ids" in handle else \
            np.arange(weights.size, dtype=np.uint64)
        intercept = float(np.asarray(handle["intercept"])[0]) \
            if "intercept" in handle and fit_intercept else 0.0
    if not np.isfinite(weights).all() or not np.isfinite(intercept):
        raise DataError(f"{path}: the model holds non-finite weights")
    return weights_at(known, weights, ids), intercept
