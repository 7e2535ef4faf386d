"""Waiting without spinning a core.

Jobs run with more ranks than cores (16 ranks on 2 cores), so a rank that
polls in a tight loop steals the cores its peers need. Every wait in the
project goes through :class:`Backoff`: right after activity it polls with
``sched_yield`` between tries (cheap, and gives the core away if anyone else
can run), then falls back to sleeps that double up to a cap, so an idle rank
costs well under 1 % of a core while a busy one answers within microseconds.
"""

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
