"""Failure never hangs: a rank that raises ends the whole job, quickly.

Within 20 s, non-zero, with the failing rank's role and id heading its
traceback; a user error is one line and exit 2.
"""

import os

import pytest

from conftest import HERE

pytestmark = pytest.mark.mpi

TEXT = os.path.join(os.path.dirname(HERE), "data", "text")


def test_worker_exception_ends_job(run_job):
    result = run_job("mpi_algos:Raises", processes=6, servers=1, params={"who": 1},
                     timeout=60)
    assert result.returncode != 0
    assert result.seconds < 20
    assert result.stderr.count("[worker 1] failed") == 1
    assert "RuntimeError: worker raised on purpose" in result.stderr
    # the cause once, then at most one line that the job was stopped
    assert result.stderr.count("SIGTERM") <= 1, result.stderr


def test_server_exception_ends_job(run_job):
    result = run_job("mpi_algos:ServerRaises", processes=4, servers=2, timeout=60,
                     env={"PARACEL_TEST_BREAK_SERVER": "1"})
    assert result.returncode != 0
    assert result.seconds < 20
    assert "[server " in result.stderr and "] failed" in result.stderr
    assert "RuntimeError: server raised on purpose" in result.stderr


def test_user_error_on_a_worker_is_one_line_exit_2(run_job):
    result = run_job("mpi_algos:UserDataError", processes=3, servers=1, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.seconds < 20
    assert "paracel: error: [worker 0] data.txt:7: expected 3 fields, got 2" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("misfit,message", [
    ("shape", "failed on key 'w': delta of shape (3,) does not fit the stored value of shape (4,)"),
    ("dtype", "failed on key 'w': delta does not fit the stored block of dtype int64"),
    ("key", "key 3.5 has unsupported type float"),
])
def test_misfit_updates_and_bad_keys_are_user_errors(run_job, misfit, message):
    result = run_job("mpi_algos:MisfitUpdate", processes=2, servers=1, timeout=60,
                     params={"misfit": misfit})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_error_only_one_rank_sees_before_launch_is_shown(run_job):
    result = run_job("wc", processes=4, servers=1, modules=["rank_bomb"], timeout=60,
                     input=TEXT)
    assert result.returncode != 0
    assert result.seconds < 20
    assert "[rank 2 on " in result.stderr and \
        "modules[0]: importing module 'rank_bomb' failed" in result.stderr, \
        result.stderr[-3000:]


def test_an_error_every_rank_sees_before_launch_is_shown_once(run_job):
    result = run_job("wc", processes=4, servers=1, params={"topk": 0}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("params.topk: 0 is below the minimum 1") == 1, result.stderr
