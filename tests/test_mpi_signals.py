"""Killing or interrupting any rank ends the whole job quickly and cleanly.

SIGKILL or SIGTERM on one rank (worker or server), or SIGINT to the launcher
(Ctrl-C): the job exits non-zero within 20 s, says which rank failed, and no
rank process is left behind.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import HERE

pytestmark = pytest.mark.mpi


def start(tmp_path, processes=4, servers=1):
    job = {"algorithm": "ckpt_algos:Accumulate", "modules": ["ckpt_algos"],
           "processes": processes, "servers": servers, "output": str(tmp_path / "out"),
           "params": {"clocks": 10000, "delay": 0.02}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    pids = tmp_path / "pids"
    pids.mkdir()
    env = dict(os.environ, PARACEL_TEST_PIDS=str(pids),
               PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-m", "paracel.run", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while len(list(pids.iterdir())) < processes or not (tmp_path / "out").exists():
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.1)
    time.sleep(1.0)  # let it run a few clocks
    return process, {int(p.stem): int(p.read_text()) for p in pids.iterdir()}


def finish(process, timeout=20):
    """Wait for the job; return (exit code, stderr, seconds)."""
    began = time.monotonic()
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail("the job did not end within %d s" % timeout)
    return process.returncode, err, time.monotonic() - began


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is gone for our purpose
        return handle.read().split()[2] != "Z"


@pytest.mark.parametrize("rank,role,sig", [
    (1, "worker", signal.SIGKILL), (3, "server", signal.SIGKILL),
    (0, "worker", signal.SIGTERM), (3, "server", signal.SIGTERM)])
def test_a_killed_rank_ends_the_job(tmp_path, rank, role, sig):
    process, pids = start(tmp_path)
    os.kill(pids[rank], sig)
    code, err, seconds = finish(process)
    assert code != 0
    assert seconds < 20
    if sig == signal.SIGTERM:
        index = rank if role == "worker" else rank - 3
        assert f"[{role} {index}] stopped by SIGTERM" in err
    else:
        assert f"rank {rank}" in err and "signal 9" in err
    time.sleep(0.5)
    assert not [pid for pid in pids.values() if alive(pid)]


def test_ctrl_c_ends_the_job_with_130(tmp_path):
    process, pids = start(tmp_path)
    os.killpg(process.pid, signal.SIGINT)
    code, err, seconds = finish(process)
    assert code == 130
    assert seconds < 20
    assert "Errorcode" not in err and "MPI_ABORT" not in err, err   # one line, no MPI box
    time.sleep(0.5)
    assert not [pid for pid in pids.values() if alive(pid)]


def listening_inodes():
    """Socket inodes in the LISTEN state (TCP over IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    inodes.add(fields[9])
    return inodes


def socket_inodes(pid):
    """Inodes of the sockets process ``pid`` has open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def test_no_rank_of_a_single_host_job_listens_on_the_network(tmp_path):
    process, pids = start(tmp_path)
    try:
        listening = listening_inodes()
        for rank, pid in pids.items():
            assert not socket_inodes(pid) & listening, f"rank {rank} listens on a TCP port"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        finish(process)
