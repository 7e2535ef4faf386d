"""The worker-side parameter cache's freshness rule and local updates, without MPI.

A copy read while the slowest worker had committed ``g`` clocks holds every
update of clocks ``<= g - 1``; a read at clock ``c`` needs those of clocks
``<= c - s - 1``, so the copy serves reads while ``g >= c - s``. Checked
against that inequality for every small (g, c, s), plus the asynchronous
rule (a copy serves only the clock it was read in), copies being private,
own updates folded in with the servers' update functions, and drops.
"""

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse

from paracel.cache import ParamCache
from paracel.server import updates


@dataclass
class FakeClock:
    clock: int = 0
    slowest: int = 0
    staleness: object = 0


@pytest.mark.parametrize("staleness", [0, 1, 2, 5])
def test_a_copy_serves_reads_while_fresh_enough(staleness):
    for read_at in range(6):
        for slowest in range(max(0, read_at - staleness), read_at + 1):
            for later in range(read_at, read_at + 8):
                clock = FakeClock(read_at, slowest, staleness)
                cache = ParamCache(clock)
                cache.put("k", 1.0)
                clock.clock = later
                # what SSP allows: all updates of clocks <= later - s - 1 seen
                allowed = slowest - 1 >= later - staleness - 1
                assert (cache.get("k") is not None) == allowed, (read_at, slowest, later)


def test_asynchronous_copies_serve_only_their_clock():
    clock = FakeClock(3, 0, None)
    cache = ParamCache(clock)
    cache.put("k", np.ones(2))
    assert cache.get("k") is not None
    clock.clock = 4
    assert cache.get("k") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_copies_are_private():
    cache = ParamCache(FakeClock())
    value = np.arange(3.0)
    cache.put("k", value)
    value[0] = 99.0
    got = cache.get("k")
    got[1] = 77.0
    np.testing.assert_array_equal(cache.get("k"), [0.0, 1.0, 2.0])


def test_own_updates_are_folded_in_with_the_servers_functions():
    cache = ParamCache(FakeClock())
    cache.put("v", np.zeros((4, 2)))
    cache.apply("v", (np.array([1, 1, 3]), np.ones((3, 2))), "add_rows")
    np.testing.assert_array_equal(cache.get("v")[:, 0], [0.0, 2.0, 0.0, 1.0])
    cache.put("s", 2.0)
    cache.apply("s", 3.0, "max")
    assert cache.get("s") == 3.0
    cache.put("m", scipy.sparse.csr_matrix(np.eye(2)))
    cache.apply("m", scipy.sparse.csr_matrix(np.ones((2, 2))), "add")
    np.testing.assert_array_equal(cache.get("m").toarray(), [[2.0, 1.0], [1.0, 2.0]])
    cache.apply("absent", 1.0, "add")          # nothing cached: nothing to do
    assert cache.get("absent") is None


def test_failed_or_deleting_updates_and_writes_drop_the_copy():
    cache = ParamCache(FakeClock())
    cache.put("v", np.zeros(3))
    cache.apply("v", np.zeros(4), "add")       # misfit: the server refuses it too
    assert cache.get("v") is None
    cache.put("w", np.zeros(3))
    cache.drop(["w"])
    assert cache.get("w") is None


# -- the caching layer around a client -------------------------------------------

class FakeClient:
    """Stands in for paracel.client.Client: a dict, and a log of what reached it
    (``default=KeyError``: none given)."""

    def __init__(self, table):
        self.table = dict(table)
        self.calls = []
        self.comm_seconds = 1.5

    def read_multi(self, keys, default=KeyError, fresh=False, servers=None):
        self.calls.append(("read_multi", list(keys), servers))
        if default is KeyError and any(key not in self.table for key in keys):
            raise KeyError("missing")
        return [self.table.get(key, default) for key in keys]

    def write_multi(self, mapping):
        self.calls.append(("write_multi", dict(mapping)))
        self.table.update(mapping)

    def update_multi(self, mapping, fn="add", servers=None):
        self.calls.append(("update_multi", fn))
        for key, delta in mapping.items():
            self.table[key] = self.table[key] + delta
        return "handle"

    def remove(self, key):
        self.calls.append(("remove", key))
        return self.table.pop(key, None) is not None


def caching(table, staleness=0):
    from paracel.cache import CachingClient

    fake = FakeClient(table)
    return CachingClient(fake, ParamCache(FakeClock(staleness=staleness))), fake


def test_cached_reads_go_to_the_client_once():
    client, fake = caching({"a": np.arange(3.0), "b": 2.0})
    assert client.read_multi(["a", "b"])[1] == 2.0
    np.testing.assert_array_equal(client.read("a"), np.arange(3.0))
    out = np.zeros(3)
    assert client.read("a", out=out) is out and out[2] == 2.0
    assert fake.calls == [("read_multi", ["a", "b"], None)]
    assert (client.cache.hits, client.cache.misses) == (2, 2)


def test_a_default_stands_in_and_is_never_cached():
    client, fake = caching({"a": 1.0})
    assert client.read_multi(["a", "x"], default=0.0) == [1.0, 0.0]
    assert client.read("x", 7) == 7
    assert "x" not in client.cache.entries
    with pytest.raises(KeyError):
        client.read("x")


def test_fresh_reads_skip_the_cache():
    client, fake = caching({"a": 1.0})
    client.read("a")
    fake.table["a"] = 5.0
    assert client.read_multi(["a"], fresh=True) == [5.0]
    assert client.read("a") == 1.0  # the copy stays good for this clock


def test_own_writes_and_updates_are_read_back():
    client, fake = caching({"a": np.ones(2), "b": 1.0})
    client.read_multi(["a", "b"])
    assert client.update("a", np.ones(2), updates.add) == "handle"
    assert fake.calls[-1] == ("update_multi", "add")
    np.testing.assert_array_equal(client.read("a"), [2.0, 2.0])
    client.write("b", 3.0)
    assert "b" not in client.cache.entries and client.read("b") == 3.0
    assert client.remove("b") and "b" not in client.cache.entries


def test_rows_come_from_a_cached_block_read_whole():
    client, fake = caching({"m": np.arange(12.0).reshape(4, 3)})
    first = client.read_rows(["m"], [np.array([1])], servers=[0])
    second = client.read_rows(["m"], [np.array([3, 0])])
    np.testing.assert_array_equal(first[0], [[3.0, 4.0, 5.0]])
    np.testing.assert_array_equal(second[0][:, 0], [9.0, 0.0])
    assert fake.calls == [("read_multi", ["m"], [0])]


def test_everything_else_is_the_clients():
    client, fake = caching({})
    assert client.comm_seconds == 1.5 and client.client is fake
