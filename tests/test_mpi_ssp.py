"""The SSP clock under mpiexec: the bound holds, reads see what they must.

One worker is slowed down; every worker records ``(own clock, slowest
clock)`` after each ``iter_commit`` and the counters it reads. The bound
``clock - slowest <= s`` and the visibility rule (a read at clock c sees all
updates of clocks <= c - s - 1) are asserted on the workers and again here.
"""

import json

import pytest

from conftest import assert_ok

pytestmark = pytest.mark.mpi


def records(result, workers):
    """Every worker's list of per-clock observations."""
    return [json.loads(result.read(f"clocks_{w}.json")) for w in range(workers)]


@pytest.mark.parametrize("cache,clock", [(False, "window"), (True, "window"),
                                         (False, "messages"), (True, "messages")])
@pytest.mark.parametrize("staleness", [0, 1, 3])
def test_staleness_bound_and_visibility(run_job, staleness, cache, clock):
    # with the worker-side cache, reads served from copies must keep the rule
    # too; and so must the clock kept by server 0 and reached by messages
    clocks = 12
    result = run_job("mpi_algos:Clocks", processes=5, servers=1, staleness=staleness,
                     cache=cache, clock=clock,
                     params={"clocks": clocks, "slow": 0, "delay": 0.05})
    assert_ok(result)
    expected = {"window": "ClockTable", "messages": "MessageClock"}[clock]
    assert result.metrics["timings"]["clock_table"] == expected
    hits = result.metrics["timings"]["per_worker_cache_hits"]
    if cache and staleness == 3:
        assert sum(hits) > 0     # fast workers ran ahead on their copies
    if not cache or staleness == 0:
        assert sum(hits) == 0    # s = 0: every clock's first read is a new one
    gaps = []
    for worker_records in records(result, 4):
        assert [r["clock"] for r in worker_records] == list(range(1, clocks + 1))
        for r in worker_records:
            assert r["clock"] - r["slowest"] <= staleness
            assert min(r["seen"]) >= r["clock"] - staleness
            gaps.append(r["clock"] - r["slowest"])
    if staleness == 0:
        assert max(gaps) == 0
    else:
        # the fast workers do run ahead of the slow one, up to the bound
        assert max(gaps) == staleness


@pytest.mark.parametrize("clock", ["window", "messages"])
def test_asynchronous_never_waits(run_job, clock):
    result = run_job("mpi_algos:Clocks", processes=4, servers=1, staleness=None, clock=clock,
                     params={"clocks": 10, "slow": 0, "delay": 0.1})
    assert_ok(result)
    fast = records(result, 3)[1]
    # a fast worker finishes its 10 clocks while the slow one is at its first few
    assert fast[-1]["clock"] - fast[-1]["slowest"] >= 5
    timings = result.metrics["timings"]["per_worker_clock_wait_seconds"]
    assert max(timings) == 0.0


@pytest.mark.parametrize("clock", ["window", "messages"])
def test_finished_worker_does_not_hold_others_back(run_job, clock):
    # worker 0 stops after 3 clocks; under BSP the others would wait for it
    # forever (and time out) if a finished worker still counted
    result = run_job("mpi_algos:Clocks", processes=4, servers=1, staleness=0, clock=clock,
                     params={"clocks": 8, "short": 3, "slow": 2, "delay": 0.02})
    assert_ok(result)
    assert result.metrics["timings"]["per_worker_clocks"] == [3, 8, 8]


@pytest.mark.parametrize("staleness", [0, 2, None])
def test_cached_reads_see_own_updates_and_peers_within_the_bound(run_job, staleness):
    result = run_job("mpi_algos:CachedMatrix", processes=4, servers=1, staleness=staleness,
                     cache=True, params={"clocks": 10})
    assert_ok(result)
    hits = result.metrics["timings"]["per_worker_cache_hits"]
    assert sum(hits) > 0
