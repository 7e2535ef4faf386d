"""Checkpoint and resume: a job killed at a random clock resumes to the same model.

A BSP job (``tests/ckpt_algos.Accumulate``) is killed with SIGKILL on a
random rank (worker or server) once worker 0 has logged a random clock, then
restarted with ``--resume``; its final model and metrics must be identical to
an uninterrupted run with the same seed. Also: a killed run resumed with a
different number of servers (re-sharding); a server killed while writing a
checkpoint (the previous one is used); a damaged newest checkpoint (the one
before is used, and said so); and the refusals, each exit 2 before launch:
the wrong number of workers, no checkpoint, another job's checkpoint (other
seed), and a fresh run into a folder holding an earlier run's checkpoints
(``--overwrite`` moves them aside).
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
from paracel import checkpoints

pytestmark = pytest.mark.mpi

CLOCKS = 24


def job_file(tmp_path, name, **extra):
    # log_level debug: run_and_kill watches worker 0's line of every clock
    job = {"algorithm": "ckpt_algos:Accumulate", "modules": ["ckpt_algos"], "processes": 5,
           "servers": 2, "staleness": 0, "seed": 3, "output": str(tmp_path / name),
           "log_level": "debug",
           "checkpoint": {"dir": str(tmp_path / f"{name}-ckpt"), "every": 4},
           "params": {"clocks": CLOCKS, "delay": 0.05}, **extra}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(job))
    return path


def environment(pids=None, kill=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    env.pop("PARACEL_TEST_KILL_AT", None)
    if pids:
        env["PARACEL_TEST_PIDS"] = str(pids)
    if kill:
        env["PARACEL_TEST_KILL_AT"] = kill
    return env


def paracel(path, *args, kill=None, timeout=120):
    """Run ``paracel.run`` on a job file; ``kill`` is a ``tests/kill_at.py`` spec."""
    return run_command([sys.executable, "-m", "paracel.run", str(path), *args], timeout,
                       env=environment(kill=kill))


def killed_job(tmp_path, kill, **extra):
    """A job with the kill hook, run until the hook kills it; its file."""
    path = job_file(tmp_path, "job", modules=["ckpt_algos", "kill_at"], **extra)
    code, out, err, _ = paracel(path, kill=kill)
    assert code != 0, f"the kill {kill} did not happen\n{err[-3000:]}"
    return path


def checkpoint_clocks(directory):
    """Clocks of the ``ckpt-*`` folders in ``directory``, oldest first."""
    return sorted(clock for clock, _ in checkpoints.folders(str(directory)))


def assert_reference_model(tmp_path, reference):
    np.testing.assert_array_equal(np.load(tmp_path / "job" / "M.npy"), reference[0])
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["metrics"] == reference[1]


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
    assert checkpoint_clocks(tmp_path / "job-ckpt"), "no checkpoint before the kill"
    code, out, err, _ = paracel(path, "--resume")
    assert code == 0, err
    assert "resumed from" in err
    M_ref, metrics_ref = reference
    np.testing.assert_array_equal(np.load(tmp_path / "job" / "M.npy"), M_ref)
    metrics = json.loads((tmp_path / "job" / "metrics.json").read_text())
    assert metrics["metrics"] == metrics_ref


def test_killed_run_resumes_resharded_onto_another_server_count(tmp_path, reference):
    path = killed_job(tmp_path, "1:12")
    folder = os.path.join(tmp_path, "job-ckpt", checkpoints.folder_name(12))
    manifest, problem = checkpoints.read_manifest(folder)
    assert problem is None and manifest["clock"] == 12 and manifest["num_servers"] == 2
    assert sorted(os.listdir(folder)) == ["manifest.json", "server-0.ckpt", "server-1.ckpt",
                                          "worker-0.ckpt", "worker-1.ckpt", "worker-2.ckpt"]
    code, out, err, _ = paracel(path, "--resume", "--servers", "1", "-n", "4")
    assert code == 0, err
    assert "at clock 12" in err
    assert_reference_model(tmp_path, reference)


def test_server_killed_while_writing_a_checkpoint_resumes_from_the_previous(tmp_path,
                                                                         reference):
    path = killed_job(tmp_path, "server:1:16")
    directory = tmp_path / "job-ckpt"
    assert checkpoint_clocks(directory) == [8, 12]
    assert [name for name in os.listdir(directory) if name.startswith(checkpoints.STAGING)]
    code, out, err, _ = paracel(path, "--resume")
    assert code == 0, err
    assert "at clock 12" in err
    assert_reference_model(tmp_path, reference)
    assert checkpoint_clocks(directory) == [20, 24]
    assert not [name for name in os.listdir(directory) if name.startswith(checkpoints.STAGING)]


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, reference):
    path = killed_job(tmp_path, "0:20")
    shard = tmp_path / "job-ckpt" / checkpoints.folder_name(20) / "server-1.ckpt"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x10
    shard.write_bytes(bytes(data))
    code, out, err, _ = paracel(path, "--resume")
    assert code == 0, err
    assert ("ckpt-00000020 is damaged (server-1.ckpt does not match its checksum); "
            "resuming from ckpt-00000016 (clock 16) instead") in err
    assert "at clock 16" in err
    assert_reference_model(tmp_path, reference)


def test_resume_refuses_another_jobs_checkpoint(tmp_path):
    path = job_file(tmp_path, "job", params={"clocks": 4, "delay": 0.0})
    code, out, err, _ = paracel(path)
    assert code == 0, err
    before = sorted(os.listdir(tmp_path / "job-ckpt"))
    code, out, err, _ = paracel(path, "--resume", "--set", "seed=4")
    assert code == 2
    folder = os.path.join(tmp_path, "job-ckpt", checkpoints.folder_name(4))
    assert f"--resume: {folder} is a checkpoint of another job: seed 3 -> 4;" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path / "job-ckpt")) == before


def test_fresh_run_refuses_an_earlier_runs_checkpoints(tmp_path):
    path = job_file(tmp_path, "job", params={"clocks": 4, "delay": 0.0})
    directory = tmp_path / "job-ckpt"
    code, out, err, _ = paracel(path)
    assert code == 0, err
    earlier = checkpoints.read_manifest(str(directory / checkpoints.folder_name(4)))[0]["run"]
    code, out, err, _ = paracel(path)
    assert code == 2
    assert f"checkpoint.dir: {directory} already holds checkpoints of an earlier run" in err
    assert "pass --resume to continue that run, or --overwrite" in err
    assert "Traceback" not in err
    code, out, err, _ = paracel(path, "--overwrite")
    assert code == 0, err
    assert f"moved 1 checkpoint(s) of an earlier run from {directory} into" in err
    run = checkpoints.read_manifest(str(directory / checkpoints.folder_name(4)))[0]["run"]
    assert run != earlier
    aside = [name for name in os.listdir(directory) if name.startswith(checkpoints.REPLACED)]
    assert len(aside) == 1
    assert sorted(os.listdir(directory / aside[0])) == [
        "ckpt-00000004", f"history-{earlier}"]


def test_resume_refuses_other_worker_count_and_missing_checkpoint(tmp_path):
    path = job_file(tmp_path, "job", params={"clocks": 4, "delay": 0.0})
    code, out, err, _ = paracel(path, "--resume")
    assert code == 2 and "no complete checkpoint" in err
    code, out, err, _ = paracel(path)
    assert code == 0, err
    code, out, err, _ = paracel(path, "--resume", "-n", "4")
    assert code == 2 and "workers 3 -> 2 (servers may change on resume, workers may not)" in err


def test_a_full_disk_stops_the_job_with_one_line(tmp_path):
    """A file size limit stands in for a full disk: writes fail alike (EFBIG)."""
    path = job_file(tmp_path, "job", algorithm="ckpt_algos:BigTable", processes=3, servers=1,
                    params={"megabytes": 32})
    command = f"ulimit -f {16 * 1024}; exec {sys.executable} -m paracel.run {path}"
    code, out, err, _ = run_command(["bash", "-c", command], 120, env=environment())
    assert code == 2, err[-3000:]
    staging = [name for name in os.listdir(tmp_path / "job-ckpt")
               if name.startswith(checkpoints.STAGING)]
    assert (f"paracel: error: [server 0] checkpoint: cannot write {tmp_path / 'job-ckpt'}"
            f"/{staging[0]}/server-0.ckpt: File too large") in err
    assert "Traceback" not in err
    assert checkpoint_clocks(tmp_path / "job-ckpt") == []
    assert "server-0.ckpt" not in os.listdir(tmp_path / "job-ckpt" / staging[0])


def test_a_state_a_checkpoint_cannot_store_is_one_line(tmp_path):
    path = job_file(tmp_path, "job", algorithm="ckpt_algos:BadState", params={})
    code, out, err, _ = paracel(path)
    assert code == 2, err[-3000:]
    assert ("checkpoint of worker 0: state()['rng']['seen'] is a value of type set, which a "
            "checkpoint cannot store") in err
    assert "Traceback" not in err


def test_resuming_a_finished_run_repeats_no_history_entry(tmp_path):
    # killed after solve() returned: the checkpoint taken then already holds
    # what was reported after the last clock; the resumed final phase reports
    # it again, and the history must still hold it once
    path = killed_job(tmp_path, "0:end", params={"clocks": 6, "delay": 0.0})
    code, out, err, _ = paracel(path, "--resume")
    assert code == 0, err[-3000:]
    history = json.loads((tmp_path / "job" / "metrics.json").read_text())["history"]
    assert [entry["clock"] for entry in history] == [1, 2, 3, 4, 5, 6, 6]
    assert [entry.get("final", False) for entry in history][-2:] == [False, True]
