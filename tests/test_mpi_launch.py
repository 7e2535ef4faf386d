"""Ways to start a job: by hand with mpiexec on a small machine, from a
Slurm-like process manager, and through the launcher with a hostfile and
mpiexec options; each rank limits BLAS to one thread itself."""

import json
import os
import sys

import pytest

from conftest import HERE, run_command
from paracel import mpiexec

pytestmark = pytest.mark.mpi


def job_file(tmp_path, **extra):
    job = {"algorithm": "mpi_algos:Environment", "modules": ["mpi_algos"], "processes": 6,
           "servers": 2, "output": str(tmp_path / "out"), **extra}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def environment():
    env = {name: value for name, value in os.environ.items() if name not in mpiexec.BLAS_THREADS}
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    return env


def metrics(tmp_path):
    return json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]


def test_mpiexec_by_hand_runs_more_ranks_than_cores(tmp_path):
    # no --oversubscribe and no -x: the venv's Open MPI defaults allow it, and
    # every rank limits its BLAS threads itself
    command = [mpiexec.find(), "-n", "6", sys.executable, "-m", "paracel.run",
               str(job_file(tmp_path))]
    code, out, err, _ = run_command(command, 120, env=environment())
    assert code == 0, err[-3000:]
    assert metrics(tmp_path) == {"blas": ["1"] * 4, "workers": 4}


def test_ranks_started_by_a_slurm_like_process_manager(tmp_path):
    # what srun --mpi=pmix gives a task: PMIx and SLURM_* variables only
    wrapper = tmp_path / "srun_like.sh"
    wrapper.write_text("#!/bin/sh\n"
                       "for v in $(env | grep -o '^OMPI_[A-Z_]*WORLD[A-Z_]*'); do unset $v; done\n"
                       'export SLURM_PROCID="$PMIX_RANK" SLURM_NTASKS=6 SLURM_JOB_ID=77\n'
                       'exec "$@"\n')
    wrapper.chmod(0o755)
    command = [mpiexec.find(), "--oversubscribe", "-n", "6", str(wrapper), sys.executable,
               "-m", "paracel.run", str(job_file(tmp_path))]
    code, out, err, _ = run_command(command, 120, env=environment())
    assert code == 0, err[-3000:]
    assert metrics(tmp_path)["workers"] == 4


def test_launcher_takes_a_hostfile_and_mpiexec_options(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost slots=2\n")
    command = [sys.executable, "-m", "paracel.run", str(job_file(tmp_path)), "-n", "4",
               "--servers", "1", "--hostfile", str(hosts), "--", "--map-by", "slot"]
    code, out, err, _ = run_command(command, 120, env=environment())
    assert code == 0, err[-3000:]
    assert metrics(tmp_path) == {"blas": ["1"] * 3, "workers": 3}


def test_launcher_options_given_to_a_rank_are_refused(tmp_path):
    command = [mpiexec.find(), "--oversubscribe", "-n", "3", sys.executable, "-m",
               "paracel.run", str(job_file(tmp_path)), "--hostfile", "hosts"]
    code, out, err, _ = run_command(command, 120, env=environment())
    assert code != 0
    assert "--hostfile and options after '--' are for the launcher" in err
