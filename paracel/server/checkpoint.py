"""Checkpoints: tables and worker states in HDF5, complete or absent.

A checkpoint is a folder ``<dir>/ckpt-<clock>`` holding one
``server-<id>.h5`` per server (its table), one ``worker-<id>.h5`` per worker
(the algorithm's :meth:`paracel.Algorithm.state`), and ``manifest.json``
(clock, counts, partitioner, format version, the job's config). Every file is
written to a temporary name, fsynced and renamed; the folder itself is built
under a temporary name and renamed once the manifest is in, so a crash at
any moment leaves either a complete checkpoint or none, and the previous one
intact. Nothing is pickled: values map onto HDF5 datasets, groups and
attributes (:func:`write_value` / :func:`read_value`).
"""

import json
import os
import re
import shutil

import numpy as np

from paracel.errors import ConfigError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_NAME = re.compile(r"^ckpt-(\d+)$")


def _h5py():
    import h5py

    return h5py


# -- values <-> HDF5 -------------------------------------------------------

def key_to_text(key):
    """A table key as JSON text (tuples become lists)."""
    return json.dumps(key if not isinstance(key, tuple) else _listify(key), default=int)


def _listify(key):
    return [_listify(part) if isinstance(part, tuple) else part for part in key]


def text_to_key(text):
    """Inverse of :func:`key_to_text` (lists become tuples)."""
    return _tuplify(json.loads(text))


def _tuplify(value):
    return tuple(_tuplify(part) for part in value) if isinstance(value, list) else value


def write_value(group, name, value):
    """Store ``value`` under ``group[name]`` (dataset, group or attributes)."""
    if isinstance(value, np.ndarray):
        group.create_dataset(name, data=value).attrs["kind"] = "array"
    elif type(value).__module__.startswith("scipy.sparse"):
        _write_sparse(group, name, value)
    elif isinstance(value, (tuple, list, dict)):
        _write_container(group, name, value)
    else:
        _write_scalar(group, name, value)


def _write_sparse(group, name, value):
    import scipy.sparse

    fmt = value.format if value.format in ("csr", "csc", "coo") else "csr"
    value = value.asformat(fmt)
    node = group.create_group(name)
    node.attrs.update(kind="sparse", format=fmt, shape=value.shape,
                      is_array=isinstance(value, scipy.sparse.sparray))
    parts = ("data", "row", "col") if fmt == "coo" else ("data", "indices", "indptr")
    for part in parts:
        node.create_dataset(part, data=getattr(value, part))


def _write_container(group, name, value):
    node = group.create_group(name)
    kind = "dict" if isinstance(value, dict) else type(value).__name__
    node.attrs["kind"] = kind
    items = value.items() if isinstance(value, dict) else enumerate(value)
    node.attrs["keys"] = json.dumps([str(key) for key, _ in items])
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for index, (_, item) in enumerate(items):
        write_value(node, str(index), item)


def _write_scalar(group, name, value):
    if isinstance(value, np.generic):
        value = value.item()
    node = group.create_group(name)
    if value is None:
        node.attrs["kind"] = "none"
    elif isinstance(value, bytes):
        node.attrs.update(kind="bytes", value=np.void(value))
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 63:
        node.attrs.update(kind="bigint", value=str(value))
    elif isinstance(value, (bool, int, float, complex, str)):
        node.attrs.update(kind=type(value).__name__, value=value)
    else:
        raise TypeError(f"cannot checkpoint a value of type {type(value).__name__}")


def read_value(node):
    """Inverse of :func:`write_value` for ``group[name]``."""
    kind = node.attrs["kind"]
    if kind == "array":
        return node[...]
    if kind == "sparse":
        return _read_sparse(node)
    if kind in ("tuple", "list", "dict"):
        keys = json.loads(node.attrs["keys"])
        items = [read_value(node[str(index)]) for index in range(len(keys))]
        if kind == "dict":
            return dict(zip(keys, items))
        return tuple(items) if kind == "tuple" else items
    return _read_scalar(node, kind)


def _read_sparse(node):
    import scipy.sparse

    fmt, shape = node.attrs["format"], tuple(node.attrs["shape"])
    kind = getattr(scipy.sparse, f"{fmt}_{'array' if node.attrs['is_array'] else 'matrix'}")
    if fmt == "coo":
        return kind((node["data"][...], (node["row"][...], node["col"][...])), shape=shape)
    return kind((node["data"][...], node["indices"][...], node["indptr"][...]), shape=shape)


def _read_scalar(node, kind):
    if kind == "none":
        return None
    value = node.attrs["value"]
    if kind == "bytes":
        return value.tobytes()
    if kind == "bigint":
        return int(value)
    caster = {"bool": bool, "int": int, "float": float, "complex": complex, "str": str}[kind]
    return caster(value.decode() if isinstance(value, bytes) else value)


# -- files -----------------------------------------------------------------

def write_table(path, table):
    """Write a server's whole table to ``path`` atomically."""
    def fill(handle):
        for index, (key, value) in enumerate(table.items()):
            write_value(handle, str(index), value)
            handle[str(index)].attrs["key"] = key_to_text(key)
    _atomic_h5(path, fill)


def read_table(path):
    """Yield ``(key, value)`` of a table written by :func:`write_table`."""
    with _h5py().File(path, "r") as handle:
        for name in handle:
            node = handle[name]
            yield text_to_key(node.attrs["key"]), read_value(node)


def write_state(path, state):
    """Write an algorithm's state (a dict of values) atomically."""
    _atomic_h5(path, lambda handle: write_value(handle, "state", dict(state)))


def read_state(path):
    """Inverse of :func:`write_state`."""
    with _h5py().File(path, "r") as handle:
        return read_value(handle["state"])


def _atomic_h5(path, fill):
    temporary = f"{path}.tmp"
    with _h5py().File(temporary, "w") as handle:
        fill(handle)
    _fsync(temporary)
    os.replace(temporary, path)


def _fsync(path):
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load_shard(folder, server_id, ring):
    """The keys of every server file in checkpoint ``folder`` that ``ring``
    places on ``server_id``: re-shards when the number of servers changed."""
    table = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("server-") and name.endswith(".h5"):
            for key, value in read_table(os.path.join(folder, name)):
                if ring.server_of(key) == server_id:
                    table[key] = value
    return table


# -- folders ---------------------------------------------------------------

def staging_path(directory, clock):
    """The temporary folder a checkpoint at ``clock`` is built in."""
    return os.path.join(directory, f".tmp-ckpt-{clock:08d}")


def staging(directory, clock):
    """Create (empty) the staging folder of a checkpoint at ``clock``."""
    path = staging_path(directory, clock)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def publish(directory, clock, manifest, keep=2):
    """Write the manifest last, rename the staging folder into place, and
    drop checkpoints older than the newest ``keep``."""
    stage = staging_path(directory, clock)
    final = os.path.join(directory, f"ckpt-{clock:08d}")
    temporary = os.path.join(stage, MANIFEST + ".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, os.path.join(stage, MANIFEST))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(stage, final)
    for old in complete(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(directory):
    """Complete checkpoint folders in ``directory``, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        path = os.path.join(directory, name)
        if match and os.path.exists(os.path.join(path, MANIFEST)):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest(directory):
    """The newest complete checkpoint's folder and manifest; ConfigError if none."""
    found = complete(directory)
    if not found:
        raise ConfigError(f"checkpoint.dir: no complete checkpoint in {directory} "
                          "to resume from")
    with open(os.path.join(found[-1], MANIFEST), encoding="utf-8") as handle:
        manifest = json.load(handle)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{found[-1]}: checkpoint format {manifest.get('format_version')} "
                          f"is not {FORMAT_VERSION}")
    return found[-1], manifest
