"""Result files in Paracel's conventions.

Each worker writes ``OUTPUT/<prefix><worker_id>``, one ``key\\tvalue`` line per
item, vectors joined by a separator; :func:`merge` concatenates those files in
worker order into one. Files are written whole
(:func:`paracel.io.outputs.atomic_file`), so a file that exists is complete.
"""

import os

import numpy as np

from paracel.io.outputs import atomic_file


def format_value(value, sep=","):
    """A value as text: vectors and sequences joined by ``sep``."""
    if isinstance(value, np.ndarray):
        return sep.join(str(v) for v in value.ravel().tolist())
    if isinstance(value, (list, tuple)):
        return sep.join(str(v) for v in value)
    return str(value)


def dump_lines(output, prefix, worker_id, items, sep=","):
    """Write ``key\\tvalue`` lines to ``OUTPUT/<prefix><worker_id>``.

    Parameters
    ----------
    items : iterable of (key, value) or dict
        What to write, in order.

    Returns
    -------
    str
        The file written.
    """
    items = items.items() if isinstance(items, dict) else items
    name = f"{prefix}{worker_id}"
    with atomic_file(output, name) as handle:
        for key, value in items:
            handle.write(f"{key}\t{format_value(value, sep)}\n")
    return os.path.join(output, name)


def merge(output, prefix, parts, name, remove=False):
    """Concatenate ``<prefix>0 .. <prefix><parts-1>`` into ``OUTPUT/<name>``."""
    with atomic_file(output, name, "wb") as out:
        for part in range(parts):
            piece = os.path.join(output, f"{prefix}{part}")
            with open(piece, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    out.write(chunk)
    if remove:
        for part in range(parts):
            os.remove(os.path.join(output, f"{prefix}{part}"))
    return os.path.join(output, name)
