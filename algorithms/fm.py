"""Factorization machines on sparse LIBSVM data (``fm``), DiFacto style.

What it computes
----------------
A second-order factorization machine (Rendle, ICDM 2010)

    yhat(x) = b + sum_j w_j x_j + sum_{j < l} (v_j . v_l) x_j x_l
            = b + x.w + 1/2 sum_f [ (sum_j v_jf x_j)^2 - sum_j v_jf^2 x_j^2 ]

with a weight ``w_j`` and an embedding ``v_j`` of dimension ``k`` per
feature, fitted to minimise the mean loss over the examples plus
``l2_w / 2 ||w||^2 + l2_v / 2 ||V||^2`` (the bias unpenalised): the
logistic loss for binary labels (``loss: "logistic"``, labels -1/+1 or 0/1,
``sigmoid(yhat)`` the probability) or the squared loss ``(yhat - y)^2 / 2``
(``"squared"``, any real labels). As in libFM's SGD the penalty's gradient
is added for the features a mini-batch touches (lazy regularisation), so a
rare feature is penalised less than in the batch objective; on dense data
both agree. With ``k = 0`` it is a linear model: logistic regression with
``C = 1 / (l2_w n)``.

How it uses the parameter server
--------------------------------
Two row tables keyed by feature id (only the features that occur take
memory; ids may be hashed into 2**32 or be any 64-bit number):

* ``fm.w``, rows ``[w, n]``: each feature's weight and AdaGrad's sum of its
  squared gradients; the bias is the row of id ``2**64 - 1`` (an id LIBSVM
  indices never take);
* ``fm.v``, rows ``[v (k), n (k), born]``: the embeddings, admitted as in
  DiFacto (Li et al., WSDM 2016): a feature gets an embedding only with the
  ``admit``-th mini-batch that contains it (the row table's admission,
  counted on the feature's server); until then it has none (its ``v`` is 0
  in the model, so it contributes only ``w_j x_j``). An embedding is born
  at its initial value, drawn uniformly in ``[-init_scale, init_scale)``
  from a hash of the feature id and the job's seed (so it is the same for
  any number of workers and servers), and updated from the next batch on.

Mini-batches as in ``lr``'s ftrl: each worker shuffles its share every pass
and cuts it into as many batches as every other worker's, one clock each
under SSP. A batch pulls the ``w`` and ``v`` of its features and the bias,
computes the gradient of its mean loss, and pushes it with a row function
(:func:`adagrad_w`, :func:`adagrad_v`) that adds the penalty's gradient at
the server's current value and takes the AdaGrad step
``theta -= learning_rate * g / (1 + sqrt(n))`` on the server, in one step
no other push interleaves with: concurrent workers never overwrite each
other's updates, and a feature's step size follows from all of them.
With one worker and staleness 0 a job is exactly the single-process
algorithm (the tests compare it with a NumPy FM to 1e-9).

Held-out data: with ``test`` every worker scores its share of the file
after every pass (``test_log_loss``, ``test_auc``, ``test_accuracy``, or
``test_rmse``), in the clock's history and at the end in ``metrics.json``.

Checkpoints and resume: the model and AdaGrad's sums are on the servers; a
worker's state is its loop's progress (:class:`Progress`: the pass and
batch, the pass's loss sums, its generator's state before the pass's
shuffle), so a resumed job draws the same pass and takes the next batch.

Output: ``model.h5`` with ``feature_ids`` (uint64, increasing, 0-based),
``w``, ``V`` (``(features, k)``, zero rows for features without an
embedding), ``embedded`` (1 where a feature has one) and ``bias``, and the
attributes ``loss``, ``k``, ``link`` and ``zero_based`` that say how to
apply it; with ``predict`` ``pred_<worker>`` files.
"""

from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse
from scipy.special import expit

import paracel
from paracel.algorithms.logistic import auc, log_losses
from paracel.errors import ConfigError, DataError

#: The bias's id: the one LIBSVM indices never take.
BIAS = np.uint64(2**64 - 1)
#: AdaGrad's ``beta``: a step is ``learning_rate * g / (BETA + sqrt(n))``.
BETA = 1.0


# -- server side: row functions ----------------------------------------------

@paracel.row_function("fm_adagrad_w")
def adagrad_w(rows, deltas, params):
    """AdaGrad on rows ``[w, n]``: ``deltas[:, 0]`` the loss gradient,
    ``deltas[:, 1]`` the L2 weight (0 for the bias); ``params =
    (learning_rate,)``."""
    (rate,) = params
    gradient = deltas[:, 0] + deltas[:, 1] * rows[:, 0]
    rows[:, 1] += gradient * gradient
    rows[:, 0] -= rate * gradient / (BETA + np.sqrt(rows[:, 1]))


@paracel.row_function("fm_adagrad_v")
def adagrad_v(rows, deltas, params):
    """AdaGrad on rows ``[v (k), n (k), born]``: ``deltas[:, :k]`` the loss
    gradient, ``deltas[:, k:]`` the initial embedding; ``params =
    (learning_rate, l2_v, k)``. A row just made (``born`` 0) takes its
    initial embedding; the others take the step."""
    rate, l2, k = params
    k = int(k)
    born = rows[:, 2 * k] > 0
    v, n = rows[born, :k], rows[born, k:2 * k]
    gradient = deltas[born, :k] + l2 * v
    n += gradient * gradient
    v -= rate * gradient / (BETA + np.sqrt(n))
    rows[born, :k], rows[born, k:2 * k] = v, n
    fresh = ~born
    rows[fresh, :k] = deltas[fresh, k:2 * k]
    rows[fresh, 2 * k] = 1.0


@paracel.table_function("fm_sum_sq")
def sum_sq(values, params):
    """``params = (count,)``: the sum of squares of the first ``count`` columns."""
    (count,) = params
    part = values[:, :int(count)]
    return float(np.einsum("ij,ij->", part, part))


# -- pure kernels --------------------------------------------------------------

def initial_embeddings(ids, k, seed, scale):
    """Each feature's initial embedding: ``(len(ids), k)`` uniform in
    ``[-scale, scale)``, from a splitmix64 hash of ``(id, seed, f)``: the
    same on every rank, for any number of workers and servers."""
    ids = np.asarray(ids, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (ids[:, None] * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64(seed & (2**64 - 1)) * np.uint64(0xD1B54A32D192ED03)
             + np.arange(1, k + 1, dtype=np.uint64)[None, :] * np.uint64(0x8CB92BA72F3D8DD7))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    unit = (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return scale * (2.0 * unit - 1.0)


def margins(X, X2, w, V, bias):
    """``yhat`` of the rows of ``X`` (csr over the features of ``w`` and
    ``V``; ``X2`` its elementwise square); also ``S = X V``."""
    S = X @ V
    pair = 0.5 * (np.einsum("ij,ij->i", S, S) - X2 @ np.einsum("ij,ij->i", V, V))
    return bias + X @ w + pair, S


def gradients(X, X2, V, S, residual):
    """The summed loss gradients ``(g_w, g_V, g_b)`` for per-example
    derivatives ``residual`` of the loss in ``yhat``."""
    g_w = X.T @ residual
    g_V = X.T @ (residual[:, None] * S) - V * (X2.T @ residual)[:, None]
    return g_w, g_V, float(residual.sum())


def losses(z, y, loss):
    """Per-example loss: logistic (0/1 labels) or squared ``(z - y)^2 / 2``."""
    if loss == "logistic":
        return log_losses(z, y)
    return 0.5 * (z - y) ** 2


def residuals(z, y, loss):
    """The loss's derivative in ``yhat``."""
    return expit(z) - y if loss == "logistic" else z - y


def local(X):
    """``X`` restricted to the columns it uses: ``(X over them, their
    positions)``."""
    used, where = np.unique(X.indices, return_inverse=True)
    return scipy.sparse.csr_matrix((X.data, where.ravel(), X.indptr),
                                   shape=(X.shape[0], used.size)), used


@dataclass
class Progress:
    """Where this worker is between two clocks (its checkpoint state)."""

    epoch: int = 0          # passes begun
    batch: int = 0          # batches of the current pass done
    loss_sum: float = 0.0   # the pass's summed batch loss so far
    seen: int = 0           # the examples it covers
    shuffle_rng: dict = None  # the generator's state before the pass's shuffle


class FactorizationMachine(paracel.Algorithm):
    """Factorization machine (logistic or squared loss) by mini-batch AdaGrad
    under SSP, the model in row tables keyed by feature id."""

    summary = ("factorization machine on sparse LIBSVM data (binary or regression), "
               "AdaGrad on the servers, embeddings only for features seen admit times")
    reads = ('LIBSVM lines: "target index:value ..." (binary: labels +1/-1 or 1/0; '
             'regression: any number; indices 0- or 1-based, detected; ids up to 2**64-2)')
    parameters = {
        "k": paracel.Param(int, 8, "embedding dimension (0: a linear model)", low=0),
        "loss": paracel.Param(str, "logistic", "logistic (binary labels -1/+1 or 0/1) or "
                              "squared (regression)", choices=("logistic", "squared")),
        "epochs": paracel.Param(int, 10, "passes over the data; 0: no training, apply "
                                "init_model to the input (predictions, scores)", low=0),
        "batch_size": paracel.Param(int, 256, "examples per mini-batch (per worker and "
                                    "clock)", low=1),
        "learning_rate": paracel.Param(float, 0.1, "AdaGrad's step: lr * g / (1 + "
                                       "sqrt(sum of g^2))", low=0, closed="neither"),
        "l2_w": paracel.Param(float, 1e-4, "L2 penalty on the weights w (not the bias)",
                              low=0.0),
        "l2_v": paracel.Param(float, 1e-4, "L2 penalty on the embeddings V", low=0.0),
        "init_scale": paracel.Param(float, 0.01, "embeddings start uniform in [-s, s)",
                                    low=0.0),
        "admit": paracel.Param(int, 0, "a feature gets an embedding only with the admit-th "
                               "mini-batch that contains it (0, 1: the first)", low=0),
        "zero_based": paracel.Param((bool, str), "auto", "whether feature indices start at "
                                    "0 ('auto': only if some index is 0)",
                                    choices=(True, False, "auto")),
        "test": paracel.Param(str, None, "a held-out LIBSVM file (relative to the job file), "
                              "scored after every pass", nullable=True, path=True),
        "predict": paracel.Param(bool, False, "write pred_<worker> files (row, prediction; "
                                 "logistic: row, label, probability)"),
        "init_model": paracel.Param(str, None, "with epochs 0: the model.h5 of an earlier "
                                    "run to apply (relative to the job file)", nullable=True,
                                    path=True),
    }

    def __init__(self, **params):
        super().__init__(**params)
        if self.epochs == 0 and self.init_model is None:
            raise ConfigError("params.epochs: 0 applies init_model to the input, but "
                              "init_model is not set")
        if self.epochs > 0 and self.init_model is not None:
            raise ConfigError("params.init_model: fm applies a saved model with epochs 0 "
                              "only (it does not warm-start training)")

    # -- the run ---------------------------------------------------------------

    def solve(self):
        self._load()
        if self.epochs == 0:
            return self._apply()
        self.w_table_ = self.rows("fm.w", width=2)
        self.v_table_ = self.rows("fm.v", width=2 * self.k + 1, admit=self.admit) \
            if self.k else None
        if not self.resumed:
            self.rng_ = self.rng()
            self.progress_ = Progress(batch=self.batches_)
        progress = self.progress_
        pieces = self._shuffle() if progress.epoch else None
        while progress.batch < self.batches_ or progress.epoch < self.epochs:
            if progress.batch == self.batches_:
                progress.epoch += 1
                progress.batch, progress.loss_sum, progress.seen = 0, 0.0, 0
                pieces = self._shuffle()
            batch = np.sort(pieces[progress.batch])
            loss = self._step(batch) if batch.size else 0.0
            progress.batch += 1
            progress.loss_sum += loss
            progress.seen += batch.size
            self.report(loss=progress.loss_sum / max(progress.seen, 1),
                        epoch=round(progress.epoch - 1 + progress.batch / self.batches_, 4))
            if progress.batch == self.batches_:
                self.report(**self._heldout())
            self.iter_commit()
        return self._finish()

    def state(self):
        """The loop's progress (:class:`Progress`)."""
        return asdict(self.progress_)

    def restore(self, state):
        """Take back :meth:`state`; the generator restarts from its state
        before the current pass's shuffle, which ``solve()`` draws again."""
        self.progress_ = Progress(**state)
        self.rng_ = np.random.default_rng()
        self.rng_.bit_generator.state = self.progress_.shuffle_rng

    # -- data --------------------------------------------------------------------

    def _load(self):
        """This worker's share (``X_``, ``X2_``, ``ids_``, ``y_``); sizes and
        the number of batches a pass agreed by all workers."""
        labels, X, ids = self.load_libsvm(zero_based=self.zero_based, compact=True)
        X.sum_duplicates()
        self.y_ = self._labels(labels)
        self.X_, self.X2_, self.ids_ = X, X.multiply(X).tocsr(), ids
        sizes = self.sum_over_workers(np.eye(self.num_workers)[self.worker_id] * X.shape[0])
        self.sizes_ = sizes.astype(np.int64)
        self.n_ = int(sizes.sum())
        self.offset_ = int(sizes[:self.worker_id].sum())
        self.batches_ = max(1, int(max(-(-int(size) // self.batch_size)
                                       for size in self.sizes_)))
        self.test_ = self._load_test() if self.test else None
        if self.worker_id == 0:
            self.log.info("fm: %d examples, k=%d, %s loss, %d batches a pass per worker",
                          self.n_, self.k, self.loss, self.batches_)

    def _labels(self, labels):
        """The labels as the loss wants them: 0/1 for logistic (from -1/+1 or
        0/1, both classes over all workers), as they are for squared."""
        name = self.input_files[0]
        if not np.isfinite(labels).all():
            raise DataError(f"{name}: a label is not a finite number")
        if self.loss == "squared":
            return labels.astype(np.float64)
        seen = set()
        for values in self.allgather_objects(np.unique(labels).tolist()):
            seen.update(values)
        if not seen <= {-1.0, 0.0, 1.0} or {-1.0, 0.0} <= seen:
            raise DataError(f"{name}: logistic loss needs labels -1/+1 or 0/1; found "
                            f"{', '.join(f'{v:g}' for v in sorted(seen)[:6])}")
        self.negative_ = -1 if -1.0 in seen else 0
        return (labels > 0).astype(np.float64)

    def _load_test(self):
        """This worker's share of ``test``: ``(y, X, X2, ids)``."""
        labels, X, ids = self.load_libsvm(files=[self.test], zero_based=self.zero_based_,
                                          compact=True)
        X.sum_duplicates()
        if not np.isfinite(labels).all() or (self.loss == "logistic" and not np.isin(
                labels, (-1.0, 0.0, 1.0)).all()):
            raise DataError(f"{self.test}: labels must be finite (logistic loss: -1/+1 "
                            f"or 0/1)")
        y = (labels > 0).astype(np.float64) if self.loss == "logistic" else labels
        return y, X, X.multiply(X).tocsr(), ids

    def _shuffle(self):
        """The current pass's batches (positions in the share); the
        generator's state before the shuffle is kept, so a resumed job
        draws the same pass."""
        self.progress_.shuffle_rng = self.rng_.bit_generator.state
        return np.array_split(self.rng_.permutation(self.X_.shape[0]), self.batches_)

    # -- one mini-batch -----------------------------------------------------------

    def _model_at(self, ids):
        """``(w, V, bias)`` at feature ``ids`` as the servers hold them now
        (``V`` zero for features without an embedding); applying a saved
        model, as it holds them (zero for features it lacks)."""
        if getattr(self, "saved_", None) is not None:
            return self._saved_at(ids)
        w = self.w_table_.pull(np.append(ids, BIAS), columns=[0])[:, 0]
        if self.k:
            V = self.v_table_.pull(ids, columns=list(range(self.k)))
        else:
            V = np.zeros((ids.size, 0))
        return w[:-1], V, float(w[-1])

    def _step(self, batch):
        """One mini-batch: pull, compute, push; the batch's summed loss
        before the step."""
        X, used = local(self.X_[batch])
        X2 = X.multiply(X).tocsr()
        ids = self.ids_[used]
        w, V, bias = self._model_at(ids)
        y = self.y_[batch]
        z, S = margins(X, X2, w, V, bias)
        residual = residuals(z, y, self.loss) / batch.size
        g_w, g_V, g_b = gradients(X, X2, V, S, residual)
        deltas = np.column_stack([np.append(g_w, g_b),
                                  np.append(np.full(ids.size, self.l2_w), 0.0)])
        self.w_table_.push(np.append(ids, BIAS), deltas, fn="fm_adagrad_w",
                           params=(self.learning_rate,))
        if self.k:
            start = initial_embeddings(ids, self.k, self.seed, self.init_scale)
            self.v_table_.push(ids, np.hstack([g_V, start]), fn="fm_adagrad_v",
                               params=(self.learning_rate, self.l2_v, self.k))
        return float(losses(z, y, self.loss).sum())

    # -- scores and the end --------------------------------------------------------

    def _scores(self, X, X2, ids, y):
        """Summed loss, hits (logistic) and squared error of the current
        model on ``(X, y)``, with the margins."""
        w, V, bias = self._model_at(ids)
        z, _ = margins(X, X2, w, V, bias)
        hits = np.count_nonzero((z > 0) == (y > 0)) if self.loss == "logistic" else 0
        return z, [y.size, losses(z, y, self.loss).sum(), hits, ((z - y) ** 2).sum()]

    def _metrics(self, X, X2, ids, y, prefix):
        """The metrics of the current model on every worker's ``(X, y)``
        (collective): ``log_loss``, ``auc``, ``accuracy`` or ``rmse``; and
        this share's margins."""
        from paracel.waiting import gather_arrays

        z, part = self._scores(X, X2, ids, y)
        count, loss, hits, squares = self.sum_over_workers(part)
        count = max(count, 1)
        if self.loss == "squared":
            return z, {f"{prefix}rmse": float(np.sqrt(squares / count)),
                       f"{prefix}loss": float(loss / count)}
        metrics = {f"{prefix}log_loss": float(loss / count),
                   f"{prefix}accuracy": float(hits / count)}
        scores, labels = gather_arrays(self.comm, z), gather_arrays(self.comm, y)
        if self.worker_id == 0:
            found = auc(scores, labels)
            if np.isfinite(found):                     # NaN: one class only
                metrics[f"{prefix}auc"] = found
        return z, metrics

    def _heldout(self):
        """The held-out metrics (``{}`` without ``test``); collective."""
        if self.test_ is None:
            return {}
        y, X, X2, ids = self.test_
        return self._metrics(X, X2, ids, y, "test_")[1]

    def _finish(self):
        """Final metrics, ``model.h5``, predictions."""
        self.sync()
        z, metrics = self._metrics(self.X_, self.X2_, self.ids_, self.y_, "")
        bias = float(self.w_table_.pull([BIAS], columns=[0])[0, 0])
        norm_w = self.w_table_.map("fm_sum_sq", (1,)) - bias * bias
        norm_v = self.v_table_.map("fm_sum_sq", (self.k,)) if self.k else 0.0
        mean_loss = metrics["log_loss" if self.loss == "logistic" else "loss"]
        metrics.update(objective=float(mean_loss + 0.5 * self.l2_w * norm_w
                                       + 0.5 * self.l2_v * norm_v),
                       bias=bias, epochs=self.epochs, examples=self.n_)
        model, counts = self._model_arrays(bias)
        metrics.update(features=counts[0], embedded=counts[1])
        link = "sigmoid" if self.loss == "logistic" else "identity"
        self.save_model("model.h5", model, loss=self.loss, k=self.k, link=link,
                        zero_based=self.zero_based_,
                        formula="yhat = bias + x.w + 0.5 * sum_f((x V)_f^2 - (x^2 V^2)_f); "
                                "prediction = link(yhat)")
        if self.predict:
            self._write_predictions(z)
        return {**metrics, **self._heldout()}

    def _model_arrays(self, bias):
        """Worker 0's model datasets, and ``[features, embedded]`` on every
        worker."""
        model, counts = [], np.zeros(2)
        if self.worker_id == 0:
            ids, w = self.w_table_.items(columns=[0])
            keep = ids != BIAS
            ids, w = ids[keep], w[keep, 0]
            order = np.argsort(ids)
            ids, w = ids[order], w[order]
            V = np.zeros((ids.size, self.k))
            embedded = np.zeros(ids.size, dtype=np.uint8)
            if self.k:
                v_ids, values = self.v_table_.items(columns=list(range(self.k)) + [2 * self.k])
                where = np.searchsorted(ids, v_ids)
                V[where] = values[:, :self.k]
                embedded[where] = values[:, self.k] > 0
            model = [("feature_ids", ids), ("w", w), ("V", V), ("embedded", embedded),
                     ("bias", np.array([bias]))]
            counts = np.array([ids.size, int(embedded.sum())], dtype=np.float64)
        counts = self.sum_over_workers(counts)
        return model, [int(counts[0]), int(counts[1])]

    # -- applying a saved model ----------------------------------------------------

    def _apply(self):
        """``epochs: 0``: score the input with ``init_model`` (no training,
        no model written): metrics against the input's labels (meaningless
        if they are placeholders), predictions, held-out scores."""
        self.saved_ = read_model(self.init_model, self.loss, self.k)
        z, metrics = self._metrics(self.X_, self.X2_, self.ids_, self.y_, "")
        if self.predict:
            self._write_predictions(z)
        return {**metrics, "examples": self.n_, "epochs": 0, **self._heldout()}

    def _saved_at(self, ids):
        """``(w, V, bias)`` of the saved model at ``ids``."""
        known, w, V, bias = self.saved_
        where = np.minimum(np.searchsorted(known, ids), max(known.size - 1, 0))
        found = (known[where] == ids) if known.size else np.zeros(ids.size, dtype=bool)
        return (np.where(found, w[where], 0.0) if known.size else np.zeros(ids.size),
                np.where(found[:, None], V[where], 0.0) if known.size else
                np.zeros((ids.size, self.k)), bias)

    def _write_predictions(self, z):
        """``pred_<worker>``: row and prediction (logistic: row, label,
        probability) of this share."""
        if self.loss == "squared":
            self.dump("pred_", [(self.offset_ + i, f"{z[i]:.6g}") for i in range(len(z))],
                      sep="\t")
            return
        probability = expit(z)
        label = np.where(z > 0, 1, self.negative_)
        self.dump("pred_", [(self.offset_ + i, (int(label[i]), f"{probability[i]:.6g}"))
                            for i in range(len(z))], sep="\t")


def read_model(path, loss, k):
    """``(feature_ids, w, V, bias)`` of an ``fm`` model file, checked
    against the job's ``loss`` and ``k``."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            attrs = dict(handle.attrs)
            ids = np.asarray(handle["feature_ids"], dtype=np.uint64)
            w = np.asarray(handle["w"], dtype=np.float64)
            V = np.asarray(handle["V"], dtype=np.float64)
            bias = float(np.asarray(handle["bias"], dtype=np.float64)[0])
    except (OSError, KeyError) as error:
        raise DataError(f"{path}: not an fm model ({error})") from None
    if attrs.get("loss") != loss or int(attrs.get("k", -1)) != k:
        raise DataError(f"{path}: a model of loss {attrs.get('loss')!r} and k "
                        f"{attrs.get('k')}, the job has loss {loss!r} and k {k}")
    if V.shape != (ids.size, k) or w.shape != ids.shape or not (
            np.isfinite(w).all() and np.isfinite(V).all() and np.isfinite(bias)):
        raise DataError(f"{path}: the model's arrays do not fit together or hold "
                        f"non-finite values")
    order = np.argsort(ids)
    return ids[order], w[order], V[order], bias
