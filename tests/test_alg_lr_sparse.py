"""``lr``'s methods on a row table keyed by feature id (``lbfgs``) against
scikit-learn on real data, and what every method gives the user around the
fit: held-out scores, models keyed by id, predictions, admission.

Data and references are those of ``test_alg_lr.py`` (breast cancer
standardised, digits scaled to [0, 1], scikit-learn's ``LogisticRegression``
with ``tol=1e-10``), plus digits with its 64 pixel columns renamed to
random 64-bit ids (a hashed id space far beyond any dense vector).

Tolerances:

* ``lbfgs`` (L2) weights and intercept within 1e-4 of scikit-learn's
  ``lbfgs``, in at most 1.3x its iterations (the issue's target), with 1, 2
  and 4 workers;
* OWL-QN (L1): the same zero set as scikit-learn's ``saga``, and an
  objective no more than 1e-6 (relative) above saga's;
* ``ftrl``: training log-loss and objective within 1 % of scikit-learn's
  after 30 passes (l1: 60), with 1, 2 and 4 workers (staleness 2 with
  several);
* held-out metrics equal scikit-learn's ``log_loss``/``roc_auc_score``/
  accuracy of the same model to 1e-9 (they are computed from the same
  numbers); predictions equal ``predict_proba`` of a scikit-learn model
  given the same weights to 1e-6 (the files hold 6 significant digits).
"""

import os

import h5py
import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file, load_svmlight_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

import test_alg_lr
from test_alg_lr import fit, load, penalty_argument, reference

#: The same module-scoped fixture (the data sets written once per module).
datasets = test_alg_lr.datasets

pytestmark = pytest.mark.mpi


def sparse_model(result):
    """``(ids, w, intercept, attrs)`` of a model keyed by id."""
    with h5py.File(os.path.join(result.output, "model.h5")) as handle:
        return (handle["ids"][...], handle["w"][...], float(handle["intercept"][0]),
                dict(handle.attrs))


def predictions(output):
    """``{row: probability}`` from a job's ``pred_<worker>`` files."""
    found = {}
    for name in os.listdir(output):
        if name.startswith("pred_"):
            for line in open(os.path.join(output, name), encoding="utf-8"):
                row, _, probability = line.split("\t")
                found[int(row)] = float(probability)
    return found


def dense(ids, w, width):
    full = np.zeros(width)
    full[ids.astype(np.int64)] = w
    return full


def sklearn_iterations(path, C):
    X, y = load(path)
    return int(LogisticRegression(C=C, solver="lbfgs", tol=1e-10, max_iter=100_000,
                                  **penalty_argument("l2")).fit(X, y).n_iter_[0])


@pytest.mark.parametrize("data,C,workers,servers", [
    ("cancer", 0.1, 1, 1),
    ("digits", 1.0, 2, 1),
    ("cancer", 1.0, 4, 2),
])
def test_lbfgs_matches_sklearn(run_job, tmp_path, datasets, data, C, workers, servers):
    path = datasets[data]
    ref = reference(path, "l2", C)
    result, metrics = fit(run_job, tmp_path, "out", path, workers, servers, method="lbfgs",
                          penalty="l2", C=C, tol=1e-10, epochs=1000)
    ids, w, b, attrs = sparse_model(result)
    assert attrs["method"] == "lbfgs" and not attrs["zero_based"]
    w = dense(ids, w, ref["w"].size)
    print(f"{data} {workers}w: |w - ref| {np.abs(w - ref['w']).max():.2e}, iterations "
          f"{metrics['epochs']} (sklearn {sklearn_iterations(path, C)})")
    np.testing.assert_allclose(w, ref["w"], atol=1e-4)
    assert b == pytest.approx(ref["b"], abs=1e-4)
    assert metrics["converged"]
    assert metrics["objective"] == pytest.approx(ref["objective"], rel=1e-8)
    assert metrics["epochs"] <= 1.3 * sklearn_iterations(path, C)


def test_owlqn_finds_sagas_zero_set(run_job, tmp_path, datasets):
    path = datasets["digits"]
    ref = reference(path, "l1", 0.1)
    result, metrics = fit(run_job, tmp_path, "out", path, 2, 1, method="lbfgs",
                          penalty="l1", C=0.1, tol=1e-9, epochs=2000)
    ids, w, _, _ = sparse_model(result)
    w = dense(ids, w, ref["w"].size)
    np.testing.assert_array_equal(w != 0, ref["w"] != 0)
    assert metrics["nonzeros"] == np.count_nonzero(ref["w"])
    assert metrics["objective"] <= ref["objective"] * (1 + 1e-6)


def test_hashed_64_bit_ids_give_the_dense_answer(run_job, tmp_path, datasets):
    """Digits with each pixel column renamed to a random id below 2**64 - 1:
    the same weights, under those ids, as on the dense file."""
    X, y = load_svmlight_file(datasets["digits"], zero_based=False)
    rng = np.random.default_rng(5)
    names = np.unique(rng.integers(2**40, 2**64 - 2, size=80, dtype=np.uint64))[:64]
    rows = [f"{int(label)} " + " ".join(f"{names[j]}:{v:.17g}" for j, v in
                                        zip(X[i].indices, X[i].data))
            for i, label in enumerate(y)]
    hashed = tmp_path / "hashed.svm"
    hashed.write_text("\n".join(rows) + "\n")
    ref = reference(datasets["digits"], "l2", 1.0)
    result, _ = fit(run_job, tmp_path, "out", str(hashed), 2, 2, method="lbfgs", C=1.0,
                    tol=1e-10, zero_based=True, epochs=1000)
    ids, w, b, attrs = sparse_model(result)
    assert attrs["zero_based"] and ids.dtype == np.uint64
    used = np.unique(X.indices)
    assert set(ids.tolist()) == set(names[used].tolist())
    # the servers hold a row per feature that occurs, nothing for the id space
    tables = [stats["row_tables"]["lr.lbfgs"] for stats in result.metrics["server_stats"]]
    assert sum(table["rows"] for table in tables) == used.size
    assert sum(table["nbytes"] for table in tables) < 64 * used.size * 8 + 2**20
    np.testing.assert_allclose(w[np.searchsorted(ids, names[used])], ref["w"][used], atol=1e-4)
    assert b == pytest.approx(ref["b"], abs=1e-4)


def test_heldout_metrics_and_predictions_are_sklearns(run_job, tmp_path, datasets):
    X, y = load_svmlight_file(datasets["cancer"], zero_based=False)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = tmp_path / "train.svm", tmp_path / "test.svm"
    dump_svmlight_file(X[order[:400]], y[order[:400]], str(train), zero_based=False)
    dump_svmlight_file(X[order[400:]], y[order[400:]], str(test), zero_based=False)
    result, metrics = fit(run_job, tmp_path, "out", str(train), 2, 1, method="lbfgs",
                          C=0.1, test=str(test), predict=True, epochs=200)
    ids, w, b, _ = sparse_model(result)
    model = LogisticRegression()
    model.classes_ = np.array([0.0, 1.0])
    model.coef_ = dense(ids, w, X.shape[1])[None, :]
    model.intercept_ = np.array([b])
    Xt, yt = X[order[400:]], y[order[400:]]
    probability = model.predict_proba(Xt)[:, 1]
    assert metrics["test_log_loss"] == pytest.approx(log_loss(yt, probability), rel=1e-9)
    assert metrics["test_auc"] == pytest.approx(roc_auc_score(yt, probability), rel=1e-9)
    assert metrics["test_accuracy"] == pytest.approx(model.score(Xt, yt), rel=1e-9)
    timings = result.metrics["timings"]
    assert timings["wall_seconds"] >= timings["solve_seconds"] > 0
    history = [entry for entry in result.metrics["history"] if "test_log_loss" in entry]
    assert len(history) >= metrics["epochs"]               # one per iteration
    assert history[-1]["test_log_loss"] == pytest.approx(metrics["test_log_loss"])
    predicted = predictions(result.output)
    train_p = model.predict_proba(X[order[:400]])[:, 1]
    assert sorted(predicted) == list(range(400))
    np.testing.assert_allclose([predicted[i] for i in range(400)], train_p, rtol=1e-5,
                               atol=1e-6)
    # the saved model applied to new rows whose labels are placeholders (all 0)
    unlabelled = tmp_path / "new.svm"
    dump_svmlight_file(Xt, np.zeros(len(yt)), str(unlabelled), zero_based=False)
    applied, scores = fit(run_job, tmp_path, "applied", str(unlabelled), 2, 1,
                          init_model=os.path.join(result.output, "model.h5"), epochs=0,
                          predict=True, test=str(test))
    assert scores["epochs"] == 0 and scores["examples"] == len(yt)
    assert scores["test_auc"] == pytest.approx(metrics["test_auc"], rel=1e-12)
    rows = predictions(applied.output)
    np.testing.assert_allclose([rows[i] for i in range(len(yt))], probability, rtol=1e-5,
                               atol=1e-6)


def test_admission_keeps_only_features_seen_often_enough(run_job, tmp_path):
    """Features in fewer than ``admit`` examples get no weight (and no row);
    the model is the one fitted without them."""
    rng = np.random.default_rng(2)
    n = 300
    common = rng.normal(size=(n, 5))
    y = (common @ np.arange(1, 6) + rng.normal(size=n) > 0).astype(int)
    rows = []
    for i in range(n):
        features = [f"{j + 1}:{common[i, j]:.6f}" for j in range(5)]
        features.append(f"{1000 + i % 150}:1")          # each of these in 2 examples
        if i < 3:
            features.append(f"{5000 + i}:1")            # each in 1 example
        rows.append(f"{y[i]} " + " ".join(sorted(features, key=lambda t: int(t.split(':')[0]))))
    path = tmp_path / "rare.svm"
    path.write_text("\n".join(rows) + "\n")
    result, metrics = fit(run_job, tmp_path, "out", str(path), 2, 1, method="lbfgs",
                          admit=3, C=1.0, epochs=200)
    ids, w, _, _ = sparse_model(result)
    assert ids.tolist() == [0, 1, 2, 3, 4]
    assert metrics["features"] == 5 and metrics["features_seen"] == 5 + 150 + 3
    X = np.column_stack([common])
    ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(X, y)
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-3)


@pytest.mark.parametrize("data,penalty,C,workers,servers,epochs", [
    ("cancer", "l2", 0.1, 1, 1, 30),
    ("cancer", "l2", 0.1, 2, 1, 30),
    ("digits", "l1", 0.1, 4, 2, 60),   # l1's optimum is flat: 30 passes give +1.5 % log-loss
])
def test_ftrl_matches_sklearn(run_job, tmp_path, datasets, data, penalty, C, workers, servers,
                              epochs):
    path = datasets[data]
    ref = reference(path, penalty, C)
    _, metrics = fit(run_job, tmp_path, "out", path, workers, servers,
                     staleness=0 if workers == 1 else 2, method="ftrl", penalty=penalty, C=C,
                     epochs=epochs, batch_size=16)
    print(f"{data} {penalty} {workers}w: log-loss {metrics['log_loss']:.5f} "
          f"(ref {ref['log_loss']:.5f}), objective {metrics['objective']:.5f} "
          f"(ref {ref['objective']:.5f})")
    assert metrics["log_loss"] == pytest.approx(ref["log_loss"], rel=0.01)
    assert metrics["objective"] == pytest.approx(ref["objective"], rel=0.01)


def test_ftrl_admission_gives_rare_features_no_row(run_job, tmp_path):
    """With ``admit = 3``, a feature in fewer than 3 mini-batches never gets
    a row (or a weight); the others do."""
    rng = np.random.default_rng(4)
    lines = []
    for i in range(200):
        label = int(rng.random() < 0.5)
        lines.append(f"{label} 1:{rng.normal() + label:.4f}" + (f" {100 + i}:1" if i < 5 else ""))
    path = tmp_path / "rare.svm"
    path.write_text("\n".join(lines) + "\n")
    result, metrics = fit(run_job, tmp_path, "out", str(path), 1, 1, method="ftrl", admit=3,
                          epochs=2, batch_size=10)
    ids, w, _, _ = sparse_model(result)
    assert ids.tolist() == [0] and metrics["features"] == 1 and w[0] > 0


@pytest.mark.parametrize("method", ["gd", "sgd"])
def test_dense_methods_score_the_heldout_file_too(run_job, tmp_path, datasets, method):
    """gd every iteration and at the end, sgd at the end: the same numbers
    as scikit-learn's on the saved model."""
    X, y = load_svmlight_file(datasets["digits"], zero_based=False)
    train, test = tmp_path / "train.svm", tmp_path / "test.svm"
    dump_svmlight_file(X[:1400], y[:1400], str(train), zero_based=False)
    dump_svmlight_file(X[1400:], y[1400:], str(test), zero_based=False)
    result, metrics = fit(run_job, tmp_path, "out", str(train), 2, 1, method=method,
                          C=1.0, epochs=20, tol=None, test=str(test))
    with h5py.File(os.path.join(result.output, "model.h5")) as handle:
        w, b = handle["w"][...], float(handle["intercept"][0])
    Xt, yt = X[1400:], (y[1400:] > 0).astype(int)
    probability = 1.0 / (1.0 + np.exp(-(Xt[:, :w.size] @ w + b)))
    assert metrics["test_log_loss"] == pytest.approx(log_loss(yt, probability), rel=1e-9)
    assert metrics["test_auc"] == pytest.approx(roc_auc_score(yt, probability), rel=1e-9)
    scored = [entry for entry in result.metrics["history"] if "test_log_loss" in entry]
    assert len(scored) == (20 if method == "gd" else 0)    # sgd: the end only
