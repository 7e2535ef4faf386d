"""Running a job from Python (a notebook, a script): :func:`run_job`.

The job is the dictionary a job file would hold. It is checked exactly as
the command line checks a job file (a :class:`paracel.ConfigError` naming
the key, before anything starts), written next to its results as
``OUTPUT/job.json`` (so a rerun may replace them, and the results say what
made them), and run under ``mpiexec`` as ``python -m paracel.run`` runs it.
"""

import json
import os
import shutil
import sys
from dataclasses import dataclass
from types import SimpleNamespace

from paracel import config, mpiexec
from paracel.errors import ParacelError, UserError

#: The job file written into the output folder.
JOB_FILE = "job.json"


class JobFailed(ParacelError):
    """A job that failed after launch; ``code`` is its exit status."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


@dataclass
class JobResult:
    """What a finished job gives back.

    Attributes
    ----------
    output : str
        The output folder.
    metrics : dict
        The job's final metrics (``metrics.json``'s ``metrics``).
    report : dict
        The whole ``metrics.json`` (timings, history, configuration).
    """

    output: str
    metrics: dict
    report: dict


def run_job(job, name="job", overwrite=False, resume=False):
    """Run a job given as a dictionary; return its metrics and output folder.

    Parameters
    ----------
    job : dict
        The job file's keys (``algorithm``, ``input``, ``params``, ...).
        Relative paths are relative to the current folder.
    name : str
        The job's name: its default output folder is ``output/<name>``.
    overwrite, resume : bool
        As ``--overwrite`` and ``--resume`` on the command line.

    Returns
    -------
    JobResult

    Raises
    ------
    paracel.ConfigError, paracel.DataError
        What the command line refuses before launch (exit 2 there).
    paracel.ParacelError
        If the job failed after launch (its messages went to standard error).
    """
    from paracel.run import check_output, parse_args, plan_checkpoints, prepare, summary

    raw = _absolute(job)
    output = raw.get("output") or os.path.abspath(os.path.join("output", name))
    path = os.path.join(output, JOB_FILE)
    if not resume:  # before writing into a folder that may hold another job's results
        check_output(SimpleNamespace(output=output, path=path), overwrite)
    created = not os.path.exists(output)
    _write_job(path, name, {**raw, "output": output})
    argv = [path, *(["--overwrite"] if overwrite else []), *(["--resume"] if resume else [])]
    args = parse_args(argv)
    try:
        job, algorithm = prepare(args)
        origin = plan_checkpoints(job, algorithm, args, job.processes - job.servers)
    except UserError as error:
        if created:  # a refused job leaves nothing behind
            shutil.rmtree(output, ignore_errors=True)
        raise type(error)(str(error).replace(path, f"job {name!r}")) from None
    chosen = ["--resume-from", origin.folder] if origin and origin.folder else []
    code = mpiexec.relaunch(job, [*argv, *chosen], sink=_TextSink(sys.stderr))
    if code != 0:
        raise JobFailed(f"the job {name!r} failed with exit status {code} (its messages "
                        "are above)", code)
    print(summary(job.output), flush=True)
    with open(os.path.join(job.output, "metrics.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    return JobResult(job.output, report["metrics"], report)


def _absolute(job):
    """The job with its paths (and its parameters' paths) made absolute
    against the current folder, as a user of Python expects."""
    from paracel.run import resolve

    raw = config.resolve_paths(dict(job), os.getcwd())
    if isinstance(raw.get("algorithm"), str) and isinstance(raw.get("params"), dict):
        schema = resolve(raw["algorithm"], os.getcwd()).parameters
        raw["params"] = config.resolve_param_paths(raw["params"], schema, os.getcwd())
    return raw


def _write_job(path, name, raw):
    """Write the job file into its output folder, which it then owns (the
    caller checked that it may)."""
    from paracel.io import outputs

    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"description": f"run from Python as {name!r}", **raw}, handle, indent=2)
    outputs.set_owner(folder, path)


class _TextSink:
    """A byte sink writing to a text stream (a notebook's ``sys.stderr`` has
    no ``buffer``)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data):
        self.stream.write(data.decode("utf-8", "replace"))

    def flush(self):
        self.stream.flush()
