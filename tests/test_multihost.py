"""Jobs across hosts: network namespaces on this machine stand in for hosts
(tools/fakehosts.py), Open MPI talks TCP between them, and its daemons reach
the other host through an ssh stand-in with a clean login environment.

A bundled job across two hosts gives the single-host result; a killed remote
rank and a killed remote MPI daemon each end the job non-zero within 20 s
with no process left on any host; a host that does not share the output
folder ends the job with one line naming it. Skipped where network
namespaces cannot be made (not root).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import HERE

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
from fakehosts import FakeHosts, Unavailable, wait_gone  # noqa: E402

pytestmark = pytest.mark.mpi

TEXT = os.path.join(os.path.dirname(HERE), "data", "text")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """Two hosts; host 1 sees the ``local`` folder as its own empty disk."""
    local = tmp_path_factory.mktemp("local")
    try:
        made = FakeHosts(2, hidden={1: [str(local)]}).up()
    except Unavailable as error:
        pytest.skip(str(error))
    yield made, local
    made.down()


def start(hosts, job, *args, env=None):
    """``python -m paracel.run JOB --hostfile`` on host 0, 2 ranks per host."""
    environ = hosts.environment()
    environ["PYTHONPATH"] = os.pathsep.join([HERE, environ.get("PYTHONPATH", "")])
    environ.update(env or {})
    argv = [sys.executable, "-m", "paracel.run", str(job), "--hostfile", hosts.hostfile(2),
            *args]
    return subprocess.Popen(hosts.command(argv), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=environ,
                            start_new_session=True)


def finish(process, timeout):
    """``(exit status, stderr, seconds)``; kills the job if it takes too long."""
    began = time.monotonic()
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"the job did not end within {timeout} s")
    return process.returncode, err, time.monotonic() - began


def write_job(tmp_path, **job):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"processes": 4, "servers": 1, "log_level": "warning",
                                "output": str(tmp_path / "out"), **job}))
    return path


def test_a_job_across_two_hosts_gives_the_single_host_result(hosts, tmp_path, run_job):
    made, _ = hosts
    code, err, _ = finish(start(made, write_job(tmp_path, algorithm="wc", input=TEXT)), 120)
    assert code == 0, err[-3000:]
    alone = run_job("wc", processes=4, servers=1, input=TEXT, output=str(tmp_path / "alone"))
    spread = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert spread["metrics"] == alone.metrics["metrics"]
    a, b = made.names
    assert spread["placement"] == {"workers": [a, a, b], "servers": [b]}
    assert spread["timings"]["clock_table"] == "MessageClock"
    assert alone.metrics["timings"]["clock_table"] == "ClockTable"
    for name in ("topk.txt", "wc_0", "wc_1", "wc_2"):
        assert (tmp_path / "out" / name).read_text() == alone.read(name)


def long_job(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    job = write_job(tmp_path, algorithm="ckpt_algos:Accumulate", modules=["ckpt_algos"],
                    params={"clocks": 100000, "delay": 0.02})
    return job, pids


def wait_for_ranks(process, pids, count=4, seconds=60):
    deadline = time.monotonic() + seconds
    while len(list(pids.iterdir())) < count:
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    time.sleep(1.0)
    return {int(path.stem): int(path.read_text()) for path in pids.iterdir()}


@pytest.mark.parametrize("victim", ["rank", "daemon"])
def test_a_lost_remote_rank_or_daemon_ends_the_job(hosts, tmp_path, victim):
    made, _ = hosts
    job, pids = long_job(tmp_path)
    process = start(made, job, env={"PARACEL_TEST_PIDS": str(pids)})
    ranks = wait_for_ranks(process, pids)
    remote = made.pids(made.names[1])
    if victim == "rank":
        os.kill(ranks[3], signal.SIGKILL)          # the server, on host 1
    else:
        daemons = [pid for pid in remote if b"prted" in _cmdline(pid)]
        assert daemons, "no MPI daemon found on host 1"
        os.kill(daemons[0], signal.SIGKILL)
    code, err, seconds = finish(process, 60)
    assert code != 0, err[-3000:]
    assert seconds < 20
    assert wait_gone(list(ranks.values()) + remote), "processes were left behind"


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def test_a_host_that_does_not_share_the_output_folder_is_named(hosts, tmp_path):
    made, local = hosts
    job = write_job(tmp_path, algorithm="wc", input=TEXT, output=str(local / "out"))
    code, err, seconds = finish(start(made, job), 60)
    assert code == 2, err[-3000:]
    assert f"{local / 'out'}: this folder is not shared with rank 0's host" in err
    assert f"on {made.names[1]}" in err and err.count("is not shared") == 1
    assert "Traceback" not in err
