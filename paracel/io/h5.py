"""HDF5 datasets and models (``h5py``).

Input datasets are read by row slices: worker ``part`` of ``parts`` reads
rows ``[part * n // parts, (part + 1) * n // parts)`` only. Models (distributed
matrices) are written to one file, one dataset per matrix named for it, with
its block layout as attributes; they are written inside a new private
folder (``tempfile.mkdtemp`` next to the model: nobody else can plant a file
or symlink there) and renamed into place, so a crash never leaves a
half-written model under the real name.
A model file can be read back into a job with any number of servers or
workers (warm start).
"""

import os
import shutil
import tempfile

import numpy as np

from paracel.errors import DataError


def _open(path, mode="r"):
    import h5py

    try:
        return h5py.File(path, mode)
    except (OSError, FileNotFoundError) as error:
        raise DataError(f"{path}: cannot open as HDF5: {error}") from None


def rows_of(n, part, parts):
    """The ``(start, stop)`` rows of share ``part`` of ``parts`` of ``n`` rows."""
    return n * part // parts, n * (part + 1) // parts


def load_rows(path, dataset, part, parts):
    """This worker's row slice of ``dataset`` in the HDF5 file ``path``."""
    with _open(path) as handle:
        if dataset not in handle:
            raise DataError(f"{path}: no dataset {dataset!r}; it holds "
                            f"{', '.join(sorted(handle)) or 'nothing'}")
        data = handle[dataset]
        start, stop = rows_of(data.shape[0], part, parts)
        return data[start:stop]


def save_matrices(path, matrices, attrs=None):
    """Write distributed matrices to one HDF5 file, streaming block by block.

    Parameters
    ----------
    path : str
        The model file.
    matrices : sequence of paracel.matrix.DistMatrix or (str, numpy.ndarray)
        Written as datasets named for each matrix (dense), or as groups with
        ``data``/``indices``/``indptr`` datasets (sparse); a ``(name,
        array)`` pair (e.g. a row table's ids and weights) as a dataset of
        that name; an array of ``str`` (e.g. an id map) is stored as UTF-8
        strings (:func:`paracel.load_model` gives back ``str``).
    attrs : dict, optional
        Extra file attributes (JSON-able scalars and strings).
    """
    private = tempfile.mkdtemp(prefix=".model-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        temporary = os.path.join(private, "model.h5")
        with _open(temporary, "w") as handle:
            for key, value in (attrs or {}).items():
                handle.attrs[key] = value
            for matrix in matrices:
                if isinstance(matrix, tuple):
                    handle.create_dataset(matrix[0], data=_storable(matrix[1]))
                else:
                    _save_one(handle, matrix)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _storable(values):
    """``values`` as h5py can store them: text as variable-length UTF-8."""
    values = np.asarray(values)
    if values.dtype.kind == "U":
        import h5py

        return values.astype(object).astype(h5py.string_dtype("utf-8"))
    return values


def _save_one(handle, matrix):
    if matrix.sparse:
        whole = matrix.to_numpy()
        group = handle.create_group(matrix.name)
        for part in ("data", "indices", "indptr"):
            group.create_dataset(part, data=getattr(whole, part))
        target = group
    else:
        target = handle.create_dataset(matrix.name, shape=matrix.shape, dtype=matrix.dtype)
        for block in range(matrix.num_blocks):
            start, stop = matrix.block_range(block)
            # from the servers, never a worker's cached copy
            target[start:stop] = matrix.client.read_multi([matrix.block_key(block)],
                                                          fresh=True)[0]
    target.attrs["shape"] = matrix.shape
    target.attrs["block_rows"] = matrix.block_rows
    target.attrs["sparse"] = matrix.sparse


def matrix_info(path, name):
    """``(shape, dtype, sparse)`` of the matrix ``name`` stored in ``path``,
    taken from the data itself and checked, so that a file this project did
    not write fails with a message naming the file and dataset.
    """
    with _open(path) as handle:
        if name not in handle:
            raise DataError(f"{path}: no matrix {name!r}; it holds "
                            f"{', '.join(sorted(handle)) or 'nothing'}")
        node = handle[name]
        where = f"{path}: matrix {name!r}"
        if bool(node.attrs.get("sparse", False)):
            return _sparse_info(node, where)
        if not hasattr(node, "dtype"):
            raise DataError(f"{where} is a group, not a dataset of numbers")
        _check_numeric(node.dtype, where)
        if node.ndim not in (1, 2):
            raise DataError(f"{where} has {node.ndim} dimensions; a matrix has 1 or 2")
        stated = node.attrs.get("shape")
        if stated is not None and tuple(int(n) for n in stated) != node.shape:
            raise DataError(f"{where}: its shape attribute says {tuple(int(n) for n in stated)}, "
                            f"the data has shape {node.shape}")
        return tuple(node.shape), np.dtype(node.dtype), False


def _sparse_info(node, where):
    """Shape and dtype of a csr matrix stored as a group, its parts checked."""
    parts = ("data", "indices", "indptr")
    missing = [part for part in parts if part not in node]
    if missing or "shape" not in node.attrs:
        raise DataError(f"{where}: a sparse matrix needs datasets data, indices, indptr "
                        f"and a shape attribute; missing {', '.join(missing) or 'shape'}")
    shape = tuple(int(n) for n in node.attrs["shape"])
    data, indices, indptr = (node[part] for part in parts)
    _check_numeric(data.dtype, where)
    if (len(shape) != 2 or indptr.shape != (shape[0] + 1,)
            or indices.shape != data.shape or indptr[-1] != data.shape[0]):
        raise DataError(f"{where}: data, indices and indptr do not make a csr matrix "
                        f"of shape {shape}")
    return shape, np.dtype(data.dtype), True


def _check_numeric(dtype, where):
    if np.dtype(dtype).kind not in "biufc":
        raise DataError(f"{where} holds {np.dtype(dtype)} values, not numbers")


def load_blocks(path, matrix, blocks):
    """Write ``blocks`` of ``matrix`` from the model file into the servers,
    as ``matrix.dtype`` (the file's values must convert to it without loss)
    and finite (a NaN or infinite weight is refused, naming where)."""
    with _open(path) as handle:
        node = handle[matrix.name]
        where = f"{path}: matrix {matrix.name!r}"
        if matrix.sparse:
            import scipy.sparse

            data = _checked(node["data"][...], matrix.dtype, where, 0)
            whole = scipy.sparse.csr_matrix((data, node["indices"][...], node["indptr"][...]),
                                            shape=matrix.shape)
            matrix.assign(whole, blocks)
            return
        values = {}
        for block in blocks:
            start, stop = matrix.block_range(block)
            values[matrix.block_key(block)] = _checked(node[start:stop], matrix.dtype,
                                                       where, start)
        matrix.client.write_multi(values)


def _checked(values, dtype, where, first_row):
    """``values`` as ``dtype``, refusing a lossy conversion and non-finite numbers."""
    if not np.can_cast(values.dtype, dtype, "safe"):
        raise DataError(f"{where} holds {values.dtype} values, which do not convert to "
                        f"{np.dtype(dtype)} without loss")
    values = values.astype(dtype, copy=False)
    if values.dtype.kind in "fc":
        bad = np.flatnonzero(~np.isfinite(values).reshape(len(values), -1).all(axis=1)
                             if values.ndim else ~np.isfinite(values))
        if bad.size:
            raise DataError(f"{where}: row {first_row + int(bad[0])} holds a NaN or "
                            "infinite value")
    return values
