"""Checkpoint and resume: a job killed at a random clock resumes to the same model.

A BSP job (``tests/ckpt_algos.Accumulate``) is killed with SIGKILL on a
random rank (worker or server) once worker 0 has logged a random clock, then
restarted with ``--resume``; its final model and metrics must be identical to
an uninterrupted run with the same seed. Also: a resume with a different
number of servers (re-sharding), with the wrong number of workers (exit 2),
and without any checkpoint (exit 2).
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import HERE, run_command
from paracel.server import checkpoint

pytestmark = pytest.mark.mpi

CLOCKS = 24


def job_file(tmp_path, name, **extra):
    job = {"algorithm": "ckpt_algos:Accumulate", "modules": ["ckpt_algos"], "processes": 5,
           "servers": 2, "staleness": 0, "seed": 3, "output": str(tmp_path / name),
           "checkpoint": {"dir": str(tmp_path / f"{name}-ckpt"), "every": 4},
           "params": {"clocks": CLOCKS, "delay": 0.05}, **extra}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(job))
    return path


def environment(pids=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    if pids:
        env["PARACEL_TEST_PIDS"] = str(pids)
    return env


def paracel(path, *args, timeout=120):
    return run_command([sys.executable, "-m", "paracel.run", str(path), *args], timeout,
                       env=environment())


def run_and_kill(path, pids, kill_clock, victim):
    """Run a job and SIGKILL world rank ``victim`` once worker 0 logs ``kill_clock``."""
    process = subprocess.Popen([sys.executable, "-m", "paracel.run", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=environment(pids), start_new_session=True)
    lines = []

    def watch():
        for line in process.stderr:
            lines.append(line)
            match = re.search(r"\[worker 0\] clock (\d+) ", line)
            if match and int(match.group(1)) == kill_clock:
                pid = int((pids / f"{victim}.pid").read_text())
                os.kill(pid, signal.SIGKILL)

    reader = threading.Thread(target=watch)
    reader.start()
    try:
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        reader.join(timeout=10)
    return code, "".join(lines)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("reference")
    code, out, err, _ = paracel(job_file(tmp_path, "whole"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    return np.load(tmp_path / "whole" / "M.npy"), metrics["metrics"]


@pytest.mark.parametrize("trial", range(3))
def test_killed_job_resumes_to_the_same_model(tmp_path, reference, trial):
    chooser = random.Random(trial)
    kill_clock, victim = chooser.randint(5, CLOCKS - 3), chooser.randrange(5)
    pids = tmp_path / "pids"
    pids.mkdir()
    path = job_file(tmp_path, "job")
    start = time.monotonic()
    code, err = run_and_kill(path, pids, kill_clock, victim)
    assert code != 0, err
    assert time.monotonic() - start < 60
    assert checkpoint.complete(str(tmp_path / "job-ckpt")), "no checkpoint before the kill"
    code, out, err, _ = paracel(path, "--resume")
    assert code == 0, err
    assert "resumed from" in err
    M_ref, metrics_ref = reference
    np.testing.assert_array_equal(np.load(tmp_path / "job" / "M.npy"), M_ref)
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["metrics"] == metrics_ref


def test_resume_with_other_server_count_reshards(tmp_path, reference):
    path = job_file(tmp_path, "job", params={"clocks": 12, "delay": 0.0})
    code, out, err, _ = paracel(path)
    assert code == 0, err
    folder, manifest = checkpoint.latest(str(tmp_path / "job-ckpt"))
    assert manifest["clock"] == 12 and manifest["num_servers"] == 2
    assert sorted(os.listdir(folder)) == ["manifest.json", "server-0.h5", "server-1.h5",
                                          "worker-0.h5", "worker-1.h5", "worker-2.h5"]
    job = json.loads(path.read_text())
    job["params"]["clocks"] = CLOCKS
    job["params"]["delay"] = 0.05
    path.write_text(json.dumps(job))
    code, out, err, _ = paracel(path, "--resume", "--servers", "1", "-n", "4")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "job" / "M.npy"), reference[0])


def test_resume_refuses_other_worker_count_and_missing_checkpoint(tmp_path):
    path = job_file(tmp_path, "job", params={"clocks": 4, "delay": 0.0})
    code, out, err, _ = paracel(path, "--resume")
    assert code == 2 and "no complete checkpoint" in err
    code, out, err, _ = paracel(path)
    assert code == 0, err
    code, out, err, _ = paracel(path, "--resume", "-n", "4")
    assert code == 2 and "taken with 3 workers; this run has 2" in err
