"""MatrixMarket files (``.mtx``).

Coordinate files are read in line-aligned shares: every worker reads the
small header (banner, comments, size line) and then only the entry lines of
its share. Dense ("array") files are column-major and cannot be cut by lines,
so they are read with ``scipy.io.mmread`` and sliced by rows.
"""


import numpy as np

from paracel.errors import DataError
from paracel.io.lines import file_size, line_number, lines_between, readable


def header(path):
    """``(fmt, field, symmetry, shape, nnz, data_offset)`` of a MatrixMarket file."""
    with open(readable(path), "rb") as handle:
        banner = handle.readline().decode("utf-8", "replace").split()
        if len(banner) != 5 or banner[0].lower() != "%%matrixmarket":
            raise DataError(f"{path}:1: not a MatrixMarket file (no %%MatrixMarket banner)")
        fmt, field, symmetry = (word.lower() for word in banner[2:])
        number = 1
        while True:
            line = handle.readline()
            number += 1
            if not line:
                raise DataError(f"{path}:{number}: the size line is missing")
            if line.strip() and not line.startswith(b"%"):
                break
        sizes = line.split()
        try:
            sizes = [int(value) for value in sizes]
        except ValueError:
            raise DataError(f"{path}:{number}: bad size line {line.decode().strip()!r}") from None
        expected = 3 if fmt == "coordinate" else 2
        if len(sizes) != expected:
            raise DataError(f"{path}:{number}: expected {expected} sizes, got {len(sizes)}")
        nnz = sizes[2] if fmt == "coordinate" else sizes[0] * sizes[1]
        return fmt, field, symmetry, (sizes[0], sizes[1]), nnz, handle.tell()


def load(path, part, parts, skip=False):
    """This worker's share of a MatrixMarket matrix.

    Returns
    -------
    matrix : scipy.sparse.coo_matrix or numpy.ndarray
        For a coordinate file, a coo matrix of the full shape holding this
        share's entries (symmetric files mirrored); for an array file, the
        rows ``[part * n // parts, (part + 1) * n // parts)``.
    skipped : int
        Malformed entry lines this worker dropped (0 unless ``skip``).
    """
    fmt, field, symmetry, shape, nnz, start = header(path)
    if fmt != "coordinate":
        import scipy.io

        dense = np.asarray(scipy.io.mmread(readable(path)))
        return dense[part * shape[0] // parts:(part + 1) * shape[0] // parts], 0
    rows, cols, values, skipped = _entries(path, start, part, parts, field, shape, skip)
    return _coo(rows, cols, values, shape, symmetry), skipped


def _entries(path, start, part, parts, field, shape, skip):
    size = file_size(path) - start
    low, high = start + size * part // parts, start + size * (part + 1) // parts
    rows, cols, values, skipped = [], [], [], 0
    for _, offset, text in lines_between(path, low, high):
        fields = text.split()
        if not fields or text.startswith("%"):
            continue
        try:
            row, col, value = _entry(fields, field, shape)
        except ValueError as error:
            if not skip:
                raise DataError(f"{path}:{line_number(path, offset)}: {error}") from None
            skipped += 1
            continue
        rows.append(row)
        cols.append(col)
        values.append(value)
    return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(values),
            skipped)


def _entry(fields, field, shape):
    """``(row, col, value)`` (0-based) of one entry line; ValueError if malformed."""
    want = 2 if field == "pattern" else 3
    if len(fields) < want:
        raise ValueError(f"expected {want} fields, got {len(fields)}")
    row, col = int(fields[0]), int(fields[1])
    value = 1.0 if field == "pattern" else float(fields[2])
    if not (1 <= row <= shape[0] and 1 <= col <= shape[1]):
        raise ValueError(f"entry ({row}, {col}) is outside the {shape[0]} x {shape[1]} "
                         "matrix (indices from 1)")
    return row - 1, col - 1, value


def _coo(rows, cols, values, shape, symmetry):
    import scipy.sparse

    if symmetry in ("symmetric", "skew-symmetric", "hermitian"):
        off = rows != cols
        sign = -1.0 if symmetry == "skew-symmetric" else 1.0
        rows, cols = np.concatenate([rows, cols[off]]), np.concatenate([cols, rows[off]])
        values = np.concatenate([values, sign * values[off]])
    return scipy.sparse.coo_matrix((values, (rows, cols)), shape=shape)
