"""The command line: listing, describing, bad job files, self-relaunch.

Bad job files must exit 2 with one message naming the key, before any MPI
process starts; a good job started without mpiexec relaunches itself under it.
"""

import json
import os
import sys

import pytest

from conftest import HERE, run_command


def paracel_run(*args, cwd=None, timeout=120):
    """Run ``python -m paracel.run ARGS`` (no mpiexec around it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    return run_command([sys.executable, "-m", "paracel.run", *map(str, args)], timeout,
                       env=env, cwd=cwd)


def write_job(tmp_path, **job):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def test_list_names_bundled_algorithms():
    code, out, err, _ = paracel_run("--list")
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()]
    assert names == sorted(names) and "wc" in names and "pagerank" in names
    assert "word count with top-k" in out


def test_describe_shows_parameters():
    code, out, err, _ = paracel_run("--describe", "wc")
    assert code == 0, err
    assert "topk (int >= 1, default 10)" in out
    assert "lower (bool, default True)" in out


def test_describe_unknown_algorithm_exits_2():
    code, out, err, _ = paracel_run("--describe", "nope")
    assert code == 2
    assert "unknown algorithm 'nope'" in err and "wc" in err


@pytest.mark.parametrize("job,named", [
    ({"algorithm": "wc", "sever": 2}, "unknown key 'sever' (did you mean 'servers'?)"),
    ({"algorithm": "wc", "servers": "two"}, "servers: expected int >= 1, got str 'two'"),
    ({"algorithm": "wc", "staleness": -1}, "staleness: -1 is below the minimum 0"),
    ({"servers": 1}, "missing required key 'algorithm'"),
    ({"algorithm": "nope"}, "unknown algorithm 'nope'; bundled: "),
    ({"algorithm": "wc", "input": "missing.txt"}, "no such file or folder"),
    ({"algorithm": "wc", "input": "*.nothing"}, "matches no file"),
    ({"algorithm": "wc", "params": {"topk": 0}}, "params.topk: 0 is below the minimum 1"),
    ({"algorithm": "wc", "params": {"top": 3}}, "job.json: unknown key 'params.top' (did you mean 'topk'?)"),
    ({"algorithm": "no_such_module:Algo"}, "cannot import module 'no_such_module'"),
    ({"algorithm": "mpi_algos:NotThere"}, "no paracel.Algorithm subclass named 'NotThere'"),
    ({"algorithm": "wc", "modules": ["no_such_updates"]}, "modules[0]: cannot import"),
    ({"algorithm": "wc", "servers": 4, "processes": 4}, "need at least 5 processes"),
])
def test_bad_job_file_exits_2_naming_the_key(tmp_path, job, named):
    path = write_job(tmp_path, **job)
    code, out, err, seconds = paracel_run(path, cwd=tmp_path)
    assert code == 2, err
    assert named in err, err
    assert "Traceback" not in err
    assert err.count("paracel: error:") == 1


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{\n  "algorithm": "wc",\n  "servers": 2,,\n}\n')
    code, out, err, _ = paracel_run(path)
    assert code == 2
    assert "job.json: line 3" in err


def test_relaunches_under_mpiexec_with_overrides(tmp_path):
    text = tmp_path / "words.txt"
    text.write_text("b a b\nc b a\n")
    path = write_job(tmp_path, algorithm="wc", input="words.txt", output="out",
                     processes=3, servers=1)
    code, out, err, _ = paracel_run(path, "--servers", "2", "-n", "4", "--set",
                                    "params.topk=2", cwd="/")
    assert code == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["servers"] == 2 and metrics["workers"] == 2
    assert metrics["config"]["params"] == {"topk": 2, "lower": True}
    assert (tmp_path / "out" / "topk.txt").read_text() == "b\t3\na\t2\n"


def test_output_of_another_job_is_protected(tmp_path):
    (tmp_path / "words.txt").write_text("a b\n")
    first = write_job(tmp_path, algorithm="wc", input="words.txt", output="out", processes=2)
    code, _, err, _ = paracel_run(first)
    assert code == 0, err
    code, _, err, _ = paracel_run(first)  # the same job may rerun into its own folder
    assert code == 0, err
    metrics = (tmp_path / "out" / "metrics.json").read_text()
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"algorithm": "wc", "input": "words.txt", "output": "out",
                                 "processes": 2, "params": {"topk": 1}}))
    code, _, err, _ = paracel_run(other)
    assert code == 2
    assert "already holds the results of" in err and "--overwrite" in err
    assert (tmp_path / "out" / "metrics.json").read_text() == metrics  # nothing written over
    code, _, err, _ = paracel_run(other, "--overwrite")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["config"]["params"][
        "topk"] == 1


def test_single_host_ranks_use_shared_memory_only():
    from paracel.mpiexec import rank_settings

    alone = {"OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_SIZE": "16"}
    assert rank_settings(alone)["OMPI_MCA_btl"] == "self,sm"
    spread = {"OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_SIZE": "8"}
    assert "OMPI_MCA_btl" not in rank_settings(spread)


@pytest.mark.parametrize("key", ["output", "checkpoint"])
def test_an_output_or_checkpoint_folder_naming_a_file_is_refused_before_launch(tmp_path, key):
    (tmp_path / "taken").write_text("a file")
    folder = str(tmp_path / "taken" / "sub") if key == "checkpoint" else str(tmp_path / "taken")
    value = {"dir": folder} if key == "checkpoint" else folder
    path = write_job(tmp_path, algorithm="wc", input=str(tmp_path / "taken"), **{key: value})
    code, out, err, seconds = paracel_run(path)
    assert code == 2, err
    assert f"{key}{'.dir' if key == 'checkpoint' else ''}: {tmp_path / 'taken'} is a file, " \
           "not a folder" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("resume", [False, True])
def test_checkpoints_of_an_algorithm_that_cannot_resume_are_refused_before_launch(
        tmp_path, resume):
    # mpi_algos.Totals keeps no state() and does not loop on its clock: a resume
    # would start it over on top of the restored tables
    path = write_job(tmp_path, algorithm="mpi_algos:Totals", modules=["mpi_algos"],
                     checkpoint={"dir": str(tmp_path / "ckpt")})
    code, out, err, seconds = paracel_run(path, *(["--resume"] if resume else []))
    assert code == 2, err
    assert "checkpoint: algorithm 'mpi_algos:Totals' is not resumable" in err
    assert seconds < 30 and not (tmp_path / "ckpt").exists()
