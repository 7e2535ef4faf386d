"""The bundled ``lasso`` algorithm against scikit-learn on real data.

Data: scikit-learn's ``load_diabetes`` (442 x 10), features standardised
with ``StandardScaler``, the raw target, written as LIBSVM and as a CSV with
a header (numbers read back exactly, as in ``test_alg_ridge``).

Reference: ``sklearn.linear_model.Lasso(alpha, tol=1e-12, max_iter=10**6)``
(coordinate descent to a duality gap of 1e-12 relative).

Tolerances: with 1, 2 and 4 workers (LIBSVM and CSV, staleness 0 and 2),
``tol: 1e-10``: coefficients and intercept within 1e-6 (absolute;
coefficients are of order 1-40, observed up to 4e-8), the same zero
pattern, the objective within 1e-9 (relative); without an intercept the
same against ``Lasso(fit_intercept=False)``. The duality gap kernel (no MPI)
is ~0 (1e-10 of sklearn's scale) at scikit-learn's optimum and positive off it.
"""

import os

import numpy as np
import pytest
from sklearn.datasets import dump_svmlight_file, load_diabetes, load_svmlight_file
from sklearn.linear_model import Lasso
from sklearn.preprocessing import StandardScaler

import paracel
from conftest import assert_ok
from paracel.errors import ConfigError

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diabetes")
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    svm = folder / "train.svm"
    dump_svmlight_file(X, y, str(svm))
    Xs, ys = load_svmlight_file(str(svm), n_features=X.shape[1])
    X = Xs.toarray()
    csv = folder / "train.csv"
    csv.write_text("".join(repr(float(t)) + "," + ",".join(map(repr, row.tolist())) + "\n"
                           for t, row in zip(ys, X)))
    return str(svm), str(csv), X, ys


def objective(X, y, w, b, alpha):
    return np.sum((y - X @ w - b) ** 2) / (2 * len(y)) + alpha * np.abs(w).sum()


@pytest.mark.parametrize("workers,servers,fmt,alpha,staleness",
                         [(1, 1, "libsvm", 1.0, 0), (2, 2, "dense", 0.1, 0),
                          (4, 1, "libsvm", 0.1, 2)])
def test_equals_sklearn(run_job, diabetes, workers, servers, fmt, alpha, staleness):
    svm, csv, X, y = diabetes
    result = run_job("lasso", processes=workers + servers, servers=servers,
                     staleness=staleness, input=svm if fmt == "libsvm" else csv,
                     params={"format": fmt, "alpha": alpha, "tol": 1e-10})
    assert_ok(result)
    ref = Lasso(alpha=alpha, tol=1e-12, max_iter=10 ** 6).fit(X, y)
    model = paracel.load_model(os.path.join(result.output, "model.h5"))
    w, b = np.asarray(model["w"]), float(np.asarray(model["intercept"])[0])
    np.testing.assert_allclose(w, ref.coef_, rtol=0, atol=1e-6)
    assert abs(b - ref.intercept_) < 1e-6
    assert np.array_equal(w == 0, ref.coef_ == 0)
    metrics = result.metrics["metrics"]
    assert metrics["converged"] is True
    assert metrics["objective"] == pytest.approx(objective(X, y, ref.coef_, ref.intercept_,
                                                           alpha), rel=1e-9)
    assert metrics["nonzeros"] == np.count_nonzero(ref.coef_)


def test_without_intercept(run_job, diabetes):
    svm, _, X, y = diabetes
    result = run_job("lasso", processes=3, input=svm,
                     params={"alpha": 0.5, "tol": 1e-10, "fit_intercept": False})
    assert_ok(result)
    ref = Lasso(alpha=0.5, tol=1e-12, max_iter=10 ** 6, fit_intercept=False).fit(X, y)
    model = paracel.load_model(os.path.join(result.output, "model.h5"))
    np.testing.assert_allclose(np.asarray(model["w"]), ref.coef_, rtol=0, atol=1e-6)
    assert float(np.asarray(model["intercept"])[0]) == 0.0


def test_duality_gap_kernel(diabetes):
    """The gap from the summed statistics is ~0 at scikit-learn's optimum,
    positive elsewhere, and its primal is the objective (no MPI)."""
    from paracel.algorithms.lasso import duality_gap
    from paracel.algorithms.linear import residual_sums

    _, _, X, y = diabetes
    n, alpha = len(y), 0.1
    ref = Lasso(alpha=alpha, tol=1e-14, max_iter=10 ** 6).fit(X, y)

    def gap_at(w, b):
        xtr, sums = residual_sums(X, y, w, b)
        return duality_gap(xtr, sums, w, alpha, n, X.sum(axis=0), (y.sum(), y @ y), True)

    primal, gap, y_norm2 = gap_at(ref.coef_, ref.intercept_)
    assert primal == pytest.approx(objective(X, y, ref.coef_, ref.intercept_, alpha), rel=1e-12)
    assert abs(gap) <= 1e-10 * y_norm2 / n
    assert y_norm2 == pytest.approx(np.sum((y - y.mean()) ** 2))
    # the intercept is taken at its optimum: a shifted b has the same gap
    assert gap_at(ref.coef_, ref.intercept_ + 5.0)[1] == pytest.approx(gap, abs=1e-8)
    assert gap_at(ref.coef_ * 0.9, ref.intercept_)[1] > 1e-3


def test_bad_parameters_are_refused_naming_them():
    from paracel.algorithms.lasso import Lasso as ParacelLasso

    for params, name in (({"tol": -1.0}, "params.tol"), ({"max_iter": 0}, "params.max_iter"),
                         ({"learning_rate": 0.0}, "params.learning_rate")):
        with pytest.raises(ConfigError, match=name):
            ParacelLasso(**params)
