"""Saved models: what a model file says about itself, and reading it back.

A model file is HDF5 (:func:`paracel.io.h5.save_matrices`). Every model a
job saves is stamped with the algorithm that made it, its parameters and the
project version, so that a file found later can be applied (or refused)
without the job file that made it. :func:`load_model` gives it back in one
call, from Python, without MPI.
"""

import json
import time
from dataclasses import dataclass, field

import h5py
import numpy as np
import scipy.sparse

from paracel.errors import DataError

#: File attributes every saved model carries (see :func:`stamp`).
STAMP_KEYS = ("algorithm", "params", "paracel_version", "created")


def stamp(algorithm, params):
    """The attributes that make a model file self-describing.

    Parameters
    ----------
    algorithm : str
        The job's ``algorithm`` (a bundled name or ``module:Class``).
    params : dict
        The algorithm's parameters (stored as JSON).
    """
    from paracel import __version__

    return {"algorithm": algorithm, "params": json.dumps(params, sort_keys=True, default=str),
            "paracel_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


@dataclass
class Model:
    """A model file's contents.

    Attributes
    ----------
    path : str
    algorithm : str or None
        What made it (None for a file saved without a stamp).
    params : dict
        The parameters it was made with.
    attrs : dict
        Every other file attribute (e.g. ``zero_based``, ``global_mean``).
    arrays : dict of str to numpy.ndarray or scipy.sparse.csr_matrix
        Every dataset, and every sparse matrix (a group of ``data``,
        ``indices``, ``indptr``).
    """

    path: str
    algorithm: object = None
    params: dict = field(default_factory=dict)
    version: object = None
    attrs: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def __getitem__(self, name):
        try:
            return self.arrays[name]
        except KeyError:
            raise KeyError(f"{self.path}: no array {name!r}; it holds "
                           f"{', '.join(sorted(self.arrays)) or 'nothing'}") from None


def load_model(path):
    """Read a model file saved by a job (or by :func:`paracel.io.h5.save_matrices`).

    Raises
    ------
    paracel.DataError
        If ``path`` is not a readable HDF5 file.
    """
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DataError(f"{path}: not a readable model file ({error})") from None
    with handle:
        attrs = {key: _plain(value) for key, value in handle.attrs.items()}
        arrays = {name: _read(handle[name], f"{path}:{name}") for name in handle}
    params = attrs.pop("params", None)
    return Model(path=str(path), algorithm=attrs.pop("algorithm", None),
                 params=json.loads(params) if params else {},
                 version=attrs.pop("paracel_version", None), attrs=attrs, arrays=arrays)


def _read(node, where):
    if isinstance(node, h5py.Dataset):
        if h5py.check_string_dtype(node.dtype) is not None:   # e.g. an id map
            return np.array(node.asstr()[()], dtype=str)
        return node[()]
    if {"data", "indices", "indptr"} <= set(node) and "shape" in node.attrs:
        shape = tuple(int(n) for n in node.attrs["shape"])
        return scipy.sparse.csr_matrix((node["data"][()], node["indices"][()],
                                        node["indptr"][()]), shape=shape)
    raise DataError(f"{where}: a group that is not a sparse matrix")


def _plain(value):
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
