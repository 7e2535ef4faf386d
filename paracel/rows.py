"""Row tables: rows keyed by 64-bit ids, spread over the servers.

A :class:`RowTable` maps ids (hashed features up to 2**32, raw int64 or
uint64 ids) to rows of ``width`` numbers. Only rows that exist take memory:
an id becomes a row when it is first pushed (or, with ``admit = k``, with
its k-th push), so a model over 2**64 possible features costs what its seen
features cost. Each id lives on the server :func:`paracel.partition.id_servers`
gives it; a pull or push sends each server one message of its ids (and
deltas) as raw buffers, grouped with numpy, and the servers find the rows
with a vectorised hash map (:mod:`paracel.server.idmap`).

Whole-table operations run on the servers (:meth:`RowTable.map`): an
algorithm such as L-BFGS keeps its vectors as columns of a table and moves
only the scalars it needs.

Pulls always go to the servers: the worker-side cache (job key ``cache``)
holds no rows.
"""

import numpy as np

from paracel.errors import UserError
from paracel.partition import id_servers
from paracel.server import rowfns

#: Up to this many servers, ids are grouped by one comparison per server
#: (about 1 ms per million ids each), beyond it by a radix sort (about 7 ms).
_COMPARED_SERVERS = 6


class RowTable:
    """A table of rows keyed by 64-bit ids, on the parameter servers.

    Made by :meth:`paracel.Algorithm.rows`. An id is a 64-bit pattern:
    int64 ids are read as the uint64 of the same bits (``-1`` is
    ``2**64 - 1``); other integer dtypes are converted to uint64 first.

    Parameters
    ----------
    client : paracel.client.Client
        The worker's parameter-store client.
    name : str
        The table's name (tables and keys do not share names).
    width : int
        Numbers per row, at least 1.
    dtype : numpy dtype
        Their type (integer, floating or complex).
    admit : int
        An id becomes a row with its ``admit``-th push (0 and 1: its first).
    """

    def __init__(self, client, name, width=1, dtype=np.float64, admit=0):
        self.client = client
        self.name = name
        self.width = _count(name, "width", width, 1)
        self.dtype = _number_type(name, dtype)
        self.admit = max(_count(name, "admit", admit, 0), 1)
        self.servers = len(client.server_ranks)

    def create(self):
        """Create the table on every server, or attach to the one there (a
        resumed job's, or one another worker created): its width, dtype and
        admission must then be the same."""
        if not isinstance(self.name, str):
            raise UserError(f"row table name {self.name!r} must be a str")
        spec = (self.width, self.dtype.str, self.admit)
        replies = self.client.ask([(server, "rows_create", [self.name], spec, ())
                                   for server in range(self.servers)])
        for difference, _ in replies.values():
            if difference is not None:
                raise UserError(difference)

    # -- rows ----------------------------------------------------------------

    def pull(self, ids, columns=None):
        """The rows of ``ids`` (1-d integers, any order, repeats allowed):
        a ``(len(ids), width)`` array, or ``(len(ids), len(columns))`` of
        only the given column numbers (less to send when an algorithm keeps
        several vectors as columns); ids that are not rows (never pushed,
        or not admitted yet) read as zeros."""
        ids = self._ids(ids)
        columns = self._columns(columns)
        if self.servers == 1:
            return self._ask_each("rows_pull", [(0, [ids])], columns)[0][0]
        groups = group_by_server(ids, self.servers)
        replies = self._ask_each("rows_pull", [(server, [ids[positions]])
                                               for server, positions in groups], columns)
        out = np.empty((ids.size, self.width if columns is None else len(columns)),
                       dtype=self.dtype)
        flat = _flat(out)
        for server, positions in groups:
            flat[positions] = _flat(replies[server][0])
        return out

    def push(self, ids, deltas, fn="add", params=(), columns=None):
        """Fold ``deltas[i]`` into the row of ``ids[i]`` on its server.

        Parameters
        ----------
        ids : array_like of int
            1-d, any order, repeats allowed.
        deltas : array_like
            ``(len(ids), width)`` (or ``(len(ids),)`` when width is 1) for
            ``"add"`` and ``"replace"``; for a registered row function
            ``(len(ids),)`` or ``(len(ids), c)``, any ``c``.
        fn : str or callable
            ``"add"`` (repeated ids accumulate, like ``np.add.at``),
            ``"replace"`` (the last of repeated ids wins), or a row function
            registered with :func:`paracel.row_function`.
        params : tuple
            Passed to a row function as it is (numbers, strings, arrays).
        columns : sequence of int, optional
            With ``"add"`` and ``"replace"``: the columns the deltas are for
            (``deltas`` is then ``(len(ids), len(columns))``), the others
            left as they are -- e.g. one vector of several kept side by side.

        Returns
        -------
        paracel.client.Handle
            ``wait()`` returns once every server has applied the push.
        """
        fn = self._function("row", fn)
        ids = self._ids(ids)
        columns = self._columns(columns)
        if columns is not None and fn not in rowfns.BUILTIN_ROW:
            raise UserError(f"row table {self.name!r}: columns are for the built-in add and "
                            f"replace; row function {fn!r} gets whole rows")
        deltas = self._deltas(ids, deltas, fn, self.width if columns is None else len(columns))
        params = self._params(params)
        tail = [] if columns is None else [columns]
        if self.servers == 1:
            return self.client.post("rows_push", [(0, [self.name], fn,
                                                   [ids, deltas, params, *tail])])
        return self.client.post("rows_push", [
            (server, [self.name], fn, [ids[positions], _take(deltas, positions), params, *tail])
            for server, positions in group_by_server(ids, self.servers)])

    # -- the whole table ------------------------------------------------------

    def map(self, fn, params=(), each=False):
        """Run table function ``fn`` on every server's rows (see
        :mod:`paracel.server.rowfns`); the sum of what the servers returned
        (numbers, or arrays of one shape; ``None`` if they returned nothing),
        or with ``each`` the list of their results in server order (e.g. to
        take a maximum).

        Not collective: each call runs ``fn`` once on every server, after
        this worker's earlier pushes; ``sync()`` first to see every worker's.
        """
        fn = self._function("table", fn)
        params = self._params(params)
        replies = self._ask_each("rows_map", [(server, [params])
                                              for server in range(self.servers)], fn)
        if each:
            return [replies[server][0] for server in range(self.servers)]
        results = [replies[server][0] for server in range(self.servers)
                   if replies[server][0] is not None]
        try:
            return sum(results[1:], results[0]) if results else None
        except (TypeError, ValueError):
            raise UserError(f"row table {self.name!r}: table function {fn!r} returned "
                            f"results that do not add up over the servers: "
                            f"{', '.join(_kind(result) for result in results)}") from None

    def size(self):
        """How many rows exist (admitted ids), over all servers."""
        replies = self.client.ask([(server, "rows_size", [self.name], None, ())
                                   for server in range(self.servers)])
        return sum(count for count, _ in replies.values())

    def items(self, columns=None):
        """``(ids, values)``: every row of the table (uint64 ids, in no
        particular order), or only the given ``columns`` of the values,
        e.g. to save a model."""
        replies = self._ask_each("rows_items", [(server, ())
                                                for server in range(self.servers)],
                                 self._columns(columns))
        parts = [replies[server] for server in range(self.servers)]
        return (np.concatenate([ids for ids, _ in parts]),
                np.concatenate([values for _, values in parts]))

    # -- plumbing -------------------------------------------------------------

    def _function(self, kind, fn):
        """The registered name of ``fn``, or a one-line error naming the table."""
        try:
            return rowfns.name_of(kind, fn)
        except UserError as error:
            raise UserError(f"row table {self.name!r}: {error}") from None

    def _columns(self, columns):
        """``columns`` as a tuple of column numbers of this table (or None)."""
        if columns is None:
            return None
        columns = tuple(int(column) for column in columns)
        if not columns or any(not 0 <= column < self.width for column in columns):
            raise UserError(f"row table {self.name!r}: columns {columns!r} are not a "
                            f"non-empty selection of 0..{self.width - 1}")
        return columns

    def _params(self, params):
        if not isinstance(params, (tuple, list)):
            raise UserError(f"row table {self.name!r}: params must be a tuple, got "
                            f"{type(params).__name__}")
        return tuple(params)

    def _ask_each(self, op, requests, arg=None):
        """``{server: values}`` of requests ``(server, values)`` to this table."""
        replies = self.client.ask([(server, op, [self.name], arg, values)
                                   for server, values in requests])
        return {server: values for server, (_, values) in replies.items()}

    def _ids(self, ids):
        """``ids`` as a contiguous 1-d uint64 array, or a one-line error."""
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise UserError(f"row table {self.name!r}: ids must be 1-d, got shape {ids.shape}")
        if ids.dtype.kind == "i":
            ids = ids.astype(np.int64, copy=False).view(np.uint64)
        elif ids.dtype.kind == "u":
            ids = ids.astype(np.uint64, copy=False)
        elif ids.size == 0:
            ids = np.empty(0, dtype=np.uint64)
        else:
            raise UserError(f"row table {self.name!r}: ids must be integers (int64 or "
                            f"uint64), got dtype {ids.dtype}")
        return np.ascontiguousarray(ids)

    def _deltas(self, ids, deltas, fn, width):
        """``deltas`` checked against ``ids``, ``fn`` and the ``width`` they
        are for, as the array to send."""
        deltas = np.asarray(deltas)
        if fn in rowfns.BUILTIN_ROW:
            if deltas.shape == (ids.size,) and width == 1:
                deltas = deltas.reshape(ids.size, 1)
            if deltas.shape != (ids.size, width):
                raise UserError(f"row table {self.name!r}: deltas of shape {deltas.shape} "
                                f"do not fit {ids.size} ids of width {width}")
            if not np.can_cast(deltas.dtype, self.dtype, "same_kind"):
                raise UserError(f"row table {self.name!r}: {deltas.dtype} deltas do not fit "
                                f"a table of {self.dtype}")
            return np.ascontiguousarray(deltas, dtype=self.dtype)
        if deltas.ndim not in (1, 2) or len(deltas) != ids.size or deltas.dtype.kind not in \
                "biufc":
            raise UserError(f"row table {self.name!r}: row function {fn!r} needs numeric "
                            f"deltas of shape ({ids.size},) or ({ids.size}, c), got "
                            f"{deltas.dtype} {deltas.shape}")
        return np.ascontiguousarray(deltas)


def open_table(client, name, width, dtype, admit):
    """A :class:`RowTable` created on the servers, or attached to (see
    :meth:`RowTable.create`)."""
    table = RowTable(client, name, width, dtype, admit)
    table.create()
    return table


def group_by_server(ids, servers):
    """``[(server, positions)]`` of the ids each server holds: numpy passes
    over the servers of :func:`paracel.partition.id_servers`, no Python per
    id (a comparison per server for a few servers, else a radix sort).

    Parameters
    ----------
    ids : numpy.ndarray of uint64
        Row ids.
    servers : int
        How many servers there are.

    Returns
    -------
    list of (int, numpy.ndarray of int64)
        The servers that hold any of the ids, in order, each with the
        positions of its ids in ``ids`` (in their order).
    """
    places = id_servers(ids, servers).astype(np.uint8 if servers <= 1 << 8 else np.uint16)
    if servers <= _COMPARED_SERVERS:
        groups = [(server, np.flatnonzero(places == server)) for server in range(servers)]
        return [(server, positions) for server, positions in groups if positions.size]
    order = np.argsort(places, kind="stable")
    counts = np.bincount(places, minlength=servers)
    stops = np.cumsum(counts)
    return [(int(server), order[stops[server] - counts[server]:stops[server]])
            for server in np.flatnonzero(counts)]


def _count(name, what, value, least):
    """``value`` as an int of at least ``least``, or a one-line error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise UserError(f"row table {name!r}: {what} must be an int >= {least}, got {value!r}")
    return int(value)


def _number_type(name, dtype):
    """``dtype`` as a numpy integer, floating or complex type, or a one-line
    error."""
    try:
        found = np.dtype(dtype)
    except TypeError:
        found = None
    if found is None or found.kind not in "iufc":
        raise UserError(f"row table {name!r}: dtype must be a number type, got {dtype!r}")
    return found


def _flat(array):
    """A 2-d array's rows as one void item each (fast gathers and scatters)."""
    return array.view(np.dtype((np.void, array.itemsize * array.shape[1]))).reshape(
        array.shape[0])


def _kind(value):
    """What ``value`` is, in a few words, for messages."""
    shape = getattr(value, "shape", None)
    return type(value).__name__ if shape is None else f"{type(value).__name__} {shape}"


def _take(array, positions):
    """``array[positions]`` for a 1-d or 2-d array, rows gathered whole
    (2-d fancy indexing is ~8x slower)."""
    if array.ndim == 1:
        return array[positions]
    return np.take(_flat(array), positions).view(array.dtype).reshape(positions.size, -1)
