"""The LIBSVM loader against scikit-learn's ``load_svmlight_file``, without MPI.

Real data: scikit-learn's breast-cancer and digits sets written as LIBSVM
files by scikit-learn's own writer, and its svmlight test file (comments,
tabs). Shares of every size together must give exactly the reference matrix.
"""

import os

import numpy as np
import pytest
import scipy.sparse as sp
import sklearn
from sklearn.datasets import dump_svmlight_file, load_breast_cancer, load_digits
from sklearn.datasets import load_svmlight_file

from paracel.errors import DataError
from paracel.io import libsvm

SKLEARN_DATA = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "tests", "data")


def real_file(tmp_path, name, zero_based=False):
    loader = {"cancer": load_breast_cancer, "digits": load_digits}[name]
    X, y = loader(return_X_y=True)
    path = tmp_path / f"{name}.svm"
    dump_svmlight_file(X, y, str(path), zero_based=zero_based)
    return str(path)


def load_all(path, parts, n_features, zero_based):
    """Every share loaded on its own, stacked in order."""
    labels, blocks = [], []
    for part in range(parts):
        y, X, *_ = libsvm.load([path], None, part, parts, n_features, zero_based)
        labels.append(y)
        blocks.append(X)
    return np.concatenate(labels), sp.vstack(blocks, format="csr")


@pytest.mark.parametrize("name", ["cancer", "digits"])
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize("zero_based", [False, True])
def test_shares_equal_sklearn(tmp_path, name, parts, zero_based):
    path = real_file(tmp_path, name, zero_based)
    X_ref, y_ref = load_svmlight_file(path, zero_based=zero_based)
    y, X = load_all(path, parts, X_ref.shape[1], zero_based)
    np.testing.assert_array_equal(y, y_ref)
    assert X.shape == X_ref.shape
    assert (X != X_ref).nnz == 0


@pytest.mark.parametrize("chunk", [1, 97, 4096])
def test_shares_parsed_in_chunks_equal_sklearn(tmp_path, monkeypatch, chunk):
    """A share is parsed a chunk of lines at a time (bounded memory); any
    chunk size, even smaller than a line, gives the same rows."""
    monkeypatch.setattr(libsvm, "CHUNK_BYTES", chunk)
    path = real_file(tmp_path, "digits")
    X_ref, y_ref = load_svmlight_file(path)
    y, X = load_all(path, 3, X_ref.shape[1], False)
    np.testing.assert_array_equal(y, y_ref)
    assert (X != X_ref).nnz == 0


def test_auto_base_and_width_single_share(tmp_path):
    path = real_file(tmp_path, "cancer", zero_based=False)
    X_ref, y_ref = load_svmlight_file(path)
    y, X, *_ = libsvm.load([path], None, 0, 1)
    assert X.shape == X_ref.shape and (X != X_ref).nnz == 0


def test_sklearn_test_file_with_comments_and_tabs():
    path = os.path.join(SKLEARN_DATA, "svmlight_classification.txt")
    X_ref, y_ref = load_svmlight_file(path)
    y, X, *_ = libsvm.load([path], None, 0, 1, n_features=X_ref.shape[1])
    np.testing.assert_array_equal(y, y_ref)
    assert (X != X_ref).nnz == 0


@pytest.mark.parametrize("text,problem,line", [
    (b"1 1:2\nfoo 2:3\n", "the label is not a number", 2),
    (b"1 1:2\n1 2:3\n-1 4\n", "expected index:value", 3),
    (b"1 1:2 2:x\n", "bad index:value pair", 1),
    (b"1 3:2 2:1\n", "feature indices must increase", 1),
    (b"1 qid:3 2:1\n", "qid fields are not supported", 1),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, problem, line):
    path = tmp_path / "bad.svm"
    path.write_bytes(text)
    with pytest.raises(DataError, match=rf"bad\.svm:{line}: {problem}"):
        libsvm.load([str(path)], None, 0, 1)


def test_empty_file_and_more_shares_than_lines(tmp_path):
    empty = tmp_path / "empty.svm"
    empty.write_bytes(b"")
    y, X, *_ = libsvm.load([str(empty)], None, 0, 1, n_features=4)
    assert y.shape == (0,) and X.shape == (0, 4)
    small = tmp_path / "small.svm"
    small.write_bytes(b"1 1:1\r\n-1 2:2\r\n")
    y, X = load_all(str(small), 5, 2, False)
    np.testing.assert_array_equal(y, [1, -1])
    np.testing.assert_array_equal(X.toarray(), [[1, 0], [0, 2]])


def test_several_files_in_order(tmp_path):
    a, b = tmp_path / "a.svm", tmp_path / "b.svm"
    a.write_bytes(b"1 1:1\n1 2:1\n")
    b.write_bytes(b"-1 3:1")
    for parts in (1, 2, 3):
        labels = np.concatenate([libsvm.load([str(a), str(b)], None, p, parts, 3, False)[0]
                                 for p in range(parts)])
        np.testing.assert_array_equal(labels, [1, 1, -1])


def test_skip_mode_drops_and_counts_bad_lines(tmp_path):
    path = tmp_path / "mixed.svm"
    path.write_bytes(b"1 1:1\nfoo 2:1\n-1 2:2\n1 3:x\n1 3:3\n")
    y, X, skipped, _ = libsvm.load([str(path)], None, 0, 1, 3, False, skip=True)
    assert skipped == 2
    np.testing.assert_array_equal(y, [1, -1, 1])
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 0], [0, 2, 0], [0, 0, 3]])


# -- ids beyond a dense matrix: the compact mode and 64-bit indices ---------

def load_compact_all(path, parts, zero_based="auto"):
    """Every share loaded compactly, each expanded back to global columns."""
    labels, rows = [], []
    for part in range(parts):
        y, X, ids, *_ = libsvm.load_compact([path], None, part, parts, zero_based=zero_based)
        assert np.all(np.diff(ids.astype(np.float64)) > 0) and X.shape[1] == ids.size
        assert set(np.unique(X.indices)) == set(range(ids.size))    # every column used
        labels.append(y)
        rows.append((X, ids))
    return np.concatenate(labels), rows


@pytest.mark.parametrize("name", ["cancer", "digits"])
@pytest.mark.parametrize("parts", [1, 3])
def test_compact_shares_equal_sklearn(tmp_path, name, parts):
    path = real_file(tmp_path, name)
    X_ref, y_ref = load_svmlight_file(path)
    y, shares = load_compact_all(path, parts)
    np.testing.assert_array_equal(y, y_ref)
    blocks = [sp.csr_matrix((X.data, ids[X.indices].astype(np.int64), X.indptr),
                            shape=(X.shape[0], X_ref.shape[1])) for X, ids in shares]
    assert (sp.vstack(blocks, format="csr") != X_ref).nnz == 0


BIG = 2**64 - 2   # the largest index a file may hold


@pytest.mark.parametrize("text,values", [
    # integers only (the uint64 parse), -1/+1 and 0/1 labels
    (b"-1 3:1 18446744073709551614:1\n+1 9007199254740993:2\n0 1:1\n", (1, 2)),
    # float values (the float parse, indices past 2**53 re-read from their digits)
    (b"-1 3:0.5 18446744073709551614:1\n1 9007199254740993:2.5\n0 1:1e0\n", (0.5, 2.5)),
    # comments (the general path)
    (b"-1 3:0.5 18446744073709551614:1 # c\n1 9007199254740993:2.5\n0 1:1\n", (0.5, 2.5)),
])
def test_64_bit_indices_are_exact(tmp_path, text, values):
    path = tmp_path / "big.svm"
    path.write_bytes(text)
    y, X, ids, *_ = libsvm.load_compact([str(path)], None, 0, 1, zero_based=True)
    np.testing.assert_array_equal(y, [-1, 1, 0])
    assert ids.dtype == np.uint64
    assert ids.tolist() == [1, 3, 2**53 + 1, BIG]
    np.testing.assert_array_equal(X.toarray(), [[0, values[0], 0, 1], [0, 0, values[1], 0],
                                                [1, 0, 0, 0]])
    # 1-based: ids one lower
    _, _, shifted, *_ = libsvm.load_compact([str(path)], None, 0, 1, zero_based=False)
    assert shifted.tolist() == [0, 2, 2**53, BIG - 1]


@pytest.mark.parametrize("index", [b"18446744073709551615", b"18446744073709551616",
                                   b"99999999999999999999999"])
@pytest.mark.parametrize("value", [b"1", b"0.5"])
def test_too_large_indices_name_the_line(tmp_path, index, value):
    path = tmp_path / "huge.svm"
    path.write_bytes(b"1 1:1\n0 " + index + b":" + value + b"\n")
    with pytest.raises(DataError, match=r"huge\.svm:2: feature index \d+ is too large"):
        libsvm.load_compact([str(path)], None, 0, 1)


def test_dense_loader_refuses_ids_too_large_for_a_matrix(tmp_path):
    path = tmp_path / "wide.svm"
    path.write_bytes(b"1 18446744073709551614:1\n")
    with pytest.raises(DataError, match="too large for a matrix over all features"):
        libsvm.load([str(path)], None, 0, 1)


def test_compact_columns_with_and_without_packing():
    rng = np.random.default_rng(0)
    for top in (2**20, 2**63 + 5):     # packed sort; argsort (ids too wide to pack)
        indices = rng.integers(0, 1000, size=5000).astype(np.uint64) * np.uint64(top // 1000)
        ids, columns = libsvm.compact_columns(indices)
        np.testing.assert_array_equal(ids, np.unique(indices))
        np.testing.assert_array_equal(ids[columns], indices)
