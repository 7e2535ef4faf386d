"""Starting a job under MPI, on one host or many.

``python -m paracel.run job.json`` started outside MPI relaunches itself
under ``mpiexec`` (:func:`relaunch`); started by a process manager
(``mpiexec``, ``srun``, any PMI/PMIx launcher) every rank takes its role at
once. This module knows the difference (:func:`launched_rank`), builds the
``mpiexec`` command and environment (:func:`command`), and tells whether a
finished job really finished (:func:`check_finished`): ``mpiexec`` may exit
0 when a remote host or daemon was lost.

Settings the ranks need travel with them: Open MPI forwards only its own
variables to remote hosts, so the launcher exports the BLAS thread limits,
``PYTHONPATH`` and the project's ``PARACEL_*`` variables with ``-x``; and
every rank limits BLAS to one thread itself (:func:`limit_blas_threads`,
run when ``paracel`` is imported by a rank), whoever launched it.

This module imports nothing heavy: it runs before numpy is loaded.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading

from paracel.errors import ConfigError

#: Thread-count variables of the BLAS libraries numpy may use. Ranks already
#: outnumber cores, so each rank computes on one thread unless the user's
#: environment says otherwise: spare BLAS threads only spin.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: Variables set by process managers in the processes they start.
RANK_MARKERS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMI_SIZE", "PMI_FD", "PMIX_RANK")

#: mpiexec options that place ranks on other hosts.
HOST_OPTIONS = ("--hostfile", "-hostfile", "--machinefile", "-machinefile", "--host", "-host",
                "-H", "--default-hostfile")

#: Variables that mean a resource manager (a cluster's batch system) gave the
#: job its hosts.
RESOURCE_MANAGERS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID",
                     "PRTE_MCA_prte_default_hostfile", "OMPI_MCA_orte_default_hostfile")

#: The launcher's token, which worker 0 writes into metrics.json.
TOKEN = "PARACEL_LAUNCH_TOKEN"


def launched_rank(environ=os.environ):
    """Whether this process is a rank started by a process manager."""
    return any(name in environ for name in RANK_MARKERS)


def world_rank(environ=os.environ):
    """This rank's number as the process manager gave it (0 if unknown)."""
    for name in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if name in environ:
            return int(environ[name])
    return 0


#: MCA settings for Open MPI that every rank applies unless its environment
#: sets them: the UCX one-sided component is skipped (it cannot run on a
#: single host without UCX transports and prints errors while being ruled out).
OPEN_MPI_DEFAULTS = {"OMPI_MCA_osc": "^ucx"}


def world_size(environ=os.environ):
    """The number of ranks, from the process manager's environment, or from
    MPI itself where it does not say (this starts MPI)."""
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"):
        if name in environ:
            return int(environ[name])
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_size()


def rank_settings(environ=os.environ):
    """The Open MPI settings a rank applies (unless ``environ`` sets them):
    :data:`OPEN_MPI_DEFAULTS`, and for a job whose ranks all run on this host
    shared memory only, so no rank listens on a network port."""
    settings = dict(OPEN_MPI_DEFAULTS)
    local, size = environ.get("OMPI_COMM_WORLD_LOCAL_SIZE"), environ.get("OMPI_COMM_WORLD_SIZE")
    if local is not None and local == size:
        settings["OMPI_MCA_btl"] = "self,sm"
    return settings


def apply_rank_settings(environ=os.environ):
    """Apply :func:`rank_settings` before MPI starts."""
    for name, value in rank_settings(environ).items():
        environ.setdefault(name, value)


def limit_blas_threads(environ=os.environ):
    """One BLAS thread per rank, unless set: done by every rank itself, so it
    holds on every host whatever launched it."""
    if launched_rank(environ):
        for name in BLAS_THREADS:
            environ.setdefault(name, "1")


def find():
    """The ``mpiexec`` next to this Python (a venv's), else the one on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = local if os.access(local, os.X_OK) else shutil.which("mpiexec")
    if not found:
        raise ConfigError("no mpiexec found: install the package (pip install .) or run "
                          "'mpiexec -n N python -m paracel.run job.json' yourself")
    return found


def single_host(extra=(), environ=os.environ):
    """Whether the ranks all run here: no host options, no resource manager."""
    options = {arg.split("=", 1)[0] for arg in extra}
    return not options & set(HOST_OPTIONS) and not any(
        name in environ for name in RESOURCE_MANAGERS)


def forwarded(environ):
    """The variables every rank on every host needs from the launcher."""
    names = [*BLAS_THREADS, "PYTHONPATH", "OMPI_ALLOW_RUN_AS_ROOT",
             "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"]
    names += sorted(name for name in environ if name.startswith("PARACEL_"))
    return [name for name in names if name in environ]


def command(mpiexec, processes, extra=(), environ=os.environ):
    """The launch command and environment for this MPI implementation.

    Parameters
    ----------
    mpiexec : str
        The ``mpiexec`` to run.
    processes : int
        How many ranks.
    extra : sequence of str
        More ``mpiexec`` options (e.g. ``--hostfile hosts``), passed as given.

    Returns
    -------
    (list of str, dict)
        The command (without the program to run) and its environment.
    """
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    env = dict(environ)
    for name in BLAS_THREADS:
        env.setdefault(name, "1")
    command = [mpiexec, "-n", str(processes)]
    if "Open MPI" in version or "OpenRTE" in version:
        if single_host(extra, environ):
            command.append("--oversubscribe")
        if os.geteuid() == 0:
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
            env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        for name in forwarded(env):
            command += ["-x", name]
    return command + list(extra), env


def relaunch(job, argv, extra=(), sink=None):
    """Run ``python -m paracel.run argv`` under mpiexec with the job's
    process count; the exit status, made non-zero if the job did not finish.
    mpiexec's standard error goes to ``sink`` (bytes; default ours)."""
    from paracel.run import EXIT_INTERRUPTED

    from paracel.progress import LIVE, LiveLine

    launch, env = command(find(), job.processes, extra)
    env[TOKEN] = secrets.token_hex(16)
    sink = sink or sys.stderr.buffer
    live = LiveLine() if _is_terminal(sink) else None
    if live is not None:
        env[LIVE] = "1"
    process = subprocess.Popen([*launch, sys.executable, "-m", "paracel.run", *argv], env=env,
                               stderr=subprocess.PIPE)
    forwarding = threading.Thread(target=forward_stderr, args=(process.stderr, sink, live),
                                  daemon=True)
    forwarding.start()
    try:
        code = process.wait()
    except KeyboardInterrupt:
        _stop(process)
        return EXIT_INTERRUPTED
    finally:
        forwarding.join(timeout=5)
    return check_finished(code, job.output, env[TOKEN])


#: Open MPI's own boxed reports of an abort that a rank already explained in
#: one line (``paracel: error: ...``): repeated noise, dropped. Boxes about
#: a rank killed by a signal, a lost daemon and the like are kept.
ABORT_NOISE = (b"MPI_ABORT was invoked", b'calling\n"abort"', b'calling "abort"')


def _is_terminal(sink):
    try:
        return sink.isatty()
    except (AttributeError, ValueError):
        return False


def forward_stderr(stream, sink, live=None):
    """Copy mpiexec's standard error to ``sink`` line by line, as it comes,
    without the boxes (between lines of dashes) of :data:`ABORT_NOISE`;
    with ``live`` (a :class:`paracel.progress.LiveLine`) progress records
    are drawn as one line that others pass above."""
    box = None

    def write(data):
        sink.write(live.feed(data) if live is not None else data)
        sink.flush()

    for line in iter(stream.readline, b""):
        dashes = line.strip() and not line.strip().strip(b"-")
        if box is None and not dashes:
            if line.strip(b"\0"):           # prterun ends with a stray NUL byte
                write(line)
        elif box is None:
            box = [line]
        else:
            box.append(line)
            if dashes:
                text = b"".join(box)
                if not any(noise in text for noise in ABORT_NOISE):
                    write(text)
                box = None
    if box:
        write(b"".join(box))
    if live is not None:
        sink.write(live.close())
        sink.flush()


def check_finished(code, output, token):
    """``code``, or 1 with a message when mpiexec said 0 but this launch's
    ``metrics.json`` is not there (a lost host or daemon ends some
    ``mpiexec`` runs with 0)."""
    if code != 0:
        return code
    try:
        with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
            if json.load(handle).get("launch") == token:
                return 0
    except (OSError, ValueError):
        pass
    print(f"paracel: error: the job ended without finishing ({output}/metrics.json was not "
          "written by this run): a rank, an MPI daemon or a host was lost",
          file=sys.stderr, flush=True)
    return 1


def _stop(process):
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
