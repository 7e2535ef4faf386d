"""Dense vectors, one per line: ``id,f1,...,fk`` or whitespace separated.

Paracel's ``fvec`` format. Each worker parses only its line-aligned share;
the number of features is agreed across workers, and a line with a different
count is a :class:`paracel.errors.DataError` naming the file and line.
"""

import re

import numpy as np

from paracel.errors import DataError
from paracel.io.lines import iter_lines, line_number
from paracel.waiting import allgather_objects

SEPARATOR = re.compile(r"[,\s]+")


def load(files, comm, part, parts, has_id=True, dtype=np.float64, skip=False):
    """This worker's share of dense-vector ``files``.

    Parameters
    ----------
    files : list of str
        Input files, in order.
    comm : mpi4py.MPI.Comm or None
        The workers' communicator (to agree on the width); ``None`` alone.
    part, parts : int
        This worker's share and the number of shares.
    has_id : bool
        Whether each line starts with an id field.
    skip : bool
        Drop malformed lines (wrong width, not numbers) instead of raising.

    Returns
    -------
    ids : list of str
        The ids (or global line positions as strings when ``has_id`` is false,
        as ``"<file>:<byte offset>"``).
    X : numpy.ndarray of shape (n_rows, n_features)
    skipped : int
        Malformed lines dropped (0 unless ``skip``).
    """
    ids, rows, width, skipped = [], [], None, 0
    for path, offset, line in iter_lines(files, part, parts):
        fields = [field for field in SEPARATOR.split(line.strip()) if field]
        if not fields or fields[0].startswith("#"):
            continue
        name, values = (fields[0], fields[1:]) if has_id else (f"{path}:{offset}", fields)
        try:
            width = _check_width(values, width, path, offset)
            rows.append(_numbers(values, path, offset))
        except DataError:
            if not skip:
                raise
            skipped += 1
            continue
        ids.append(name)
    width = _agree(comm, width, files)
    X = np.array(rows, dtype=dtype).reshape(len(rows), width or 0)
    return ids, X, skipped


def _check_width(values, width, path, offset):
    width = len(values) if width is None else width
    if len(values) != width or not values:
        raise DataError(f"{path}:{line_number(path, offset)}: expected {width} "
                        f"features, got {len(values)}")
    return width


def _numbers(values, path, offset):
    try:
        return [float(value) for value in values]
    except ValueError as error:
        raise DataError(f"{path}:{line_number(path, offset)}: {error}") from None


def _agree(comm, width, files):
    """The feature count every worker saw (``None`` for a worker with no lines)."""
    if comm is None:
        return width
    widths = {w for w in allgather_objects(comm, width) if w is not None}
    if len(widths) > 1:
        raise DataError(f"{', '.join(files)}: lines have different numbers of features "
                        f"across the input: {sorted(widths)}")
    return widths.pop() if widths else 0
