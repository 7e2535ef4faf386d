"""Columns of delimited text: which field of a line plays which role.

Data as people have it is CSV or TSV, often with a header line
(``userId,movieId,rating,timestamp``) and more columns than a loader needs.
A :class:`Layout` (the job keys ``header`` and ``columns``) says which
columns a loader takes, by name (with a header) or by 0-based position, and
turns each line's fields into the fields the loader expects, in its order.
Without ``columns`` a loader takes the fields as they come.

Fields are separated by commas when a line has one (each field stripped, so
ids may hold inner spaces; double quotes as in CSV), else by tabs or spaces;
``#`` starts a comment.
"""

import csv
from dataclasses import dataclass, field

from paracel.errors import ConfigError, DataError
from paracel.io.lines import readable


def split(line):
    """The fields of one line, comment dropped; ``[]`` for a blank line. A
    comma-separated line with double quotes is read as CSV (quoted fields
    may hold commas and ``#``)."""
    if '"' in line and "," in line:
        return [item.strip() for item in next(csv.reader([line]))]
    text = line.split("#", 1)[0]
    if not text.strip():
        return []
    if "," in text:
        return [item.strip() for item in text.split(",")]
    return text.split()


@dataclass(frozen=True)
class Layout:
    """How a loader reads its columns.

    Attributes
    ----------
    header : bool
        The first line of every input file names the columns (and is not data).
    columns : dict
        ``role -> column`` (a header name, or a 0-based position); ``None``
        for an optional role the input does not have (e.g. ``"id": null`` for
        vectors without an id column). A list for a role that takes several
        columns (``features``).
    """

    header: bool = False
    columns: dict = field(default_factory=dict)

    def positions(self, files, roles, rest=None):
        """Each role's column position(s) in ``files``.

        Parameters
        ----------
        files : list of str
        roles : dict of str to int or None
            The loader's roles, in the order it wants their fields, and the
            position each takes when ``columns`` does not name it (``None``:
            not read).
        rest : str, optional
            A role that takes every column no other role took when
            ``columns`` does not list it (``"features"``).

        Returns
        -------
        dict of str to (int, list of int or None), or None when ``columns``
        is empty (fields as they come).
        """
        if not self.columns:
            return None
        known = [*roles, *([rest] if rest else [])]
        unknown = sorted(set(self.columns) - set(known))
        if unknown:
            raise ConfigError(f"columns: {', '.join(unknown)} is not a column this loader "
                              f"reads (it reads {', '.join(known)})")
        names = self._header_names(files)
        found = {role: _position(self.columns.get(role, default), names, role)
                 for role, default in roles.items()}
        if rest is not None:
            found[rest] = _positions(self.columns.get(rest), names, rest)
        return found

    def _header_names(self, files):
        """The header's column names, the same in every file (``None`` without one)."""
        if not self.header:
            return None
        first = [_first_line(path) for path in files]
        for path, names in zip(files, first):
            if names != first[0]:
                raise DataError(f"{path}:1: its header {names} differs from "
                                f"{files[0]}'s {first[0]}")
        return first[0]


def _first_line(path):
    with open(readable(path), "rb") as handle:
        text = handle.readline().decode("utf-8", "replace").lstrip("\ufeff").rstrip("\r\n")
    return split(text)


def _position(column, names, role):
    if column is None or isinstance(column, int):
        return column
    if names is None:
        raise ConfigError(f"columns.{role}: {column!r} is a column name, so the input needs "
                          "a header line (set \"header\": true) or give a 0-based position")
    if column not in names:
        raise ConfigError(f"columns.{role}: no column {column!r} in the header "
                          f"({', '.join(names)})")
    return names.index(column)


def _positions(columns, names, role):
    if columns is None:
        return None
    if not isinstance(columns, list):
        columns = [columns]
    return [_position(column, names, f"{role}[{i}]") for i, column in enumerate(columns)]


def select(fields, found, roles, rest=None):
    """The fields of ``roles`` (then ``rest``) in order, from one line's fields.

    Raises
    ------
    ValueError
        If the line has no field at a position ``found`` names.
    """
    wanted = [found[role] for role in roles if found[role] is not None]
    if rest is not None:
        extra = found[rest]
        wanted += extra if extra is not None else \
            [p for p in range(len(fields)) if p not in wanted]
    if wanted and max(wanted) >= len(fields):
        raise ValueError(f"{len(fields)} fields, but column {max(wanted)} (0-based) is read")
    return [fields[p] for p in wanted]
