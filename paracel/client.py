"""The worker's side of the parameter store.

A :class:`Client` turns the verbs of :class:`paracel.Algorithm` into messages:
keys are grouped by the server that holds them (one message per server per
call), values travel as raw buffers (:mod:`paracel.protocol`), and nothing of
the model is computed here.

Small writes and updates are not acknowledged one by one. A server applies
one worker's requests in the order they were sent, so a single *fence* round
trip proves that everything sent before it has been applied; :meth:`Client.flush`
fences every server that has unfenced writes, and a :class:`Handle` fences
only the servers its update went to, and only if no later fence already did.
A write or update whose data travels out of line (a push of a big block) asks
its server for an ack instead, which answers as a fence sent right after it
would: flushing after a push then waits for that ack and sends nothing, one
round trip where a separate fence made two, and the ack is noise next to the
block it follows. Replies from one server arrive in the order of the
requests, so the acks still due from it come before the reply to a read.
That bookkeeping (writes numbered per server, acks due, writes known applied)
is :class:`paracel.fences.AckTracker`, a state machine without MPI; the
client sends what it asks for and feeds it what arrives. Time spent sending
and waiting for replies accumulates in ``comm_seconds`` (the
"communicating" share of a worker's time). The worker-side cache is not
here: :class:`paracel.cache.CachingClient` wraps a client with the same verbs.

An update function that failed on the server is reported with the next reply
that server sends this worker (a fence, a read, ...), as a
:class:`paracel.errors.RemoteError` carrying the server's traceback.
"""

import time

import numpy as np
from mpi4py import MPI

from paracel import protocol
from paracel.errors import RemoteError, UserError
from paracel.fences import AckTracker
from paracel.partition import group_by_server
from paracel.server import updates
from paracel.waiting import Backoff, wait_request

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
        self._client._fence(self._marks)


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

    #: The worker-side cache: none here, every read goes to the servers
    #: (:class:`paracel.cache.CachingClient` is a client with one).
    cache = None

    def __init__(self, comm, server_ranks, ring):
        self.comm = comm
        self.server_ranks = list(server_ranks)
        self.ring = ring
        self._server_of_rank = {rank: server for server, rank in enumerate(server_ranks)}
        self._tracker = AckTracker(len(server_ranks))
        self._status = MPI.Status()
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
        present, values = self._exchange([(server, "read", [key], None, ())], out)[server]
        if not present[0]:
            return self._missing([key], default)
        value = values[0]
        if out is not None and value is not out:
            out[...] = value
            return out
        return value

    def read_multi(self, keys, default=_NO_DEFAULT, fresh=False, servers=None):
        """Values of many keys, in order: one message to each server involved.

        Parameters
        ----------
        keys : iterable
            The keys.
        default : object, optional
            Stands in for a missing key; without it a missing key raises
            ``KeyError``.
        fresh : bool
            From the servers even when the worker caches reads (always so
            here; see :class:`paracel.cache.CachingClient`).
        servers : sequence of int, optional
            Each key's server, when the caller knows it (saves hashing).
        """
        keys = list(keys)
        groups = self._groups(keys, servers)
        replies = self._exchange([(server, "read", [keys[i] for i in positions], None, ())
                                  for server, positions in groups.items()])
        return self._scatter(keys, groups, replies, default)

    def read_rows(self, keys, rows, servers=None):
        """``value[rows[i]]`` of each key's stored block: only those rows travel.

        Parameters
        ----------
        keys : list
            Keys of dense (or csr) blocks.
        rows : list of numpy.ndarray
            Integer row numbers within each block.
        servers : sequence of int, optional
            Each key's server, when the caller knows it (saves hashing).
        """
        keys = list(keys)
        groups = self._groups(keys, servers)
        replies = self._exchange([
            (server, "read_rows", [keys[i] for i in positions], None,
             [np.asarray(rows[i], dtype=np.int64) for i in positions])
            for server, positions in groups.items()])
        return self._scatter(keys, groups, replies, _NO_DEFAULT)

    def contains(self, key):
        """Whether ``key`` is stored."""
        server = self.ring.server_of(key)
        return self._exchange([(server, "contains", [key], None, ())])[server][0][0]

    def keys(self, prefix=None):
        """Every stored key (optionally those whose name starts with ``prefix``)."""
        replies = self._everyone("keys", prefix)
        return [key for server in sorted(replies) for key in replies[server][0]]

    def stats(self):
        """Per-server counters: keys, bytes held, requests served, busy seconds,
        resident memory."""
        replies = self._everyone("stats", None)
        return [replies[server][0] for server in sorted(replies)]

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

    def update_multi(self, mapping, fn="add", servers=None):
        """Update many keys with one function: one message per server
        (``servers``: each key's server, if the caller knows it)."""
        return self._send_grouped("update", mapping, updates.name_of(fn), servers)

    def remove(self, key):
        """Drop ``key``; returns whether it was there."""
        server = self.ring.server_of(key)
        return bool(self._exchange([(server, "remove", [key], None, ())])[server][0])

    def checkpoint(self, folder):
        """Have every server write its table into ``folder``; returns the files."""
        self.flush()
        replies = self._everyone("checkpoint", folder)
        return [replies[server][0] for server in sorted(replies)]

    def flush(self):
        """Return once every write and update sent so far has been applied."""
        self._fence(self._tracker.everything())

    def done(self):
        """Flush, then tell every server this worker has finished."""
        self.flush()
        start = time.perf_counter()
        sends = []
        for server in range(len(self.server_ranks)):
            sends += self._request(server, "done", [])
        self._complete(sends)
        self.comm_seconds += time.perf_counter() - start

    # -- plumbing ----------------------------------------------------------

    def _groups(self, keys, servers):
        """``{server: positions in keys}`` (``servers``: each key's, if known)."""
        if servers is not None:
            return group_by_server(servers)
        if len(keys) == 1:  # a third of the cost of group() for one key
            return {self.ring.server_of(keys[0]): [0]}
        return self.ring.group(keys)

    def _send_grouped(self, op, mapping, arg, servers=None):
        """Send a write or update to each server involved (see :meth:`post`)."""
        keys = list(mapping)
        values = [mapping[key] for key in keys]
        return self.post(op, [(server, [keys[i] for i in positions], arg,
                               [values[i] for i in positions])
                              for server, positions in self._groups(keys, servers).items()])

    def post(self, op, requests):
        """Send writes or updates, at most one per server, at once (the
        transfers overlap), and return when their values may change again.

        Parameters
        ----------
        op : str
            The operation (``"write"``, ``"update"``, ``"rows_push"``, ...).
        requests : list of (server, keys, arg, values)
            What goes to each server.

        Returns
        -------
        Handle
            ``wait()`` returns once every server has applied its part.
        """
        start = time.perf_counter()
        marks, sends = {}, []
        for server, keys, arg, values in requests:
            payload, buffers = protocol.pack(values)
            acked = bool(buffers)  # a push: its ack costs nothing next to its data
            marks[server] = self._tracker.count(server, acked)
            sends += self._post(server, op, keys, arg, acked, payload, buffers)
        self._complete(sends)
        self.comm_seconds += time.perf_counter() - start
        return Handle(self, marks)

    def ask(self, requests):
        """Send requests that get replies, ``(server, op, keys, arg, values)``
        each, at most one per server; returns ``{server: (data, values)}``
        (see :meth:`_exchange`)."""
        return self._exchange(requests)

    def _request(self, server, op, keys, arg=None, values=()):
        """Post one request that gets a reply (so asks no ack); returns its
        MPI requests."""
        payload, buffers = protocol.pack(values)
        return self._post(server, op, keys, arg, False, payload, buffers)

    def _post(self, server, op, keys, arg, ack, payload, buffers):
        """Post one request with its packed values; returns its MPI requests."""
        return protocol.post(self.comm, self.server_ranks[server],
                             protocol.request_header(op, keys, arg, ack, payload), buffers)

    def _fence(self, marks):
        """Wait until each server has applied write number ``marks[server]``,
        sending a fence to those that owe no ack covering it
        (:meth:`AckTracker.fence`), then raise any failures reported."""
        tracker = self._tracker
        behind = tracker.behind(marks)
        if not behind:
            return
        start = time.perf_counter()
        for server, mark in behind:
            if tracker.fence(server, mark):
                self.comm.Send(protocol.FENCE, dest=self.server_ranks[server],
                               tag=protocol.TAG_REQUEST)
        for server, mark in behind:
            while not tracker.reached(server, mark):
                self._receive()
        self.comm_seconds += time.perf_counter() - start
        self._check()

    def _everyone(self, op, arg):
        """Ask every server ``op`` with ``arg``; ``{server: (data, values)}``."""
        return self._exchange([(server, op, [], arg, ())
                               for server in range(len(self.server_ranks))])

    def _complete(self, sends):
        """Wait (without spinning) for ``sends`` to complete."""
        if not MPI.Request.Testall(sends):
            self.backoff.reset()
            wait_request(sends, self.backoff)

    def _exchange(self, requests, out=None):
        """Send requests that get replies; return ``{server: (data, values)}``.

        Requests go out without blocking and replies are taken in the order
        they arrive, whichever server sends first. Blocking on one server
        while another waits to reply to us could close a cycle of ranks each
        waiting on the next (servers send large replies synchronously).
        """
        start = time.perf_counter()
        sends = []
        for server, op, keys, arg, values in requests:
            sends += self._request(server, op, keys, arg, values)
        replies = {}
        while len(replies) < len(requests):
            self._receive(replies, out)
        self._complete(sends)
        self.comm_seconds += time.perf_counter() - start
        self._check()
        return replies

    def _receive(self, replies=None, out=None):
        """Take the next reply from any server; probe and back off, never
        block in MPI.

        A message from a server that still owes acks is the oldest of them
        (replies come in request order); any other is the reply to the
        exchange under way, stored in ``replies`` (``out``: see :meth:`read`).
        """
        comm, status, backoff = self.comm, self._status, self.backoff
        backoff.reset()
        while (message := comm.improbe(MPI.ANY_SOURCE, protocol.TAG_REPLY, status)) is None:
            backoff.pause()
        rank = status.Get_source()
        server = self._server_of_rank[rank]
        reply = protocol.recv_reply(message, status)
        if reply.errors:
            self._errors.extend((server, error) for error in reply.errors)
        if self._tracker.owes(server):
            self._tracker.acked(server)
        else:
            replies[server] = (reply.data, protocol.receive(comm, rank, reply.payload,
                                                            protocol.TAG_REPLY_DATA, out))

    def _scatter(self, keys, groups, replies, default):
        """Put each server's values back in the order of ``keys``."""
        result = [None] * len(keys)
        missing = []
        for server, positions in groups.items():
            present, values = replies[server]
            found = iter(values)
            for position, here in zip(positions, present):
                if here:
                    result[position] = next(found)
                elif default is _NO_DEFAULT:
                    missing.append(keys[position])
                else:
                    result[position] = default
        if missing:
            self._missing(missing, default)
        return result

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
        """``default`` for missing ``keys``, or ``KeyError`` naming them."""
        if default is _NO_DEFAULT:
            shown = ", ".join(repr(key) for key in keys[:5])
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            raise KeyError(f"no value stored under {shown}{more}")
        return default

