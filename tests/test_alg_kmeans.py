"""The bundled ``kmeans`` algorithm against scikit-learn on real data.

Data: scikit-learn's ``load_iris`` (k=3), ``load_wine`` (k=3) and
``load_digits`` (k=10), standardized with ``StandardScaler``, written as
``id,f1,...`` lines with ``repr`` floats (so the job reads exactly the
reference's numbers).

Reference: ``sklearn.cluster.KMeans(algorithm="lloyd")``.

* Given the same initial centers (``init_centers`` file vs ``init=array,
  n_init=1``): identical labels, inertia within 0.1 % (relative), centers
  within 1e-6 (observed: equal to the last bits, same iteration count).
* From its own k-means++ seeding: inertia within 2 % of scikit-learn's best of
  ``n_init=10``. A single k-means++ run (ours or scikit-learn's) misses that
  bound on ~13 % of seeds on iris and ~40 % on digits (measured over 60-100
  seeds), so the jobs use ``n_init=3`` (the best of three runs), like
  scikit-learn's own multi-start.

Each case runs on a different (workers, servers) shape, (1, 1), (2, 2) and
(4, 1), and checks that every server stored keys and served requests.
"""

import json
import os
import sys

import numpy as np
import pytest
from sklearn.cluster import KMeans, kmeans_plusplus
from sklearn.datasets import load_digits, load_iris, load_wine
from sklearn.preprocessing import StandardScaler

from conftest import assert_ok, run_command

pytestmark = pytest.mark.mpi

ALGORITHM = "paracel.algorithms.kmeans:KMeans"
DATASETS = {"iris": (load_iris, 3), "wine": (load_wine, 3), "digits": (load_digits, 10)}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Per dataset: (X, k, path of the points file, path of an initial-centers file)."""
    folder = tmp_path_factory.mktemp("kmeans_data")
    found = {}
    for name, (loader, k) in DATASETS.items():
        X = StandardScaler().fit_transform(loader().data)
        points = folder / f"{name}.csv"
        points.write_text(_rows(X, ids=True))
        init, _ = kmeans_plusplus(X, k, random_state=0)
        centers = folder / f"{name}_init.txt"
        centers.write_text(_rows(init, ids=False))
        found[name] = (X, k, str(points), str(centers))
    return found


def _rows(X, ids):
    return "".join((f"{i}," if ids else "") + ",".join(map(repr, row.tolist())) + "\n"
                   for i, row in enumerate(X))


def _labels(result, workers, n):
    """The labels of all workers' ``labels_<w>`` files, by point id."""
    labels = np.full(n, -1)
    for worker in range(workers):
        for line in result.read(f"labels_{worker}").splitlines():
            point, label = line.split("\t")
            labels[int(point)] = int(label)
    return labels


def _check_servers(metrics, servers):
    stats = metrics["server_stats"]
    assert len(stats) == servers
    assert all(server["keys"] > 0 and server["requests"] > 0 for server in stats), stats


@pytest.mark.parametrize("name,workers,servers",
                         [("iris", 1, 1), ("wine", 2, 2), ("digits", 4, 1)])
def test_given_init_equals_sklearn(run_job, data, name, workers, servers):
    X, k, points, init = data[name]
    result = run_job(ALGORITHM, processes=workers + servers, servers=servers, input=points,
                     params={"k": k, "init_centers": init})
    assert_ok(result)
    reference = KMeans(k, init=np.loadtxt(init, delimiter=",", ndmin=2), n_init=1).fit(X)
    metrics = result.metrics
    assert metrics["workers"] == workers
    # tolerance: labels identical; inertia 0.1 % relative; centers 1e-6
    np.testing.assert_array_equal(_labels(result, workers, len(X)), reference.labels_)
    assert metrics["metrics"]["inertia"] == pytest.approx(reference.inertia_, rel=1e-3)
    centers = np.loadtxt(os.path.join(result.output, "centers.txt"), delimiter=",", ndmin=2)
    np.testing.assert_allclose(centers, reference.cluster_centers_, atol=1e-6)
    assert metrics["metrics"]["iterations"] == reference.n_iter_
    assert metrics["metrics"]["converged"] is True
    _check_servers(metrics, servers)


@pytest.mark.parametrize("name,workers,servers",
                         [("iris", 2, 2), ("wine", 4, 1), ("digits", 1, 1)])
def test_kmeans_plusplus_within_2_percent_of_sklearn_best(run_job, data, name, workers,
                                                          servers):
    X, k, points, _ = data[name]
    result = run_job(ALGORITHM, processes=workers + servers, servers=servers, input=points,
                     params={"k": k, "n_init": 3})
    assert_ok(result)
    best = KMeans(k, n_init=10, random_state=0).fit(X).inertia_
    metrics = result.metrics["metrics"]
    # tolerance: inertia at most 2 % above scikit-learn's best of 10 runs
    assert metrics["inertia"] <= best * 1.02
    assert metrics["inertia"] == min(metrics["run_inertias"]) and len(metrics["run_inertias"]) == 3
    labels = _labels(result, workers, len(X))
    centers = np.loadtxt(os.path.join(result.output, "centers.txt"), delimiter=",", ndmin=2)
    inertia = ((X - centers[labels]) ** 2).sum()
    assert inertia == pytest.approx(metrics["inertia"], rel=1e-9)
    assert np.bincount(labels, minlength=k).tolist() == metrics["cluster_sizes"]
    _check_servers(result.metrics, servers)


def test_same_seed_same_result(run_job, data, tmp_path):
    _, k, points, _ = data["wine"]
    outputs = []
    for attempt in range(2):
        result = run_job(ALGORITHM, processes=4, servers=2, input=points, seed=7,
                         params={"k": k, "n_init": 2}, output=str(tmp_path / f"run{attempt}"))
        assert_ok(result)
        outputs.append(result.read("centers.txt") + result.read("labels_0")
                       + result.read("labels_1"))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("staleness", [1, None])
def test_stale_lloyd_still_reaches_a_good_solution(run_job, data, staleness):
    """SSP / async: each worker uses stale partials; every clock ends equal under SSP."""
    X, k, points, init = data["digits"]
    result = run_job(ALGORITHM, processes=5, servers=1, input=points, staleness=staleness,
                     params={"k": k, "init_centers": init})
    assert_ok(result)
    reference = KMeans(k, init=np.loadtxt(init, delimiter=",", ndmin=2), n_init=1).fit(X)
    metrics = result.metrics
    # tolerance: within 1 % of the BSP (= scikit-learn) inertia from the same start
    assert metrics["metrics"]["inertia"] == pytest.approx(reference.inertia_, rel=1e-2)
    assert metrics["metrics"]["converged"] is True
    clocks = metrics["timings"]["per_worker_clocks"]
    if staleness is not None:
        assert len(set(clocks)) == 1, clocks


def test_bad_parameters_exit_2(run_job, data, tmp_path):
    _, _, points, init = data["iris"]
    job = tmp_path / "bad.json"  # the command line validates before starting MPI
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": points, "params": {"k": 0}}))
    code, _, err, _ = run_command([sys.executable, "-m", "paracel.run", str(job)], 60)
    assert code == 2 and "params.k: 0 is below the minimum 1" in err
    wrong_shape = run_job(ALGORITHM, processes=3, servers=1, input=points,
                          params={"k": 4, "init_centers": init},
                          output=str(tmp_path / "shape"))
    assert wrong_shape.returncode == 2
    assert "expected 4 centers of 4 features, got shape (3, 4)" in wrong_shape.stderr
