"""The single-process references of ``study_ctr.py``, and the data helpers it shares.

Each reference runs as its own process (so its peak memory is its own):

* ``lbfgs``: scikit-learn ``LogisticRegression(solver="lbfgs", C=C, tol=tol)``;
* ``sgd``: scikit-learn ``SGDClassifier(loss="log_loss", alpha=1 / (C n))``,
  one ``partial_fit`` per epoch;
* ``vw``: Vowpal Wabbit (its Python package runs VW's own C++ driver), logistic
  loss, ``--l2 1 / (C n)``, several passes over a cache file.

scikit-learn's ``load_svmlight_file`` cannot read the click-log ids (they go
up to 2**32, past its int32 indices) and a 2**32-wide coefficient vector does
not fit in memory, so the scikit-learn references get a compacted copy: the
benchmark reads the raw file (:func:`read_libsvm`) and renumbers the ids the
training set uses to ``0 .. m - 1`` (:func:`compact`); test ids never seen in
training are dropped (a model could only give them weight 0). That reading
and renumbering is their load time. VW reads a VW-format copy written by
:func:`write_vw` (its load time, with VW's own parsing in its first pass) and
hashes the ids itself.

Every reference writes a JSON file: its held-out curve ``points``
(``[seconds since the launch, log-loss, AUC]``; held-out evaluation time is
not counted; lbfgs: after every iteration, through scikit-learn's fit
callbacks where it has them), ``load_s``, ``passes`` and ``train_s`` (for examples per
second), and what the study compares (``n_iter``, ``objective``).

``compact DATA OUT`` writes the compacted copy as LIBSVM files into ``OUT``
(:func:`write_compacted`), for an ``lr`` that cannot hold the raw id space.

Run (from the project folder; ``study_ctr.py`` does this)::

    .venv/bin/python benchmarks/ctr_references.py {lbfgs,sgd,vw} DATA OUT.json [--C 0.1] [--tol 1e-4]
    .venv/bin/python benchmarks/ctr_references.py compact DATA OUT
"""

import argparse
import json
import os
import sys
import tempfile
import time
from collections import namedtuple

import numpy as np
import scipy.sparse

#: Bytes of LIBSVM text parsed at a time.
CHUNK_BYTES = 64 << 20
SGD_EPOCHS = 5
VW_PASSES = 5
VW_BITS = 25

#: A LIBSVM file as arrays: 0/1 labels, CSR row pointers, raw ids, values.
Svm = namedtuple("Svm", "labels indptr ids values")


def _parse_chunk(data):
    """Labels, per-row feature counts, ids and values of whole LIBSVM lines."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    starts = np.concatenate([[0], ends[:-1] + 1])
    colons = np.flatnonzero(raw == ord(":"))
    counts = np.searchsorted(colons, ends) - np.searchsorted(colons, starts)
    numbers = np.fromstring(data.replace(b":", b" "), sep=" ")
    if numbers.size != counts.size + 2 * counts.sum():
        raise ValueError("not clean LIBSVM text (comments, blank lines or bad tokens)")
    heads = np.concatenate([[0], np.cumsum(1 + 2 * counts)[:-1]]).astype(np.int64)
    features = np.ones(numbers.size, dtype=bool)
    features[heads] = False
    pairs = numbers[features].reshape(-1, 2)
    return numbers[heads], counts, pairs[:, 0].astype(np.int64), pairs[:, 1]


def read_libsvm(path):
    """Read a clean LIBSVM file (ids of any size, 0/1 or -1/+1 labels).

    Returns
    -------
    Svm
        Labels as 0/1 ``int8``, ids as ``int64`` exactly as written.
    """
    parts, rest = [], b""
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK_BYTES)
            data = rest + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            rest = data[cut:]
            if data[:cut].strip():
                parts.append(_parse_chunk(data[:cut].rstrip(b"\n") + b"\n"))
            if not block:
                break
    labels, counts, ids, values = (np.concatenate(column) for column in zip(*parts))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Svm((labels > 0).astype(np.int8), indptr, ids, values)


def compact(train, test):
    """Renumber the ids the training set uses to ``0 .. m - 1`` (in id order).

    Parameters
    ----------
    train, test : Svm
        As :func:`read_libsvm` returns them.

    Returns
    -------
    X_train, X_test : scipy.sparse.csr_matrix
        ``m`` columns; test ids unseen in training are dropped.
    vocabulary : numpy.ndarray
        The raw id of each column.
    """
    import pandas

    codes, vocabulary = pandas.factorize(train.ids, sort=True)
    m = len(vocabulary)
    X_train = scipy.sparse.csr_matrix((train.values, codes.astype(np.int32), train.indptr),
                                      shape=(len(train.labels), m))
    columns = pandas.Index(vocabulary).get_indexer(test.ids)
    known = columns >= 0
    rows = np.repeat(np.arange(len(test.labels)), np.diff(test.indptr))[known]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(test.labels)))])
    X_test = scipy.sparse.csr_matrix(
        (test.values[known], columns[known].astype(np.int32), indptr),
        shape=(len(test.labels), m))
    return X_train, X_test, np.asarray(vocabulary)


def load_compacted(folder):
    """Read ``train.svm`` and ``test.svm`` of ``folder`` and compact them.

    Returns
    -------
    tuple
        ``(X_train, y_train, X_test, y_test)``.
    """
    train = read_libsvm(os.path.join(folder, "train.svm"))
    test = read_libsvm(os.path.join(folder, "test.svm"))
    X_train, X_test, _ = compact(train, test)
    return X_train, train.labels, X_test, test.labels


def heldout(y, z):
    """Held-out ``(log-loss, AUC)`` of margins ``z`` for 0/1 labels ``y``."""
    from sklearn.metrics import roc_auc_score

    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    return loss, float(roc_auc_score(y, z))


def objective(X, y, coef, intercept, C):
    """scikit-learn's objective over ``C n``: mean log-loss + ``||w||^2 / (2 C n)``."""
    z = X @ coef + intercept
    return float(np.mean(np.logaddexp(0.0, z) - y * z) + coef @ coef / (2 * C * len(y)))


class HeldoutTrace:
    """A scikit-learn (>= 1.9) fit callback: the held-out log-loss and AUC
    after every lbfgs iteration, timed without the scoring itself."""

    def __init__(self, X_test, y_test, clock, save):
        self.X_test, self.y_test, self.clock, self.save = X_test, y_test, clock, save
        self.points, self.scoring = [], 0.0

    def setup(self, estimator, context):
        """Nothing to prepare."""

    def teardown(self, estimator, context):
        """Nothing to release."""

    def on_fit_task_begin(self, estimator, context, **kwargs):
        """Nothing to do before an iteration."""

    def on_fit_task_end(self, estimator, context, *, fitted_estimator=None, **kwargs):
        """Score the model as it is after an lbfgs iteration; never stops the fit."""
        if fitted_estimator is None or getattr(context, "task_name", "") != "lbfgs-iter":
            return False
        start = time.perf_counter()
        scores = heldout(self.y_test, fitted_estimator.decision_function(self.X_test))
        self.points.append([time.perf_counter() - self.clock - self.scoring, *scores])
        self.save(self.points)
        self.scoring += time.perf_counter() - start
        return False


def lbfgs(data, C, since, out, tol=1e-4):
    """``LogisticRegression(lbfgs, tol)`` to convergence; with scikit-learn's
    callbacks (1.9+) its held-out curve after every iteration (written to
    ``out`` as it grows, so a run stopped early leaves its curve), else the
    end point only."""
    from sklearn.linear_model import LogisticRegression

    X, y, X_test, y_test = data
    loaded = time.time() - since

    def save(points):
        _dump(out, {"points": [[loaded + t, loss, auc] for t, loss, auc in points],
                    "partial": True, "load_s": loaded, "passes": len(points),
                    "train_s": points[-1][0], "examples": X.shape[0],
                    "peak_rss": peak_rss_bytes(), "curve": "every iteration"})

    model = LogisticRegression(C=C, tol=tol, max_iter=1000)
    start = time.perf_counter()
    trace = HeldoutTrace(X_test, y_test, start, save)
    if hasattr(model, "set_callbacks"):
        model.set_callbacks(trace)
    model.fit(X, y)
    fit_s = time.perf_counter() - start - trace.scoring
    last = [fit_s, *heldout(y_test, model.decision_function(X_test))]
    points = [[loaded + t, loss, auc] for t, loss, auc in trace.points[:-1] + [last]]
    n_iter = int(model.n_iter_[0])
    return {"points": points, "train_s": fit_s, "passes": n_iter, "n_iter": n_iter, "tol": tol,
            "objective": objective(X, y, model.coef_[0], model.intercept_[0], C),
            "curve": "every iteration" if trace.points else "end point only"}


def sgd(data, C, since):
    """``SGDClassifier(log_loss)``, :data:`SGD_EPOCHS` epochs of ``partial_fit``."""
    from sklearn.linear_model import SGDClassifier

    X, y, X_test, y_test = data
    clock = time.time() - since
    model = SGDClassifier(loss="log_loss", alpha=1.0 / (C * len(y)), random_state=0)
    points, train_s = [], 0.0
    for _ in range(SGD_EPOCHS):
        start = time.perf_counter()
        model.partial_fit(X, y, classes=[0, 1])
        train_s += time.perf_counter() - start
        points.append([clock + train_s, *heldout(y_test, model.decision_function(X_test))])
    return {"points": points, "train_s": train_s, "passes": SGD_EPOCHS}


def write_vw(source, target):
    """Write LIBSVM ``source`` (0/1 labels) as VW text: ``-1 | id:value ...``."""
    with open(source, "rb") as inp, open(target, "wb") as out:
        rest = b""
        while True:
            block = inp.read(CHUNK_BYTES)
            data = rest + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            rest = data[cut:]
            text = (b"\n" + data[:cut]).replace(b"\n0 ", b"\n-1 | ").replace(b"\n1 ", b"\n1 | ")
            out.write(text[1:])
            if not block:
                break


def vw_predict(model, test_vw, folder):
    """VW's margins for every row of ``test_vw`` under ``model``."""
    from vowpalwabbit import Workspace

    path = os.path.join(folder, "predictions.txt")
    Workspace(f"-t -i {model} -d {test_vw} -p {path} --quiet").finish()
    return np.loadtxt(path, usecols=0, ndmin=1)


def vw(folder, C, since):
    """Vowpal Wabbit: :data:`VW_PASSES` passes, a model saved after each
    (``--save_per_pass``); a pass's time is its model file's modification time."""
    from vowpalwabbit import Workspace

    n = _count_lines(os.path.join(folder, "train.svm"))
    with tempfile.TemporaryDirectory(prefix="ctr-vw-", dir=os.environ.get("TMPDIR")) as work:
        paths = {name: os.path.join(work, f"{name}.vw") for name in ("train", "test")}
        write_vw(os.path.join(folder, "train.svm"), paths["train"])
        loaded = time.time() - since
        model = os.path.join(work, "model")
        start = time.time()
        Workspace(f"-d {paths['train']} --loss_function logistic --passes {VW_PASSES} -c "
                  f"--cache_file {work}/cache -b {VW_BITS} --l2 {1.0 / (C * n):.6g} "
                  f"--holdout_off --save_per_pass -f {model} --quiet").finish()
        train_s = time.time() - start
        write_vw(os.path.join(folder, "test.svm"), paths["test"])
        labels = read_libsvm(os.path.join(folder, "test.svm")).labels
        points = []
        for done in range(1, VW_PASSES + 1):
            saved = f"{model}.{done}"
            margin = vw_predict(saved, paths["test"], work)
            points.append([os.path.getmtime(saved) - since, *heldout(labels, margin)])
    return {"points": points, "train_s": train_s, "passes": VW_PASSES, "load_s": loaded,
            "examples": n}


def _count_lines(path):
    with open(path, "rb") as handle:
        return sum(block.count(b"\n") for block in iter(lambda: handle.read(CHUNK_BYTES), b""))


def write_libsvm(path, X, y, rows_per_chunk=100_000):
    """Write binary-feature rows ``X`` (0-based columns) and 0/1 labels ``y``."""
    if not np.all(X.data == 1):
        raise ValueError("write_libsvm writes binary features (every value 1) only")
    with open(path + ".tmp", "w", encoding="ascii") as handle:
        for first in range(0, X.shape[0], rows_per_chunk):
            part = X[first:first + rows_per_chunk]
            tokens = np.char.add(part.indices.astype(str), ":1").tolist()
            cuts = part.indptr.tolist()
            handle.write("".join(f"{label} {' '.join(tokens[a:b])}\n" for label, a, b in
                                 zip(y[first:first + rows_per_chunk].tolist(), cuts[:-1],
                                     cuts[1:])))
    os.replace(path + ".tmp", path)


def write_compacted(folder, out):
    """Write ``folder``'s data with compacted ids (:func:`compact`) into ``out``:
    ``train.svm``, ``test.svm`` and ``meta.json`` (``features``: their count,
    ``source``: the settings of the data they came from)."""
    X_train, y_train, X_test, y_test = load_compacted(folder)
    os.makedirs(out, exist_ok=True)
    write_libsvm(os.path.join(out, "train.svm"), X_train, y_train)
    write_libsvm(os.path.join(out, "test.svm"), X_test, y_test)
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as handle:
        source = json.load(handle)["settings"]
    with open(os.path.join(out, "meta.json"), "w", encoding="utf-8") as handle:
        json.dump({"features": int(X_train.shape[1]), "source": source}, handle)


def peak_rss_bytes():
    """This process's peak resident memory (``VmHWM``)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _dump(path, result):
    """Write ``result`` to ``path`` as JSON (whole, replacing it)."""
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    os.replace(path + ".tmp", path)


def run(kind, folder, C, since, out, tol=1e-4):
    """Run reference ``kind`` on ``folder``'s data; write its result to ``out``."""
    if kind == "vw":
        result = vw(folder, C, since)
    else:
        data = load_compacted(folder)
        loaded = time.time() - since
        fit = lbfgs(data, C, since, out, tol) if kind == "lbfgs" else sgd(data, C, since)
        result = {"load_s": loaded, **fit}
        result["examples"] = int(data[0].shape[0])
        result["features"] = int(data[0].shape[1])
    result["peak_rss"] = peak_rss_bytes()
    _dump(out, result)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("lbfgs", "sgd", "vw", "compact"))
    parser.add_argument("data", help="a make_clicklog.py folder")
    parser.add_argument("out", help="the JSON result file (compact: the output folder)")
    parser.add_argument("--C", type=float, default=0.1)
    parser.add_argument("--tol", type=float, default=1e-4,
                        help="lbfgs: scikit-learn's tol (max |gradient| of the objective over C n)")
    parser.add_argument("--since", type=float, default=None,
                        help="launch time (time.time()) the curve's seconds count from")
    args = parser.parse_args(argv)
    if args.kind == "compact":
        return write_compacted(args.data, args.out)
    since = time.time() if args.since is None else args.since
    run(args.kind, args.data, args.C, since, args.out, args.tol)


if __name__ == "__main__":
    sys.exit(main())
