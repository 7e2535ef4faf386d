"""CTR study: ``lr`` on click-log-like data against single-process references.

Data: ``make_clicklog.py``'s default (3 M rows x 40 binary features hashed
into ids below 2**32, a planted logistic model, 10 % held out; about
1.5 GB, made once under ``--data-root`` and reused), or 20,000 rows with
``--small``. In the same run, on the same files, with the same L2
regularisation ``C``:

* references, one process each (``ctr_references.py``): scikit-learn
  ``LogisticRegression(lbfgs)`` and ``SGDClassifier(log_loss)`` on a compacted
  copy (ids renumbered ``0 .. m - 1``, counted in their load time: a favour,
  since scikit-learn can read neither the ids nor hold a 2**32-wide vector),
  and Vowpal Wabbit (its own hashing);
* every ``method`` of ``lr`` (read from ``python -m paracel.run --describe lr``)
  at 1 worker + 1 server, 2 + 1 and 4 + 2 (``--configs``), each given the
  held-out file as its ``test`` parameter. lbfgs and ftrl keep their model in
  a row table keyed by feature id and read the raw ids; sgd and gd hold a
  dense ``n_features`` vector and get the compacted copy (said so in the
  table; :data:`METHOD_DATA`). A method not listed there is first probed on
  the small set (the same 2**32 id space) with 1 + 1 under a small memory
  budget: if the probe runs out of memory, its runs get the compacted copy.

Per run: wall time including load (and MPI launch), held-out log-loss and
AUC at the end and over time (lr: from the held-out scores lbfgs and ftrl
report in their per-clock history; sgd and gd: the saved model, end point
only), the time to reach a held-out log-loss within 0.5 % of the lbfgs
reference's final one, examples per second, lbfgs's iterations to reach
scikit-learn's objective (both with ``tol`` :data:`TOL`), where lr's time
goes (``metrics.json`` timings and ``server_stats``), and the peak RSS of every
process (``VmHWM``, polled every 0.25 s from ``/proc``). Every run has a
timeout and a memory budget (total RSS of its processes, and the same as an
address-space limit per process); a run past either is stopped and recorded
as not finished.

Writes ``docs/<name>.md`` and ``docs/<name>.png`` (held-out log-loss against
wall time); ``--name`` is ``ctr`` by default, ``ctr_small`` with ``--small``.

Run (from the project folder)::

    ./run_bench.sh study_ctr [--small] [--rows 1000000] [--configs 1x1,2x1]
        [--name ctr_before] [--timeout 1800]

``--small`` is a smoke run of a few minutes; neither it nor the full study is
part of the test suite (benchmarks are never run by tests or CI).
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse

import ctr_references as refs
import make_clicklog
from _common import DOCS, LoadMeter, print_table, pyplot, write_study
from study_toolkit import stop

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

SMALL_ROWS = 20_000
C = 0.1
#: lbfgs's stopping tolerance, lr's and scikit-learn's alike (max |gradient|
#: of the objective over ``C n``; scikit-learn's default).
TOL = 1e-4
#: Time to quality: held-out log-loss within this of the lbfgs reference's.
QUALITY = 0.005
POLL_SECONDS = 0.25
MiB = 1 << 20
GiB = 1 << 30
#: Memory budget of a probe run (1 worker + 1 server on the small set).
PROBE_BUDGET = 2 * GiB
#: (workers, servers) of the lr runs.
CONFIGS = ((1, 1), (2, 1), (4, 2))
#: lr parameters per method (only those ``--describe lr`` lists are passed).
METHOD_PARAMS = {
    "gd": {"epochs": 30, "tol": None},
    "sgd": {"epochs": 1, "batch_size": 256, "tol": None},
    "lbfgs": {"epochs": 200, "tol": TOL},
    "ftrl": {"epochs": 2},
}
#: The data each method gets: lbfgs and ftrl keep only the features they
#: touch (a row table keyed by id) and read the raw ids; sgd and gd hold a
#: dense ``n_features`` vector (the smoke run's probe: MemoryError under
#: 2 GiB on the 2**32 ids), so they get the compacted copy. A method not
#: listed is probed (:func:`probe`).
METHOD_DATA = {"lbfgs": "raw", "ftrl": "raw", "sgd": "compacted", "gd": "compacted"}
OTHER_PARAMS = {"epochs": 5}
STALENESS = {"sgd": 2, "ftrl": 2}
REFERENCES = {"lbfgs": "sklearn lbfgs", "sgd": "sklearn SGDClassifier", "vw": "Vowpal Wabbit"}
#: The targets of the rework (see the page).
TARGET_1W, TARGET_2W = 1.0, 0.7
TARGET_RATE = 300_000
TARGET_OBJECTIVE, TARGET_ITERATIONS = 1e-4, 1.3
WORKER_SLACK, SERVER_FACTOR, SERVER_SLACK = 200e6, 1.5, 150e6


# -- running a command under a timeout and a memory budget ----------------

@dataclass
class Outcome:
    """How a measured command ended."""

    status: str                                 # ok, timeout, memory, failed
    wall: float
    peaks: dict = field(default_factory=dict)   # process label -> peak RSS bytes
    largest: int = 0                            # largest total RSS seen
    tail: str = ""                              # the end of its output
    timeout: float = 0.0                        # the limits it ran under
    budget: int = 0

    @property
    def ok(self):
        return self.status == "ok"

    def describe(self):
        """The outcome in a few words for the tables."""
        timeout, budget = self.timeout, self.budget
        if self.status == "timeout":
            return f"did not finish in {timeout:.0f} s"
        if self.status == "memory" and self.largest <= budget:
            return (f"stopped: an allocation past the {budget / GiB:.1f} GiB address-space "
                    f"limit failed (MemoryError; total RSS {self.largest / GiB:.2f} GiB)")
        if self.status == "memory":
            return (f"stopped: over the memory budget of {budget / GiB:.1f} GiB "
                    f"(total RSS {self.largest / GiB:.1f} GiB)")
        if self.status == "failed":
            return "failed: " + (self.tail.strip().splitlines() or ["?"])[-1][:120]
        return "ok"


def _process_tree(root):
    """``root`` and its descendants (from ``/proc/*/stat``)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        parent = int(text[text.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _memory(pid):
    """``(VmRSS, VmHWM)`` of ``pid`` in bytes, or ``None`` if it is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    values[line[:5]] = int(line.split()[1]) * 1024
    except OSError:
        return None
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def _label(pid, root, workers):
    """``worker k`` / ``server k`` for an MPI rank, ``main`` for ``root``,
    else the process name."""
    if pid == root:
        return "main"
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = dict(item.split(b"=", 1) for item in handle.read().split(b"\0")
                           if b"=" in item)
        with open(f"/proc/{pid}/comm", encoding="ascii", errors="replace") as handle:
            name = handle.read().strip()
    except OSError:
        return None
    rank = environ.get(b"OMPI_COMM_WORLD_RANK")
    if rank is None or workers is None:
        return name
    rank = int(rank)
    return f"worker {rank}" if rank < workers else f"server {rank - workers}"


def measure(command, log, timeout, budget, workers=None):
    """Run ``command`` (from the project folder) and watch its processes.

    Parameters
    ----------
    command : list of str
        The command; its output goes to ``log``.
    log : str
        The output file.
    timeout : float
        Seconds before it is stopped (status ``timeout``).
    budget : int
        Bytes: the total RSS of its processes past which it is stopped
        (status ``memory``), also every process's address-space limit (an
        allocation past it fails at once: a ``MemoryError`` counts as
        ``memory`` too).
    workers : int, optional
        For an MPI job, its worker count (to name the ranks).

    Returns
    -------
    Outcome
    """
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (budget, budget))

    peaks, labels, largest, status = {}, {}, 0, None
    with open(log, "w", encoding="utf-8") as out:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=limit)
        while process.poll() is None:
            total = 0
            for pid in _process_tree(process.pid):
                memory = _memory(pid)
                if memory is None:
                    continue
                if pid not in labels:
                    labels[pid] = _label(pid, process.pid, workers)
                peaks[pid] = max(peaks.get(pid, 0), memory[1])
                total += memory[0]
            largest = max(largest, total)
            if total > budget or time.perf_counter() - start > timeout:
                status = "memory" if total > budget else "timeout"
                stop(process)
                break
            time.sleep(POLL_SECONDS)
        wall = time.perf_counter() - start
    with open(log, encoding="utf-8", errors="replace") as handle:
        tail = handle.read()[-3000:]
    if status is None:
        status = "ok" if process.returncode == 0 else (
            "memory" if "MemoryError" in tail else "failed")
    by_label = {}
    for pid, peak in peaks.items():
        if labels.get(pid):
            by_label[labels[pid]] = max(by_label.get(labels[pid], 0), peak)
    return Outcome(status, wall, by_label, largest, tail, timeout, budget)


# -- data -------------------------------------------------------------------

@dataclass
class Dataset:
    """Training and held-out files for a run, and the id space they use."""

    kind: str          # "raw ids" or "compacted"
    train: str
    test: str
    features: int
    rows: int
    _heldout: object = None

    def heldout(self):
        """The held-out set (:class:`Heldout`), read once."""
        if self._heldout is None:
            self._heldout = Heldout(self.test)
        return self._heldout


class Heldout:
    """The held-out rows over the ids they use, to score a saved model."""

    def __init__(self, path):
        svm = refs.read_libsvm(path)
        self.ids, columns = np.unique(svm.ids, return_inverse=True)
        self.X = scipy.sparse.csr_matrix((svm.values, columns, svm.indptr),
                                         shape=(len(svm.labels), len(self.ids)))
        self.y = svm.labels

    def score(self, model):
        """``(log-loss, AUC)`` of ``model`` (an ``lr`` model.h5) on these rows."""
        weights, intercept = model_weights(model, self.ids)
        return refs.heldout(self.y, self.X @ weights + intercept)


def model_weights(path, ids):
    """The weights of ``ids`` and the intercept in an ``lr`` model.h5 whose
    ``w`` is a dense vector (read whole if small, else only at ``ids``)."""
    import h5py

    with h5py.File(path, "r") as handle:
        w = handle["w"]
        if not isinstance(w, h5py.Dataset) or len(w.shape) != 1:
            raise ValueError(f"{path}: w is not a dense vector")
        intercept = float(handle["intercept"][0]) if "intercept" in handle else 0.0
        if w.shape[0] <= 1 << 27:
            return w[:][ids], intercept
        parts = np.array_split(ids, max(1, len(ids) // 100_000))
        return np.concatenate([w[part] for part in parts]), intercept


def make_data(root, rows):
    """The click-log folder for ``rows`` rows under ``root`` (made once)."""
    folder = os.path.join(root, "small" if rows == SMALL_ROWS else f"rows-{rows}")
    meta = make_clicklog.ensure(make_clicklog.parse_args([folder, "--rows", str(rows)]))
    return folder, meta


def raw_dataset(folder, meta):
    """The click-log files as they are (ids up to 2**32)."""
    rows = meta["settings"]["rows"]
    return Dataset("raw ids", os.path.join(folder, "train.svm"),
                   os.path.join(folder, "test.svm"), meta["settings"]["features"], rows)


def compacted_dataset(folder, meta, work, timeout, budget):
    """The compacted copy (``ctr_references.py compact``), made once beside
    the data; ``None`` with the reason if it could not be made."""
    out = os.path.join(folder, "compact")
    try:
        with open(os.path.join(out, "meta.json"), encoding="utf-8") as handle:
            info = json.load(handle)
        fresh = info["source"] == meta["settings"]
    except (OSError, ValueError, KeyError):
        fresh = False
    if not fresh:
        outcome = measure([sys.executable, os.path.join(HERE, "ctr_references.py"), "compact",
                           folder, out], os.path.join(work, "compact.log"), timeout, budget)
        if not outcome.ok:
            return None, outcome.describe()
        with open(os.path.join(out, "meta.json"), encoding="utf-8") as handle:
            info = json.load(handle)
    return Dataset("compacted", os.path.join(out, "train.svm"), os.path.join(out, "test.svm"),
                   info["features"], meta["settings"]["rows"]), None


# -- the lr runs -----------------------------------------------------------

@dataclass
class Settings:
    """What every lr run shares."""

    work: str
    timeout: float
    budget: int
    known: set
    overrides: dict


def describe_lr():
    """``lr``'s methods and parameter names, from ``--describe lr``."""
    text = subprocess.run([sys.executable, "-m", "paracel.run", "--describe", "lr"],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    methods = re.search(r"^\s+method \(.*one of (.*)\)$", text, re.M)
    return re.findall(r"'(\w+)'", methods.group(1)), set(re.findall(r"^  (\w+) \(", text, re.M))


def lr_params(method, known, dataset, overrides):
    """The job's ``params`` for ``method`` on ``dataset`` (those ``lr`` knows)."""
    chosen = {"method": method, "penalty": "l2", "C": C, "zero_based": True,
              "n_features": dataset.features, "test": dataset.test,
              **METHOD_PARAMS.get(method, OTHER_PARAMS), **overrides.get(method, {})}
    return {key: value for key, value in chosen.items() if key in known}


def run_lr(method, config, dataset, settings):
    """One ``lr`` job: a dict with the :class:`Outcome` (``run``) and, when
    it finished, its ``metrics`` and held-out curve (:func:`lr_curve`)."""
    workers, servers = config
    name = f"{method}-{workers}w{servers}s-{dataset.kind.split()[0]}"
    folder = os.path.join(settings.work, name)
    job = os.path.join(settings.work, f"{name}.json")
    with open(job, "w", encoding="utf-8") as handle:
        json.dump({"algorithm": "lr", "input": dataset.train, "output": folder, "seed": 1,
                   "staleness": STALENESS.get(method, 0), "log_level": "warning",
                   "params": lr_params(method, settings.known, dataset, settings.overrides)},
                  handle)
    command = [sys.executable, "-m", "paracel.run", job, "-n", str(workers + servers),
               "--servers", str(servers)]
    launched = time.time()
    outcome = measure(command, os.path.join(settings.work, f"{name}.log"), settings.timeout,
                      settings.budget, workers)
    result = {"run": outcome}
    if outcome.ok:
        with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as handle:
            result["metrics"] = json.load(handle)
        result.update(lr_curve(result["metrics"], launched, dataset, folder, method))
    return result


def history_heldout(metrics):
    """``[(elapsed, log-loss, AUC)]`` from worker 0's history, if ``lr``
    reports held-out metrics there (keys naming test/held-out loss and AUC)."""
    history = metrics.get("history", [])
    keys = {key for entry in history for key in entry}
    loss = sorted(k for k in keys if re.search(r"test|held", k) and "loss" in k)
    auc = sorted(k for k in keys if re.search(r"test|held", k) and "auc" in k)
    if not loss:
        return []
    return [(entry["elapsed"], entry[loss[0]], entry.get(auc[0]) if auc else None)
            for entry in history if loss[0] in entry]


def solve_start(metrics, launched, folder):
    """Seconds from the launch (``launched``, ``time.time()``) to the start of
    the job's ``solve()``, the zero of its history's ``elapsed``: the time
    ``metrics.json`` was written less ``solve_seconds`` (so the few tens of
    ms that writing it takes count as launch; MPI's shutdown after it does
    not)."""
    written = os.path.getmtime(os.path.join(folder, "metrics.json"))
    return written - launched - metrics["timings"]["solve_seconds"]


def lr_curve(metrics, launched, dataset, folder, method):
    """The held-out curve of a finished ``lr`` job (seconds since its
    launch, :func:`solve_start` plus the history's ``elapsed``) and where
    it comes from; without held-out metrics in the history, the saved
    ``model.h5`` scored here, at the time it was written."""
    offset = solve_start(metrics, launched, folder)
    own = history_heldout(metrics)
    if own:
        return {"points": [[offset + t, loss, auc] for t, loss, auc in own],
                "source": f"every {'pass' if method == 'ftrl' else 'iteration'} (lr's history)",
                "offset": offset}
    model = os.path.join(folder, "model.h5")
    try:
        loss, auc = dataset.heldout().score(model)
    except (OSError, KeyError, ValueError) as error:
        return {"points": [], "source": f"no held-out metrics ({error})", "offset": offset}
    return {"points": [[os.path.getmtime(model) - launched, loss, auc]],
            "source": "end point only (model.h5; no test metrics in the history)",
            "offset": offset}


def training_span(metrics):
    """``(seconds before the first clock, training seconds)`` of worker 0,
    from its per-clock history (the first clock taken as long as the mean)."""
    stamps = [entry["elapsed"] for entry in metrics.get("history", []) if "wait" in entry]
    if len(stamps) < 2:
        return 0.0, metrics["timings"]["solve_seconds"]
    per_clock = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    start = max(0.0, stamps[0] - per_clock)
    return start, stamps[-1] - start


def lr_rate(metrics, workers):
    """Examples per second per worker while training (passes x n / time / W)."""
    found = metrics["metrics"]
    _, train = training_span(metrics)
    return found.get("epochs", 0) * found.get("examples", 0) / max(train, 1e-9) / workers


def probe(method, small, settings):
    """Run ``method`` at 1 worker + 1 server on the small set with the raw
    ids under :data:`PROBE_BUDGET`: its :class:`Outcome`."""
    work = os.path.join(settings.work, "probe")
    os.makedirs(work, exist_ok=True)
    checked = Settings(work, settings.timeout, PROBE_BUDGET, settings.known,
                       settings.overrides)
    return run_lr(method, (1, 1), small, checked)["run"]


# -- one entry per run ------------------------------------------------------

@dataclass
class Entry:
    """One run of a reference or of ``lr``, as the tables and the plot use it."""

    name: str
    config: str
    data: str
    run: Outcome
    workers: int = 1
    points: list = field(default_factory=list)   # [seconds since launch, log-loss, AUC]
    final: tuple = None                          # held-out (log-loss, AUC) at the end
    rate: float = None                           # examples/s per worker, training
    source: str = ""                             # where the curve comes from
    info: dict = field(default_factory=dict)     # the reference's JSON / lr's metrics.json
    offset: float = None                         # lr: seconds from launch to solve()


def reference_entry(kind, folder, work, timeout, budget):
    """Run one reference in its own process (``ctr_references.py``)."""
    out = os.path.join(work, f"ref-{kind}.json")
    command = [sys.executable, os.path.join(HERE, "ctr_references.py"), kind, folder, out,
               "--C", repr(C), "--tol", repr(TOL), "--since", repr(time.time())]
    outcome = measure(command, os.path.join(work, f"ref-{kind}.log"), timeout, budget)
    data = "raw ids, VW hashing" if kind == "vw" else "compacted"
    entry = Entry(REFERENCES[kind], "1 process", data, outcome)
    if os.path.exists(out):                       # lbfgs leaves its curve if stopped
        with open(out, encoding="utf-8") as handle:
            entry.info = json.load(handle)
        entry.points = sorted(entry.info["points"])
        entry.final = tuple(entry.info["points"][-1][1:])
        entry.rate = entry.info["passes"] * entry.info["examples"] / entry.info["train_s"]
        entry.source = {"lbfgs": entry.info.get("curve"), "sgd": "after each epoch",
                        "vw": "after each pass"}[kind]
    return entry


def lr_entry(method, config, dataset, settings):
    """Run one ``lr`` job (:func:`run_lr`) and score it."""
    result = run_lr(method, config, dataset, settings)
    entry = Entry(f"lr {method}", f"{config[0]}w+{config[1]}s", dataset.kind, result["run"],
                  workers=config[0])
    if "metrics" in result:
        entry.info = result["metrics"]
        entry.points = result["points"]
        entry.source = result["source"]
        entry.offset = result.get("offset")
        entry.final = tuple(entry.points[-1][1:]) if entry.points else None
        entry.rate = lr_rate(entry.info, config[0])
    return entry


def probed_dataset(method, datasets, settings, notes):
    """The data of a method :data:`METHOD_DATA` does not list: the raw ids,
    unless its probe runs out of memory there (then the compacted copy);
    ``None`` if neither can be had. Says what happened in ``notes``."""
    checked = probe(method, datasets["probe"], settings)
    if checked.status == "memory":
        compacted, why = datasets["compacted"]()
        notes.append(f"lr {method} on the raw ids (2**32): the probe (1 worker + 1 "
                     f"server, {SMALL_ROWS:,} rows) {checked.describe()}; "
                     + (f"its runs use the compacted copy ({compacted.features:,} ids)."
                        if compacted else f"and the compacted copy failed: {why}."))
        return compacted
    if not checked.ok:
        notes.append(f"lr {method}: the probe {checked.describe()}.")
    return datasets["raw"]


def lr_entries(methods, datasets, settings, notes, configs=CONFIGS):
    """Every method at every configuration in ``configs``, on the data
    :data:`METHOD_DATA` gives it (a method not listed there is probed:
    :func:`probed_dataset`)."""
    entries = []
    for method in methods:
        dataset = datasets["raw"]
        if METHOD_DATA.get(method) == "compacted":
            dataset, why = datasets["compacted"]()
            if dataset is None:
                notes.append(f"lr {method}: the compacted copy failed: {why}.")
        elif method not in METHOD_DATA:
            dataset = probed_dataset(method, datasets, settings, notes)
        if dataset is None:
            continue
        for config in configs:
            entries.append(lr_entry(method, config, dataset, settings))
            print(f"lr {method} {config}: {entries[-1].run.status} "
                  f"{entries[-1].run.wall:.1f} s", flush=True)
    return entries


# -- tables -----------------------------------------------------------------

MAIN_HEADER = ["method", "processes", "ids", "status", "wall s", "held-out log-loss", "AUC",
               "time to quality s", "÷ fastest ref", "examples/s per worker",
               "peak RSS MiB", "curve"]
TIME_HEADER = ["lr run", "solve s", "clocks", "before 1st clock", "compute", "communicate",
               "wait", "server busy"]


def fmt(value, spec=".1f"):
    """``value`` formatted, or a dash for a missing one."""
    return "–" if value is None else format(value, spec)


def time_to_quality(entry, target):
    """The first time the entry's held-out log-loss is within the target."""
    return next((seconds for seconds, loss, _ in entry.points if loss <= target), None)


def peaks_of(entry, role):
    """Peak RSS (bytes) of the entry's processes named ``role`` (worker, server)."""
    return [value for label, value in entry.run.peaks.items() if label.startswith(role)]


def rss_cell(entry):
    """Peak RSS in MiB: the reference's process, or the largest worker and server."""
    workers, servers = peaks_of(entry, "worker"), peaks_of(entry, "server")
    if not workers:
        return fmt(entry.info.get("peak_rss", entry.run.peaks.get("main")) / MiB, ".0f") \
            if entry.info or entry.run.peaks.get("main") else "–"
    return f"w {max(workers) / MiB:.0f} / s {max(servers, default=0) / MiB:.0f}"


def main_row(entry, target, fastest):
    """One line of the main table."""
    ttq = time_to_quality(entry, target)
    final = entry.final or (None, None)
    return [entry.name, entry.config, entry.data, entry.run.describe(),
            f"{entry.run.wall:.1f}", fmt(final[0], ".5f"), fmt(final[1], ".4f"), fmt(ttq),
            fmt(ttq / fastest if ttq and fastest else None, ".2f"), fmt(entry.rate, ",.0f"),
            rss_cell(entry), entry.source]


def time_row(entry):
    """Where an lr job's worker time went (means over its workers, fractions
    of each worker's solve time; server busy: mean over the servers)."""
    timings = entry.info["timings"]
    solve = np.array(timings["per_worker_solve_seconds"])
    before, _ = training_span(entry.info)
    comm = np.array(timings["per_worker_comm_seconds"]) / solve
    wait = (np.array(timings["per_worker_clock_wait_seconds"])
            + np.array(timings["per_worker_sync_wait_seconds"])) / solve
    setup = before / solve.max()
    compute = np.maximum(0.0, 1 - setup - comm - wait)
    busy = [stats.get("busy_seconds", 0.0) for stats in entry.info.get("server_stats", [])]
    return [f"{entry.name} {entry.config}", f"{timings['solve_seconds']:.1f}",
            max(timings["per_worker_clocks"]), f"{setup:.0%}", f"{compute.mean():.0%}",
            f"{comm.mean():.0%}", f"{wait.mean():.0%}",
            f"{np.mean(busy) / solve.max():.0%}" if busy else "–"]


def verdict(ok):
    """``met`` or ``missed``."""
    return "met" if ok else "missed"


def best_ttq(entries, target, workers):
    """The fastest lr time to quality at ``workers`` workers, and which run."""
    found = [(time_to_quality(e, target), f"{e.name} {e.config}") for e in entries
             if e.workers == workers and e.name.startswith("lr ")]
    found = [item for item in found if item[0] is not None]
    return min(found) if found else (None, None)


def speed_targets(lr, target, fastest):
    """Rows of the targets table on time to quality."""
    rows = []
    for workers, bound in ((1, TARGET_1W), (2, TARGET_2W)):
        ttq, which = best_ttq(lr, target, workers)
        ratio = ttq / fastest if ttq and fastest else None
        rows.append([f"best lr at {workers} worker(s) ≤ {bound}x the fastest reference's "
                     "time to quality", f"{fmt(ratio, '.2f')}x ({which or 'none reached it'})",
                     verdict(ratio is not None and ratio <= bound)])
    return rows


def rate_targets(lr):
    """Rows of the targets table on throughput (sgd, ftrl)."""
    rows = []
    for method in ("sgd", "ftrl"):
        found = [(e.rate, e.config) for e in lr if e.name == f"lr {method}" and e.rate]
        if not found:
            rows.append([f"{method} ≥ {TARGET_RATE:,} examples/s per worker",
                         "no finished run", "n/a"])
            continue
        best = max(found)
        listed = ", ".join(f"{config} {rate:,.0f}" for rate, config in found)
        rows.append([f"{method} ≥ {TARGET_RATE:,} examples/s per worker (best)", listed,
                     verdict(best[0] >= TARGET_RATE)])
    return rows


def lbfgs_reached(metrics, goal):
    """The first iteration (clock) at which lr's objective in its history is
    within :data:`TARGET_OBJECTIVE` (relative) of ``goal``, or ``None``."""
    return next((entry["clock"] for entry in metrics.get("history", [])
                 if "objective" in entry
                 and (entry["objective"] - goal) / goal <= TARGET_OBJECTIVE), None)


def lbfgs_target(lr, reference):
    """The row of the targets table on lbfgs against scikit-learn's: the
    iterations lr needs to come within :data:`TARGET_OBJECTIVE` (relative)
    of scikit-learn's final objective, over scikit-learn's iterations."""
    name = f"lr lbfgs reaches scikit-learn's objective within {TARGET_OBJECTIVE:g} " \
           f"(relative) in ≤ {TARGET_ITERATIONS}x scikit-learn's iterations (tol {TOL:g} both)"
    runs = [e for e in lr if e.name == "lr lbfgs" and e.info]
    if not runs or not reference.run.ok or "objective" not in reference.info:
        return [name, "no finished lr lbfgs run" if not runs else
                "the scikit-learn reference did not finish", "n/a"]
    goal, iterations = reference.info["objective"], reference.info["n_iter"]
    cells, ok = [], True
    for e in runs:
        found = e.info["metrics"]
        reached = lbfgs_reached(e.info, goal)
        ok &= reached is not None and reached <= TARGET_ITERATIONS * iterations
        gap = (found["objective"] - goal) / goal
        cells.append(f"{e.config}: " + (f"{reached} iterations = {reached / iterations:.2f}x"
                                        if reached else "never")
                     + f" (stopped after {found['epochs']}, final {gap:+.1e})")
    return [name, f"scikit-learn {iterations} iterations, objective {goal:.8f}; "
            + "; ".join(cells), verdict(ok)]


def memory_targets(lr, reference):
    """Rows of the targets table on peak RSS per worker and per server."""
    base = reference.info.get("peak_rss") if reference.info else None
    worker_cells, server_cells, worker_ok, server_ok = [], [], True, True
    for e in lr:
        workers = peaks_of(e, "worker")
        if not workers or not e.info or base is None:
            continue
        bound = base / e.workers + WORKER_SLACK
        worker_ok &= max(workers) <= bound
        worker_cells.append(f"{e.name} {e.config}: {max(workers) / MiB:.0f} / "
                            f"{bound / MiB:.0f}")
        for stats, label in zip(e.info.get("server_stats", []), sorted(
                label for label in e.run.peaks if label.startswith("server"))):
            limit = stats["nbytes"] * SERVER_FACTOR + SERVER_SLACK
            server_ok &= e.run.peaks[label] <= limit
            server_cells.append(f"{e.name} {e.config} {label}: "
                                f"{e.run.peaks[label] / MiB:.0f} / {limit / MiB:.0f}")
    return [[f"peak RSS per worker ≤ reference's / W + {WORKER_SLACK / 1e6:.0f} MB "
             "(MiB: peak / bound)", "; ".join(worker_cells) or "no finished run",
             verdict(worker_ok) if worker_cells else "n/a"],
            [f"peak RSS per server ≤ its model share x {SERVER_FACTOR} + "
             f"{SERVER_SLACK / 1e6:.0f} MB (MiB: peak / bound)",
             "; ".join(server_cells) or "no finished run",
             verdict(server_ok) if server_cells else "n/a"]]


def targets(entries, target, fastest):
    """The targets table's rows."""
    lr = [e for e in entries if e.name.startswith("lr ")]
    reference = next(e for e in entries if e.name == REFERENCES["lbfgs"])
    return (speed_targets(lr, target, fastest) + rate_targets(lr)
            + [lbfgs_target(lr, reference)] + memory_targets(lr, reference))


# -- plot and page ----------------------------------------------------------

#: Plot colours: one per lr method, the references in greys and purple.
COLOURS = {"lr lbfgs": "tab:blue", "lr ftrl": "tab:orange", "lr sgd": "tab:green",
           "lr gd": "tab:red", REFERENCES["lbfgs"]: "black", REFERENCES["sgd"]: "grey",
           REFERENCES["vw"]: "tab:purple"}


def plot(entries, target, path):
    """Held-out log-loss against wall time since launch, one line per run
    (colour: method; line style: workers)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    styles = {1: "-", 2: "--", 4: ":"}
    lowest = []
    for entry in entries:
        if not entry.points:
            continue
        seconds, losses = zip(*[(point[0], point[1]) for point in entry.points])
        lowest.append(min(losses))
        label = f"{entry.name} ({entry.config}, {entry.data})"
        if entry.name.startswith("lr "):
            ax.plot(seconds, losses, marker="o", markersize=3,
                    linestyle=styles.get(entry.workers, "-."),
                    color=COLOURS.get(entry.name), label=label)
        else:
            ax.plot(seconds, losses, marker="s", markersize=4, color=COLOURS.get(entry.name),
                    linewidth=2, label=label)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1,
               label=f"target: lbfgs + {QUALITY:.1%}")
    if lowest:                   # far-off points (early iterations) would flatten the rest
        ax.set_ylim(min(lowest) * 0.98, max(target * 1.25, min(lowest) * 1.3))
    ax.set_xscale("log")
    ax.set_xlabel("wall seconds since launch (load included)")
    ax.set_ylabel("held-out log-loss (axis cut at +25 %)")
    ax.set_title("Click-log logistic regression: held-out log-loss over time")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def notes(meta, settings, extra):
    """The page's explanations (Markdown paragraphs)."""
    s = meta["settings"]

    def chosen(method, key):
        return {**METHOD_PARAMS[method], **settings.overrides.get(method, {})}.get(key)

    return [
        f"Data: `make_clicklog.py` with {s['rows']:,} rows x {s['per_row']} binary features "
        f"(Zipf {s['zipf']} over {s['vocabulary']:,} raw features hashed into ids below "
        f"{s['features']:,}), {s['test']:.0%} held out; the planted model's held-out "
        f"log-loss is {meta['true_model_test_logloss']:.5f}. Every method minimises the "
        f"L2-regularised log-loss with C = {C} (scikit-learn's `C sum_i loss_i + ||w||^2 / 2`, "
        "intercept not penalised): `lr` takes the same `C` (it minimises that objective "
        "divided by `C n`; ftrl weighs its L2 term `e / C` against the losses of the `e` "
        "passes it has summed, the same objective); SGDClassifier `alpha = 1 / (C n)` and Vowpal Wabbit "
        "`--l2 1 / (C n)` (both penalise `alpha/2 ||w||^2` per example, i.e. `||w||^2 / "
        "(2 C n)` on the mean loss; VW penalises its constant too, and adapts its steps "
        "per feature).",
        "**A favour to the references.** scikit-learn's `load_svmlight_file` cannot read "
        "ids >= 2**31 (OverflowError) and a 2**32-wide coefficient vector does not fit in "
        "memory, so the scikit-learn references get a compacted copy: the benchmark reads "
        "the raw files (a numpy parser) and renumbers the ids the training rows use to "
        "0 .. m - 1 (held-out ids never seen in training are dropped: a model could only "
        "give them weight 0). That reading and renumbering is counted as their load "
        "time. VW reads a VW-format copy written by the benchmark (counted as its load) "
        f"and hashes the ids into 2**{refs.VW_BITS} weights itself.",
        f"**Time to quality**: the first wall time (since launch, load included) at which "
        f"the held-out log-loss is within {QUALITY:.1%} of the lbfgs reference's final "
        "one. lbfgs's curve is its held-out score after every iteration (scikit-learn's "
        "fit callbacks; the scoring time is taken out), SGDClassifier's "
        "is after each `partial_fit` epoch and VW's after each pass (`--save_per_pass`, "
        "the saved model's modification time); the references' held-out scoring is never "
        "counted. Every `lr` job gets the held-out file as its `test` parameter: lbfgs "
        "reports the held-out log-loss and AUC after every iteration, ftrl after every "
        "pass, in its per-clock history; a point's time is the history's `elapsed` (from "
        "the start of `solve()`, common to all workers) plus the time from the launch to "
        "that start (the study's launch timestamp to `metrics.json`'s modification time, "
        "less `solve_seconds`). lr's own held-out scoring (a pull of the test rows' "
        "weights, the margins, a gather of them to worker 0 and an exact AUC) is inside "
        "that time: it is charged to lr. sgd and gd accept `test` but do not score it "
        "(only lbfgs and ftrl do): their curve is the saved `model.h5` scored by the study, "
        "at the time it was written (end point only). "
        f"lbfgs stops, in lr and in scikit-learn alike, when max |gradient| of the "
        f"objective over `C n` is ≤ tol = {TOL:g} or an iteration lowers it by less than "
        f"64 machine epsilons (relatively), or after {chosen('lbfgs', 'epochs')} (lr) / "
        f"1000 (scikit-learn) iterations. lr's other settings: ftrl "
        f"{chosen('ftrl', 'epochs')} passes, batch {chosen('ftrl', 'batch_size') or 1024}, "
        f"alpha {chosen('ftrl', 'learning_rate') or 0.5} (lr's defaults), staleness "
        f"{STALENESS['ftrl']}; sgd {chosen('sgd', 'epochs')} epoch(s), batch "
        f"{chosen('sgd', 'batch_size')}, staleness {STALENESS['sgd']}; gd "
        f"{chosen('gd', 'epochs')} iterations. Examples/s: passes x training rows / training time (load excluded; lr: "
        "from worker 0's first to last clock), per worker.",
        f"**Memory**: every process's peak RSS (`VmHWM`) is polled from `/proc` every "
        f"{POLL_SECONDS} s (the reference reports its own at the end). Every run has a "
        f"budget of {settings.budget / GiB:.1f} GiB: its processes' total RSS, and each "
        f"process's address space (an allocation past it fails at once); a run past it, "
        f"or past {settings.timeout:.0f} s, is stopped and listed as not finished. "
        f"A per-server bound counts the bytes the server holds (`server_stats` "
        f"`nbytes`) as its model share.",
        *extra]


def time_notes(entries):
    """A sentence per finished lr run on where its wall time went."""
    lines = []
    for entry in entries:
        if not entry.name.startswith("lr ") or not entry.info:
            continue
        before, train = training_span(entry.info)
        timings = entry.info["timings"]
        solve = timings["solve_seconds"]
        offset = entry.offset if entry.offset is not None else entry.run.wall - solve
        lines.append(f"{entry.name} {entry.config}: {entry.run.wall:.0f} s wall = "
                     f"{offset:.0f} s launch + {before:.0f} s load/setup before the first "
                     f"clock + {train:.0f} s training ({max(timings['per_worker_clocks'])} "
                     f"clocks) + {max(0.0, solve - before - train):.0f} s final scores and "
                     f"model + {max(0.0, entry.run.wall - offset - solve):.0f} s metrics and "
                     "shutdown")
    return lines


def parse_args():
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true",
                        help=f"a smoke run on {SMALL_ROWS:,} rows")
    parser.add_argument("--rows", type=int, default=3_000_000, help="rows of the full set")
    parser.add_argument("--name", help="page name (default ctr, ctr_small with --small)")
    parser.add_argument("--data-root", default="/tmp/paracel-ctr",
                        help="where the data sets are made and kept")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument("--reference-timeout", type=float, default=None,
                        help="seconds per reference run (default: --timeout)")
    parser.add_argument("--budget", type=float, default=None,
                        help="GiB per run (default 60 %% of the memory available at start)")
    parser.add_argument("--methods", help="comma-separated lr methods (default: all)")
    parser.add_argument("--configs", default=",".join(f"{w}x{s}" for w, s in CONFIGS),
                        help="comma-separated WORKERSxSERVERS of the lr runs (default %(default)s)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working folder (jobs' outputs, logs, metrics.json)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=JSON",
                        help="override an lr parameter, e.g. sgd.batch_size=512")
    args = parser.parse_args()
    args.name = args.name or ("ctr_small" if args.small else "ctr")
    args.configs = [tuple(int(n) for n in item.split("x")) for item in args.configs.split(",")]
    args.overrides = {}
    for text in args.set:
        key, _, value = text.partition("=")
        method, _, param = key.partition(".")
        args.overrides.setdefault(method, {})[param] = json.loads(value)
    return args


def available_bytes():
    """``MemAvailable`` from ``/proc/meminfo``."""
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def run_all(args, work, extra):
    """Every reference and lr run; ``(entries, settings, meta)``."""
    folder, meta = make_data(args.data_root, SMALL_ROWS if args.small else args.rows)
    small_folder, small_meta = make_data(args.data_root, SMALL_ROWS)
    budget = int(args.budget * GiB if args.budget else 0.6 * available_bytes())
    methods, known = describe_lr()
    if args.methods:
        methods = [m for m in methods if m in args.methods.split(",")]
    settings = Settings(work, args.timeout, budget, known, args.overrides)
    datasets = {"raw": raw_dataset(folder, meta),
                "probe": raw_dataset(small_folder, small_meta),
                "compacted": lambda: compacted_dataset(folder, meta, work, args.timeout,
                                                       budget)}
    entries = []
    for kind in REFERENCES:
        entries.append(reference_entry(kind, folder, work,
                                       args.reference_timeout or args.timeout, budget))
        print(f"{kind}: {entries[-1].run.status} {entries[-1].run.wall:.1f} s", flush=True)
    entries += lr_entries(methods, datasets, settings, extra, args.configs)
    return entries, settings, meta


def quality_target(entries, extra):
    """The held-out log-loss to reach: the lbfgs reference's final one plus
    :data:`QUALITY`, or (said in ``extra``) the best finished reference's."""
    reference = next(e for e in entries if e.name == REFERENCES["lbfgs"])
    if reference.final and reference.run.ok:
        return reference.final[0] * (1 + QUALITY)
    finals = [(e.final[0], e.name) for e in entries
              if e.final and not e.name.startswith("lr ")]
    if not finals:
        return None
    best, name = min(finals)
    extra.append(f"**The lbfgs reference did not converge in time**: the target is "
                 f"{QUALITY:.1%} above the best held-out log-loss a reference reached "
                 f"({name}, {best:.5f}), and lbfgs's objective and iterations are not "
                 "known (its target is n/a).")
    return best * (1 + QUALITY)


def main():
    args = parse_args()
    meter = LoadMeter()
    extra = []
    os.makedirs(args.data_root, exist_ok=True)
    if args.keep:                    # every job's folder, log and metrics.json stay
        work = tempfile.mkdtemp(prefix="run-", dir=args.data_root)
        print(f"working folder (kept): {work}", flush=True)
        entries, settings, meta = run_all(args, work, extra)
    else:
        with tempfile.TemporaryDirectory(prefix="run-", dir=args.data_root) as work:
            entries, settings, meta = run_all(args, work, extra)
    wall = time.perf_counter() - meter.started
    load = meter.line()
    target = quality_target(entries, extra)
    if target is None:
        sys.exit(f"{load}\nno reference finished: no target, no page")
    ref_ttq = [time_to_quality(e, target) for e in entries if not e.name.startswith("lr ")]
    fastest = min((t for t in ref_ttq if t is not None), default=None)
    main_rows = [main_row(e, target, fastest)
                 for e in entries]
    time_rows = [time_row(e) for e in entries if e.name.startswith("lr ") and e.info]
    target_rows = targets(entries, target, fastest)
    captions = [f"Every run (target held-out log-loss {target:.5f}; fastest reference's "
                f"time to quality {fmt(fastest)} s)",
                "Where lr's time goes (fractions of the slowest worker's solve time; "
                "compute is the rest, and includes waiting in lr's scalar exchanges "
                "(allgather), which paracel does not time)", "Targets"]
    tables = [(captions[0], MAIN_HEADER, main_rows), (captions[1], TIME_HEADER, time_rows),
              (captions[2], ["target", "measured", "verdict"], target_rows)]
    for caption, header, rows in tables:
        print_table(caption, header, rows)
    print(load)
    print(f"study took {wall:.0f} s")
    os.makedirs(DOCS, exist_ok=True)
    plot(entries, target, os.path.join(DOCS, f"{args.name}.png"))
    extra += [f"The study took {wall / 60:.0f} minutes.", "Timelines: " +
              "; ".join(time_notes(entries))]
    command = " ".join(["./run_bench.sh study_ctr", *sys.argv[1:]])
    print(write_study(args.name, "lr on click-log data against single-process references",
                      command, tables, load, notes(meta, settings, extra)))


if __name__ == "__main__":
    main()
