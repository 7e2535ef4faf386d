"""Starting a job (paracel.mpiexec), without MPI: what a rank learns from its
process manager (Open MPI, PMIx/Slurm's srun, MPICH), the mpiexec command on
one host and across hosts, and whether a finished job really finished."""

import json

import pytest

from paracel import mpiexec
from paracel.run import split_passthrough, without_hostfile

OPEN_MPI = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8", "PMIX_RANK": "3"}
SRUN = {"PMIX_RANK": "5", "SLURM_PROCID": "5", "SLURM_NTASKS": "12", "SLURM_JOB_ID": "77"}
MPICH = {"PMI_RANK": "2", "PMI_SIZE": "6", "PMI_FD": "9"}


@pytest.mark.parametrize("environ,rank,size", [(OPEN_MPI, 3, 8), (SRUN, 5, 12), (MPICH, 2, 6)])
def test_a_rank_knows_it_is_one_whoever_launched_it(environ, rank, size):
    assert mpiexec.launched_rank(environ)
    assert mpiexec.world_rank(environ) == rank
    assert mpiexec.world_size(environ) == size


def test_outside_mpi_nothing_is_launched():
    assert not mpiexec.launched_rank({"SLURM_JOB_ID": "77", "HOME": "/root"})
    assert mpiexec.world_rank({}) == 0


def test_ranks_limit_blas_to_one_thread_unless_told_otherwise():
    environ = {**SRUN, "OMP_NUM_THREADS": "4"}
    mpiexec.limit_blas_threads(environ)
    assert environ["OPENBLAS_NUM_THREADS"] == "1" and environ["OMP_NUM_THREADS"] == "4"
    outside = {}
    mpiexec.limit_blas_threads(outside)
    assert outside == {}


@pytest.mark.parametrize("extra,environ,alone", [
    ([], {}, True),
    (["--hostfile", "hosts"], {}, False),
    (["--host=a,b"], {}, False),
    (["-H", "a:2,b:2"], {}, False),
    (["--map-by", "node"], {}, True),
    ([], {"SLURM_JOB_ID": "77"}, False),
    ([], {"PRTE_MCA_prte_default_hostfile": "/etc/hosts.mpi"}, False),
])
def test_oversubscribe_only_when_every_rank_runs_here(extra, environ, alone):
    assert mpiexec.single_host(extra, environ) is alone


def test_the_ranks_settings_travel_to_every_host():
    environ = {"PYTHONPATH": "/x", "PARACEL_STRAGGLER": "1:2", "OPENBLAS_NUM_THREADS": "1",
               "HOME": "/root", "OMPI_ALLOW_RUN_AS_ROOT": "1"}
    assert mpiexec.forwarded(environ) == ["OPENBLAS_NUM_THREADS", "PYTHONPATH",
                                          "OMPI_ALLOW_RUN_AS_ROOT", "PARACEL_STRAGGLER"]


def test_launcher_options_are_split_from_the_ranks():
    argv = ["job.json", "-n", "8", "--hostfile", "hosts", "--", "--map-by", "node"]
    ours, theirs = split_passthrough(argv)
    assert theirs == ["--map-by", "node"]
    assert without_hostfile(ours) == ["job.json", "-n", "8"]
    assert without_hostfile(["job.json", "--hostfile=h"]) == ["job.json"]


def test_a_job_that_did_not_write_its_metrics_did_not_finish(tmp_path, capsys):
    assert mpiexec.check_finished(0, str(tmp_path), "abc") == 1
    assert "metrics.json was not written by this run" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text(json.dumps({"launch": "old"}))
    assert mpiexec.check_finished(0, str(tmp_path), "abc") == 1
    (tmp_path / "metrics.json").write_text(json.dumps({"launch": "abc"}))
    assert mpiexec.check_finished(0, str(tmp_path), "abc") == 0
    assert mpiexec.check_finished(137, str(tmp_path), "abc") == 137
