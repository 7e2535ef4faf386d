"""Test algorithms run by the MPI tests (imported on every rank).

Each one checks what it can on the workers with plain ``assert`` (a failed
assert ends the job non-zero with the traceback) and writes what it observed
to its output folder for the test to check as well.
"""

import json
import os
import time

import numpy as np
import scipy.sparse as sp

import paracel
from paracel.server.store import Store


@paracel.update_function("halve_then_add")
def halve_then_add(old, delta):
    """A user update function: new = old / 2 + delta."""
    return delta if old is None else old / 2 + delta


@paracel.update_function("explode")
def explode(old, delta):
    """An update function that always fails."""
    raise ValueError("explode was asked to fail")


def _dump(algorithm, name, data):
    path = os.path.join(algorithm.output, f"{name}_{algorithm.worker_id}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


class ApiVerbs(paracel.Algorithm):
    """Exercise every verb of the parameter store; assert each result."""

    def solve(self):
        me, n = self.worker_id, self.num_workers
        assert self.comm.Get_size() == n and self.comm.Get_rank() == me
        self.write(("own", me), np.full(3, float(me)))
        self.write_multi({f"multi-{me}-{i}": i for i in range(50)})
        self.sync()
        for other in range(n):
            np.testing.assert_array_equal(self.read(("own", other)), np.full(3, float(other)))
        values = self.read_multi([f"multi-{w}-{i}" for w in range(n) for i in range(50)])
        assert values == [i for _ in range(n) for i in range(50)]
        assert self.contains(("own", 0)) and not self.contains("never-written")
        assert self.read("never-written", default="d") == "d"
        assert self.read_multi(["never-written", ("own", 0)], default=None)[0] is None
        try:
            self.read("never-written")
        except KeyError:
            pass
        else:
            raise AssertionError("reading a missing key must raise KeyError")
        out = np.empty(3)
        assert self.read(("own", me), out=out) is out
        self.sync()
        handle = self.update("counter", 1, "add")
        handle.wait()
        self.bupdate("vec", np.ones(4), "add")
        self.update_multi({("m", i): float(i) for i in range(20)}, "max").wait()
        self.bupdate_multi({("m", i): -1.0 for i in range(20)}, "max")
        self.bupdate("user", np.ones(2), "halve_then_add")
        self.sync()
        assert self.read("counter") == n
        np.testing.assert_array_equal(self.read("vec"), np.full(4, float(n)))
        assert self.read_multi([("m", i) for i in range(20)]) == [float(i) for i in range(20)]
        user = self.read("user")
        # v1 = 1, v(k+1) = v(k) / 2 + 1, whatever the order of the workers
        np.testing.assert_allclose(user, np.full(2, 2.0 - 2.0 ** (1 - n)))
        own_keys = self.keys("multi")
        assert len(own_keys) == 50 * n
        self.sync()
        if me == 0:
            assert self.remove("counter") and not self.remove("counter")
            assert not self.contains("counter")
            self.write("rows", np.zeros((5, 2)))
            self.bupdate("rows", (np.array([0, 3, 3]), np.ones((3, 2))), "add_rows")
            np.testing.assert_array_equal(self.read("rows")[:, 0], [1, 0, 0, 2, 0])
            self.bupdate("down", 5.0, "sub")
            assert self.read("down") == -5.0
            self.bupdate("down", 2.0, "replace")
            assert self.read("down") == 2.0
            self.bupdate("down", 1.0, "min")
            assert self.read("down") == 1.0
        self.sync()
        _dump(self, "verbs", {"worker": me, "ok": True})
        return {"verbs_ok": True}


class Totals(paracel.Algorithm):
    """Every worker adds 1 to one hot key and to each of many keys, ``repeats`` times."""

    parameters = {"repeats": paracel.Param(int, 2000, "updates per worker per key set"),
                  "key_count": paracel.Param(int, 100, "how many keys in the many-key set")}

    def solve(self):
        for i in range(self.repeats):
            self.update("hot", 1, "add")
            self.update(("many", i % self.key_count), 1, "add")
        self.sync()
        hot = self.read("hot")
        many = self.read_multi([("many", k) for k in range(self.key_count)])
        _dump(self, "totals", {"hot": hot, "many": many})
        return {"hot": hot, "many_total": sum(many)}


class Values(paracel.Algorithm):
    """Dense arrays of several dtypes and sparse matrices, written, updated, read."""

    DTYPES = ["float64", "float32", "int64", "int32", "complex128", "uint8", "bool"]

    def solve(self):
        me, n = self.worker_id, self.num_workers
        rng = np.random.default_rng(7)
        dense = {dt: (rng.random((40, 30)) * 10).astype(dt) for dt in self.DTYPES}
        big = rng.random(300_000)  # 2.4 MB: travels out of line
        matrix = sp.random(200, 100, density=0.05, format="csr", random_state=3)
        if me == 0:
            self.write_multi({("dense", dt): value for dt, value in dense.items()})
            self.write_multi({"big": big, "csr": matrix, "csc": matrix.tocsc(),
                              "coo": sp.coo_array(matrix), "acc": np.zeros(300_000)})
            self.write("sparse_acc", sp.csr_matrix((200, 100)))
            self.write("dense_acc", np.zeros((200, 100)))
        self.sync()
        for dt, value in dense.items():
            got = self.read(("dense", dt))
            assert got.dtype == value.dtype, (dt, got.dtype)
            np.testing.assert_array_equal(got, value)
        np.testing.assert_array_equal(self.read("big"), big)
        for name, kind in (("csr", sp.csr_matrix), ("csc", sp.csc_matrix),
                           ("coo", sp.coo_array)):
            got = self.read(name)
            assert isinstance(got, kind), (name, type(got))
            assert (got != matrix).nnz == 0
        self.update("acc", big, "add")
        self.update("sparse_acc", matrix, "add")
        self.update("dense_acc", matrix, "add")
        self.sync()
        np.testing.assert_allclose(self.read("acc"), n * big)
        np.testing.assert_allclose(self.read("sparse_acc").toarray(), n * matrix.toarray())
        np.testing.assert_allclose(self.read("dense_acc"), n * matrix.toarray())
        return {"values_ok": True}


class Clocks(paracel.Algorithm):
    """SSP check: worker ``slow`` sleeps each clock; every worker records what it sees.

    During clock k each worker adds 1 to its own counter ("seen", w). After
    committing to clock c it records (c, slowest clock) and reads every
    counter, which must hold at least c - s (all updates of clocks <= c-s-1).
    """

    parameters = {"clocks": paracel.Param(int, 12, "how many clocks"),
                  "slow": paracel.Param(int, 0, "which worker is slow"),
                  "delay": paracel.Param(float, 0.05, "seconds the slow worker sleeps per clock"),
                  "short": paracel.Param(int, None, "clocks of worker 0 alone (it finishes "
                                         "early)", nullable=True)}

    def clocks_of(self, worker):
        """How many clocks ``worker`` runs."""
        return self.short if worker == 0 and self.short is not None else self.clocks

    def solve(self):
        me, n, s = self.worker_id, self.num_workers, self.staleness
        records = []
        for _ in range(self.clocks_of(me)):
            if me == self.slow:
                time.sleep(self.delay)
            self.update(("seen", me), 1, "add")
            self.iter_commit()
            clock, slowest = self.clock, self.slowest_clock
            seen = self.read_multi([("seen", w) for w in range(n)], default=0)
            records.append({"clock": clock, "slowest": slowest, "seen": seen})
            if s is not None:
                assert clock - slowest <= s, (clock, slowest, s)
                for worker, count in enumerate(seen):
                    assert count >= min(clock - s, self.clocks_of(worker)), (clock, s, seen)
        _dump(self, "clocks", records)
        return {"clocks": self.clock}


class Raises(paracel.Algorithm):
    """Worker ``who`` raises; the others would wait forever on the clock."""

    parameters = {"who": paracel.Param(int, 1, "which worker raises")}

    def solve(self):
        if self.worker_id == self.who:
            raise RuntimeError("worker raised on purpose")
        for _ in range(1000):
            self.iter_commit()
            time.sleep(0.05)


class FailingUpdate(paracel.Algorithm):
    """An update function that raises on the server; the worker catches the report."""

    def solve(self):
        self.write(("fail", self.worker_id), 1.0)
        handle = self.update(("fail", self.worker_id), 2.0, "explode")
        try:
            handle.wait()
        except paracel.RemoteError as error:
            text = str(error)
        else:
            raise AssertionError("a failing update function must be reported")
        assert "explode was asked to fail" in text and "Traceback" in text, text
        assert self.read(("fail", self.worker_id)) == 1.0
        _dump(self, "failing", {"message": text})
        return {"reported": True}


def _broken_keys(self, prefix=None):
    raise RuntimeError("server raised on purpose")


class ServerRaises(paracel.Algorithm):
    """Make the servers' key listing raise (fault injection), then ask for keys."""

    def solve(self):
        self.keys()


class UserDataError(paracel.Algorithm):
    """Raise the project's data error on one worker: one line, exit 2."""

    def solve(self):
        if self.worker_id == 0:
            raise paracel.DataError("data.txt:7: expected 3 fields, got 2")
        time.sleep(30)


if os.environ.get("PARACEL_TEST_BREAK_SERVER"):
    Store.keys = _broken_keys


class MisfitUpdate(paracel.Algorithm):
    """Push a delta whose shape or dtype does not fit the stored block."""

    parameters = {"misfit": paracel.Param(str, "shape", "what does not fit",
                                          choices=("shape", "dtype", "key"))}

    def solve(self):
        self.write("w", np.zeros(4, dtype=np.int64))
        if self.misfit == "shape":
            self.bupdate("w", np.ones(3, dtype=np.int64))
        elif self.misfit == "dtype":
            self.bupdate("w", np.full(4, 0.5))
        else:
            self.write(3.5, 1.0)


class CrossReads(paracel.Algorithm):
    """Every worker pulls many rows from every server at once, many times.

    Requests (row lists) and replies (rows) both exceed MPI's eager limit; a
    client that blocked on one server while another waited to send it a reply
    could close a cycle of waiting ranks (seen once in an MF job; the client
    now takes replies in arrival order).
    """

    parameters = {"rounds": paracel.Param(int, 100, "pulls per worker")}

    def solve(self):
        W = self.matrix("W", (200_000, 16), block_rows=20_000, init="constant", value=2.0)
        rng = self.rng()
        for _ in range(self.rounds):
            rows = rng.integers(0, 200_000, 50_000)
            assert np.all(W.pull(rows) == 2.0)
            self.read_multi([("x", i) for i in range(3000)], default=0)
        return {"rounds": self.rounds}


class CachedMatrix(paracel.Algorithm):
    """Worker-side cache check on a distributed matrix.

    Row ``w`` is worker ``w``'s counter, the last row everyone's. Each clock a
    worker adds 1 to its row and to the shared row, and pulls every row before
    and after its push: its own row must count exactly its pushes (it reads
    its own writes), a peer's at least ``c - s`` (the SSP rule), the shared
    row at least the sum of those.
    """

    parameters = {"clocks": paracel.Param(int, 10, "how many clocks")}

    def solve(self):
        me, n = self.worker_id, self.num_workers
        W = self.matrix("W", (n + 1, 3), block_rows=2)
        rows = np.arange(n + 1)
        for clock in range(self.clocks):
            if me == 0:
                time.sleep(0.02)
            self.check(W.pull(rows), pushed=clock)
            W.push(np.array([me, n]), np.ones((2, 3)))
            self.check(W.pull(rows), pushed=clock + 1)
            self.iter_commit()
        return {"clocks": self.clock}

    def check(self, values, pushed):
        me, n, s = self.worker_id, self.num_workers, self.staleness
        assert np.all(values[me] == pushed), (me, pushed, values[me])
        floor = 0 if s is None else max(0, self.clock - s)
        for peer in range(n):
            assert floor <= values[peer, 0] <= self.clocks, (peer, floor, values[peer])
        assert values[n, 0] >= pushed + floor * (n - 1), (values[n], pushed, floor)


class SyncedReads(paracel.Algorithm):
    """``sync()`` makes every update before it visible, also through the cache.

    Each round: read a counter and a matrix, ``sync()``, every worker adds 1
    to both, ``sync()``, read again: the counter must have grown by exactly
    the number of workers, and ``to_numpy()`` (which always reads the
    servers) likewise, whatever the staleness and whether reads are cached.
    """

    parameters = {"rounds": paracel.Param(int, 5, "how many rounds")}

    def solve(self):
        n = self.num_workers
        W = self.matrix("W", (4, 2), block_rows=2)
        self.write("c", 0.0) if self.worker_id == 0 else None
        self.sync()
        for round_ in range(self.rounds):
            before, rows_before = self.read("c"), W.pull([0, 3])
            self.sync()
            self.update("c", 1.0, "add")
            W.push([0, 3], np.ones((2, 2)))
            self.sync()
            assert self.read("c") == before + n, (round_, before, self.read("c"))
            assert np.all(W.pull([0, 3]) == rows_before + n), (round_, W.pull([0, 3]))
            assert np.all(W.to_numpy()[[0, 3]] == rows_before + n), (round_, W.to_numpy())
            self.iter_commit()
        return {"c": self.read("c")}


class EarlyFinish(paracel.Algorithm):
    """Worker ``early`` finishes at once while the others work ``seconds``
    more; at its process's exit it writes how much CPU it used after
    ``solve()`` returned (``idle_cpu.txt``): waiting for the rest of the job
    must cost next to nothing."""

    parameters = {"seconds": paracel.Param(float, 3.0, "how long the others work"),
                  "early": paracel.Param(int, 1, "the worker that finishes at once")}

    def solve(self):
        if self.worker_id == self.early:
            import atexit

            start, path = time.process_time(), os.path.join(self.output, "idle_cpu.txt")
            atexit.register(lambda: open(path, "w").write(str(time.process_time() - start)))
            return {}
        time.sleep(self.seconds)
        return {}


@paracel.update_function("never_returns")
def never_returns(old, delta):
    """An update function stuck in an endless loop."""
    while True:
        pass


class Hangs(paracel.Algorithm):
    """Ways a job could wait forever; each must end in a message instead.

    ``how``: ``"sync"`` (worker 1 calls ``sync()`` while the others call
    ``iter_commit()``), ``"leave"`` (worker 1 leaves ``solve()`` after 2 of
    ``clocks`` clocks, with checkpoints on), ``"update"`` (an update function
    that never returns), ``"alone"`` / ``"alone_save"`` (worker 0 alone calls
    ``sync()`` / ``save_model``, the others return).
    """

    parameters = {"how": paracel.Param(str, "sync", "which hang"),
                  "clocks": paracel.Param(int, 6, "clocks of the others")}

    def solve(self):
        if self.how == "update":
            self.bupdate("k", 1.0, "never_returns")
        if self.how in ("alone", "alone_save"):    # a collective on worker 0 only
            if self.worker_id == 0 and self.how == "alone":
                self.sync()
            elif self.worker_id == 0:
                self.save_model("m.h5", [("x", np.zeros(3))])
            return {}
        for _ in range(self.clocks):
            if self.worker_id == 1 and self.how == "sync":
                self.sync()
            elif self.worker_id == 1 and self.how == "leave" and self.clock == 2:
                return {}
            else:
                self.update("k", 1.0, "add")
                self.iter_commit()
        return {}

    def state(self):
        return {}

    def restore(self, state):
        pass


class HugeArray(paracel.Algorithm):
    """One array of more than 2**31 - 1 elements written to a server and read
    back whole (it travels in pieces; MPI counts are C ints)."""

    parameters = {"elements": paracel.Param(int, 2 ** 31 + 7, "array length")}

    def solve(self):
        if self.worker_id != 0:
            return {}
        big = np.zeros(self.elements, dtype=np.int8)
        big[::4096] = 1
        big[-5:] = [1, 2, 3, 4, 5]
        self.write("big", big)
        del big
        back = self.read("big")
        ones = -(-self.elements // 4096)  # where 1s were put
        same = (back.shape == (self.elements,) and bool((back[::4096] == 1).all())
                and np.count_nonzero(back) == ones + 5)
        return {"same": same, "tail": back[-5:].tolist()}


class Environment(paracel.Algorithm):
    """Reports what every worker sees of its environment (BLAS threads, the
    launcher's token) and how many workers there are."""

    def solve(self):
        seen = self.comm.allgather(os.environ.get("OPENBLAS_NUM_THREADS"))
        return {"blas": seen, "workers": self.num_workers}
