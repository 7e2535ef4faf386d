"""A single-process NumPy factorization machine: the reference of ``fm``.

The same model and the same update order as one ``fm`` worker at
staleness 0, written out here with dense arrays indexed by feature: the
features indexed as the loader does (sorted distinct 0-based ids), the
examples in file order, each pass shuffled by the worker's generator
(``default_rng([seed, 0, 0])``) and cut by ``np.array_split`` into
``ceil(n / batch_size)`` batches; per batch the mean-loss gradient at the
current model, then AdaGrad with the L2 gradient at the current value for
the weights of the batch's features and the bias (unpenalised), and for the
embeddings of the batch's features that have one; a feature without an
embedding gets one (its initial value, from
:func:`paracel.algorithms.fm.initial_embeddings`) with the ``admit``-th
batch that contains it.
"""

import numpy as np
import scipy.sparse
from scipy.special import expit
from sklearn.datasets import load_svmlight_file

from paracel.algorithms.fm import initial_embeddings

BETA = 1.0


def load(path, zero_based=False):
    """``(X csr over the used features, y, feature ids)`` of a LIBSVM file."""
    X, y = load_svmlight_file(path, zero_based=zero_based)
    X = X.tocsr()
    used = np.unique(X.indices)
    X = scipy.sparse.csr_matrix((X.data, np.searchsorted(used, X.indices), X.indptr),
                                shape=(X.shape[0], used.size))
    X.sum_duplicates()
    return X, y, used.astype(np.uint64)


def predict(X, w, V, bias):
    S = X @ V
    X2 = X.multiply(X).tocsr()
    return bias + X @ w + 0.5 * ((S * S).sum(1) - X2 @ (V * V).sum(1))


def reference_fm(X, y, ids, *, k, loss, epochs, batch_size, learning_rate, l2_w, l2_v,
                 init_scale, admit, seed):
    """Fit the FM; returns ``dict(w, V, embedded, bias, history)`` (per
    pass: the mean batch loss)."""
    m = X.shape[1]
    target = (y > 0).astype(np.float64) if loss == "logistic" else y.astype(np.float64)
    w, nw = np.zeros(m), np.zeros(m)
    bias, nb = 0.0, 0.0
    V, nV = np.zeros((m, k)), np.zeros((m, k))
    born = np.zeros(m, dtype=bool)
    count = np.zeros(m, dtype=np.int64)
    start = initial_embeddings(ids, k, seed, init_scale)
    rng = np.random.default_rng([seed, 0, 0])
    batches = max(1, -(-X.shape[0] // batch_size))
    history = []
    for _ in range(epochs):
        total = 0.0
        for batch in np.array_split(rng.permutation(X.shape[0]), batches):
            batch = np.sort(batch)
            if not batch.size:
                continue
            Xb = X[batch]
            used = np.unique(Xb.indices)
            Xl = Xb[:, used]
            X2 = Xl.multiply(Xl).tocsr()
            Vl = np.where(born[used, None], V[used], 0.0)
            S = Xl @ Vl
            z = bias + Xl @ w[used] + 0.5 * ((S * S).sum(1) - X2 @ (Vl * Vl).sum(1))
            yb = target[batch]
            if loss == "logistic":
                total += float((np.logaddexp(0.0, z) - yb * z).sum())
                r = (expit(z) - yb) / batch.size
            else:
                total += float((0.5 * (z - yb) ** 2).sum())
                r = (z - yb) / batch.size
            g_w = Xl.T @ r + l2_w * w[used]
            nw[used] += g_w * g_w
            w[used] -= learning_rate * g_w / (BETA + np.sqrt(nw[used]))
            g_b = r.sum()
            nb += g_b * g_b
            bias -= learning_rate * g_b / (BETA + np.sqrt(nb))
            if k:
                g_V = Xl.T @ (r[:, None] * S) - Vl * (X2.T @ r)[:, None]
                count[used] += 1
                old = used[born[used]]
                g = g_V[born[used]] + l2_v * V[old]
                nV[old] += g * g
                V[old] -= learning_rate * g / (BETA + np.sqrt(nV[old]))
                new = used[~born[used] & (count[used] >= max(admit, 1))]
                V[new] = start[new]
                born[new] = True
        history.append(total / X.shape[0])
    return {"w": w, "V": V, "embedded": born, "bias": bias, "history": history}


def load_aligned(path, ids, zero_based=False):
    """``(X, y)`` of a LIBSVM file over the columns ``ids`` (features the
    training data lacks dropped: their weight is 0, no embedding)."""
    X, y = load_svmlight_file(path, zero_based=zero_based)
    X = X.tocoo()
    known = np.asarray(ids, dtype=np.int64)
    where = np.searchsorted(known, X.col)
    where = np.minimum(where, known.size - 1)
    keep = known[where] == X.col
    X = scipy.sparse.csr_matrix((X.data[keep], (X.row[keep], where[keep])),
                                shape=(X.shape[0], known.size))
    return X, y


def evaluate(X, y, model, loss):
    """``log_loss``/``auc``/``accuracy`` or ``rmse`` of a model on ``(X, y)``."""
    from sklearn.metrics import roc_auc_score

    z = predict(X, model["w"], model["V"], model["bias"])
    if loss == "squared":
        return {"rmse": float(np.sqrt(np.mean((z - y) ** 2)))}
    t = (y > 0).astype(np.float64)
    return {"log_loss": float(np.mean(np.logaddexp(0.0, z) - t * z)),
            "auc": float(roc_auc_score(t, z)), "accuracy": float(np.mean((z > 0) == (t > 0)))}
