"""Acked pushes under mpiexec: one request per push, replies and acks kept
apart, failures still reported (jobs from ``ack_algos``)."""

import json

import pytest

from conftest import assert_ok

pytestmark = pytest.mark.mpi


def test_a_push_is_one_request_and_small_writes_still_fence(run_job):
    pushes = 5
    result = run_job("ack_algos:PushRequests", processes=2, servers=1,
                     params={"pushes": pushes})
    assert_ok(result)
    counts = json.loads(result.read("requests_0.json"))
    assert counts == {"push": pushes, "small": 2 * pushes, "update": pushes}


@pytest.mark.parametrize("processes,servers", [(3, 2), (6, 3)])
def test_acks_and_replies_from_several_servers(run_job, processes, servers):
    result = run_job("ack_algos:Interleaved", processes=processes, servers=servers,
                     params={"rounds": 30}, timeout=120)
    assert_ok(result)
    assert result.metrics["metrics"] == {"rounds": 30}


def test_failures_reach_the_worker_through_acks(run_job):
    result = run_job("ack_algos:AckedFailure", processes=4, servers=1,
                     modules=["ack_algos"], timeout=90)
    assert_ok(result)
    reported = [json.loads(result.read(f"acked_failure_{worker}.json"))["messages"]
                for worker in range(3)]
    assert reported == [2, 0, 0]
