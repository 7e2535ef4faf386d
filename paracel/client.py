"""The worker's side of the parameter store.

A :class:`Client` turns the verbs of :class:`paracel.Algorithm` into messages:
keys are grouped by the server that holds them (one message per server per
call), values travel as raw buffers (:mod:`paracel.protocol`), and nothing of
the model is computed here.

Writes and updates are not acknowledged one by one. A server applies one
worker's requests in the order they were sent, so a single *fence* round trip
proves that everything sent before it has been applied; :meth:`Client.flush`
fences every server that has unfenced writes, and a :class:`Handle` fences
only the servers its update went to, and only if no later fence already did.
Time spent sending and waiting for replies accumulates in ``comm_seconds``
(the "communicating" share of a worker's time).

An update function that failed on the server is reported with the next reply
that server sends this worker (a fence, a read, ...), as a
:class:`paracel.errors.RemoteError` carrying the server's traceback.
"""

import time

import numpy as np

from paracel import protocol
from paracel.errors import RemoteError, UserError
from paracel.server import updates
from paracel.waiting import Backoff, wait_for

_NO_DEFAULT = object()


class UpdateRejected(RemoteError, UserError):
    """A server refused an update as the user's mistake (e.g. a shape that
    does not fit the stored block): reported as one line, exit 2."""


class Handle:
    """Completion handle of an asynchronous update (ps-lite's timestamp).

    ``wait()`` returns once the servers have applied the update, and raises
    :class:`paracel.errors.RemoteError` if an update function failed there.
    """

    def __init__(self, client, marks):
        self._client = client
        self._marks = marks

    def wait(self):
        """Block (without spinning) until the update is applied."""
        self._client._fence([server for server, seq in self._marks.items()
                             if self._client._fenced[server] < seq])


class Client:
    """Parameter-store access for one worker.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The parameter-server communicator.
    server_ranks : list of int
        Rank in ``comm`` of server 0, 1, ...
    ring : paracel.partition.Ring
        Key → server placement, the same on every rank.
    """

    def __init__(self, comm, server_ranks, ring):
        self.comm = comm
        self.server_ranks = list(server_ranks)
        self.ring = ring
        self._sent = [0] * len(server_ranks)
        self._fenced = [0] * len(server_ranks)
        self.backoff = Backoff()
        self._errors = []
        self.comm_seconds = 0.0

    # -- reading -----------------------------------------------------------

    def read(self, key, default=_NO_DEFAULT, out=None):
        """The value stored under ``key``.

        Parameters
        ----------
        key : str, int or tuple
            The key.
        default : object, optional
            Returned when the key is missing; without it a missing key raises
            ``KeyError``.
        out : numpy.ndarray, optional
            Receive a dense value straight into this array (same dtype and
            shape); it is also what is returned.
        """
        server = self.ring.server_of(key)
        present, values = self._call(server, "read", [key], out=out)
        self._check()
        if not present[0]:
            return self._missing([key], default)
        value = values[0]
        if out is not None and value is not out:
            out[...] = value
            return out
        return value

    def read_multi(self, keys, default=_NO_DEFAULT):
        """Values of many keys, in order: one message to each server involved."""
        keys = list(keys)
        groups = self.ring.group(keys)
        for server, positions in groups.items():
            self._post(server, "read", [keys[i] for i in positions])
        result = [None] * len(keys)
        missing = []
        for server, positions in groups.items():
            present, values = self._receive(server)
            found = iter(values)
            for position, here in zip(positions, present):
                if here:
                    result[position] = next(found)
                elif default is _NO_DEFAULT:
                    missing.append(keys[position])
                else:
                    result[position] = default
        self._check()
        if missing:
            self._missing(missing, default)
        return result

    def read_rows(self, keys, rows):
        """``value[rows[i]]`` of each key's stored block: only those rows travel.

        Parameters
        ----------
        keys : list
            Keys of dense (or csr) blocks.
        rows : list of numpy.ndarray
            Integer row numbers within each block.
        """
        keys = list(keys)
        groups = self.ring.group(keys)
        for server, positions in groups.items():
            self._post(server, "read_rows", [keys[i] for i in positions], None,
                       [np.asarray(rows[i], dtype=np.int64) for i in positions])
        result = [None] * len(keys)
        missing = []
        for server, positions in groups.items():
            present, values = self._receive(server)
            found = iter(values)
            for position, here in zip(positions, present):
                if here:
                    result[position] = next(found)
                else:
                    missing.append(keys[position])
        self._check()
        if missing:
            self._missing(missing, _NO_DEFAULT)
        return result

    def contains(self, key):
        """Whether ``key`` is stored."""
        present = self._call(self.ring.server_of(key), "contains", [key])[0][0]
        self._check()
        return present

    def keys(self, prefix=None):
        """Every stored key (optionally those whose name starts with ``prefix``)."""
        for server in range(len(self.server_ranks)):
            self._post(server, "keys", [], prefix)
        found = []
        for server in range(len(self.server_ranks)):
            found.extend(self._receive(server)[0])
        self._check()
        return found

    def stats(self):
        """Per-server counters: keys, bytes held, requests served, busy seconds."""
        for server in range(len(self.server_ranks)):
            self._post(server, "stats", [])
        found = [self._receive(server)[0] for server in range(len(self.server_ranks))]
        self._check()
        return found

    # -- writing -----------------------------------------------------------

    def write(self, key, value):
        """Store ``value`` under ``key`` (visible to others after a flush)."""
        self.write_multi({key: value})

    def write_multi(self, mapping):
        """Store many keys: one message to each server involved."""
        self._send_grouped("write", mapping, None)

    def update(self, key, delta, fn="add"):
        """Fold ``delta`` into ``key`` on its server with update function ``fn``.

        Returns at once with a :class:`Handle`; the update is applied in the
        order sent, and is visible to other workers after a flush.
        """
        return self.update_multi({key: delta}, fn)

    def update_multi(self, mapping, fn="add"):
        """Update many keys with one function: one message per server."""
        return self._send_grouped("update", mapping, _fn_name(fn))

    def remove(self, key):
        """Drop ``key``; returns whether it was there."""
        removed = self._call(self.ring.server_of(key), "remove", [key])[0]
        self._check()
        return bool(removed)

    def checkpoint(self, folder):
        """Have every server write its table into ``folder``; returns the files."""
        self.flush()
        for server in range(len(self.server_ranks)):
            self._post(server, "checkpoint", [], folder)
        files = [self._receive(server)[0] for server in range(len(self.server_ranks))]
        self._check()
        return files

    def flush(self):
        """Return once every write and update sent so far has been applied."""
        self._fence([server for server, sent in enumerate(self._sent)
                     if sent > self._fenced[server]])

    def done(self):
        """Flush, then tell every server this worker has finished."""
        self.flush()
        for server in range(len(self.server_ranks)):
            self._post(server, "done", [])

    # -- plumbing ----------------------------------------------------------

    def _send_grouped(self, op, mapping, arg):
        keys = list(mapping)
        values = [mapping[key] for key in keys]
        marks = {}
        for server, positions in self.ring.group(keys).items():
            self._post(server, op, [keys[i] for i in positions], arg,
                       [values[i] for i in positions])
            self._sent[server] += 1
            marks[server] = self._sent[server]
        return Handle(self, marks)

    def _fence(self, servers):
        marks = {server: self._sent[server] for server in servers}
        for server in servers:
            self._post(server, "fence", [])
        for server in servers:
            self._receive(server)
            self._fenced[server] = marks[server]
        self._check()

    def _post(self, server, op, keys, arg=None, values=()):
        start = time.perf_counter()
        protocol.send(self.comm, self.server_ranks[server], (op, keys, arg), values)
        self.comm_seconds += time.perf_counter() - start

    def _call(self, server, op, keys, arg=None, out=None):
        self._post(server, op, keys, arg)
        return self._receive(server, out)

    def _receive(self, server, out=None):
        start = time.perf_counter()
        rank = self.server_ranks[server]
        self.backoff.reset()
        message = wait_for(lambda: self.comm.improbe(rank, protocol.TAG_REPLY), self.backoff)
        (data, errors), specs = message.recv()
        values = protocol.receive_payload(self.comm, rank, specs,
                                          protocol.TAG_REPLY_DATA, out)
        self._errors.extend((server, error) for error in errors)
        self.comm_seconds += time.perf_counter() - start
        return data, values

    def _check(self):
        """Raise the failures servers reported, once every reply is in.

        Updates refused as the user's mistake (a delta that does not fit the
        stored block) raise :class:`UpdateRejected`, a user error; any other
        failure of an update function raises :class:`RemoteError` with the
        server's traceback.
        """
        if self._errors:
            errors, self._errors = self._errors, []
            server, (user, first) = errors[0]
            cls = UpdateRejected if all(user for _, (user, _) in errors) else RemoteError
            raise cls(f"server {server} reported {len(errors)} failed update(s); "
                      f"the first: {first}")

    @staticmethod
    def _missing(keys, default):
        if default is _NO_DEFAULT:
            shown = ", ".join(repr(key) for key in keys[:5])
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            raise KeyError(f"no value stored under {shown}{more}")
        return default


def _fn_name(fn):
    """The registered name of update function ``fn`` (a name or the function)."""
    if callable(fn):
        for name in updates.names():
            if updates.lookup(name) is fn:
                return name
        raise UserError(f"update function {fn!r} is not registered; decorate it with "
                        "@paracel.update_function and list its module under \"modules\"")
    updates.lookup(fn)
    return fn
