"""Shared test helpers: run a Paracel job under mpiexec in a subprocess.

Every MPI test goes through :func:`run_job`, which launches ``mpiexec``
directly (the same command and environment ``paracel.run`` uses) in its own
process group with a timeout: a hang fails the test and leaves no process
behind, instead of freezing the suite.
"""

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import pytest

from paracel import mpiexec

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class JobResult:
    """What a finished job left: exit status, output text, the output folder."""

    returncode: int
    stdout: str
    stderr: str
    output: str
    seconds: float

    @property
    def metrics(self):
        """The parsed ``metrics.json``."""
        with open(os.path.join(self.output, "metrics.json"), encoding="utf-8") as handle:
            return json.load(handle)

    def read(self, name):
        """Text of a file in the output folder."""
        with open(os.path.join(self.output, name), encoding="utf-8") as handle:
            return handle.read()


def run_command(command, timeout, env=None, cwd=None):
    """Run ``command`` in a new process group; kill the whole group on timeout."""
    import time

    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=cwd, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"timed out after {timeout} s: {' '.join(command)}\n"
                    f"stdout:\n{stdout}\nstderr:\n{stderr}")
    return process.returncode, stdout, stderr, time.monotonic() - start


@pytest.fixture
def run_job(tmp_path):
    """Write a job file and run it on ``processes`` ranks under mpiexec.

    Returns a function ``run(algorithm, processes=4, timeout=120,
    extra_args=(), env=None, **job) -> JobResult``: ``extra_args`` go to
    ``paracel.run``, ``env`` adds environment variables, and the other
    keyword arguments become job-file keys.
    """
    def run(algorithm, processes=4, timeout=120, extra_args=(), env=None, **job):
        job = {"algorithm": algorithm, "processes": processes,
               "output": str(tmp_path / "out"), **job}
        path = tmp_path / "job.json"
        path.write_text(json.dumps(job))
        command, launch_env = mpiexec.command(mpiexec.find(), processes)
        launch_env.update(env or {})
        launch_env["PYTHONPATH"] = os.pathsep.join([HERE, launch_env.get("PYTHONPATH", "")])
        command += [sys.executable, "-m", "paracel.run", str(path), *extra_args]
        code, out, err, seconds = run_command(command, timeout, env=launch_env)
        return JobResult(code, out, err, job["output"], seconds)

    return run


def assert_ok(result):
    """Fail with the job's output unless it exited 0."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-5000:]}"
