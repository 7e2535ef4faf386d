"""``python -m paracel.run``: the command line and the launcher.

Under ``mpiexec`` every rank validates the job, takes its role (server or
worker) and runs it. Started alone (``python -m paracel.run job.json``), it
validates the job and relaunches itself under the ``mpiexec`` installed next to
this Python with the job's process count.

Failure never hangs: an exception on any rank prints a traceback headed with
that rank's role and id, then ``MPI_Abort`` ends every rank (exit 1). A user
error (bad job file, missing input, malformed data) is one line, exit 2.
"""

import argparse
import importlib
import json
import os
import signal
import socket
import sys
import textwrap
import time
import traceback
from dataclasses import dataclass, field

from paracel import config, mpiexec
from paracel.errors import ConfigError, UserError
from paracel.watch import ReportedElsewhere

EXIT_USER_ERROR = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: How long a rank that found a fault another rank reports waits for that
#: rank to end the job before ending it silently itself.
REPORT_GRACE_SECONDS = 2.0

#: How long a rank other than 0 that got SIGTERM waits before saying so.
SIGTERM_QUIET_SECONDS = 1.0


@dataclass
class Runtime:
    """What a worker's :class:`paracel.Algorithm` runs with."""

    topology: object
    client: object
    clock: object
    job: object
    resume: str = None
    checkpointer: object = None
    last_checkpoint: int = None
    started: float = 0.0
    clock_started: float = None
    skipped: int = 0
    sync_seconds: float = 0.0
    pending: dict = field(default_factory=dict)


def parse_args(argv):
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m paracel.run",
        description="Run a Paracel job: parameter servers and workers in one MPI job.")
    parser.add_argument("job", nargs="?", help="the JSON job file")
    parser.add_argument("--list", action="store_true", help="list the bundled algorithms")
    parser.add_argument("--describe", metavar="NAME", help="show one algorithm's parameters")
    parser.add_argument("-n", "--processes", type=int, help="MPI processes (overrides the job)")
    parser.add_argument("--servers", type=int, help="parameter servers (overrides the job)")
    parser.add_argument("--staleness", help="SSP bound, or 'null' for asynchronous")
    parser.add_argument("--output", help="output folder (overrides the job)")
    parser.add_argument("--resume", action="store_true",
                        help="restart from the newest verified checkpoint of the job")
    parser.add_argument("--resume-from", help=argparse.SUPPRESS)  # the launcher's choice
    parser.add_argument("--overwrite", action="store_true",
                        help="reuse an output folder that holds another job's results, and "
                             "move aside the checkpoints of an earlier run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a job key, e.g. params.alpha=0.05 (repeatable)")
    parser.add_argument("--hostfile", metavar="FILE",
                        help="run the ranks on the hosts of FILE (given to mpiexec); any "
                             "other mpiexec option goes after '--'")
    args = parser.parse_args(argv)
    if not (args.job or args.list or args.describe):
        parser.error("give a job file, --list or --describe NAME")
    return args


def overrides(args):
    """The ``(key, value)`` overrides the command line asks for."""
    pairs = [config.parse_override(text) for text in args.set]
    if args.processes is not None:
        pairs.append(("processes", args.processes))
    if args.servers is not None:
        pairs.append(("servers", args.servers))
    if args.staleness is not None:
        pairs.append(("staleness", config.parse_override(f"s={args.staleness}")[1]))
    if args.output is not None:
        pairs.append(("output", args.output))
    return pairs


def bundled():
    """Bundled algorithm names → ``module:Class``."""
    from paracel.algorithms import BUNDLED

    return BUNDLED


def resolve(name, job_dir=None):
    """The algorithm class a job names: a bundled name or ``module:Class``."""
    target = bundled().get(name, name)
    if ":" not in target:
        raise ConfigError(f"algorithm: unknown algorithm {name!r}; bundled: "
                          f"{', '.join(sorted(bundled()))}, or give 'package.module:Class'")
    module_name, _, class_name = target.partition(":")
    module = import_module(module_name, "algorithm", job_dir)
    cls = getattr(module, class_name, None)
    from paracel.algorithm import Algorithm

    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise ConfigError(f"algorithm: {module_name} has no paracel.Algorithm subclass "
                          f"named {class_name!r}")
    return cls


def import_module(name, key, job_dir=None):
    """Import a user module; the job file's folder is searched too."""
    if job_dir and job_dir not in sys.path:
        sys.path.append(job_dir)
    try:
        return importlib.import_module(name)
    except ImportError as error:
        if error.name and name.startswith(error.name):
            raise ConfigError(f"{key}: cannot import module {name!r}: {error}") from None
        raise ConfigError(f"{key}: importing module {name!r} failed:\n"
                          f"{traceback.format_exc()}") from None
    except Exception:
        raise ConfigError(f"{key}: importing module {name!r} failed:\n"
                          f"{traceback.format_exc()}") from None


def prepare(args):
    """Load and check everything before any MPI: job, modules, algorithm."""
    job = config.load(args.job, overrides(args))
    job_dir = os.path.dirname(job.path)
    for index, name in enumerate(job.modules):
        import_module(name, f"modules[{index}]", job_dir)
    try:
        cls = resolve(job.algorithm, job_dir)
        algorithm = cls(**config.resolve_param_paths(job.params, cls.parameters, job_dir))
        algorithm.check_job(job)
        check_resumable(cls, job)
    except ConfigError as error:
        raise ConfigError(f"{args.job}: {error}") from None
    job.values["params"] = algorithm.get_params()
    if not args.resume:
        check_output(job, args.overwrite)
    return job, algorithm


def check_resumable(cls, job):
    """Refuse checkpoints (and so ``--resume``) for an algorithm that does not
    implement the resume contract (:meth:`paracel.Algorithm.resumable`)."""
    if job.checkpoint is not None and not cls.resumable():
        raise ConfigError(
            f"checkpoint: algorithm {job.algorithm!r} is not resumable (it does not "
            "override state() and restore() to continue from self.clock), so a resume "
            "would silently start it over on the restored tables; remove the "
            "\"checkpoint\" key")


def plan_checkpoints(job, algorithm, args, workers):
    """Check the checkpoint folder before any rank starts: refuse a fresh run
    among an earlier run's checkpoints (or move them aside with
    ``--overwrite``), or pick and verify the checkpoint to resume
    (:func:`paracel.checkpoints.plan`). Only one process acts and speaks: the
    launcher, or world rank 0 under a hand-started mpiexec."""
    from paracel import checkpoints

    first = mpiexec.world_rank() == 0
    return checkpoints.plan(job, workers, type(algorithm).parameters, args.resume,
                            args.overwrite, chosen=args.resume_from,
                            announce=_say if first else _quiet, act=first)


def _say(text):
    print(f"paracel: {text}", file=sys.stderr, flush=True)


def _quiet(text):
    """Announcements of the ranks that are not the first: rank 0 speaks."""


def check_output(job, overwrite):
    """Refuse an output folder holding another job's results (unless overwriting).

    A folder this same job file wrote before may be reused: a rerun replaces
    its results.
    """
    folder = job.output
    if overwrite or not os.path.isdir(folder) or not os.listdir(folder):
        return
    from paracel.io import outputs

    owner = outputs.owner(folder)
    if owner == job.path:
        return
    what = f"the results of {owner}" if owner else "files this job did not write"
    raise ConfigError(f"output: {folder} already holds {what}; pass --overwrite to "
                      "replace them, or choose another --output")


def launch(job, algorithm, origin=None):
    """Take this rank's role in the job (every rank calls this under mpiexec);
    ``origin`` is where a run with checkpoints starts
    (:class:`paracel.checkpoints.Origin`)."""
    from mpi4py import MPI

    from paracel import logs
    tag = f"rank {MPI.COMM_WORLD.Get_rank()}"
    signal.signal(signal.SIGTERM, _terminated)
    try:
        if origin is not None:
            from paracel.checkpoints import agree

            origin = agree(MPI.COMM_WORLD, origin)
        topology = _split(MPI.COMM_WORLD, job)
        tag = topology.tag
        logs.setup(tag, job.log_level)
        _run_role(topology, job, algorithm, origin)
        return 0
    except UserError as error:
        # an error every worker finds (bad data they all read, a bad
        # parameter) is told once, by rank 0: the others wait to be torn
        # down, and report only if still alive (the error was theirs alone)
        if MPI.COMM_WORLD.Get_rank() != 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(REPORT_GRACE_SECONDS)
        _abort(MPI.COMM_WORLD, f"paracel: error: [{tag}] {error}\n", EXIT_USER_ERROR)
    except ReportedElsewhere:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # being torn down is expected now
        time.sleep(REPORT_GRACE_SECONDS)  # the reporting rank ends the job first
        _abort(MPI.COMM_WORLD, "", EXIT_USER_ERROR)
    except Terminated:
        # When the job is torn down (another rank failed, or the user ended
        # it) every rank gets SIGTERM: rank 0 says so at once, the others only
        # if still alive a second later (mpiexec kills torn-down ranks before
        # that), so a failure reads as its cause plus at most one line.
        if MPI.COMM_WORLD.Get_rank() != 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            time.sleep(SIGTERM_QUIET_SECONDS)
        _abort(MPI.COMM_WORLD, f"paracel: [{tag}] stopped by SIGTERM\n", EXIT_TERMINATED)
    except KeyboardInterrupt:
        _abort(MPI.COMM_WORLD, f"paracel: [{tag}] interrupted\n", EXIT_INTERRUPTED)
    except BaseException:
        _abort(MPI.COMM_WORLD, f"paracel: [{tag}] failed:\n{traceback.format_exc()}",
               EXIT_FAILURE)


class Terminated(BaseException):
    """Raised in a rank that received SIGTERM, so it ends the job like a failure."""


def _terminated(signum, frame):
    raise Terminated()


def _split(world, job):
    from paracel import topology

    return topology.split(world, job.servers)


def _run_role(topology, job, algorithm, origin):
    from paracel import ssp
    from paracel.checkpoints import Checkpointer
    from paracel.client import Client
    from paracel.partition import Ring
    from paracel.server import checkpoint
    from paracel.server.serve import Server

    from paracel.io.outputs import check_shared

    check_shared(topology.ps, [job.output] + ([job.checkpoint["dir"]] if job.checkpoint else []))
    worker = topology.index if topology.role == "worker" else None
    folder = origin.folder if origin else None
    start = origin.manifest["clock"] if folder else 0
    windowed = job.clock == "window" or job.clock == "auto" and topology.single_host
    clock = clock_table(topology, worker, job.staleness, start, windowed)
    ring = Ring(topology.num_servers)
    if worker is None:
        service = None
        if not windowed and topology.index == 0:
            service = ssp.ClockService(topology.ps, topology.worker_ranks, job.staleness, start)
        server = Server(topology.ps, topology.index, topology.num_workers,
                        job.request_timeout, service)
        if folder:
            server.store.table, server.store.rows = checkpoint.load_shard(
                folder, origin.manifest, topology.index, ring)
        server.serve()
    else:
        client = Client(topology.ps, topology.server_ranks, ring)
        if job.cache:
            from paracel.cache import ParamCache

            client.cache = ParamCache(clock)
        checkpointer = Checkpointer(job, origin, topology) if origin else None
        algorithm.run(Runtime(topology, client, clock, job, folder, checkpointer))
    clock.free()


def clock_table(topology, worker, staleness, start, windowed):
    """The clock table (collective): a one-sided window (by default when
    every rank runs on one host: shared memory) or messages to server 0
    (by default across hosts: never a window on another host)."""
    from paracel import ssp

    kind = ssp.ClockTable if windowed else ssp.MessageClock
    return kind(topology.ps, topology.server_ranks[0], worker, topology.num_workers,
                staleness, start=start)


def _abort(world, message, code):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # being torn down is no news now
    if message:
        sys.stderr.write(message)
        sys.stderr.flush()
        time.sleep(0.2)  # let the message reach mpiexec before the job is torn down
    world.Abort(code)


def _print_list():
    for name, target in sorted(bundled().items()):
        cls = resolve(name)
        print(f"{name:10s} {cls.summary}")


def main(argv=None):
    """Entry point; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["predict"]:
        return predict(argv[1:])
    if argv[:1] == ["plot"]:
        return plot(argv[1:])
    argv, passthrough = split_passthrough(argv)
    args = parse_args(argv)
    launched = mpiexec.launched_rank()
    if launched:
        mpiexec.apply_rank_settings()
    try:
        if args.list:
            _print_list()
            return 0
        if args.describe:
            print(resolve(args.describe).describe())
            return 0
        extra = (["--hostfile", args.hostfile] if args.hostfile else []) + passthrough
        if launched and extra:
            raise ConfigError("--hostfile and options after '--' are for the launcher; this "
                              "process is already a rank: give them to mpiexec instead")
        job, algorithm = prepare(args)
        from paracel.topology import check_size

        processes = mpiexec.world_size() if launched else job.processes
        check_size(processes, job.servers)
        origin = plan_checkpoints(job, algorithm, args, processes - job.servers)
    except UserError as error:
        report_early_error(error)
        return EXIT_USER_ERROR
    if not launched:
        chosen = ["--resume-from", origin.folder] if origin and origin.folder else []
        code = mpiexec.relaunch(job, [*without_hostfile(argv), *chosen], extra)
        if code == 0:
            print(summary(job.output), flush=True)
        return code
    return launch(job, algorithm, origin)


def predict(argv):
    """``python -m paracel.run predict MODEL INPUT...``: apply a saved model
    to new data (:mod:`paracel.predict`), as a job run from Python; the exit
    status of the job."""
    from paracel.jobs import JobFailed, run_job

    parser = argparse.ArgumentParser(
        prog="python -m paracel.run predict",
        description="Apply a model a job saved (model.h5) to new data: pred_<worker> files "
                    "and, when the input carries labels or ratings, how well it does.")
    parser.add_argument("model", help="the model file")
    parser.add_argument("input", nargs="+", help="input files, folders or globs")
    parser.add_argument("-n", "--processes", type=int, default=3, help="MPI processes")
    parser.add_argument("--servers", type=int, default=1, help="parameter servers")
    parser.add_argument("--output", default=os.path.join("output", "predict"),
                        help="output folder (default: output/predict)")
    parser.add_argument("--overwrite", action="store_true",
                        help="reuse an output folder that holds another job's results")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="another job key, e.g. header=true (repeatable)")
    args = parser.parse_args(argv)
    job = {"algorithm": "paracel.predict:Predict", "processes": args.processes,
           "servers": args.servers, "input": args.input, "output": args.output,
           "params": {"model": args.model}}
    try:
        for dotted, value in map(config.parse_override, args.set):
            config.apply_override(job, dotted, value)
        run_job(job, name="predict", overwrite=args.overwrite)
    except UserError as error:
        report_early_error(error)
        return EXIT_USER_ERROR
    except JobFailed as failed:
        return failed.code
    return 0


def plot(argv):
    """``python -m paracel.run plot OUTPUT [--to FILE]``: draw a finished
    job's per-clock history (:mod:`paracel.plot`)."""
    from paracel import plot as plotting

    parser = argparse.ArgumentParser(
        prog="python -m paracel.run plot",
        description="Draw a finished job's metrics against clock and wall time, and each "
                    "worker's waiting (needs matplotlib).")
    parser.add_argument("output", help="the job's output folder")
    parser.add_argument("--to", help="the picture (default: OUTPUT/history.png)")
    args = parser.parse_args(argv)
    try:
        print(f"paracel: wrote {plotting.plot(args.output, args.to)}")
    except UserError as error:
        report_early_error(error)
        return EXIT_USER_ERROR
    return 0


def summary(output, width=100):
    """What a finished job tells its user: the algorithm, its shape and
    time, its final metrics (numbers, flags, short strings) and where the
    results are, read from its ``metrics.json``."""
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    timings = report["timings"]
    lines = [f"paracel: {report['algorithm']} finished: {report['workers']} worker(s) + "
             f"{report['servers']} server(s), {timings['wall_seconds']:.1f} s (solve "
             f"{timings['solve_seconds']:.1f} s, {max(timings['per_worker_clocks'])} clocks)"]
    shown = [f"{name}={_shown(value)}" for name, value in report["metrics"].items()
             if isinstance(value, (int, float, bool)) or
             (isinstance(value, str) and len(value) <= 40)]
    lines += textwrap.wrap("  ".join(shown), width, initial_indent="  ",
                           subsequent_indent="  ")
    files = sorted(name for name in os.listdir(output) if not name.startswith("."))
    listed = ", ".join(files[:8]) + (f", ... ({len(files)} files)" if len(files) > 8 else "")
    lines.append(f"  results in {output}: {listed}")
    return "\n".join(lines)


def _shown(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def split_passthrough(argv):
    """``(our arguments, mpiexec's)``: everything after ``--`` is mpiexec's."""
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def without_hostfile(argv):
    """``argv`` without ``--hostfile FILE``: the ranks do not take it."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--hostfile":
            skip = True
        elif not arg.startswith("--hostfile="):
            kept.append(arg)
    return kept


def report_early_error(error):
    """Print a user error found before the job started.

    Under a process manager every rank checks the job. Rank 0 reports at
    once; another rank only if still alive a second later: when rank 0
    failed too (a bad job file) the job has been ended by then, so the
    message appears once, while an error only one rank saw (an input missing
    on its host, a module that fails to import there) is still shown, with
    the rank and its host.
    """
    rank = mpiexec.world_rank()
    if rank == 0 or not mpiexec.launched_rank():
        print(f"paracel: error: {error}", file=sys.stderr, flush=True)
        return
    time.sleep(1.0)
    print(f"paracel: error: [rank {rank} on {socket.gethostname()}] {error}",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:   # "--list | head": the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
