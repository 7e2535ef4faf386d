"""Nothing hangs without a message.

Workers in different collective calls, a worker that leaves ``solve()`` early
while checkpoints are on, an update function that never returns: each ends
the job within seconds, non-zero, with one message saying who waits in what
(or which function on which key did not return).
"""

import pytest

pytestmark = pytest.mark.mpi


def hang(run_job, tmp_path, how, staleness=0, **job):
    return run_job("mpi_algos:Hangs", processes=4, servers=1, staleness=staleness,
                   modules=["mpi_algos"], params={"how": how}, timeout=90, **job)


@pytest.mark.parametrize("staleness,clock", [(0, "window"), (None, "window"),
                                             (0, "messages")])
def test_sync_against_iter_commit_is_reported(run_job, tmp_path, staleness, clock):
    result = hang(run_job, tmp_path, "sync", staleness, clock=clock)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.seconds < 40
    assert "worker 1 waits in sync()" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("staleness", [0, None])
def test_worker_leaving_early_with_checkpoints_is_reported(run_job, tmp_path, staleness):
    result = hang(run_job, tmp_path, "leave", staleness,
                  checkpoint={"dir": str(tmp_path / "ckpt"), "every": 3})
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.seconds < 40
    assert "worker 1 has left solve()" in result.stderr or (
        "worker 1 waits in the checkpoint barrier (collective call #2, clock 2)"
        in result.stderr), result.stderr[-3000:]


def test_update_function_that_never_returns_is_stopped(run_job, tmp_path):
    result = hang(run_job, tmp_path, "update", request_timeout=3)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.seconds < 40
    assert ("update function 'never_returns' on key 'k' did not return within 3 s "
            "(job key request_timeout)") in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize("how", ["alone", "alone_save"])
def test_a_collective_called_by_one_worker_only_is_reported(run_job, tmp_path, how):
    result = hang(run_job, tmp_path, how)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.seconds < 40
    assert "worker 0 waits in sync()" in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "MPI_ERR" not in result.stderr
