"""Waiting without spinning a core.

Jobs run with more ranks than cores (16 ranks on 2 cores), so a rank that
polls in a tight loop steals the cores its peers need. Every wait in the
project goes through :class:`Backoff`: right after activity it polls with
``sched_yield`` between tries (cheap, and gives the core away if anyone else
can run), then falls back to sleeps that double up to a cap, so an idle rank
costs well under 1 % of a core while a busy one answers within microseconds.
Small JSON values are gathered and broadcast the same way
(:func:`gather_json`, :func:`bcast_json`).
"""

import json
import os
import time

SPIN_SECONDS = 5e-4
FIRST_SLEEP = 5e-5
MAX_SLEEP = 1e-3


class Backoff:
    """Pause policy for a polling loop: yield first, then sleep longer.

    Parameters
    ----------
    spin : float
        Seconds after the last :meth:`reset` during which :meth:`pause` only
        yields the CPU.
    first_sleep, max_sleep : float
        The first sleep after the spin phase and the cap of the doubling.
    """

    def __init__(self, spin=SPIN_SECONDS, first_sleep=FIRST_SLEEP, max_sleep=MAX_SLEEP):
        self.spin = spin
        self.first_sleep = first_sleep
        self.max_sleep = max_sleep
        self.reset()

    def reset(self):
        """Mark activity: the next pauses are short again."""
        self._since = time.perf_counter()
        self._sleep = self.first_sleep

    def pause(self):
        """Give the CPU away once, for longer the longer nothing happened."""
        if time.perf_counter() - self._since < self.spin:
            os.sched_yield()
            return
        time.sleep(self._sleep)
        self._sleep = min(self._sleep * 2, self.max_sleep)


def wait_for(test, backoff=None):
    """Call ``test()`` until it returns something other than ``None``.

    Parameters
    ----------
    test : callable
        A non-blocking check, e.g. ``lambda: comm.improbe(src, tag)``.
    backoff : Backoff, optional
        The pause policy; a fresh one by default.

    Returns
    -------
    object
        The first non-``None`` result of ``test``.
    """
    backoff = backoff or Backoff()
    while True:
        result = test()
        if result is not None:
            return result
        backoff.pause()


def wait_request(request, backoff=None):
    """Complete an MPI request (or list of them) without blocking in MPI.

    Blocking MPI calls poll the network in a loop; this tests and sleeps
    instead, so a rank waiting on a collective or a transfer stays idle.
    """
    from mpi4py import MPI

    requests = request if isinstance(request, list) else [request]
    wait_for(lambda: True if MPI.Request.Testall(requests) else None, backoff)


def gather_json(comm, value):
    """Every rank's JSON-able ``value``, in rank order, on rank 0 (else
    ``None``): gathered as UTF-8 bytes with non-blocking collectives, so no
    rank spins while it waits."""
    import numpy as np

    data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
    root = comm.Get_rank() == 0
    sizes = np.zeros(comm.Get_size(), dtype=np.int64) if root else None
    wait_request(comm.Igather(np.array([data.size], dtype=np.int64), sizes, root=0))
    joined = np.empty(int(sizes.sum()), dtype=np.uint8) if root else None
    wait_request(comm.Igatherv(data, [joined, sizes] if root else None, root=0))
    if not root:
        return None
    cuts = np.cumsum(sizes)[:-1]
    return [json.loads(part.tobytes()) for part in np.split(joined, cuts)]


def gather_arrays(comm, array):
    """Every rank's 1-d float64 ``array`` (any lengths) joined in rank order
    on rank 0 (else ``None``), with non-blocking collectives."""
    import numpy as np

    data = np.ascontiguousarray(array, dtype=np.float64).ravel()
    root = comm.Get_rank() == 0
    sizes = np.zeros(comm.Get_size(), dtype=np.int64) if root else None
    wait_request(comm.Igather(np.array([data.size], dtype=np.int64), sizes, root=0))
    joined = np.empty(int(sizes.sum()), dtype=np.float64) if root else None
    wait_request(comm.Igatherv(data, [joined, sizes] if root else None, root=0))
    return joined


def allgather_objects(comm, value):
    """Every rank's picklable ``value``, in rank order, on every rank: sizes
    and pickles exchanged with non-blocking collectives (no rank spins)."""
    import pickle

    import numpy as np

    data = np.frombuffer(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
    sizes = np.zeros(comm.Get_size(), dtype=np.int64)
    wait_request(comm.Iallgather(np.array([data.size], dtype=np.int64), sizes))
    joined = np.empty(int(sizes.sum()), dtype=np.uint8)
    wait_request(comm.Iallgatherv(data, [joined, sizes]))
    cuts = np.cumsum(sizes)[:-1]
    return [pickle.loads(part.tobytes()) for part in np.split(joined, cuts)]


def bcast_json(comm, value):
    """Rank 0's JSON-able ``value`` on every rank of ``comm`` (the others pass
    anything), with non-blocking collectives."""
    import numpy as np

    root = comm.Get_rank() == 0
    data = np.frombuffer(bytearray(json.dumps(value).encode()), dtype=np.uint8) if root \
        else None  # writable: a broadcast buffer is the receive buffer too
    size = np.array([data.size if root else 0], dtype=np.int64)
    wait_request(comm.Ibcast(size, root=0))
    if not root:
        data = np.empty(int(size[0]), dtype=np.uint8)
    wait_request(comm.Ibcast(data, root=0))
    return json.loads(data.tobytes())


def allgather_json(comm, value):
    """Every rank's JSON-able ``value``, in rank order, on every rank."""
    return bcast_json(comm, gather_json(comm, value))
