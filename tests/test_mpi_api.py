"""The parameter-store API under mpiexec: every verb, exact totals, value types.

Each test runs a job from ``mpi_algos`` on K ranks with S servers; the
algorithms assert on the workers and the tests check what they wrote.
"""

import json
import os

import pytest

from conftest import assert_ok

pytestmark = pytest.mark.mpi

SHAPES = [(2, 1), (4, 1), (4, 2), (4, 3), (8, 1), (8, 3)]


@pytest.mark.parametrize("processes,servers", SHAPES)
def test_every_verb(run_job, processes, servers):
    result = run_job("mpi_algos:ApiVerbs", processes=processes, servers=servers)
    assert_ok(result)
    workers = processes - servers
    for worker in range(workers):
        with open(os.path.join(result.output, f"verbs_{worker}.json")) as handle:
            assert json.load(handle) == {"worker": worker, "ok": True}
    metrics = result.metrics
    assert metrics["workers"] == workers and metrics["servers"] == servers
    assert metrics["metrics"] == {"verbs_ok": True}
    stats = metrics["server_stats"]
    assert len(stats) == servers
    assert sum(server["keys"] for server in stats) >= 50 * workers
    assert all(server["requests"] > 0 for server in stats)


@pytest.mark.parametrize("processes,servers", [(8, 1), (9, 2), (10, 3)])
def test_concurrent_adds_are_exact(run_job, processes, servers):
    repeats, keys = 2000, 100
    result = run_job("mpi_algos:Totals", processes=processes, servers=servers,
                     params={"repeats": repeats, "key_count": keys}, timeout=240)
    assert_ok(result)
    workers = processes - servers
    assert workers == 7
    for worker in range(workers):
        seen = json.loads(result.read(f"totals_{worker}.json"))
        assert seen["hot"] == workers * repeats
        assert seen["many"] == [workers * repeats // keys] * keys


@pytest.mark.parametrize("processes,servers", [(3, 1), (5, 2)])
def test_dense_and_sparse_values(run_job, processes, servers):
    result = run_job("mpi_algos:Values", processes=processes, servers=servers)
    assert_ok(result)
    assert result.metrics["metrics"] == {"values_ok": True}


def test_user_update_function_failure_is_reported(run_job):
    result = run_job("mpi_algos:FailingUpdate", processes=4, servers=2,
                     modules=["mpi_algos"])
    assert_ok(result)
    message = json.loads(result.read("failing_0.json"))["message"]
    assert "explode was asked to fail" in message
    assert 'File "' in message and "mpi_algos.py" in message


@pytest.mark.parametrize("processes,servers", [(4, 2), (7, 3)])
def test_concurrent_large_reads_from_several_servers_do_not_deadlock(run_job, processes,
                                                                     servers):
    result = run_job("mpi_algos:CrossReads", processes=processes, servers=servers,
                     params={"rounds": 40}, timeout=90)
    assert_ok(result)
    assert result.metrics["metrics"] == {"rounds": 40}
