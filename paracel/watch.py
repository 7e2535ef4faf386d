"""Who waits for what: waits among workers that end in a message, not a hang.

Workers wait for each other in a few places: the clock (``iter_commit``
waits for the slowest worker), ``sync()`` and the barriers of checkpoints,
of the start and of the end of a run. Each such wait is *labelled*
``(kind, number, clock)``: what it is, the how-manieth collective call of
this worker it is, and the clock. Two things follow.

* Collective calls that MPI would match although they are not the same call
  (one worker in ``sync()``, another taking a checkpoint; a worker that left
  ``solve()`` early taking its final checkpoint while the others take one of
  a later clock) are found at once: the labels are exchanged with the
  barrier itself and must be equal (:func:`check_labels`).
* A wait that can never end (one worker in ``sync()`` while the others wait
  for it at the clock) is found within seconds: a worker that has waited a
  while publishes its label on the clock table's board and looks at the
  others' now and then; when every worker that has not finished is waiting,
  and nothing changed between two looks a second apart, nobody can move
  again (:func:`deadlocked`), and the job stops with a message saying what
  each worker waits in.

The rules are plain functions, tested without MPI; :class:`Watch` runs a wait
with them on a board (:class:`paracel.ssp.ClockTable`).
"""

import time

import numpy as np

from paracel.errors import UserError
from paracel.waiting import Backoff

RUNNING, SYNC, CLOCK, CHECKPOINT, START, END, GATHER = range(7)

#: What each kind of wait is, in messages.
KINDS = {SYNC: "sync()", CLOCK: "iter_commit()",
         CHECKPOINT: "the checkpoint barrier", START: "the start of the run",
         END: "the end of the run (solve() has returned)",
         GATHER: "allgather() or sum_over_workers()"}

#: Seconds a wait lasts before its label is published (waits shorter than
#: this cost nothing extra), and between two looks at the others.
PUBLISH_AFTER = 0.1
LOOK_EVERY = 1.0


class CollectiveMismatch(UserError):
    """Workers are in different collective calls (or the same at different
    points): a program error that would deadlock or mix their data."""


class Deadlock(UserError):
    """Every worker that has not finished waits for another: none can move."""


class ReportedElsewhere(Exception):
    """This worker found a fault that another worker reports: it stops
    without a message of its own (the launcher ends the job)."""


def describe(label):
    """A label ``(kind, number, clock)`` in words."""
    kind, number, clock = (int(part) for part in label)
    if kind == RUNNING:
        return "is running"
    if kind == CLOCK:
        return f"waits in {KINDS[CLOCK]} at clock {clock} for the slowest worker"
    return f"waits in {KINDS[kind]} (collective call #{number}, clock {clock})"


def check_labels(labels, me):
    """Raise unless every worker's label (rows of ``labels``, in worker order)
    names the same call: the same kind and number, and for a checkpoint the
    same clock (workers may reach a ``sync()`` at different clocks).

    Worker 0 raises :class:`CollectiveMismatch` with the message; worker
    ``me`` > 0, which sees the same labels, raises :class:`ReportedElsewhere`
    so the message appears once.
    """
    labels = np.asarray(labels)
    same = (labels[:, :2] == labels[0, :2]).all()
    if same and (labels[0, 0] != CHECKPOINT or (labels[:, 2] == labels[0, 2]).all()):
        return
    if me != 0:
        raise ReportedElsewhere()
    lines = [f"  worker {worker} {describe(label)}" for worker, label in enumerate(labels)]
    raise CollectiveMismatch("workers are in different collective calls (every worker "
                             "must make the same sync()/checkpoint calls in the same "
                             "order):\n" + "\n".join(lines))


def deadlocked(finished, labels):
    """Whether no worker can move: every worker that has not finished waits.

    Parameters
    ----------
    finished : sequence of bool
        Whether each worker has left the clock table (``solve()`` returned).
    labels : sequence of (kind, number, clock)
        Each worker's published wait, ``RUNNING`` if it is not waiting.
    """
    waiting = [int(label[0]) != RUNNING for label in labels]
    busy = [w for w, done in enumerate(finished) if not done]
    return bool(busy) and all(waiting[w] for w in busy) and any(waiting)


def deadlock_message(finished, labels, staleness):
    """What each worker waits in, for the :class:`Deadlock` error."""
    lines = []
    for worker, (done, label) in enumerate(zip(finished, labels)):
        what = describe(label)
        if done:
            what = ("has left solve() and " + what[3:]) if int(label[0]) else "has finished"
        lines.append(f"  worker {worker} {what}")
    bound = "asynchronous" if staleness is None else f"staleness {staleness}"
    return (f"the workers wait for each other and none can go on ({bound}); every "
            "worker must make the same collective calls (sync(), iter_commit() "
            "clocks, checkpoints) in the same order:\n" + "\n".join(lines))


class Watch:
    """Runs waits among workers on a board that publishes labels.

    Parameters
    ----------
    board : object
        Has ``publish(label)`` (this worker's label; ``None`` clears it),
        ``snapshot()`` -> ``(finished, labels)`` of every worker,
        ``staleness`` and ``worker`` (this worker's index).
    """

    def __init__(self, board):
        self.board = board
        self.calls = 0

    def label(self, kind, clock):
        """The label of this worker's next collective call of ``kind``."""
        self.calls += 1
        return (kind, self.calls, clock)

    def wait(self, done, label, max_sleep=None):
        """Call ``done()`` until it is true, sleeping between tries; publish
        ``label`` once the wait is long, and raise :class:`Deadlock` when
        every unfinished worker waits and nothing changes for a while."""
        backoff = Backoff() if max_sleep is None else Backoff(max_sleep=max_sleep)
        start = time.perf_counter()
        published, last, seen = False, start, None
        try:
            while not done():
                backoff.pause()
                now = time.perf_counter()
                if not published and now - start >= PUBLISH_AFTER:
                    self.board.publish(label)
                    published, last = True, now
                elif published and now - last >= LOOK_EVERY:
                    last, seen = now, self._look(seen)
        finally:
            if published:
                self.board.publish(None)

    def _look(self, seen):
        """Raise if the board shows a deadlock twice in a row, unchanged (the
        lowest-numbered waiting worker reports it; the others wait on and are
        stopped with the job)."""
        finished, labels = self.board.snapshot()
        now = (tuple(finished), tuple(map(tuple, labels)))
        if not deadlocked(finished, labels):
            return None
        reporter = min(w for w, label in enumerate(labels) if int(label[0]) != RUNNING)
        if now == seen and reporter == self.board.worker:
            raise Deadlock(deadlock_message(finished, labels, self.board.staleness))
        return now
