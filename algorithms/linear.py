"""What ``ridge`` and ``lasso`` share: loading a regression share, the
sufficient statistics of least squares, scoring, and the end of a run.

Input
-----
``format: "libsvm"`` (the default, as ``lr``): ``target index:value ...``
lines, the label being the target; indices 0- or 1-based (detected, or
``zero_based``), a dense weight vector over ``n_features`` columns.
``format: "dense"``: one vector per line, read by ``load_dense`` without an
id column: ``target,f1,...,fk`` (commas or whitespace); the job keys
``header`` and ``columns`` (roles ``id`` and ``features``) choose the
columns of a CSV table, the first feature column chosen being the target.

Nothing here talks to the servers but through the ``Algorithm`` it is given;
the pure kernels (:func:`augmented_gram`, :func:`residual_sums`,
:func:`regression_scores`) take and return NumPy arrays.
"""

import numpy as np

import paracel
from paracel.errors import DataError

#: The parameters every linear regression of the toolkit takes (the
#: algorithm adds its own); declared once, here.
COMMON_PARAMETERS = {
    "alpha": paracel.Param(float, 1.0, "penalty strength, as scikit-learn's alpha",
                           low=0.0),
    "fit_intercept": paracel.Param(bool, True, "learn an intercept"),
    "format": paracel.Param(str, "libsvm", "libsvm: 'target index:value ...' lines; dense: "
                            "'target,f1,...,fk' lines (header/columns choose CSV columns, "
                            "the first feature column is the target)",
                            choices=("libsvm", "dense")),
    "n_features": paracel.Param(int, None, "libsvm: number of features; null: the largest "
                                "index in the input", low=1, nullable=True),
    "zero_based": paracel.Param((bool, str), "auto", "libsvm: whether feature indices start "
                                "at 0 ('auto': only if some index is 0)",
                                choices=(True, False, "auto")),
    "test": paracel.Param(str, None, "a held-out file in the input's format (relative to the "
                          "job file): test_rmse and test_r2 at the end", nullable=True,
                          path=True),
    "predict": paracel.Param(bool, False, "write pred_<worker> files (row, target, "
                             "prediction)"),
}


# -- pure kernels ------------------------------------------------------------

def design(X, fit_intercept):
    """``X`` with a column of ones appended when ``fit_intercept`` (dense
    or csr, as given)."""
    if not fit_intercept:
        return X
    ones = np.ones((X.shape[0], 1))
    if isinstance(X, np.ndarray):
        return np.hstack([X, ones])
    import scipy.sparse

    return scipy.sparse.hstack([X, ones], format="csr")


def augmented_gram(X, y, fit_intercept):
    """The normal equations' blocks of one share: ``(A^T A, A^T y)`` with
    ``A = [X, 1]`` (``A = X`` without intercept), dense.

    Parameters
    ----------
    X : numpy.ndarray or scipy.sparse.csr_matrix of shape (n, d)
    y : numpy.ndarray of shape (n,)
    fit_intercept : bool

    Returns
    -------
    gram : numpy.ndarray of shape (p, p)
    rhs : numpy.ndarray of shape (p,)
        ``p = d + 1`` with an intercept, else ``d``.
    """
    A = design(X, fit_intercept)
    gram = A.T @ A
    gram = gram.toarray() if hasattr(gram, "toarray") else np.asarray(gram)
    return gram, np.asarray(A.T @ y).ravel()


def penalty_diagonal(p, alpha, fit_intercept, penalize_intercept):
    """The diagonal of ``alpha D``: ``alpha``, but 0 at an unpenalised intercept."""
    penalty = np.full(p, float(alpha))
    if fit_intercept and not penalize_intercept:
        penalty[-1] = 0.0
    return penalty


def ridge_solve(gram, rhs, alpha, fit_intercept, penalize_intercept):
    """Solve ``(A^T A + alpha D) theta = A^T y``: ``D`` the identity, but 0
    at the intercept unless ``penalize_intercept``. Returns ``(w, b)``."""
    import scipy.linalg

    system = gram + np.diag(penalty_diagonal(gram.shape[0], alpha, fit_intercept,
                                             penalize_intercept))
    try:
        theta = scipy.linalg.solve(system, rhs, assume_a="sym")
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        theta = np.linalg.lstsq(system, rhs, rcond=None)[0]
    if fit_intercept:
        return theta[:-1], float(theta[-1])
    return theta, 0.0


def squared_norm(X):
    """``||X||_F^2`` of a dense array or a sparse matrix."""
    data = X if isinstance(X, np.ndarray) else X.data
    data = np.ravel(data)
    return float(data @ data)


def residual_sums(X, y, w, b):
    """One share's sums for a full gradient and a duality gap at ``(w, b)``:
    ``X^T r`` and ``[sum r, sum r^2, r . y]`` with ``r = y - X w - b``."""
    r = y - X @ w - b
    return np.asarray(X.T @ r).ravel(), np.array([r.sum(), r @ r, r @ y])


def regression_scores(count, sse, sum_y, sum_y2):
    """``rmse`` and ``r2`` from summed counts: rows, squared error, sum and
    sum of squares of the target (``r2`` is 1 - SSE / SST, NaN when every
    target is the same)."""
    if count == 0:
        return {"rmse": float("nan"), "r2": float("nan")}
    sst = sum_y2 - sum_y * sum_y / count
    return {"rmse": float(np.sqrt(sse / count)),
            "r2": float(1.0 - sse / sst) if sst > 0 else float("nan")}


# -- sums over the workers, kept on the servers --------------------------------

def write_partial(algorithm, name, values):
    """Write this worker's ``values`` for the clock it is about to end under
    its own key ``(name, worker, clock % 2)``: two slots, so a fast worker
    never overwrites what a slow one still reads (it may be one clock ahead
    at most when it reads after :func:`sum_partials`)."""
    algorithm.write((name, algorithm.worker_id, (algorithm.clock + 1) % 2),
                    np.asarray(values, dtype=np.float64))


def sum_partials(algorithm, name):
    """Every worker's partial of the clock just ended, summed in worker
    order: the same bits on every worker and in every run. With a staleness
    other than 0 a barrier first (a full sum needs every share)."""
    if algorithm.staleness != 0:
        algorithm.sync()
    parts = algorithm.read_multi([(name, k, algorithm.clock % 2)
                                  for k in range(algorithm.num_workers)])
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


# -- loading -----------------------------------------------------------------

#: A LIBSVM share at least this dense is held as a dense array (at most 4/3
#: the memory of its CSR form, and several times faster to slice and multiply).
DENSE_ENOUGH = 0.5


def densified(X):
    """``X`` (csr) as a dense array when at least :data:`DENSE_ENOUGH` of its
    entries are stored, else unchanged."""
    if X.shape[0] * X.shape[1] and X.nnz >= DENSE_ENOUGH * X.shape[0] * X.shape[1]:
        return X.toarray()
    return X


class Share:
    """One worker's rows of a regression input.

    Attributes
    ----------
    X : numpy.ndarray or scipy.sparse.csr_matrix of shape (n_k, d)
    y : numpy.ndarray of shape (n_k,)
    n : int
        Rows over all workers.
    offset : int
        Rows of the workers before this one (row numbers of predictions).
    """

    def __init__(self, X, y, n, offset):
        self.X, self.y, self.n, self.offset = X, y, n, offset

    @property
    def d(self):
        return self.X.shape[1]


def load_share(algorithm):
    """This worker's share of the job's input (see the module docstring);
    sets ``algorithm.zero_based_`` for LIBSVM. Collective."""
    if algorithm.format == "libsvm":
        y, X = algorithm.load_libsvm(n_features=algorithm.n_features,
                                     zero_based=algorithm.zero_based)
        X.sum_duplicates()
        X, where = densified(X), None
    else:
        algorithm.zero_based_ = None
        y, X, where = _dense(algorithm, None)
    y = np.asarray(y, dtype=np.float64)
    sizes = algorithm.allgather(X.shape[0])[:, 0].astype(np.int64)
    n = int(sizes.sum())
    if n == 0:
        raise DataError(f"{algorithm.input_files[0]}: no examples in the input")
    offset = int(sizes[:algorithm.worker_id].sum())
    _check_finite(algorithm, algorithm.input_files, X, y, where, offset)
    return Share(X, y, n, offset)


def _dense(algorithm, files):
    """``(y, X, where)`` of a dense share: ``where[i]`` is row ``i``'s
    ``"<file>:<byte offset>"``."""
    where, values = algorithm.load_dense(files=files, has_id=False)
    if values.shape[1] < 2 and values.shape[0]:
        path = (files or algorithm.input_files)[0]
        raise DataError(f"{path}:1: a dense regression line needs the target and at least "
                        f"one feature; found {values.shape[1]} value(s)")
    return values[:, 0].copy(), np.ascontiguousarray(values[:, 1:]), where


def _check_finite(algorithm, files, X, y, where, offset):
    """Refuse NaN or infinite values (collective), naming the first such
    line of this worker's share (LIBSVM: its row in input order)."""
    if isinstance(X, np.ndarray):
        bad_rows = ~(np.isfinite(X).all(axis=1) & np.isfinite(y))
    else:
        bad_rows = ~np.isfinite(y)
        bad_rows[np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))[
            ~np.isfinite(X.data)]] = True
    bad = np.flatnonzero(bad_rows)
    if algorithm.sum_over_workers([bad.size])[0] == 0:
        return
    if bad.size:
        if where is not None:
            from paracel.io.lines import line_number

            path, _, at = where[bad[0]].rpartition(":")
            raise DataError(f"{path}:{line_number(path, int(at))}: NaN or infinite value")
        raise DataError(f"{files[0]}{'...' if len(files) > 1 else ''}: row {offset + bad[0]} "
                        "(0-based, in input order) holds a NaN or infinite value")
    raise DataError(f"{files[0]}: the input holds NaN or infinite values (see the other "
                    "workers' messages)")


def load_test(algorithm, d):
    """This worker's share of the ``test`` file as ``(X, y)`` over the
    training's ``d`` features (LIBSVM features beyond them weigh 0, being
    never seen in training); ``None`` without ``test``."""
    if algorithm.test is None:
        return None
    if algorithm.format == "libsvm":
        import scipy.sparse

        y, Xc, ids = algorithm.load_libsvm(files=[algorithm.test],
                                           zero_based=algorithm.zero_based_, compact=True)
        Xc.sum_duplicates()
        keep = np.flatnonzero(ids < d)
        Xc = Xc[:, keep].tocsr()
        X = scipy.sparse.csr_matrix((Xc.data, ids[keep].astype(np.int64)[Xc.indices],
                                     Xc.indptr), shape=(Xc.shape[0], d))
        where = None
    else:
        y, X, where = _dense(algorithm, [algorithm.test])
        if X.shape[0] and X.shape[1] != d:
            raise DataError(f"{algorithm.test}:1: {X.shape[1]} features, but the training "
                            f"input has {d}")
    y = np.asarray(y, dtype=np.float64)
    sizes = algorithm.allgather(X.shape[0])[:, 0].astype(np.int64)
    _check_finite(algorithm, [algorithm.test], X, y, where,
                  int(sizes[:algorithm.worker_id].sum()))
    return X, y


# -- scoring and the end of a run ----------------------------------------------

def scores(algorithm, X, y, w, b, prefix=""):
    """RMSE and R^2 of ``(w, b)`` over every worker's ``(X, y)`` (collective)."""
    r = y - X @ w - b
    count, sse, sum_y, sum_y2 = algorithm.sum_over_workers([y.size, r @ r, y.sum(), y @ y])
    return {prefix + key: value
            for key, value in regression_scores(count, sse, sum_y, sum_y2).items()}


def finish(algorithm, share, test, w, b, metrics, **attrs):
    """Score, save ``model.h5`` (``w``, ``intercept``; attributes saying how
    to apply it) and, with ``predict``, ``pred_<worker>``; returns the final
    metrics. Collective."""
    found = {**scores(algorithm, share.X, share.y, w, b), **metrics}
    if test is not None:
        found.update(scores(algorithm, *test, w, b, prefix="test_"))
    found.update(nonzeros=int(np.count_nonzero(w)), intercept=float(b), examples=share.n,
                 features=int(share.d))
    model = [("w", np.asarray(w, dtype=np.float64)), ("intercept", np.array([float(b)]))] \
        if algorithm.worker_id == 0 else []
    extra = {} if algorithm.zero_based_ is None else {"zero_based": bool(algorithm.zero_based_)}
    algorithm.save_model("model.h5", model, format=algorithm.format, n_features=int(share.d),
                         fit_intercept=algorithm.fit_intercept, alpha=algorithm.alpha,
                         examples=share.n, **extra, **attrs)
    if algorithm.predict:
        prediction = share.X @ w + b
        algorithm.dump("pred_", [(share.offset + i, (repr(float(share.y[i])),
                                                     repr(float(prediction[i]))))
                                 for i in range(share.y.size)], sep="\t")
    return found


# -- applying a saved model (python -m paracel.run predict) ---------------------

def apply_model(worker, model):
    """Predict the target of ``worker``'s share of the input with a saved
    ``ridge`` or ``lasso`` model: ``pred_<worker>`` lines
    ``row\\t[target\\t]prediction`` (rows numbered from 0 in input order),
    and ``rmse``, ``r2`` when the input carries the target.

    The input is read in the model's ``format``: LIBSVM (indices in the
    training input's base, the label the target; features the model does
    not know weigh 0), or dense lines of the model's ``n_features`` values
    (no target) or one more (the target first). Collective.
    """
    w = np.asarray(model["w"], dtype=np.float64)
    b = float(np.asarray(model["intercept"])[0])
    d = w.size
    if model.attrs.get("format") == "libsvm":
        y, Xc, ids = worker.load_libsvm(zero_based=bool(model.attrs.get("zero_based", False)),
                                        compact=True)
        Xc.sum_duplicates()
        known = ids < d
        weights = np.zeros(ids.size)
        weights[known] = w[ids[known].astype(np.int64)]
        prediction, truth = Xc @ weights + b, np.asarray(y, dtype=np.float64)
    else:
        _, values = worker.load_dense(has_id=False)
        if values.shape[1] not in (d, d + 1):
            raise DataError(f"{worker.input_files[0]}:1: {values.shape[1]} values a line, but "
                            f"the model {model.path} takes {d} features (and the target "
                            "first, optionally)")
        with_target = values.shape[1] == d + 1
        X = values[:, 1:] if with_target else values
        prediction = X @ w + b
        truth = values[:, 0] if with_target else None
    sizes = worker.allgather(prediction.size)[:, 0].astype(np.int64)
    offset = int(sizes[:worker.worker_id].sum())
    worker.dump("pred_", [(offset + i, ((repr(float(truth[i])),) if truth is not None else ())
                           + (repr(float(p)),)) for i, p in enumerate(prediction)], sep="\t")
    found = {"examples": int(sizes.sum())}
    if truth is not None:
        r = truth - prediction
        count, sse, sum_y, sum_y2 = worker.sum_over_workers([truth.size, r @ r, truth.sum(),
                                                              truth @ truth])
        found.update(regression_scores(count, sse, sum_y, sum_y2))
    return found
