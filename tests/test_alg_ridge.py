"""The bundled ``ridge`` algorithm against the closed form and scikit-learn.

Data: scikit-learn's ``load_diabetes`` (442 x 10), features standardised
with ``StandardScaler``, the raw disease-progression target (mean 152,
standard deviation 77), written both as LIBSVM (``dump_svmlight_file``,
read back with ``load_svmlight_file`` so the references see exactly the
job's numbers) and as a CSV with a header (``repr`` floats). The first 342
rows train, the last 100 are the held-out ``test`` file.

References and tolerances:

* ``method: "exact"``: the coefficients and intercept of
  ``sklearn.linear_model.Ridge(alpha)`` and of the closed form
  ``(A^T A + alpha D)^-1 A^T y`` (NumPy, ``A = [X, 1]``) within 1e-8
  (absolute; coefficients are of order 1-40), with 1, 2 and 4 workers and
  both formats; ``penalize_intercept: true`` against the closed form with
  ``D = I``; held-out RMSE and R^2 equal scikit-learn's within 1e-9
  (relative); the predictions file equals ``X w + b``; ``python -m
  paracel.run predict`` with the saved model on the test file gives the
  job's held-out scores (1e-12) and ``X w + b``.
* ``method: "cg"`` (conjugate gradients, default ``tol``): the same
  within 1e-8 with 3 workers (observed 5e-12 in 12 iterations).
* ``method: "ipm"`` (iterative parameter mixing of local SGD, 50 rounds):
  the objective ``||y - X w - b||^2 + alpha ||w||^2`` within 1 % of the
  optimum with 4 workers at staleness 2 (observed 0.5 %, as at staleness 0
  and asynchronous; SGD mixing stops near, not at, the optimum).
* Bad input (a CSV line with a missing column, a NaN) stops the job naming
  the file and line; bad parameters are refused naming ``params.<name>``.
"""

import json
import os
import sys

import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file, load_diabetes, load_svmlight_file
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

import paracel
from conftest import JobResult, assert_ok, run_command
from paracel.errors import ConfigError

pytestmark = pytest.mark.mpi

TRAIN = 342


def closed_form(X, y, alpha, penalize_intercept=False):
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    D = np.eye(A.shape[1])
    if not penalize_intercept:
        D[-1, -1] = 0.0
    theta = np.linalg.solve(A.T @ A + alpha * D, A.T @ y)
    return theta[:-1], theta[-1]


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    """Paths of the LIBSVM and CSV files (train, test) and the arrays read back."""
    folder = tmp_path_factory.mktemp("diabetes")
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    found = {}
    for part, rows in (("train", slice(0, TRAIN)), ("test", slice(TRAIN, None))):
        svm = folder / f"{part}.svm"
        dump_svmlight_file(X[rows], y[rows], str(svm))
        Xs, ys = load_svmlight_file(str(svm), n_features=X.shape[1])
        csv = folder / f"{part}.csv"
        csv.write_text("y," + ",".join(f"x{j}" for j in range(X.shape[1])) + "\n" + "".join(
            repr(float(t)) + "," + ",".join(map(repr, row.tolist())) + "\n"
            for t, row in zip(ys, Xs.toarray())))
        found[part] = (str(svm), str(csv), Xs.toarray(), ys)
    return found


def run(run_job, diabetes, workers, servers, fmt, staleness=0, **params):
    svm, csv, _, _ = diabetes["train"]
    test = diabetes["test"][0 if fmt == "libsvm" else 1]
    job = {"input": svm if fmt == "libsvm" else csv, "servers": servers, "staleness": staleness,
           "params": {"format": fmt, "test": test, "predict": True, **params}}
    if fmt == "dense":
        job["header"] = True
    result = run_job("ridge", processes=workers + servers, **job)
    assert_ok(result)
    return result


def predictions(result, workers):
    rows = [line.split("\t") for w in range(workers)
            for line in result.read(f"pred_{w}").splitlines()]
    rows.sort(key=lambda r: int(r[0]))
    return np.array([[float(r[1]), float(r[2])] for r in rows])


@pytest.mark.parametrize("workers,servers,fmt,alpha,penalize,method",
                         [(1, 1, "libsvm", 1.0, False, "exact"),
                          (2, 2, "dense", 10.0, False, "exact"),
                          (4, 1, "libsvm", 1.0, True, "exact"),
                          (3, 1, "dense", 1.0, False, "cg")])
def test_exact_equals_closed_form_and_sklearn(run_job, diabetes, workers, servers, fmt, alpha,
                                              penalize, method, tmp_path):
    result = run(run_job, diabetes, workers, servers, fmt, alpha=alpha,
                 penalize_intercept=penalize, method=method)
    _, _, X, y = diabetes["train"]
    model = paracel.load_model(os.path.join(result.output, "model.h5"))
    w, b = np.asarray(model["w"]), float(np.asarray(model["intercept"])[0])
    w_ref, b_ref = closed_form(X, y, alpha, penalize)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-8)
    assert abs(b - b_ref) < 1e-8
    if not penalize:
        ref = Ridge(alpha=alpha).fit(X, y)
        np.testing.assert_allclose(w, ref.coef_, rtol=0, atol=1e-8)
        assert abs(b - ref.intercept_) < 1e-8
        _, _, Xt, yt = diabetes["test"]
        rmse = np.sqrt(np.mean((yt - ref.predict(Xt)) ** 2))
        metrics = result.metrics["metrics"]
        assert metrics["test_rmse"] == pytest.approx(rmse, rel=1e-9)
        assert metrics["test_r2"] == pytest.approx(ref.score(Xt, yt), rel=1e-9)
    objective = np.sum((y - X @ w_ref - b_ref) ** 2) + alpha * (w_ref @ w_ref
                                                                  + (b_ref ** 2 if penalize else 0))
    assert result.metrics["metrics"]["objective"] == pytest.approx(objective, rel=1e-9)
    assert model.attrs["fit_intercept"] and model.attrs["format"] == fmt
    pred = predictions(result, workers)
    np.testing.assert_allclose(pred[:, 0], y, rtol=1e-15)
    np.testing.assert_allclose(pred[:, 1], X @ w + b, rtol=1e-12)
    if workers == 1:
        check_predict(result, diabetes, fmt, tmp_path)


def check_predict(result, diabetes, fmt, tmp_path):
    """``python -m paracel.run predict`` applies the saved model to the test
    file: the job's held-out scores, predictions ``X w + b``."""
    svm, csv, Xt, yt = diabetes["test"]
    output = tmp_path / "predicted"
    command = [sys.executable, "-m", "paracel.run", "predict",
               os.path.join(result.output, "model.h5"), svm if fmt == "libsvm" else csv,
               "--output", str(output), "-n", "3"]
    if fmt == "dense":
        command += ["--set", "header=true"]
    code, _, err, _ = run_command(command, 120)
    assert code == 0, err[-3000:]
    with open(output / "metrics.json", encoding="utf-8") as handle:
        found = json.load(handle)["metrics"]
    expected = result.metrics["metrics"]
    assert found["rmse"] == pytest.approx(expected["test_rmse"], rel=1e-12)
    assert found["r2"] == pytest.approx(expected["test_r2"], rel=1e-12)
    model = paracel.load_model(os.path.join(result.output, "model.h5"))
    pred = predictions(JobResult(0, "", "", str(output), 0.0), 2)
    np.testing.assert_allclose(pred[:, 1], Xt @ np.asarray(model["w"])
                               + float(np.asarray(model["intercept"])[0]), rtol=1e-12)



def test_ipm_within_one_percent_of_the_optimum(run_job, diabetes):
    result = run(run_job, diabetes, 4, 1, "libsvm", staleness=2, method="ipm", alpha=1.0)
    _, _, X, y = diabetes["train"]
    w_ref, b_ref = closed_form(X, y, 1.0)
    best = np.sum((y - X @ w_ref - b_ref) ** 2) + w_ref @ w_ref
    model = paracel.load_model(os.path.join(result.output, "model.h5"))
    w, b = np.asarray(model["w"]), float(np.asarray(model["intercept"])[0])
    got = np.sum((y - X @ w - b) ** 2) + w @ w
    assert result.metrics["metrics"]["objective"] == pytest.approx(got, rel=1e-9)
    assert best <= got <= 1.01 * best, (got / best - 1)
    assert result.metrics["metrics"]["rounds"] == 50


def test_bad_line_names_file_and_line(run_job, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1.0,2.0,3.0\n2.0,1.0\n")
    result = run_job("ridge", processes=2, input=str(path), params={"format": "dense"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{path}:2" in result.stderr
    path.write_text("y,a\n1.0,2.0\n2.0,nan\n")
    result = run_job("ridge", processes=2, input=str(path), header=True,
                     params={"format": "dense"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"{path}:3: NaN or infinite value" in result.stderr


def test_bad_parameters_are_refused_naming_them():
    from paracel.algorithms.ridge import Ridge as ParacelRidge

    for params, name in (({"method": "sgd"}, "params.method"),
                         ({"alpha": -1.0}, "params.alpha"),
                         ({"format": "csv"}, "params.format")):
        with pytest.raises(ConfigError, match=name):
            ParacelRidge(**params)


def test_kernels(diabetes):
    """The pure kernels (no MPI): the normal equations summed over row
    shares equal the whole's, and solve to the closed form."""
    from paracel.algorithms.linear import augmented_gram, regression_scores, ridge_solve

    _, _, X, y = diabetes["train"]
    parts = [augmented_gram(X[rows], y[rows], True)
             for rows in np.array_split(np.arange(len(y)), 3)]
    gram, rhs = sum(p[0] for p in parts), sum(p[1] for p in parts)
    w, b = ridge_solve(gram, rhs, 2.0, True, False)
    w_ref, b_ref = closed_form(X, y, 2.0)
    np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-9)
    assert abs(b - b_ref) < 1e-9
    r = y - X @ w - b
    found = regression_scores(len(y), r @ r, y.sum(), y @ y)
    assert found["r2"] == pytest.approx(1 - (r @ r) / np.sum((y - y.mean()) ** 2), rel=1e-12)


def test_local_sgd_kernel_approaches_the_optimum(diabetes):
    """ipm's local step alone (one share, no MPI), with a decaying step:
    within 1 % of the optimal objective after 100 passes."""
    from paracel.algorithms.ridge import local_sgd

    _, _, X, y = diabetes["train"]
    w_ref, b_ref = closed_form(X, y, 1.0)
    best = np.sum((y - X @ w_ref - b_ref) ** 2) + w_ref @ w_ref
    theta = np.append(np.zeros(X.shape[1]), y.mean())
    rng = np.random.default_rng(0)
    eta0 = 0.5 / (np.mean((X ** 2).sum(axis=1)) + 1)
    for epoch in range(100):
        theta = local_sgd(X, y, theta, eta0 / (1 + 0.05 * epoch), 1.0 / len(y), 1, 16, rng,
                          True, False)
    w, b = theta[:-1], theta[-1]
    assert best <= np.sum((y - X @ w - b) ** 2) + w @ w <= 1.01 * best
