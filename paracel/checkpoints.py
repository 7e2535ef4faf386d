"""Checkpoints of a run: identity, manifest, verification, publishing, pruning.

The folder of job key ``checkpoint.dir`` holds::

    ckpt-<clock>/                  one checkpoint (clock in 8 digits)
        server-<i>.ckpt            server i's table     (paracel.snapshot files)
        worker-<w>.ckpt            worker w's state() and metrics
        manifest.json              written last
    history-<run>/worker-<w>.jsonl every clock's history entry of worker w,
                                   appended at each checkpoint, never rewritten
    .tmp-ckpt-<clock>-<run>-<random>/   a checkpoint being written
    replaced-<time>-<random>/      what a fresh run with --overwrite moved aside

**Identity.** A *run* starts with a fresh run id (random, 32 hex digits) and
keeps it across its resumes; the *job* is what decides the result
(:func:`job_identity`: algorithm, params, seed, staleness, cache, bad_lines,
modules, input files with their sizes and modification times, number of
workers; not the number of servers, which a resume may change). Both are in
every manifest. ``--resume`` refuses another job's checkpoints, naming what
differs; a fresh run refuses a folder that holds checkpoints (unless
``--overwrite``, which moves them aside); pruning (``keep``) only ever
deletes this run's checkpoints.

**Verification.** The manifest lists every file of its checkpoint with its
size and CRC-32, the prefix of each worker's history file the checkpoint
covers (size and CRC-32), and a SHA-256 of its own content, so an edited
manifest (its clock, say) is refused like a damaged file. Before launch,
the newest checkpoint is verified completely; if it is damaged the previous
one of the same run is used instead, with a line saying so.

**Writing.** Every file is created exclusively (``O_EXCL | O_NOFOLLOW``)
inside a staging folder made under an unpredictable name, fsynced, and the
folder renamed into place once its manifest is in; then the parent folder
is fsynced. A crash at any moment leaves the previous checkpoint intact.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import time
import uuid
import zlib
from dataclasses import asdict, dataclass

from paracel import snapshot
from paracel.errors import CheckpointError, UserError
from paracel.server.checkpoint import shard_name

FORMAT = "paracel checkpoint"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
STAGING = ".tmp-ckpt-"
REPLACED = "replaced-"
_NAME = re.compile(r"^ckpt-(\d+)$")
_RUN = re.compile(r"^[0-9a-f]{32}$")
_MANIFEST_LIMIT = 64 << 20

#: Job keys that decide a run's result (with its input files and workers).
IDENTITY_KEYS = ("algorithm", "params", "seed", "staleness", "cache", "bad_lines", "modules")

#: Manifest keys and their types; anything else about a manifest is checked
#: by :func:`read_manifest`.
_REQUIRED = {"format_version": int, "run": str, "clock": int, "num_servers": int,
             "num_workers": int, "job": dict, "job_hash": str, "files": dict,
             "history": dict, "checksum": str}


# -- identity ----------------------------------------------------------------

def job_identity(job, workers, parameters):
    """What a checkpoint must share with a job to be resumed by it.

    Parameters
    ----------
    job : paracel.config.Job
        The validated job (``params`` with their defaults).
    workers : int
        How many workers the run has.
    parameters : dict of str to paracel.Param
        The algorithm's parameters: files named by path parameters count as
        inputs too.

    Returns
    -------
    dict
        JSON values: the :data:`IDENTITY_KEYS`, ``inputs`` (``[path, size,
        mtime_ns]`` of every input file) and ``workers``.
    """
    from paracel import config

    identity = {key: job.values[key] for key in IDENTITY_KEYS}
    files = config.input_files(job.input) if job.input is not None else []
    files += [value for name, value in sorted(job.params.items())
              if name in parameters and parameters[name].path and isinstance(value, str)
              and os.path.isfile(value)]
    identity["inputs"] = [[path, *_stamp(path)] for path in files]
    identity["workers"] = workers
    return json.loads(json.dumps(identity))


def _stamp(path):
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


def identity_hash(identity):
    """A SHA-256 of the identity's canonical JSON."""
    return hashlib.sha256(_canonical(identity)).hexdigest()


def _canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def differences(saved, current):
    """What differs between a checkpoint's job identity and the current one,
    in words (``params.alpha 0.1 -> 0.2``, ``input file x changed``)."""
    found = []
    for key in (*IDENTITY_KEYS, "workers"):
        if key == "params":
            found += _dict_differences("params.", saved.get(key) or {}, current.get(key) or {})
        elif saved.get(key) != current.get(key):
            found.append(f"{key} {_show(saved.get(key))} -> {_show(current.get(key))}")
    found += _input_differences(saved.get("inputs") or [], current.get("inputs") or [])
    return found


def _dict_differences(prefix, saved, current):
    return [f"{prefix}{name} {_show(saved.get(name, '(unset)'))} -> "
            f"{_show(current.get(name, '(unset)'))}"
            for name in sorted(set(saved) | set(current)) if saved.get(name) != current.get(name)]


def _input_differences(saved, current):
    before = {entry[0]: entry[1:] for entry in saved}
    now = {entry[0]: entry[1:] for entry in current}
    found = []
    for path in sorted(set(before) | set(now)):
        if path not in now:
            found.append(f"input file {path} is no longer an input")
        elif path not in before:
            found.append(f"input file {path} is new")
        elif before[path] != now[path]:
            found.append(f"input file {path} changed (size {before[path][0]} -> {now[path][0]} "
                         "bytes, or its modification time)")
    return found


def _show(value):
    return json.dumps(value)


def check_identity(folder, manifest, identity):
    """Refuse a checkpoint of another job, naming what differs."""
    if manifest["job_hash"] == identity_hash(identity):
        return
    found = differences(manifest["job"], identity) or ["its recorded job"]
    shown = "; ".join(found[:6]) + (f"; and {len(found) - 6} more" if len(found) > 6 else "")
    hint = (" (servers may change on resume, workers may not)"
            if any(text.startswith("workers ") for text in found) else "")
    raise CheckpointError(f"--resume: {folder} is a checkpoint of another job: {shown}"
                          f"{hint}; resume with the settings it was taken with, or use "
                          "another checkpoint.dir")


# -- where a run starts --------------------------------------------------------

@dataclass
class Origin:
    """Where a run with checkpoints starts.

    Attributes
    ----------
    identity : dict
        The job's :func:`job_identity`.
    folder : str or None
        The checkpoint resumed, or ``None`` for a fresh run.
    manifest : dict or None
        That checkpoint's verified manifest.
    run : str or None
        The run id: the checkpoint's, or made by :func:`agree` for a fresh run.
    """

    identity: dict
    folder: str = None
    manifest: dict = None
    run: str = None


def plan(job, workers, parameters, resume, overwrite, chosen=None, announce=print, act=True):
    """Check the checkpoint folder before launch; the run's :class:`Origin`.

    A fresh run refuses a folder holding checkpoints, or with ``overwrite``
    moves them aside (when ``act``: one process does it). ``--resume`` picks
    the newest verified checkpoint of this job (``chosen``: the one the
    launcher picked, only re-checked cheaply).

    Returns
    -------
    Origin or None
        ``None`` when the job takes no checkpoints.
    """
    if job.checkpoint is None:
        if resume:
            raise CheckpointError("--resume: the job has no \"checkpoint\" key")
        return None
    directory = job.checkpoint["dir"]
    identity = job_identity(job, workers, parameters)
    if not resume:
        check_fresh(directory, overwrite, announce, act)
        return Origin(identity)
    if chosen:
        folder, manifest = reopen(directory, chosen, identity)
    else:
        folder, manifest = choose(directory, identity, announce)
    return Origin(identity, folder, manifest, manifest["run"])


def agree(comm, origin):
    """Every rank takes rank 0's origin; a fresh run gets its run id here."""
    from paracel.waiting import bcast_json

    if comm.Get_rank() == 0 and origin.run is None:
        origin.run = uuid.uuid4().hex
    return Origin(**bcast_json(comm, asdict(origin)))


def check_fresh(directory, overwrite, announce, act):
    """Refuse to start a fresh run among checkpoints, or move them aside."""
    found = sorted(name for name in _listdir(directory) if _NAME.match(name))
    if not found:
        return
    if not overwrite:
        raise CheckpointError(
            f"checkpoint.dir: {directory} already holds checkpoints of an earlier run "
            f"({', '.join(found[-3:])}); pass --resume to continue that run, or "
            "--overwrite to move them aside and start afresh")
    if act:
        aside = _move_aside(directory)
        announce(f"--overwrite: moved {len(found)} checkpoint(s) of an earlier run from "
                 f"{directory} into {aside} (delete it when no longer needed)")


def _move_aside(directory):
    """Move every checkpoint, staging folder and history of ``directory``
    into a new ``replaced-<time>-<random>`` folder there."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = make_folder(directory, f"{REPLACED}{stamp}-")
    for name in _listdir(directory):
        if _NAME.match(name) or name.startswith((STAGING, "history-")):
            os.rename(os.path.join(directory, name), os.path.join(aside, name))
    fsync_folder(directory)
    return aside


def _listdir(directory):
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def folders(directory):
    """``(clock, path)`` of every ``ckpt-<clock>`` folder, newest first."""
    found = []
    for name in _listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found, reverse=True)


def choose(directory, identity, announce):
    """The newest usable checkpoint of this job in ``directory``.

    Damaged checkpoints are stepped over (``announce`` says which and why);
    checkpoints of another job, or of several runs, are refused.

    Returns
    -------
    (str, dict)
        The folder and its verified manifest.
    """
    found = folders(directory)
    if not found:
        raise CheckpointError(f"--resume: no complete checkpoint in {directory} to resume from")
    inspected = [(path, *read_manifest(path)) for _, path in found]
    readable = [(path, manifest) for path, manifest, problem in inspected if problem is None]
    runs = sorted({manifest["run"] for _, manifest in readable})
    if len(runs) > 1:
        raise CheckpointError(
            f"--resume: {directory} holds checkpoints of {len(runs)} runs "
            f"({', '.join(run[:8] for run in runs)}); keep one run's ckpt-* folders there")
    if readable:
        check_identity(*readable[0], identity)
    skipped = []
    for path, manifest, problem in inspected:
        problem = problem or verify_data(path, manifest)
        if problem is None:
            if skipped:
                announce(f"checkpoint: {_list_problems(skipped)}; resuming from "
                         f"{os.path.basename(path)} (clock {manifest['clock']}) instead")
            return path, manifest
        skipped.append((path, problem))
    raise CheckpointError(f"--resume: no usable checkpoint in {directory}: "
                          f"{_list_problems(skipped)}")


def _list_problems(skipped):
    return "; ".join(f"{os.path.basename(path)} is damaged ({problem})"
                     for path, problem in skipped)


def reopen(directory, folder, identity):
    """The checkpoint the launcher chose, re-checked cheaply on a rank
    (manifest, file sizes and job; the launcher verified the checksums)."""
    folder = os.path.abspath(folder)
    if (os.path.dirname(folder) != os.path.abspath(directory)
            or not _NAME.match(os.path.basename(folder))):
        raise CheckpointError(f"--resume-from: {folder} is not a checkpoint folder of "
                              f"{directory}")
    manifest, problem = read_manifest(folder)
    if problem:
        raise CheckpointError(f"--resume: {folder} is damaged ({problem})")
    check_identity(folder, manifest, identity)
    return folder, manifest


# -- manifests and verification ------------------------------------------------

def manifest_checksum(manifest):
    """``sha256:<hex>`` of the manifest's canonical JSON, ``checksum`` left out."""
    body = {key: value for key, value in manifest.items() if key != "checksum"}
    return "sha256:" + hashlib.sha256(_canonical(body)).hexdigest()


def read_manifest(folder):
    """The manifest of checkpoint ``folder``, checked without reading the
    data files' contents.

    Returns
    -------
    (dict, None) or (None, str)
        The manifest, or what is wrong (in words, for a message).
    """
    manifest, problem = _load_manifest(os.path.join(folder, MANIFEST))
    if problem is None:
        problem = _check_manifest(manifest, folder)
    return (None, problem) if problem else (manifest, None)


def _load_manifest(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MANIFEST_LIMIT + 1)
    except FileNotFoundError:
        return None, "it has no manifest.json"
    except OSError as error:
        return None, f"manifest.json cannot be read: {error.strerror}"
    if len(data) > _MANIFEST_LIMIT:
        return None, "manifest.json is too big to be one"
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as error:
        return None, f"manifest.json is not valid JSON: {error}"
    if not isinstance(manifest, dict):
        return None, "manifest.json is not a JSON object"
    return manifest, None


def _check_manifest(manifest, folder):
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        return (f"it is in checkpoint format {version!r}; this version of paracel reads "
                f"format {FORMAT_VERSION}")
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        return f"manifest.json lacks {', '.join(map(repr, missing))}"
    wrong = [key for key, kind in _REQUIRED.items()
             if not isinstance(manifest[key], kind) or isinstance(manifest[key], bool)]
    if wrong:
        return f"manifest.json has a value of the wrong type for {', '.join(map(repr, wrong))}"
    if manifest["checksum"] != manifest_checksum(manifest):
        return "manifest.json does not match its checksum (edited or damaged)"
    return _check_contents(manifest, folder)


def _check_contents(manifest, folder):
    clock = int(_NAME.match(os.path.basename(folder)).group(1))
    if manifest["clock"] != clock:
        return f"its manifest is for clock {manifest['clock']}, not {clock}"
    if not _RUN.match(manifest["run"]) or manifest["num_servers"] < 1 \
            or manifest["num_workers"] < 1:
        return "manifest.json has an invalid run id or count"
    expected = {shard_name(i) for i in range(manifest["num_servers"])}
    expected |= {worker_name(w) for w in range(manifest["num_workers"])}
    if set(manifest["files"]) != expected:
        return "manifest.json does not list one file per server and worker"
    if set(manifest["history"]) != {str(w) for w in range(manifest["num_workers"])}:
        return "manifest.json does not list one history per worker"
    if not all(_is_stamp(info) for info in [*manifest["files"].values(),
                                            *manifest["history"].values()]):
        return "manifest.json has a file entry without an integer size and crc32"
    for name, info in sorted(manifest["files"].items()):
        problem = _check_size(os.path.join(folder, name), name, info["size"])
        if problem:
            return problem
    return None


def _is_stamp(info):
    return (isinstance(info, dict) and all(type(info.get(key)) is int and info[key] >= 0
                                           for key in ("size", "crc32")))


def _check_size(path, name, size):
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return f"{name} is missing"
    except OSError as error:
        return f"{name} cannot be read: {error.strerror}"
    if not os.path.isfile(path) or os.path.islink(path):
        return f"{name} is not a regular file"
    if status.st_size != size:
        return f"{name} has {status.st_size} bytes; the manifest says {size} (truncated?)"
    return None


def verify_data(folder, manifest):
    """What is wrong with the contents of a checkpoint whose manifest is
    fine (a file or history prefix whose CRC-32 differs), or ``None``."""
    directory = os.path.dirname(folder)
    checks = [(os.path.join(folder, name), name, info)
              for name, info in sorted(manifest["files"].items())]
    checks += [(history_path(directory, manifest["run"], int(worker)),
                f"the history of worker {worker}", info)
               for worker, info in sorted(manifest["history"].items())]
    for path, name, info in checks:
        crc = file_crc32(path, info["size"])
        if crc is None:
            return f"{name} is missing or shorter than the manifest says"
        if crc != info["crc32"]:
            return f"{name} does not match its checksum"
    return None


def file_crc32(path, size, block=8 << 20):
    """CRC-32 of the first ``size`` bytes of ``path``; ``None`` if it has fewer."""
    crc = 0
    try:
        with open(path, "rb") as handle:
            while size:
                data = handle.read(min(block, size))
                if not data:
                    return None
                crc = zlib.crc32(data, crc)
                size -= len(data)
    except OSError:
        return None
    return crc


# -- names and files -------------------------------------------------------------

def folder_name(clock):
    """The folder name of a checkpoint at ``clock``."""
    return f"ckpt-{clock:08d}"


def worker_name(worker):
    """The file of worker ``worker``'s state in a checkpoint."""
    return f"worker-{worker}.ckpt"


def history_path(directory, run, worker):
    """The append-only history file of ``worker`` in run ``run``."""
    return os.path.join(directory, f"history-{run}", f"worker-{worker}.jsonl")


def make_folder(parent, prefix):
    """Create a new folder ``<prefix><random>`` in ``parent`` (never one that
    exists, never through a symlink); returns its path."""
    while True:
        path = os.path.join(parent, prefix + secrets.token_hex(6))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def fsync_folder(path):
    """Make a folder's entries (renames, new files) durable."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_json(path, value):
    descriptor = snapshot.create_exclusive(path)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


# -- writing a checkpoint ------------------------------------------------------------

def stage(directory, clock, run):
    """Make the staging folder of the checkpoint at ``clock`` (and the run's
    history folder, the first time)."""
    os.makedirs(directory, exist_ok=True)
    os.makedirs(os.path.dirname(history_path(directory, run, 0)), exist_ok=True)
    return make_folder(directory, f"{STAGING}{clock:08d}-{run}-")


def publish(directory, staging, manifest):
    """Write the manifest into ``staging`` and rename it into place as the
    checkpoint of ``manifest["clock"]``; returns the checkpoint's folder."""
    final = os.path.join(directory, folder_name(manifest["clock"]))
    _write_json(os.path.join(staging, MANIFEST), manifest)
    fsync_folder(staging)
    replaced = None
    if os.path.lexists(final):  # an abandoned checkpoint of this clock
        replaced = make_folder(directory, f"{STAGING}old-{manifest['run']}-")
        os.rename(final, os.path.join(replaced, "old"))
    os.rename(staging, final)
    fsync_folder(directory)
    if replaced:
        shutil.rmtree(replaced, ignore_errors=True)
    return final


def prune(directory, run, clock, keep):
    """Delete this run's checkpoints but the newest ``keep`` up to ``clock``
    (and any after it: an abandoned line a resume stepped back from), and its
    leftover staging folders. Other runs' checkpoints are never touched."""
    ours = [(found, path) for found, path in folders(directory) if _run_of(path) == run]
    doomed = [path for found, path in ours if found > clock]
    doomed += [path for found, path in ours if found <= clock][keep:]
    doomed += [os.path.join(directory, name) for name in _listdir(directory)
               if name.startswith(STAGING) and f"-{run}-" in name]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)


def _run_of(folder):
    try:
        with open(os.path.join(folder, MANIFEST), "rb") as handle:
            manifest = json.loads(handle.read(_MANIFEST_LIMIT))
    except (OSError, ValueError, RecursionError):
        return None
    return manifest.get("run") if isinstance(manifest, dict) else None


def make_manifest(clock, run, identity, config, servers, workers):
    """A checkpoint's manifest (its checksum included).

    Parameters
    ----------
    servers : list of dict
        Each server's ``{"name", "size", "crc32"}``, in server order.
    workers : list of dict
        Each worker's ``{"file": {"size", "crc32"}, "history": {...}}``.
    """
    from paracel.partition import DEFAULT_VNODES

    files = {info["name"]: {"size": info["size"], "crc32": info["crc32"]} for info in servers}
    files.update({worker_name(w): mine["file"] for w, mine in enumerate(workers)})
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "run": run, "clock": clock,
        "created": time.time(), "num_servers": len(servers), "num_workers": len(workers),
        "partitioner": {"kind": "consistent-hash ring", "hash": "blake2b-64",
                        "vnodes": DEFAULT_VNODES},
        "job": identity, "job_hash": identity_hash(identity), "files": files,
        "history": {str(w): mine["history"] for w, mine in enumerate(workers)},
        "config": config,
    }
    manifest["checksum"] = manifest_checksum(manifest)
    return manifest


# -- the worker's side ------------------------------------------------------------

class Checkpointer:
    """Takes a worker's part in checkpoints, and gives back its saved state.

    Parameters
    ----------
    job : paracel.config.Job
        The job (``checkpoint`` settings, the effective config).
    origin : Origin
        The run id, the job identity and the checkpoint resumed (if any).
    topology : paracel.topology.Topology
        This worker's place: its index, the counts, the workers' communicator.
    """

    def __init__(self, job, origin, topology):
        self.directory = job.checkpoint["dir"]
        self.keep = job.checkpoint["keep"]
        self.config = job.to_dict()
        self.origin = origin
        self.worker = topology.index
        self.comm = topology.workers
        self.history = History(history_path(self.directory, origin.run, self.worker))

    def record(self, entry):
        """Note one history entry (JSON values) for the next checkpoint."""
        self.history.add(entry)

    def save(self, clock, client, state, metrics, barrier):
        """Take the checkpoint of ``clock`` (collective over the workers, who
        must have flushed their updates and met): worker 0 has the servers
        write their tables while every worker writes its state and appends
        its history; worker 0 then publishes the manifest and prunes.
        ``barrier()`` (the workers' labelled barrier) ends it, so it returns
        once the checkpoint is in place."""
        from paracel.waiting import bcast_json, gather_json

        lead = self.worker == 0
        staging = bcast_json(self.comm, self._guard(f"a checkpoint in {self.directory}", stage,
                                                    self.directory, clock, self.origin.run)
                             if lead else None)
        servers = client.checkpoint(staging) if lead else None
        path = os.path.join(staging, worker_name(self.worker))
        mine = {"file": self._write_state(path, state, metrics),
                "history": self._guard(self.history.path, self.history.flush)}
        workers = gather_json(self.comm, mine)
        if lead:
            manifest = make_manifest(clock, self.origin.run, self.origin.identity, self.config,
                                     servers, workers)
            self._guard(f"the checkpoint of clock {clock} in {self.directory}", publish,
                        self.directory, staging, manifest)
            prune(self.directory, self.origin.run, clock, self.keep)
        barrier()

    def _write_state(self, path, state, metrics):
        try:
            return snapshot.write(path, [("state", state), ("metrics", metrics)])
        except snapshot.Unstorable as error:
            where = "state()" if error.key == "state" else "metrics_"
            raise UserError(
                f"checkpoint of worker {self.worker}: {where}{error.path()} is {error}, "
                f"which a checkpoint cannot store; it stores {snapshot.STORABLE}") from None

    @staticmethod
    def _guard(what, action, *args):
        """``action(*args)``, a failing file operation made one clear line."""
        try:
            return action(*args)
        except OSError as error:
            raise UserError(f"checkpoint: cannot write {what}: {error.strerror or error}") \
                from None

    def restore(self):
        """``(state, metrics, history)`` saved in the checkpoint resumed; the
        history file is cut back to what that checkpoint covered."""
        folder, manifest = self.origin.folder, self.origin.manifest
        path = os.path.join(folder, worker_name(self.worker))
        saved = dict(snapshot.read(path))
        if set(saved) != {"state", "metrics"}:
            raise CheckpointError(f"{path}: not a worker's checkpoint file")
        history = self.history.reopen(manifest["history"][str(self.worker)])
        return saved["state"], saved["metrics"], history


class History:
    """A worker's append-only history file: one JSON line per entry, written
    at checkpoints (never rewritten), its size and CRC-32 kept as it grows.

    Parameters
    ----------
    path : str
        The file (created exclusively on the first flush of a fresh run).
    """

    def __init__(self, path):
        self.path = path
        self.pending = []
        self.size = 0
        self.crc = 0
        self.descriptor = None

    def add(self, entry):
        """Queue one entry for the next :meth:`flush`."""
        self.pending.append(json.dumps(entry).encode() + b"\n")

    def flush(self):
        """Append the queued entries, fsynced; returns ``{"size", "crc32"}``
        of the whole file, for the manifest."""
        if self.descriptor is None:
            self.descriptor = snapshot.create_exclusive(self.path)
        data = b"".join(self.pending)
        view = memoryview(data)
        while view.nbytes:
            view = view[os.write(self.descriptor, view):]
        os.fsync(self.descriptor)
        self.pending.clear()
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        return {"size": self.size, "crc32": self.crc}

    def reopen(self, saved):
        """Continue the file from a checkpoint that covered ``saved``
        (``{"size", "crc32"}``): what was appended after it is cut off.

        Returns
        -------
        list of dict
            The entries up to that checkpoint.
        """
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.descriptor = os.open(self.path, flags)
            data = os.pread(self.descriptor, saved["size"], 0)
        except OSError as error:
            raise CheckpointError(f"{self.path}: cannot read: {error.strerror}") from None
        if len(data) != saved["size"] or zlib.crc32(data) != saved["crc32"]:
            raise CheckpointError(f"{self.path} does not match the checkpoint's checksum")
        os.ftruncate(self.descriptor, len(data))
        os.lseek(self.descriptor, 0, os.SEEK_END)
        self.size, self.crc = len(data), saved["crc32"]
        return [json.loads(line) for line in data.splitlines()]
