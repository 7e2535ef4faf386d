"""Test algorithms for acked pushes (imported on every rank by test_mpi_acks).

A write or update whose data travels out of line asks its server for an ack,
which stands in for the fence of the next flush. These jobs check that a push
is one request on the server, that acks and replies from several servers
never get mixed up, and that failures still reach the worker, even when the
ack that carries them is long and the worker is not listening.
"""

import json
import os

import numpy as np

import paracel
from paracel.protocol import INLINE_LIMIT
from paracel.waiting import wait_request

BIG = INLINE_LIMIT // 8 + 1  # float64 items: one more than rides inline


@paracel.update_function("ack_explode")
def ack_explode(old, delta):
    """Always fails, with a message long enough to need MPI's rendezvous."""
    raise ValueError("ack_explode was asked to fail " + "x" * 20000)


def _dump(algorithm, name, data):
    path = os.path.join(algorithm.output, f"{name}_{algorithm.worker_id}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def _key_on(algorithm, server, prefix):
    """A key that the ring places on ``server``."""
    ring = algorithm._runtime.client.ring
    return next(f"{prefix}{i}" for i in range(10_000) if ring.server_of(f"{prefix}{i}") == server)


class PushRequests(paracel.Algorithm):
    """One worker: how many requests the server counts per push, per small
    write + flush, and per big update + wait."""

    parameters = {"pushes": paracel.Param(int, 5, "pushes per kind")}

    def solve(self):
        client = self._runtime.client
        big, key = np.arange(BIG, dtype=np.float64), _key_on(self, 0, "push")
        counts = {}
        for kind in ("push", "small", "update"):
            before = client.stats()[0]["requests"]
            for i in range(self.pushes):
                if kind == "push":
                    self.write(key, big + i)
                    client.flush()
                elif kind == "small":
                    self.write(("small", i), float(i))
                    client.flush()
                else:
                    self.update(key, big, "add").wait()
            # the first stats() request is counted once it has been answered
            counts[kind] = client.stats()[0]["requests"] - before - 1
        np.testing.assert_array_equal(self.read(key), big * (1 + self.pushes) + self.pushes - 1)
        _dump(self, "requests", counts)
        return counts


class Interleaved(paracel.Algorithm):
    """Big writes (acked) and reads to several servers, interleaved without
    flushes: each read must get its own server's reply, not an ack."""

    parameters = {"rounds": paracel.Param(int, 30, "rounds")}

    def solve(self):
        me, servers = self.worker_id, self.num_servers
        keys = [_key_on(self, server, f"w{me}-") for server in range(servers)]
        out = np.empty(BIG)
        for round_ in range(self.rounds):
            for server, key in enumerate(keys):
                self.write(key, np.full(BIG, float(round_ * servers + server)))
                self.write((key, "small"), round_)
                self.update((key, "acc"), np.ones(BIG), "add")
            for server, key in enumerate(reversed(keys)):
                expected = float(round_ * servers + servers - 1 - server)
                assert self.read(key, out=out) is out and out[0] == expected, (out[0], expected)
                assert self.read((key, "small")) == round_
            values = self.read_multi([(key, "acc") for key in keys])
            assert all(value[0] == round_ + 1 for value in values)
        self.sync()
        return {"rounds": self.rounds}


class AckedFailure(paracel.Algorithm):
    """Failures reported through acks.

    Worker 0: a failing big update (acked) is reported by its handle. A
    failing small update leaves its long report pending on the server, and
    the ack of the next big write carries it while worker 0 waits on the
    other workers without listening; they keep reading from that server
    meanwhile, which a server stuck sending the report would not answer.
    Worker 0's next flush reports it.
    """

    def solve(self):
        key, messages = _key_on(self, 0, "fail"), []
        if self.worker_id == 0:
            self.write(key, np.zeros(BIG))
            messages.append(_caught(self.update(key, np.ones(BIG), "ack_explode").wait))
            self.update((key, "small"), 1.0, "ack_explode")
            self.write(key, np.ones(BIG))
        wait_request(self.comm.Ibarrier())
        if self.worker_id != 0:
            for _ in range(50):
                assert self.read(("absent", self.worker_id), default=None) is None
        wait_request(self.comm.Ibarrier())
        if self.worker_id == 0:
            messages.append(_caught(self._runtime.client.flush))
            assert all("ack_explode was asked to fail" in text for text in messages), messages
        self.sync()
        np.testing.assert_array_equal(self.read(key), np.ones(BIG))
        _dump(self, "acked_failure", {"messages": len(messages)})
        return {"reported": len(messages)}


def _caught(action):
    """The text of the RemoteError that ``action()`` raises."""
    try:
        action()
    except paracel.RemoteError as error:
        return str(error)
    raise AssertionError("a failing update function must be reported")
