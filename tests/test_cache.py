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
