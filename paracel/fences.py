"""Which of a worker's writes each server has applied: acks and fences.

The bookkeeping of :class:`paracel.client.Client`, kept apart from its
messages (as ps-lite keeps request tracking in ``Customer``, apart from
``KVWorker``'s verbs) so that it is a pure state machine, tested without MPI.

A worker numbers the writes and updates it sends each server 1, 2, ... A
server applies one worker's requests in the order sent and answers in that
order, so an ack it sends after applying request ``n`` proves requests
``1 … n`` are applied. Acks come from two kinds of request: a write that
asked for one itself (a push of a big block) and a *fence* (a request that
only asks for the ack), sent when no ack already due covers what must be
waited for. Since replies keep request order, a message from a server that
still owes acks is the oldest of them, never the reply to a read.
"""

from collections import deque


class AckTracker:
    """Writes sent, acks due and writes known applied, per server.

    Parameters
    ----------
    servers : int
        How many servers the worker talks to.

    Attributes
    ----------
    sent : list of int
        Number of the last write or update sent to each server.
    applied : list of int
        Number of the last one each server is known to have applied.
    due : list of collections.deque of int
        Per server, the numbers its outstanding acks will confirm, oldest
        first (strictly increasing, none above ``sent``).
    """

    def __init__(self, servers):
        self.sent = [0] * servers
        self.applied = [0] * servers
        self.due = [deque() for _ in range(servers)]

    def count(self, server, acked):
        """Number a write or update about to go to ``server``.

        Parameters
        ----------
        server : int
            Where it goes.
        acked : bool
            Whether it asks the server for an ack (its data travels out of line).

        Returns
        -------
        int
            Its number: what a :class:`paracel.client.Handle` waits for.
        """
        self.sent[server] += 1
        if acked:
            self.due[server].append(self.sent[server])
        return self.sent[server]

    def everything(self):
        """``{server: number}`` of the last write sent to each: what a flush waits for."""
        return dict(enumerate(self.sent))

    def behind(self, marks):
        """The ``(server, mark)`` of ``marks`` not yet known applied."""
        return [(server, mark) for server, mark in marks.items()
                if self.applied[server] < mark]

    def fence(self, server, mark):
        """Whether waiting for ``mark`` on ``server`` needs a fence sent now.

        No ack due covers ``mark`` means yes, and the fence's ack is then
        recorded as due, confirming everything sent so far; otherwise the
        wait is for an ack already due.
        """
        due = self.due[server]
        if due and due[-1] >= mark:
            return False
        due.append(self.sent[server])
        return True

    def owes(self, server):
        """Whether the next message from ``server`` is an ack (one is due)."""
        return bool(self.due[server])

    def acked(self, server):
        """Take the oldest ack due from ``server``: its writes up to that
        number are applied."""
        self.applied[server] = self.due[server].popleft()

    def reached(self, server, mark):
        """Whether ``server`` is known to have applied write ``mark``."""
        return self.applied[server] >= mark
