"""The output folder: who owns it, what a run wrote there, files written whole.

A job's output folder holds ``.paracel-job`` (the job file that owns it) and,
per worker, ``.paracel-outputs-<worker>``: the names of the files that run
wrote, each logged *before* the file is created, so even a run killed
half-way has listed every file it left. A new run of the job (not a
``--resume``) first removes exactly the files the earlier run listed, so a
rerun with fewer workers leaves no stale ``wc_3`` beside the new results,
and nothing else in the folder is touched.

Every file is written under a fresh temporary name created exclusively in
the folder (never through a link someone planted there), then renamed into
place: a file that exists is complete.
"""

import contextlib
import os
import secrets
import socket
import tempfile

from paracel.errors import UserError

OWNER_FILE = ".paracel-job"
LOG_PREFIX = ".paracel-outputs-"


def owner(folder):
    """The job file that last claimed ``folder`` (``None`` if unknown)."""
    try:
        with open(os.path.join(folder, OWNER_FILE), encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def claim(folder, job_path, resume=False):
    """Make ``folder`` this job's: record the owner, drop the previous run's
    ``metrics.json`` (an interrupted rerun never looks complete) and, unless
    resuming that run, the files it wrote.

    Returns
    -------
    list of str
        The earlier run's files that were removed.
    """
    set_owner(folder, job_path)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, "metrics.json"))
    return [] if resume else _forget_outputs(folder)


def set_owner(folder, job_path):
    """Record that ``folder`` holds the results of the job file ``job_path``."""
    os.makedirs(folder, exist_ok=True)
    with atomic_file(folder, OWNER_FILE) as handle:
        handle.write(job_path + "\n")


def record(folder, worker_id, name):
    """Log ``name`` as written into ``folder`` by this run's worker ``worker_id``
    (before it is written, so a crash never leaves an unlisted file)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(os.path.join(folder, f"{LOG_PREFIX}{worker_id}"), flags, 0o644)
    with os.fdopen(descriptor, "a", encoding="utf-8") as handle:
        handle.write(name + "\n")


def inside(folder, path):
    """``path`` relative to ``folder`` if it lies inside it, else ``None``."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    return None if relative == os.curdir or relative.startswith(os.pardir) else relative


@contextlib.contextmanager
def atomic_file(folder, name, mode="w"):
    """Write ``folder/name`` whole: yield a handle on a new temporary file
    (created exclusively, never through a link), rename it into place when
    the block ends, remove it if the block fails."""
    target = os.path.join(folder, name)
    descriptor, temporary = tempfile.mkstemp(dir=os.path.dirname(target),
                                             prefix=f".{os.path.basename(name)}.",
                                             suffix=".tmp")
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(descriptor, mode, encoding=encoding) as handle:
            yield handle
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


def check_shared(comm, folders):
    """Make sure every rank of ``comm`` sees the same ``folders`` (collective).

    Rank 0 creates each folder and leaves a fresh random mark in it; every
    rank then looks for that mark. A rank on a host where the folder is
    missing, or is another folder at the same path (a host-local disk),
    raises a :class:`UserError` naming its host and the folder: results and
    checkpoints need one filesystem shared by every host at the same path.
    """
    from paracel.waiting import allgather_json, bcast_json
    from paracel.watch import ReportedElsewhere

    rank = comm.Get_rank()
    mark = f".paracel-shared-{secrets.token_hex(8)}" if rank == 0 else None
    if mark is not None:
        for folder in folders:
            os.makedirs(folder, exist_ok=True)
            with atomic_file(folder, mark) as handle:
                handle.write(mark)
    mark = bcast_json(comm, mark)
    unseen = [folder for folder in folders if not os.path.exists(os.path.join(folder, mark))]
    problems = allgather_json(comm, unseen[0] if unseen else None)
    if rank == 0:
        for folder in folders:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, mark))
    first = next((r for r, problem in enumerate(problems) if problem), None)
    if first is None:
        return
    if first != rank:
        raise ReportedElsewhere()
    raise UserError(f"{unseen[0]}: this folder is not shared with rank 0's host (rank {rank} "
                    f"on {socket.gethostname()} does not see it): every host needs it on a "
                    "shared filesystem at the same path")


def _forget_outputs(folder):
    """Remove the files the previous run listed, then its lists."""
    removed = []
    for log in sorted(name for name in os.listdir(folder) if name.startswith(LOG_PREFIX)):
        path = os.path.join(folder, log)
        with open(path, encoding="utf-8") as handle:
            names = [line.rstrip("\n") for line in handle if line.strip()]
        for name in names:
            if _remove_listed(folder, name):
                removed.append(name)
        os.remove(path)
    return sorted(set(removed))


def _remove_listed(folder, name):
    """Remove ``name`` (a file, or a link itself, never its target) if it is
    inside ``folder``; a name that points outside is ignored."""
    if os.path.isabs(name) or inside(folder, os.path.join(folder, name)) is None:
        return False
    path = os.path.join(folder, name)
    try:
        os.remove(path)
        return True
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise UserError(f"{path}: a folder now stands where an earlier run of this job "
                        "wrote a file; remove it or choose another --output") from None
