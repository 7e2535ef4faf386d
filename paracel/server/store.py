"""A server's table: key → value, with the operations workers ask for.

Values are whatever the protocol carries: dense numpy blocks, scipy.sparse
blocks, Python scalars, and tuples of them. Row tables (64-bit id → row,
:mod:`paracel.server.rowtable`) are kept apart, by name. The store is only
touched by its server's single serve loop, so each operation is atomic per
key, and per row.
"""

import itertools
import traceback

import numpy as np

from paracel import protocol
from paracel.errors import UserError
from paracel.server import rowtable, updates

MISSING = ("@missing",)


class Expired(BaseException):
    """Raised into an update function that ran past the server's limit (a
    BaseException so the function cannot swallow it); its text says how long
    the limit is."""


class Store:
    """The in-memory hash table of one server."""

    def __init__(self):
        self.table = {}
        self.rows = {}

    def read(self, keys):
        """Values of ``keys``; :data:`MISSING` stands for an absent key."""
        return [self.table.get(key, MISSING) for key in keys]

    def write(self, keys, values):
        """Store each value under its key, replacing what was there."""
        for key, value in zip(keys, values):
            self.table[key] = value

    def update(self, fn_name, keys, deltas):
        """Fold each delta into its key with the named update function.

        Returns
        -------
        list of (bool, str)
            One ``(is_user_error, report)`` per key whose update failed: a
            :class:`paracel.errors.UserError` (a delta that does not fit the
            stored block, say) gives its message; anything else the traceback.
            The other keys are updated all the same, and a failed key keeps
            its old value.
        """
        fn = updates.lookup(fn_name)
        check = not updates.is_builtin(fn)  # a user's function may return anything
        errors = []
        for key, delta in zip(keys, deltas):
            try:
                new = fn(self.table.get(key), delta)
                if check and new is not None:
                    protocol.check_storable(new)
            except Expired as stop:
                raise UserError(f"update function {fn_name!r} on key {key!r} {stop}") from None
            except Exception as error:  # reported back to the worker that asked
                errors.append(_failure(f"update function {fn_name!r}", f"key {key!r}", error))
                continue
            if new is None:
                self.table.pop(key, None)
            else:
                self.table[key] = new
        return errors

    def contains(self, keys):
        """Whether each key is present."""
        return [key in self.table for key in keys]

    def remove(self, keys):
        """Drop the keys; absent keys are ignored. Returns how many were present."""
        return sum(self.table.pop(key, MISSING) is not MISSING for key in keys)

    def keys(self, prefix=None):
        """All keys, or the string keys / tuple keys whose first item starts with
        ``prefix``."""
        if prefix is None:
            return list(self.table)
        return [key for key in self.table if _first(key).startswith(prefix)]

    def nbytes(self):
        """Bytes held in array payloads (what the table stores, not overhead),
        row tables included."""
        return sum(_nbytes(value) for value in self.table.values()) + \
            sum(shard.nbytes() for shard in self.rows.values())

    def pairs(self):
        """Every ``(key, value)`` to save in a checkpoint: the table's, then
        each row table as ``((rowtable.SAVED_TAG, name), arrays)``."""
        saved = (((rowtable.SAVED_TAG, name), shard.saved())
                 for name, shard in self.rows.items())
        return itertools.chain(self.table.items(), saved)

    # -- row tables -----------------------------------------------------------

    def create_rows(self, name, width, dtype, admit):
        """Create row table ``name`` here, or check that the one here has the
        same ``(width, dtype, admit)``; returns ``None``, or what differs."""
        shard = self.rows.get(name)
        if shard is None:
            self.rows[name] = rowtable.RowShard(name, width, dtype, admit)
            return None
        if shard.spec != (width, np.dtype(dtype).str, admit):
            return (f"row table {name!r} exists with width {shard.width}, dtype "
                    f"{shard.dtype}, admit {shard.admit}; asked for width {width}, dtype "
                    f"{np.dtype(dtype)}, admit {admit}")
        return None

    def row_shard(self, name):
        """This server's shard of row table ``name``."""
        try:
            return self.rows[name]
        except KeyError:
            raise UserError(f"no row table {name!r} on this server") from None

    def push_rows(self, name, fn_name, ids, deltas, params, source=None, columns=None):
        """Fold a push of worker ``source`` into row table ``name`` with row
        function ``fn_name`` (built-ins: into ``columns`` only, if given).

        Returns
        -------
        list of (bool, str)
            The failure, if the function failed (see :meth:`update`); the
            rows are then as they were, though ids it met may have become
            rows (of zeros) or been counted towards admission.
        """
        shard = self.row_shard(name)
        return _guarded(f"row function {fn_name!r}", f"row table {name!r}",
                        lambda: shard.push(ids, deltas, fn_name, params, source, columns))[1]

    def map_rows(self, name, fn_name, params):
        """Run table function ``fn_name`` on row table ``name``; returns
        ``(result, failures)`` (see :meth:`update`)."""
        shard = self.row_shard(name)
        return _guarded(f"table function {fn_name!r}", f"row table {name!r}",
                        lambda: _storable(shard.map_values(fn_name, params)))


def _guarded(function, target, call):
    """``(call(), [])``, or ``(None, [failure])`` if it raised (reported back
    to the worker that asked); a call past the time limit stops the job."""
    try:
        return call(), []
    except Expired as stop:
        raise UserError(f"{function} on {target} {stop}") from None
    except Exception as error:
        return None, [_failure(function, target, error)]


def _storable(value):
    protocol.check_storable(value)
    return value


def _first(key):
    head = key[0] if isinstance(key, tuple) and key else key
    return head if isinstance(head, str) else str(head)


def _nbytes(value):
    if isinstance(value, np.ndarray):
        return value.nbytes
    if hasattr(value, "data") and hasattr(value, "nnz"):
        parts = ("data", "indices", "indptr", "row", "col")
        return sum(getattr(value, name).nbytes for name in parts if hasattr(value, name))
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(item) for item in value)
    return 8


def _failure(function, target, error):
    head = f"{function} failed on {target}: {error}"
    if isinstance(error, UserError):
        return True, head
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return False, f"{head}\n{trace}"
