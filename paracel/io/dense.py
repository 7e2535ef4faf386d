"""Dense vectors, one per line: ``id,f1,...,fk`` or whitespace separated.

Paracel's ``fvec`` format, and CSV/TSV tables as people have them: a header
line and the id and feature columns chosen by name or position
(:class:`paracel.io.table.Layout`). Each worker parses only its line-aligned
share; the number of features is agreed across workers, and a line with a
different count is a :class:`paracel.errors.DataError` naming the file and
line. So is a first column that cannot be an id (a number with a fraction:
the file likely has no id column) or an id repeated within a share.
"""

import re

import numpy as np

from paracel.errors import DataError
from paracel.io.lines import iter_lines, line_number
from paracel.io.table import Layout, select
from paracel.waiting import allgather_objects

SEPARATOR = re.compile(r"[,\s]+")
_FRACTION = re.compile(r"[+-]?[0-9]*\.[0-9]*([eE][+-]?[0-9]+)?|[+-]?[0-9]+[eE][+-]?[0-9]+")


def load(files, comm, part, parts, has_id=True, dtype=np.float64, skip=False, layout=Layout()):
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
        Whether each line starts with an id field (when ``layout`` does not
        choose the columns).
    skip : bool
        Drop malformed lines (wrong width, not numbers) instead of raising.
    layout : paracel.io.table.Layout
        Header and columns (roles ``id`` and ``features``).

    Returns
    -------
    ids : list of str
        The ids (or global line positions as strings when there is no id
        column, as ``"<file>:<byte offset>"``).
    X : numpy.ndarray of shape (n_rows, n_features)
    skipped : int
        Malformed lines this worker dropped (0 unless ``skip``).
    """
    found = layout.positions(files, {"id": 0 if has_id else None}, rest="features")
    with_id = has_id if found is None else found["id"] is not None
    ids, rows, width, skipped, seen = [], [], None, 0, {}
    for path, offset, line in iter_lines(files, part, parts, layout.header):
        fields = [field for field in SEPARATOR.split(line.strip()) if field]
        if not fields or fields[0].startswith("#"):
            continue
        try:
            fields = fields if found is None else _select(fields, found, path, offset)
            name, values = (fields[0], fields[1:]) if with_id else (f"{path}:{offset}", fields)
            width = _check_width(values, width, path, offset)
            rows.append(_numbers(values, path, offset))
        except DataError:
            if not skip:
                raise
            skipped += 1
            continue
        if with_id:
            _check_id(name, seen, path, offset, found is None)
        ids.append(name)
    width = _agree(comm, width, files)
    X = np.array(rows, dtype=dtype).reshape(len(rows), width or 0)
    return ids, X, skipped


def _select(fields, found, path, offset):
    try:
        return select(fields, found, ["id"], rest="features")
    except ValueError as error:
        raise DataError(f"{path}:{line_number(path, offset)}: {error}") from None


def _check_id(name, seen, path, offset, guessed):
    """Refuse an id that is a number with a fraction when the id column was
    not chosen (the file likely has none), and an id seen before."""
    if guessed and _FRACTION.fullmatch(name):
        raise DataError(f"{path}:{line_number(path, offset)}: the first field {name!r} is "
                        "read as the vector's id, but it is a number with a fraction; if the "
                        "file has no id column, set \"columns\": {\"id\": null}")
    if name in seen:
        first = seen[name]
        raise DataError(f"{path}:{line_number(path, offset)}: id {name!r} again (first at "
                        f"{first[0]}:{line_number(*first)}); ids must be unique")
    seen[name] = (path, offset)


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
