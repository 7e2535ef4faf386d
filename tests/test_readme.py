"""Every command and program the README shows works as written.

The README's shell blocks are read line by line: each command of this
project (``./run_mpi.sh``, ``python -m paracel.run``, ``mpiexec``) runs in a
scratch copy of the project (sharing its ``.venv``), where the files the
README takes for granted exist: ``job.json`` (the bundled word count),
``new_ratings.csv`` (MovieLens-style, with a header) and ``output/mf``
(made by the README's own ``conf/mf.json`` run, which comes first). The
runnable Python examples run too, and their documented results are checked.
Left out, each for a stated reason: :data:`SKIPPED`.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import HERE, run_command

pytestmark = pytest.mark.mpi

ROOT = os.path.dirname(HERE)
README = os.path.join(ROOT, "README.md")

#: Commands not run here, and why.
SKIPPED = {
    "./run_tests.sh": "the test suite itself",
    "srun ": "needs a Slurm allocation",
    "--hostfile": "several hosts: tests/test_multihost.py runs jobs across hosts",
    "--resume": "needs an interrupted run: tests/test_resume_toolkit.py",
}


def fenced_blocks(info):
    """``(line number, text)`` of every README block fenced with ``info``."""
    found, current, start, inside = [], None, 0, False
    for number, line in enumerate(open(README, encoding="utf-8"), 1):
        if line.startswith("```"):
            if inside and current is not None:
                found.append((start, "".join(current)))
            current, start = ([], number) if not inside and line.strip() == "```" + info \
                else (None, 0)
            inside = not inside
        elif current is not None:
            current.append(line)
    return found


def shell_commands():
    """The project's commands in the README's plain blocks, comments dropped
    and continued lines joined."""
    commands = []
    for start, text in fenced_blocks(""):
        for line in text.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command.startswith(("./run_mpi.sh", "./run_tests.sh", "python -m paracel.run",
                                   "mpiexec", "srun ")):
                commands.append(command)
    return commands


def runnable(command):
    return not any(mark in command for mark in SKIPPED)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch copy of the project (its tracked files, its .venv shared and
    never reinstalled from the copy)."""
    copy = tmp_path_factory.mktemp("project")
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    names = listed.stdout.split() if listed.returncode == 0 else []
    for name in names or os.listdir(ROOT):
        source = os.path.join(ROOT, name)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(copy / name), exist_ok=True)
            shutil.copy2(source, copy / name)
    os.symlink(os.path.join(ROOT, ".venv"), copy / ".venv")
    # the suite already set the venv up; the copy must never reinstall into it
    (copy / "tools" / "ensure_venv.sh").write_text("#!/usr/bin/env bash\nexit 0\n")
    with open(os.path.join(ROOT, "conf", "wc.json"), encoding="utf-8") as handle:
        job = json.load(handle)
    job.update(input=str(copy / "data" / "text"), output=str(copy / "output" / "job"))
    (copy / "job.json").write_text(json.dumps(job))
    ratings = open(os.path.join(ROOT, "data", "ratings", "ratings.txt")).read().split("\n")
    (copy / "new_ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        ",".join(line.split()) + ",0\n" for line in ratings[:500] if line.strip()))
    return copy


def run_in(project, command, timeout=300):
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    if os.geteuid() == 0:   # as the README tells root (a container) to do by hand
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    code, out, err, _ = run_command(["bash", "-c", command], timeout, env=env,
                                    cwd=str(project))
    return code, out + err


def test_the_readme_shows_the_commands_this_test_runs():
    commands = shell_commands()
    assert "./run_mpi.sh" in commands and any(c.startswith("mpiexec") for c in commands)
    assert any(c.startswith("python -m paracel.run predict") for c in commands)


def test_every_readme_command_works_as_written(project):
    ordered = sorted(filter(runnable, shell_commands()),
                     key=lambda c: "predict" in c)   # the mf model first
    assert "./run_mpi.sh -n 8 conf/wc.json" in ordered
    run_in(project, "./run_mpi.sh conf/mf.json")      # output/mf for predict
    for command in ordered:
        code, text = run_in(project, command + " --overwrite"
                            if "paracel.run job.json" in command else command)
        assert code == 0, f"{command}\n{text[-3000:]}"


def _run_algorithm(project, module_text, name, cls, processes=3):
    (project / f"{name}.py").write_text(module_text)
    job = {"algorithm": f"{name}:{cls}", "modules": [name], "processes": processes,
           "output": str(project / "output" / name)}
    (project / f"{name}.json").write_text(json.dumps(job))
    code, text = run_in(project, f"python -m paracel.run {name}.json")
    assert code == 0, text[-3000:]
    with open(project / "output" / name / "metrics.json", encoding="utf-8") as handle:
        return json.load(handle)["metrics"]


def _block_with(marker):
    return next(text for _, text in fenced_blocks("python") if marker in text)


def test_the_writing_an_algorithm_example_runs(project):
    metrics = _run_algorithm(project, _block_with("class MeanOfShares"), "mymodule",
                             "MeanOfShares")
    assert metrics["final_norm"] > 0


def test_the_row_update_example_gives_what_the_readme_says(project):
    metrics = _run_algorithm(project, _block_with("class ClippedSum"), "clipped", "ClippedSum")
    assert metrics == {"largest": 1.0, "odd_rows": 0.0}


def test_the_python_launch_example_runs(project):
    code, text = run_in(project, "python -c " + _quote(_block_with("paracel.run_job(")))
    assert code == 0, text[-3000:]
    assert (project / "output" / "blobs" / "model.h5").exists()


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"
