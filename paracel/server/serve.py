"""The serve loop: receive a request, apply it to the store, reply.

One loop per server rank, one request at a time in arrival order, so updates
are atomic per key and a worker's requests to one server are applied in the
order it sent them (MPI does not reorder messages between a pair of ranks).
That order is what makes a *fence* cheap: when a server answers a fence, every
earlier request of that worker has been applied, with no per-update
acknowledgement on the wire. Any request may ask for such an answer itself
(its ``ack`` flag): the server sends it once the request is applied, so a
push and its fence are one round trip. A fence is the request that only asks
for that.

Each request is read as a :class:`paracel.protocol.Request` and dispatched
on its ``op`` to one handler, which reads the named fields it needs.

Waiting for the next request never blocks inside MPI (which polls in a loop):
the loop probes and backs off with :class:`paracel.waiting.Backoff`, so an
idle server costs almost nothing on an oversubscribed machine.
"""

import contextlib
import logging
import os
import signal
import time

import numpy as np
from mpi4py import MPI

from paracel import protocol
from paracel.server import checkpoint
from paracel.server.store import MISSING, Expired, Store
from paracel.waiting import Backoff, wait_request

log = logging.getLogger("paracel.server")

#: Built-in update functions that fold a dense delta into the stored block in
#: place and keep no reference to it, so its receive buffer can be reused.
IN_PLACE = ("add", "sub", "max", "min")


class Server:
    """Serves one shard of the parameter tables until every worker is done.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The parameter-server communicator (servers and workers).
    server_id : int
        This server's index among the servers.
    num_workers : int
        How many ``done`` messages end the loop.
    request_timeout : float, optional
        Seconds an update function may run before the job is stopped (a
        function that never returns would otherwise hang every rank).
    clock : paracel.ssp.ClockService, optional
        The clock table this server keeps (server 0, across hosts).
    """

    def __init__(self, comm, server_id, num_workers, request_timeout=None, clock=None):
        self.comm = comm
        self.request_timeout = request_timeout
        self.clock = clock
        self.server_id = server_id
        self.num_workers = num_workers
        self.store = Store()
        self.pool = {}
        self.pending_errors = {}
        self.finished = set()
        self.outbox = []
        self.requests = 0
        self.busy_seconds = 0.0
        self._handlers = {
            "read": self._read, "read_rows": self._read_rows, "write": self._write, "update": self._update,
            "contains": self._contains, "remove": self._remove, "keys": self._keys,
            "fence": self._fence, "done": self._done, "stats": self._stats,
            "checkpoint": self._checkpoint, "clock": self._clock,
            "rows_create": self._rows_create,
            "rows_pull": self._rows_pull, "rows_push": self._rows_push,
            "rows_map": self._rows_map, "rows_size": self._rows_size,
            "rows_items": self._rows_items,
        }

    def serve(self):
        """Answer requests until all workers have said ``done``."""
        if self.request_timeout:
            signal.signal(signal.SIGALRM, self._expire)
        backoff = Backoff()
        status = MPI.Status()
        while len(self.finished) < self.num_workers:
            message = self.comm.improbe(MPI.ANY_SOURCE, protocol.TAG_REQUEST, status)
            if message is None:
                backoff.pause()
                continue
            self._handle(message, status)
            backoff.reset()
        wait_request(self.outbox)
        log.debug("served %d requests, %d keys, %d bytes held",
                  self.requests, len(self.store.table), self.store.nbytes())

    def _handle(self, message, status):
        """Apply one request, then send the ack it asked for."""
        start = time.perf_counter()
        request = protocol.recv_request(message, status)
        self._handlers[request.op](request)
        if request.ack:
            self._ack(request.source)
        if self.outbox and MPI.Request.Testall(self.outbox):
            self.outbox = []
        self.requests += 1
        self.busy_seconds += time.perf_counter() - start

    def _ack(self, source):
        """Tell ``source`` its requests so far are applied (what a fence
        answers), with the failures of its updates since the last reply.

        Without failures this is the constant :data:`protocol.ACK`, an eager
        message. With them it may be long (tracebacks) and the worker may be
        computing rather than receiving, so it goes without blocking and
        completes in a later loop: the server never waits on one worker.
        """
        errors = self.pending_errors.pop(source, None)
        if errors is None:
            self.comm.Send(protocol.ACK, dest=source, tag=protocol.TAG_REPLY)
        else:
            self.outbox.append(self.comm.isend((None, errors, protocol.EMPTY), dest=source,
                                               tag=protocol.TAG_REPLY))

    def _reply(self, source, data=None, values=()):
        """Answer ``source`` with ``data`` and ``values``, carrying the
        failures of its updates since the last reply."""
        errors = self.pending_errors.pop(source, ())
        payload, buffers = protocol.pack(values)
        protocol.send(self.comm, source, (data, errors, payload), buffers,
                      protocol.TAG_REPLY, protocol.TAG_REPLY_DATA)

    def _values(self, request, targets=None):
        """The values that came with ``request`` (see :func:`protocol.allocate`
        for ``targets``)."""
        return protocol.receive(self.comm, request.source, request.payload, targets=targets)

    def _report(self, source, errors):
        """Keep failures of ``source``'s updates for its next reply or ack."""
        if errors:
            self.pending_errors.setdefault(source, []).extend(errors)

    # -- handlers: one per operation, each given the Request -------------------

    def _read(self, request):
        """Which keys are present, and their values."""
        found = self.store.read(request.keys)
        present = [value is not MISSING for value in found]
        self._reply(request.source, present, [value for value in found if value is not MISSING])

    def _read_rows(self, request):
        """Like :meth:`_read`, but only the rows of each block that came with
        the request travel back."""
        selections = self._values(request)
        found = self.store.read(request.keys)
        present = [value is not MISSING for value in found]
        self._reply(request.source, present, [value[rows] for value, rows
                                              in zip(found, selections) if value is not MISSING])

    def _write(self, request):
        """Store the values; a dense block overwritten by one of its shape
        lands in its own memory (no fresh pages for a big push)."""
        targets = None
        if request.out_of_line:
            targets = [self.store.table.get(key) for key in request.keys]
            targets = [value if isinstance(value, np.ndarray) else None for value in targets]
        self.store.write(request.keys, self._values(request, targets))

    def _update(self, request):
        """Fold the deltas in with update function ``request.arg``; failures
        go back with the sender's next reply."""
        fn_name = request.arg
        scratch = self._scratch(request.keys, fn_name) if request.out_of_line else None
        values = self._values(request, scratch)
        with self._watchdog():
            errors = self.store.update(fn_name, request.keys, values)
        self._release(scratch)
        self._report(request.source, errors)

    @contextlib.contextmanager
    def _watchdog(self):
        """Raise :class:`Expired` into the update functions if they run past
        ``request_timeout`` (a real-time alarm, disarmed when they return)."""
        if not self.request_timeout:
            yield
            return
        signal.setitimer(signal.ITIMER_REAL, self.request_timeout)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def _expire(self, signum, frame):
        raise Expired(f"did not return within {self.request_timeout:g} s "
                      "(job key request_timeout)")

    def _scratch(self, keys, fn_name):
        """Reusable receive buffers for deltas folded in place into existing
        dense blocks (the built-ins that keep no reference to the delta)."""
        if fn_name not in IN_PLACE:
            return None
        buffers = []
        for key in keys:
            old = self.store.table.get(key)
            if isinstance(old, np.ndarray) and old.nbytes >= protocol.INLINE_LIMIT:
                pool = self.pool.setdefault((old.dtype.str, old.shape), [])
                buffers.append(pool.pop() if pool else np.empty_like(old))
            else:
                buffers.append(None)
        return buffers

    def _release(self, buffers):
        """Return the :meth:`_scratch` buffers to the pool."""
        for buffer in buffers or ():
            if buffer is not None:
                self.pool[(buffer.dtype.str, buffer.shape)].append(buffer)

    def _contains(self, request):
        """Whether each key is stored."""
        self._reply(request.source, self.store.contains(request.keys))

    def _remove(self, request):
        """Drop the keys; the reply is how many were there."""
        self._reply(request.source, self.store.remove(request.keys))

    def _keys(self, request):
        """The stored keys, those starting with prefix ``request.arg`` if given."""
        self._reply(request.source, self.store.keys(request.arg))

    @staticmethod
    def _fence(request):
        """Nothing to apply: a fence asks only for the ack."""

    def _checkpoint(self, request):
        """Write the table into checkpoint staging folder ``request.arg``; the
        reply is the file's name, size and checksum, for the manifest."""
        self._reply(request.source,
                    checkpoint.write_shard(request.arg, self.server_id, self.store.pairs()))

    def _clock(self, request):
        """A message of a worker's :class:`paracel.ssp.MessageClock`."""
        self.clock.handle(request.source, request.arg)

    def _done(self, request):
        """The sender has finished: the loop ends when every worker has."""
        self.finished.add(request.source)

    def _stats(self, request):
        """This server's counters (see :meth:`paracel.client.Client.stats`)."""
        self._reply(request.source, {
            "keys": len(self.store.table), "nbytes": self.store.nbytes(),
            "requests": self.requests, "busy_seconds": self.busy_seconds,
            "rss_bytes": resident_bytes(),
            "row_tables": {name: shard.stats() for name, shard in self.store.rows.items()}})

    # -- row tables (request.keys = [name]) -------------------------------------

    def _rows_create(self, request):
        """Create the table here, or attach to it (``request.arg`` is its
        ``(width, dtype, admit)``); the reply says what differs from the
        table already here, if anything."""
        self._reply(request.source, self.store.create_rows(request.keys[0], *request.arg))

    def _rows_pull(self, request):
        """The rows of the ids that came with the request (``request.arg``:
        the pull's options)."""
        (ids,) = self._values(request)
        shard = self.store.row_shard(request.keys[0])
        self._reply(request.source, None, [shard.pull(ids, request.source, request.arg)])

    def _rows_push(self, request):
        """Fold pushed rows in with row function ``request.arg``."""
        ids, deltas, params, *columns = self._values(request)
        with self._watchdog():
            errors = self.store.push_rows(request.keys[0], request.arg, ids, deltas, params,
                                          request.source, *columns)
        self._report(request.source, errors)

    def _rows_map(self, request):
        """Run table function ``request.arg`` over the shard; reply its result."""
        (params,) = self._values(request)
        with self._watchdog():
            result, errors = self.store.map_rows(request.keys[0], request.arg, params)
        self._report(request.source, errors)
        self._reply(request.source, None, [result])

    def _rows_size(self, request):
        """How many rows the shard holds."""
        self._reply(request.source, len(self.store.row_shard(request.keys[0])))

    def _rows_items(self, request):
        """The shard's ``(ids, rows)`` (``request.arg``: which of them)."""
        self._reply(request.source, None,
                    list(self.store.row_shard(request.keys[0]).items(request.arg)))


def resident_bytes():
    """This process's resident memory (Linux ``/proc``; 0 where unknown)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
