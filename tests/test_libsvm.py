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
        y, X, _ = libsvm.load([path], None, part, parts, n_features, zero_based)
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


def test_auto_base_and_width_single_share(tmp_path):
    path = real_file(tmp_path, "cancer", zero_based=False)
    X_ref, y_ref = load_svmlight_file(path)
    y, X, _ = libsvm.load([path], None, 0, 1)
    assert X.shape == X_ref.shape and (X != X_ref).nnz == 0


def test_sklearn_test_file_with_comments_and_tabs():
    path = os.path.join(SKLEARN_DATA, "svmlight_classification.txt")
    X_ref, y_ref = load_svmlight_file(path)
    y, X, _ = libsvm.load([path], None, 0, 1, n_features=X_ref.shape[1])
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
    y, X, _ = libsvm.load([str(empty)], None, 0, 1, n_features=4)
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
    y, X, skipped = libsvm.load([str(path)], None, 0, 1, 3, False, skip=True)
    assert skipped == 2
    np.testing.assert_array_equal(y, [1, -1, 1])
    np.testing.assert_array_equal(X.toarray(), [[1, 0, 0], [0, 2, 0], [0, 0, 3]])
