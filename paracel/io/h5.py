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
    matrices : sequence of paracel.matrix.DistMatrix
        Written as datasets named for each matrix (dense), or as groups with
        ``data``/``indices``/``indptr`` datasets (sparse).
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
                _save_one(handle, matrix)
        os.replace(temporary, path)
    finally:
        shutil.rmtree(private, ignore_errors=True)


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
            target[start:stop] = matrix.client.read(matrix.block_key(block))
    target.attrs["shape"] = matrix.shape
    target.attrs["block_rows"] = matrix.block_rows
    target.attrs["sparse"] = matrix.sparse


def matrix_info(path, name):
    """``(shape, dtype, sparse)`` of the matrix ``name`` stored in ``path``."""
    with _open(path) as handle:
        if name not in handle:
            raise DataError(f"{path}: no matrix {name!r}; it holds "
                            f"{', '.join(sorted(handle)) or 'nothing'}")
        node = handle[name]
        sparse = bool(node.attrs.get("sparse", False))
        dtype = node["data"].dtype if sparse else node.dtype
        return tuple(int(n) for n in node.attrs["shape"]), np.dtype(dtype), sparse


def load_blocks(path, matrix, blocks):
    """Write ``blocks`` of ``matrix`` from the model file into the servers."""
    with _open(path) as handle:
        node = handle[matrix.name]
        if matrix.sparse:
            import scipy.sparse

            whole = scipy.sparse.csr_matrix(
                (node["data"][...], node["indices"][...], node["indptr"][...]),
                shape=matrix.shape)
            matrix.assign(whole, blocks)
            return
        matrix.client.write_multi({
            matrix.block_key(block): node[slice(*matrix.block_range(block))]
            for block in blocks})
