"""Model files read back for a warm start (paracel.io.h5), without MPI, and
read from Python (paracel.load_model), stamped with what made them.

A file this project did not write, or one holding integers where floats are
needed or a NaN, must fail with one line naming the file and the dataset,
never train on to a wrong result or end in a KeyError/IndexError traceback.
"""

import os
from dataclasses import dataclass, field

import h5py
import numpy as np
import pytest
import scipy.sparse

import paracel
from conftest import HERE, assert_ok
from paracel.errors import DataError
from paracel.io import h5
from paracel.model import load_model, stamp
from paracel.run import resolve

ROOT = os.path.dirname(HERE)


@dataclass
class FakeMatrix:
    """What load_blocks needs of a DistMatrix; writes land in ``written``."""

    name: str
    shape: tuple
    dtype: object = np.float64
    sparse: bool = False
    block_rows: int = 4
    written: dict = field(default_factory=dict)

    @property
    def client(self):
        return self

    def write_multi(self, values):
        self.written.update(values)

    def block_key(self, block):
        return (self.name, block)

    def block_range(self, block):
        return block * self.block_rows, min((block + 1) * self.block_rows, self.shape[0])


def model(tmp_path, **datasets):
    path = str(tmp_path / "model.h5")
    with h5py.File(path, "w") as handle:
        for name, value in datasets.items():
            handle[name] = value
    return path


def test_shape_and_dtype_come_from_the_data_of_a_foreign_file(tmp_path):
    path = model(tmp_path, w=np.arange(10.0))
    assert h5.matrix_info(path, "w") == ((10,), np.dtype(np.float64), False)


@pytest.mark.parametrize("value,problem", [
    (np.array([b"a", b"b"]), "holds |S1 values, not numbers"),
    (np.zeros((2, 2, 2)), "has 3 dimensions"),
])
def test_foreign_datasets_are_refused_naming_file_and_matrix(tmp_path, value, problem):
    path = model(tmp_path, w=value)
    with pytest.raises(DataError, match=f"model.h5: matrix 'w' {problem}"):
        h5.matrix_info(path, "w")


def test_a_group_or_a_lying_shape_attribute_is_refused(tmp_path):
    path = model(tmp_path, w=np.zeros(4))
    with h5py.File(path, "a") as handle:
        handle["w"].attrs["shape"] = (5,)
        handle.create_group("g")
    with pytest.raises(DataError, match="shape attribute says .5,., the data has shape .4,."):
        h5.matrix_info(path, "w")
    with pytest.raises(DataError, match="matrix 'g' is a group, not a dataset"):
        h5.matrix_info(path, "g")


def test_a_sparse_matrix_missing_its_parts_is_refused(tmp_path):
    path = model(tmp_path)
    with h5py.File(path, "a") as handle:
        group = handle.create_group("S")
        group.attrs.update(sparse=True, shape=(3, 3))
        group["data"] = np.ones(2)
    with pytest.raises(DataError, match="missing indices, indptr"):
        h5.matrix_info(path, "S")


def test_integer_weights_are_converted_to_the_float_matrix(tmp_path):
    path = model(tmp_path, w=np.arange(10, dtype=np.int32))
    matrix = FakeMatrix("w", (10,))
    h5.load_blocks(path, matrix, [0, 1, 2])
    whole = np.concatenate([matrix.written[("w", b)] for b in range(3)])
    assert whole.dtype == np.float64 and whole.tolist() == list(range(10))


def test_lossy_conversion_and_non_finite_weights_are_refused(tmp_path):
    path = model(tmp_path, w=np.arange(10.0), v=np.array([1.0, 2.0, np.nan, 4.0, 5.0]))
    with pytest.raises(DataError, match="holds float64 values, which do not convert to int32"):
        h5.load_blocks(path, FakeMatrix("w", (10,), dtype=np.int32), [0])
    with pytest.raises(DataError, match="matrix 'v': row 2 holds a NaN or infinite value"):
        h5.load_blocks(path, FakeMatrix("v", (5,)), [0, 1])


def test_load_model_reads_every_array_and_the_stamp(tmp_path):
    path = str(tmp_path / "m.h5")
    sparse = scipy.sparse.random(5, 4, density=0.5, format="csr", random_state=0)
    with h5py.File(path, "w") as handle:
        for key, value in stamp("kmeans", {"k": 3, "tol": 1e-4}).items():
            handle.attrs[key] = value
        handle.attrs["zero_based"] = True
        handle["ids"] = np.array([2, 5, 9], dtype=np.uint64)
        group = handle.create_group("V")
        for part in ("data", "indices", "indptr"):
            group[part] = getattr(sparse, part)
        group.attrs["shape"] = sparse.shape
    found = load_model(path)
    assert (found.algorithm, found.params) == ("kmeans", {"k": 3, "tol": 1e-4})
    assert found.version == paracel.__version__ and found.attrs["zero_based"] is True
    assert found["ids"].dtype == np.uint64 and list(found["ids"]) == [2, 5, 9]
    assert (found["V"] != sparse).nnz == 0
    with pytest.raises(KeyError, match="no array 'w'; it holds V, ids"):
        found["w"]


def test_load_model_refuses_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "m.h5"
    path.write_text("not a model")
    with pytest.raises(DataError, match=f"^{path}: not a readable model file"):
        load_model(str(path))


@pytest.mark.mpi
def test_a_saved_model_says_what_made_it(run_job, tmp_path):
    params = {"method": "lbfgs", "epochs": 3}
    result = run_job("lr", processes=3, input=os.path.join(ROOT, "data", "lr", "train.svm"),
                     params=params)
    assert_ok(result)
    found = load_model(os.path.join(result.output, "model.h5"))
    declared = resolve("lr").parameters
    assert found.algorithm == "lr" and found.version == paracel.__version__
    assert found.params == {name: params.get(name, param.default)
                            for name, param in declared.items()}
    assert set(found.arrays) == {"ids", "w", "intercept"} and found.attrs["zero_based"] is False
