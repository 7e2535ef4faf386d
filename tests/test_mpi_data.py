"""Loaders, distributed matrices and HDF5 models under mpiexec.

Matrices: pull/push from every worker equal a plain NumPy computation;
an HDF5 model written by one job and read back by another with other
worker and server counts is identical. Loaders: the workers' shares
together equal a single-process load (scikit-learn's for LIBSVM).
"""

import os

import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file, load_breast_cancer, load_svmlight_file

from conftest import assert_ok

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("processes,servers", [(2, 1), (4, 2), (5, 3)])
def test_matrix_push_pull_equal_numpy_and_model_round_trip(run_job, tmp_path, processes,
                                                           servers):
    result = run_job("io_algos:MatrixOps", processes=processes, servers=servers)
    assert_ok(result)
    W = np.load(os.path.join(result.output, "W.npy"))
    with h5py.File(os.path.join(result.output, "model.h5")) as handle:
        assert handle.attrs["note"] == "test"
        stored = handle["W"][...]
        assert tuple(handle["v"].shape) == (10_007,)
    assert not np.array_equal(stored, W)  # each worker then replaced three rows by zeros
    changed = np.flatnonzero(np.any(stored != W, axis=1))
    assert len(changed) <= 3 * (processes - servers) and np.all(stored[changed] == 0)
    # warm start: read the model back with other worker and server counts
    again = run_job("io_algos:LoadModel", processes=3, servers=2,
                    params={"model": os.path.join(result.output, "model.h5")},
                    output=str(tmp_path / "warm"))
    assert_ok(again)
    np.testing.assert_array_equal(np.load(os.path.join(again.output, "W.npy")), stored)
    S = sp.load_npz(os.path.join(again.output, "S.npz"))
    with h5py.File(os.path.join(result.output, "model.h5")) as handle:
        group = handle["S"]
        S_ref = sp.csr_matrix((group["data"][...], group["indices"][...],
                               group["indptr"][...]), shape=(200, 50))
    assert (S != S_ref).nnz == 0


def test_random_init_does_not_depend_on_worker_count(run_job, tmp_path):
    arrays = []
    for processes in (2, 4):
        result = run_job("io_algos:MatrixOps", processes=processes, servers=1,
                         output=str(tmp_path / f"r{processes}"))
        assert_ok(result)
        arrays.append(np.load(os.path.join(result.output, "R.npy")))
    np.testing.assert_array_equal(arrays[0], arrays[1])


@pytest.mark.parametrize("processes", [2, 3, 5])
def test_libsvm_shares_equal_sklearn(run_job, tmp_path, processes):
    X, y = load_breast_cancer(return_X_y=True)
    path = str(tmp_path / "cancer.svm")
    dump_svmlight_file(X, y, path, zero_based=False)
    result = run_job("io_algos:LoadShares", processes=processes, servers=1, input=path,
                     params={"kind": "libsvm"})
    assert_ok(result)
    workers = processes - 1
    parts = [sp.load_npz(os.path.join(result.output, f"share_{w}.npz")) for w in range(workers)]
    labels = [np.load(os.path.join(result.output, f"share_{w}_y.npy")) for w in range(workers)]
    X_ref, y_ref = load_svmlight_file(path)
    assert all(part.shape[1] == X_ref.shape[1] for part in parts)
    assert all(part.shape[0] > 0 for part in parts)
    assert (sp.vstack(parts) != X_ref).nnz == 0
    np.testing.assert_array_equal(np.concatenate(labels), y_ref)


def test_lines_shares_and_merged_output(run_job, tmp_path):
    text = "".join(f"line {i} ünïcode\n" for i in range(101))
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    result = run_job("io_algos:LoadShares", processes=4, servers=1,
                     input=str(tmp_path / "in.txt"), params={"kind": "lines"})
    assert_ok(result)
    merged = result.read("lines.txt").splitlines()
    assert [line.split("\t", 1)[1] for line in merged] == text.splitlines()
    per_worker = [result.read(f"lines_{w}") for w in range(3)]
    assert "".join(per_worker) == result.read("lines.txt")


def test_dense_vectors_shares(run_job, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(57, 6))
    path = tmp_path / "vec.csv"
    path.write_text("".join(f"id{i}," + ",".join(map(repr, row.tolist())) + "\n"
                            for i, row in enumerate(X)))
    result = run_job("io_algos:LoadShares", processes=4, servers=1, input=str(path),
                     params={"kind": "dense"})
    assert_ok(result)
    parts = [np.load(os.path.join(result.output, f"share_{w}.npy")) for w in range(3)]
    ids = sum((result.read(f"share_{w}_ids.txt").split("\n") for w in range(3)), [])
    np.testing.assert_array_equal(np.vstack(parts), X)
    assert ids == [f"id{i}" for i in range(57)]


def test_matrix_market_shares(run_job, tmp_path):
    M = sp.random(80, 40, density=0.1, random_state=1, format="coo")
    path = str(tmp_path / "m.mtx")
    scipy.io.mmwrite(path, M)
    result = run_job("io_algos:LoadShares", processes=4, servers=1, input=path,
                     params={"kind": "mtx"})
    assert_ok(result)
    total = sum(sp.load_npz(os.path.join(result.output, f"share_{w}.npz")) for w in range(3))
    np.testing.assert_allclose(total.toarray(), scipy.io.mmread(path).toarray())


def test_bad_lines_stop_the_job_or_are_skipped_and_counted(run_job, tmp_path):
    path = tmp_path / "mixed.svm"
    good = [f"{i % 2} {i % 5 + 1}:1.5\n" for i in range(40)]
    lines = good[:10] + ["1 2:oops\n"] + good[10:30] + ["x 1:1\n"] + good[30:]
    path.write_text("".join(lines))
    failed = run_job("io_algos:LoadShares", processes=4, servers=1, input=str(path),
                     output=str(tmp_path / "strict"))
    assert failed.returncode == 2
    assert "mixed.svm:11: bad index:value pair '2:oops'" in failed.stderr
    assert not os.path.exists(os.path.join(failed.output, "metrics.json"))
    skipped = run_job("io_algos:LoadShares", processes=4, servers=1, input=str(path),
                      bad_lines="skip", output=str(tmp_path / "lenient"))
    assert_ok(skipped)
    assert skipped.metrics["skipped_lines"] == 2
    rows = sum(sp.load_npz(os.path.join(skipped.output, f"share_{w}.npz")).shape[0]
               for w in range(3))
    assert rows == 40
    # nothing but bad lines: skipping them all leaves nothing, which is an error
    garbage = tmp_path / "garbage.svm"
    garbage.write_text("x 1:1\n" * 30)
    empty = run_job("io_algos:LoadShares", processes=4, servers=1, input=str(garbage),
                    bad_lines="skip", output=str(tmp_path / "nothing"))
    assert empty.returncode == 2
    assert ("garbage.svm: every line (30) was malformed and skipped (bad_lines: skip); "
            "nothing is left to learn from") in empty.stderr


@pytest.mark.parametrize("kind", ["graph", "ratings"])
def test_graph_and_ratings_through_the_algorithm_api(run_job, tmp_path, kind):
    import networkx as nx

    from paracel.io import graph

    path = tmp_path / "edges.txt"
    edges = nx.les_miserables_graph().edges(data="weight")
    path.write_text("".join(f"{a.replace(' ', '_')} {b.replace(' ', '_')} {w}\n"
                            for a, b, w in edges))
    result = run_job("io_algos:LoadShares", processes=4, servers=1, input=str(path),
                     params={"kind": kind})
    assert_ok(result)
    total = sum(sp.load_npz(os.path.join(result.output, f"share_{w}.npz")) for w in range(3))
    load = graph.load_graph if kind == "graph" else graph.load_ratings
    reference = load([str(path)], None, 0, 1).matrix()
    assert (total != reference).nnz == 0


def test_input_growing_during_the_job_is_read_as_it_was_at_the_start(run_job, tmp_path):
    text = "".join(f"line {i}\n" for i in range(3000))
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    result = run_job("io_algos:GrowingInput", processes=4, servers=1,
                     input=str(tmp_path / "in.txt"))
    assert_ok(result)
    assert result.metrics["metrics"]["lines"] == text.splitlines()


def test_an_array_of_more_than_2_31_elements_travels_whole(run_job):
    result = run_job("mpi_algos:HugeArray", processes=3, servers=1, modules=["mpi_algos"],
                     timeout=240)
    assert_ok(result)
    assert result.metrics["metrics"] == {"same": True, "tail": [1, 2, 3, 4, 5]}


def test_gzip_input_gives_what_the_plain_input_gives(run_job, tmp_path):
    import gzip
    import shutil

    plain = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "data", "lr", "train.svm")
    packed = str(tmp_path / "train.svm.gz")
    with open(plain, "rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    params = {"method": "lbfgs", "epochs": 4}
    models = []
    for name, path in [("plain", plain), ("gzip", packed)]:
        result = run_job("lr", processes=3, input=path, params=params,
                         output=str(tmp_path / name))
        assert_ok(result)
        with h5py.File(os.path.join(result.output, "model.h5")) as handle:
            models.append((handle["ids"][...], handle["w"][...]))
    assert np.array_equal(models[0][0], models[1][0])
    assert np.array_equal(models[0][1], models[1][1])
