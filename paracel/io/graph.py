"""Edge lists, weighted triples and ratings, partitioned across workers.

A line is ``src dst [weight]`` (graphs, triples) or ``user item rating``
(ratings). Fields are separated by whitespace, or by commas when the line has
one (then each field is stripped, so ids may hold inner spaces); ``#`` starts
a comment that runs to the line end; blank lines are skipped; Windows line
ends are accepted. A header line and the columns to read (by name or
position, e.g. MovieLens' ``userId,movieId,rating,timestamp``) are given by a
:class:`paracel.io.table.Layout`.

Ids are strings in the file. Every worker parses only its line-aligned share
(:func:`paracel.io.lines.iter_lines`), then the workers agree on global
id ↔ index maps by exchanging their sets of ids: the union is sorted
numerically when every id is an integer, else as strings, and numbered from 0.
So every worker gets the same maps without anyone reading the whole input.
Graphs (``same_ids=True``) share one node map between sources and
destinations; ratings keep separate user and item maps.

Finally the triples move to their owners with ``Alltoall`` (counts) and
``Alltoallv`` of raw int64 / float64 buffers, following one of three layouts
of the global ``n_rows × n_cols`` matrix over ``parts`` workers:

``"fmap"``
    by source row: contiguous row blocks, row ``r`` on worker
    ``r * parts // n_rows``;
``"smap"``
    by destination column, the same rule on columns;
``"fsmap"``
    2-D blocks: a ``pr × pc`` grid (``pr`` the largest divisor of ``parts``
    not above its square root), block ``(i, j)`` on worker ``i * pc + j``. For a
    prime number of workers the grid is ``1 × parts``, i.e. ``"smap"``.

A malformed line raises :class:`paracel.errors.DataError` naming its file and
line on every worker alike (errors are agreed collectively, so no worker is
left waiting in a collective the others have abandoned), or with
``skip=True`` is dropped and counted in :attr:`Triples.skipped`.
"""

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from paracel.errors import ConfigError, DataError
from paracel.io.lines import iter_lines, line_number
from paracel.io.table import Layout, select, split
from paracel.waiting import allgather_objects, wait_request

PARTITIONS = ("fmap", "smap", "fsmap")
TRIPLE_NAMES = ("src", "dst", "weight")
RATING_NAMES = ("user", "item", "rating")
_INTEGER = re.compile(r"[+-]?[0-9]+")


class _BadLine(Exception):
    """A line's problem, before its file and line number are known."""


@dataclass
class Triples:
    """One worker's share of a partitioned sparse matrix given as triples.

    Attributes
    ----------
    src, dst : numpy.ndarray of int64
        Global row and column indices of this worker's triples.
    weight : numpy.ndarray of float64
        Their values (1.0 for unweighted edges).
    src_ids, dst_ids : numpy.ndarray of str
        The id of each row and column index; the same array when the loader
        was given ``same_ids=True``.
    shape : (int, int)
        ``(n_rows, n_cols)`` of the global matrix, the same on every worker.
    partition : str
        ``"fmap"``, ``"smap"`` or ``"fsmap"``.
    rows, cols : (int, int)
        The ``[start, stop)`` row and column ranges this worker owns; every
        triple lies inside both.
    weighted : bool
        Whether the input lines carried a third field.
    skipped : int
        Malformed lines this worker dropped (``skip=True``).
    """

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray
    src_ids: np.ndarray
    dst_ids: np.ndarray
    shape: tuple
    partition: str
    rows: tuple
    cols: tuple
    weighted: bool
    skipped: int
    src_lookup: dict = field(repr=False, compare=False)
    dst_lookup: dict = field(repr=False, compare=False)

    def matrix(self):
        """This worker's triples as a ``scipy.sparse.csr_matrix`` of the global
        shape, with duplicate triples summed."""
        import scipy.sparse

        result = scipy.sparse.csr_matrix((self.weight, (self.src, self.dst)),
                                         shape=self.shape)
        result.sum_duplicates()
        return result

    def src_index(self, name):
        """The global row index of source (user) id ``name``; KeyError if unknown."""
        return self.src_lookup[name]

    def dst_index(self, name):
        """The global column index of destination (item) id ``name``; KeyError if unknown."""
        return self.dst_lookup[name]


def load_triples(files, comm, part, parts, partition="fmap", weighted=None,
                 same_ids=False, skip=False, layout=Layout()):
    """Load this worker's share of ``src dst [weight]`` triples.

    Every worker of ``comm`` must call this with the same arguments except
    ``part``: it runs collective operations.

    Parameters
    ----------
    files : str or list of str
        The input files, taken in order as one stream of lines.
    comm : mpi4py.MPI.Comm or None
        The workers' communicator (size ``parts``, rank ``part``); ``None``
        for a single process (``parts == 1``), which then makes no MPI calls.
    part, parts : int
        This worker and the number of workers.
    partition : {"fmap", "smap", "fsmap"}
        How triples are spread over the workers (see the module docstring).
    weighted : bool or None
        ``True``: every line has exactly 3 fields; ``False``: exactly 2 (each
        weight 1.0); ``None``: the input's first data line decides, and a
        line with the other count is malformed.
    same_ids : bool
        One id map for sources and destinations (graph nodes) rather than two.
    skip : bool
        What a malformed line does: raise :class:`~paracel.errors.DataError`
        naming the first one in the input, or (``True``) be dropped and counted.
    layout : paracel.io.table.Layout
        Header and columns (roles ``src``, ``dst``, ``weight``; for ratings
        ``user``, ``item``, ``rating``).

    Returns
    -------
    Triples
    """
    return _load(files, comm, part, parts, partition, weighted, same_ids, skip, layout,
                 TRIPLE_NAMES)


def load_graph(files, comm, part, parts, partition="fmap", weighted=None, skip=False,
               layout=Layout()):
    """Load this worker's share of an edge list; node ids form one map.

    See :func:`load_triples`; the result is square, ``src_ids is dst_ids``.
    """
    return _load(files, comm, part, parts, partition, weighted, True, skip, layout,
                 TRIPLE_NAMES)


def load_ratings(files, comm, part, parts, partition="fmap", skip=False, layout=Layout()):
    """Load this worker's share of ``user item rating`` lines.

    See :func:`load_triples`: rows are users, columns items, each with its
    own id map, and every line must carry a rating.
    """
    return _load(files, comm, part, parts, partition, True, False, skip, layout,
                 RATING_NAMES)


def grid_shape(parts):
    """The ``(pr, pc)`` worker grid of ``"fsmap"``: ``pr`` is the largest
    divisor of ``parts`` with ``pr * pr <= parts``, and ``pc = parts // pr``."""
    rows = max(d for d in range(1, int(parts ** 0.5) + 1) if parts % d == 0)
    return rows, parts // rows


def block_range(block, blocks, n):
    """The ``[start, stop)`` indices of ``block`` when ``n`` indices are cut
    into ``blocks`` contiguous blocks (index ``k`` is in ``k * blocks // n``)."""
    return -(-block * n // blocks), -(-(block + 1) * n // blocks)


def owned_ranges(partition, part, parts, shape):
    """The ``(rows, cols)`` ranges worker ``part`` owns under ``partition``."""
    n_rows, n_cols = shape
    if partition == "fmap":
        return block_range(part, parts, n_rows), (0, n_cols)
    if partition == "smap":
        return (0, n_rows), block_range(part, parts, n_cols)
    pr, pc = grid_shape(parts)
    i, j = divmod(part, pc)
    return block_range(i, pr, n_rows), block_range(j, pc, n_cols)


def owners(partition, parts, shape, src, dst):
    """The worker owning each triple ``(src[k], dst[k])`` under ``partition``."""
    n_rows, n_cols = shape
    if partition == "fmap":
        return src * parts // max(n_rows, 1)
    if partition == "smap":
        return dst * parts // max(n_cols, 1)
    pr, pc = grid_shape(parts)
    return (src * pr // max(n_rows, 1)) * pc + dst * pc // max(n_cols, 1)


def _load(files, comm, part, parts, partition, weighted, same_ids, skip, layout, names):
    """Parse this worker's share, agree on format, errors and ids, then shuffle.

    ``names`` are the three fields' names for messages (see :data:`TRIPLE_NAMES`).
    """
    files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    _check_arguments(files, comm, part, parts, partition, weighted)
    found = layout.positions(files, dict(zip(names, (0, 1, 2 if weighted else None))))
    if found is not None:
        if weighted and found[names[2]] is None:
            raise ConfigError(f"columns.{names[2]}: this loader needs a {names[2]} column")
        weighted = found[names[2]] is not None
    allowed = (2, 3) if weighted is None else ((3,) if weighted else (2,))
    share = _parse_share(files, part, parts, allowed, names, skip, layout.header, found)
    summaries = _allgather(comm, share.summary())
    count = _agree_field_count(summaries, allowed)
    _raise_first_error(summaries, count, skip)
    records = share.records[count]
    skipped = share.skipped + sum(len(rows) for n, rows in share.records.items() if n != count)
    src_ids, dst_ids = _agree_ids(comm, records, same_ids)
    src_lookup = {name: index for index, name in enumerate(src_ids.tolist())}
    dst_lookup = src_lookup if same_ids else {name: index for index, name in
                                              enumerate(dst_ids.tolist())}
    src = np.fromiter((src_lookup[r[0]] for r in records), np.int64, len(records))
    dst = np.fromiter((dst_lookup[r[1]] for r in records), np.int64, len(records))
    weight = np.fromiter((r[2] for r in records), np.float64, len(records))
    shape = (len(src_ids), len(dst_ids))
    targets = owners(partition, parts, shape, src, dst)
    src, dst, weight = _shuffle(comm, parts, targets, (src, dst, weight))
    rows, cols = owned_ranges(partition, part, parts, shape)
    return Triples(src, dst, weight, src_ids, dst_ids, shape, partition, rows, cols,
                   count == 3, skipped, src_lookup, dst_lookup)


def _check_arguments(files, comm, part, parts, partition, weighted):
    """Refuse arguments no input could make sense of (the caller's mistakes)."""
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, not {partition!r}")
    if weighted not in (None, True, False):
        raise ValueError(f"weighted must be None, True or False, not {weighted!r}")
    if comm is None and parts != 1:
        raise ValueError(f"parts={parts} workers need a communicator")
    if comm is not None and (comm.Get_size(), comm.Get_rank()) != (parts, part):
        raise ValueError(f"part {part} of {parts} does not match rank "
                         f"{comm.Get_rank()} of {comm.Get_size()}")
    for path in files:
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such file")


@dataclass
class _Share:
    """What one worker parsed: records by field count, and where things are.

    ``records[n]`` holds ``(src, dst, weight)`` of the lines with ``n``
    fields, in input order; ``first[n]`` is ``(ordinal, path, offset)`` of the
    first of them; ``bad`` is ``(ordinal, message)`` of the first line that
    stops the load: a malformed line in raise mode, or in either mode bytes
    that are not UTF-8. Ordinals count the share's lines, so ``(part,
    ordinal)`` orders lines as the input does.
    """

    records: dict = field(default_factory=lambda: {2: [], 3: []})
    first: dict = field(default_factory=dict)
    bad: tuple = None
    skipped: int = 0

    def summary(self):
        """The small part the workers exchange to agree on errors and format."""
        return self.first, self.bad


def _parse_share(files, part, parts, allowed, names, skip, header, found):
    """Parse this worker's lines, up to the first one that stops the load.

    Errors are recorded rather than raised, so that this worker still takes
    part in the collectives and every worker raises the same error.
    """
    share, ordinal = _Share(), -1
    try:
        for ordinal, (path, offset, line) in enumerate(iter_lines(files, part, parts, header)):
            fields = split(line)
            if not fields:
                continue
            try:
                fields = fields if found is None else _chosen(fields, found, names)
                record = _record(fields, allowed, names)
            except _BadLine as problem:
                if not skip:
                    share.bad = (ordinal, f"{path}:{line_number(path, offset)}: "
                                          f"{problem}: {line[:80]!r}")
                    break
                share.skipped += 1
                continue
            share.first.setdefault(len(fields), (ordinal, path, offset))
            share.records[len(fields)].append(record)
    except DataError as error:
        share.bad = (ordinal + 1, str(error))
    return share


def _chosen(fields, found, names):
    """The line's fields of the chosen columns, in the loader's order."""
    try:
        return select(fields, found, names)
    except ValueError as error:
        raise _BadLine(str(error)) from None


def _record(fields, allowed, names):
    """``(src, dst, weight)`` of a line's fields; :class:`_BadLine` if malformed."""
    if len(fields) not in allowed:
        expected = " or ".join(str(n) for n in allowed)
        raise _BadLine(f"expected {expected} fields ({_layout(allowed, names)}), "
                       f"found {len(fields)}")
    if not all(fields):
        raise _BadLine("empty field")
    if len(fields) == 2:
        return fields[0], fields[1], 1.0
    try:
        value = float(fields[2])
    except ValueError:
        raise _BadLine(f"{names[2]} {fields[2]!r} is not a number") from None
    if not math.isfinite(value):
        raise _BadLine(f"{names[2]} {fields[2]!r} is not a finite number")
    return fields[0], fields[1], value


def _layout(allowed, names):
    """The expected fields, for messages: ``"src dst [weight]"`` and the like."""
    if allowed == (2, 3):
        return f"{names[0]} {names[1]} [{names[2]}]"
    return " ".join(names[:allowed[0]])


def _allgather(comm, value):
    """Every worker's ``value``, in rank order (just ``[value]`` without MPI)."""
    return [value] if comm is None else allgather_objects(comm, value)


def _agree_field_count(summaries, allowed):
    """The number of fields every line must have: the only one allowed, else
    that of the input's first data line (2 for an input with no data)."""
    if len(allowed) == 1:
        return allowed[0]
    for first, _ in summaries:
        if first:
            return min(first, key=lambda n: first[n][0])
    return 2


def _raise_first_error(summaries, count, skip):
    """Raise, on every worker alike, the error of the input's first line that
    stops the load: see :class:`_Share`, and in raise mode also a line whose
    field count differs from ``count``."""
    bad = min(((part, *share_bad) for part, (_, share_bad) in enumerate(summaries)
               if share_bad), default=None)
    mixed = min(((part, ordinal, path, offset, n) for part, (first, _) in enumerate(summaries)
                 for n, (ordinal, path, offset) in first.items()
                 if n != count and not skip), default=None)
    if mixed and (bad is None or mixed[:2] < bad[:2]):
        raise DataError(_mixing(*mixed[2:], count, summaries))
    if bad:
        raise DataError(bad[2])


def _mixing(path, offset, n, count, summaries):
    """The message for the line at ``path:offset`` with ``n`` fields, in an
    input whose first data line has ``count``."""
    first_path, first_offset = next(first[count][1:] for first, _ in summaries if count in first)
    return (f"{path}:{line_number(path, offset)}: {n} fields, but the first data line "
            f"({first_path}:{line_number(first_path, first_offset)}) has {count}; "
            f"weighted and unweighted lines must not be mixed")


def _agree_ids(comm, records, same_ids):
    """The global sorted id arrays ``(src_ids, dst_ids)`` from every worker's
    own ids."""
    sources = {record[0] for record in records}
    targets = {record[1] for record in records}
    mine = (sources | targets, None) if same_ids else (sources, targets)
    gathered = _allgather(comm, mine)
    src_ids = _sorted_ids(set().union(*(ids[0] for ids in gathered)))
    if same_ids:
        return src_ids, src_ids
    return src_ids, _sorted_ids(set().union(*(ids[1] for ids in gathered)))


def _sorted_ids(ids):
    """``ids`` as a sorted array: by value when all are integers, else as text."""
    if all(_INTEGER.fullmatch(name) for name in ids):
        ordered = sorted(ids, key=lambda name: (int(name), name))
    else:
        ordered = sorted(ids)
    return np.array(ordered, dtype=str)


def _shuffle(comm, parts, targets, arrays):
    """Send element ``k`` of each of ``arrays`` to worker ``targets[k]``.

    One ``Alltoall`` of the counts, then one ``Alltoallv`` per array of raw
    numpy buffers. What a worker receives is in sender rank order, and in
    input order within each sender, so the result is deterministic.
    """
    if comm is None:
        return arrays
    from mpi4py import MPI

    order = np.argsort(targets, kind="stable")
    send_counts = np.bincount(targets, minlength=parts).astype(np.int64)
    recv_counts = np.empty(parts, dtype=np.int64)
    wait_request(comm.Ialltoall(send_counts, recv_counts))
    send_displs = np.concatenate([[0], np.cumsum(send_counts)[:-1]])
    recv_displs = np.concatenate([[0], np.cumsum(recv_counts)[:-1]])
    received = []
    for array in arrays:
        datatype = MPI.INT64_T if array.dtype == np.int64 else MPI.DOUBLE
        out = np.empty(int(recv_counts.sum()), dtype=array.dtype)
        wait_request(comm.Ialltoallv(
            [np.ascontiguousarray(array[order]), (send_counts, send_displs), datatype],
            [out, (recv_counts, recv_displs), datatype]))
        received.append(out)
    return tuple(received)
