"""No rank spins while it waits: a worker that finished early sleeps until
the job ends (it used to spin a core inside the clock window's free)."""

import pytest

from conftest import assert_ok

pytestmark = pytest.mark.mpi


def test_worker_that_finished_early_does_not_spin(run_job):
    result = run_job("mpi_algos:EarlyFinish", processes=4, servers=1,
                     modules=["mpi_algos"], params={"seconds": 4.0})
    assert_ok(result)
    cpu = float(result.read("idle_cpu.txt"))
    # spinning for the others' 4 s used about 2 s of CPU; sleeping, a few tens of ms
    assert cpu < 0.4, f"the finished worker used {cpu:.2f} s of CPU while waiting 4 s"
