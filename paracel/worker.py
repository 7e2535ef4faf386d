"""One worker's run: the bookkeeping around ``solve()``.

:class:`paracel.Algorithm` is what a user's code sees (identity, store
verbs, loaders, ``sync``/``iter_commit``/``report``); this module is what it
does not need to see, as ps-lite keeps its request bookkeeping
(``Customer``) apart from the worker's verbs (``KVWorker``): the start of
the run, the labelled collective calls that end in an error instead of a
hang, each clock's history entry, checkpoints and resumes, and the
``metrics.json`` the job writes at the end.

The algorithm keeps what the run learns (``metrics_``, ``history_``, as
scikit-learn's learned attributes); the :class:`Worker` reads and writes
them there, so a checkpoint holds them with the algorithm's own state.
"""

import json
import logging
import os
import sys
import time

import numpy as np

from paracel import mpiexec, progress, watch
from paracel.algorithm import STARTED

#: Seconds between two progress lines at ``info``.
PROGRESS_SECONDS = 5.0

#: Benchmark-only: ``"W:F"`` or ``"any:F"`` makes a worker a straggler (see
#: :func:`straggle`).
STRAGGLER = "PARACEL_STRAGGLER"


class Worker:
    """Runs one worker's part of the job around ``algorithm.solve()``.

    Parameters
    ----------
    algorithm : paracel.Algorithm
        The worker's algorithm (its ``metrics_`` and ``history_`` are kept
        there).
    runtime : object
        The launcher's runtime: ``job``, ``topology``, ``client``, ``clock``,
        ``checkpointer``, counters.
    """

    def __init__(self, algorithm, runtime):
        self.algorithm = algorithm
        self.runtime = runtime
        self.before_commit = [straggle] if os.environ.get(STRAGGLER) else []
        self.shown_at = 0.0   # when worker 0 last showed its progress
        self.metrics_shown = {}   # the newest value of each reported metric

    @property
    def worker_id(self):
        return self.algorithm.worker_id

    # -- collective calls ------------------------------------------------------

    def barrier(self, kind, size=0):
        """Barrier of all workers that also checks they are all in the same
        collective call (labels exchanged with it; see :mod:`paracel.watch`),
        and ends in a clear error rather than a hang when they cannot all
        arrive. ``size`` is what the call is about to exchange (it must be
        the same on every worker)."""
        from mpi4py import MPI

        algorithm = self.algorithm
        watcher = self.runtime.clock.watch
        label = watcher.label(kind, algorithm.clock)
        mine = np.array([*label, size], dtype=np.int64)
        every = np.empty((algorithm.num_workers, mine.size), dtype=np.int64)
        request = algorithm.comm.Iallgather(mine, every)
        watcher.wait(lambda: MPI.Request.Test(request), tuple(label))
        watch.check_labels(every[:, :3], self.worker_id)
        if (every[:, 3] != size).any():
            if self.worker_id:
                raise watch.ReportedElsewhere()
            raise watch.CollectiveMismatch(
                f"workers gave {', '.join(str(int(n)) for n in every[:, 3])} numbers to the same "
                f"{watch.KINDS[kind]} call; every worker must give the same count")

    # -- clocks -----------------------------------------------------------------

    def commit(self):
        """End this worker's clock: flush updates, advance the clock, record
        the clock's history entry, take a checkpoint when one is due."""
        runtime = self.runtime
        for hook in self.before_commit:
            hook(self)
        runtime.client.flush()
        clock = runtime.clock.commit()
        runtime.clock_started = time.perf_counter()
        self.progress(clock)
        every = (runtime.job.checkpoint or {}).get("every")
        if every and clock % every == 0:
            self.checkpoint(clock)

    def progress(self, clock):
        """Append this clock's entry (time since the common start, what was
        reported or traced) to the history; worker 0 logs it: every clock at
        ``debug``, at ``info`` the first and then one every
        :data:`PROGRESS_SECONDS` (a long run shows its progress without a
        line per clock)."""
        runtime = self.runtime
        elapsed = time.perf_counter() - runtime.started
        entry = {"clock": clock, "elapsed": round(elapsed, 6),
                 "wait": round(runtime.clock.wait_seconds, 6),
                 "sync": round(runtime.sync_seconds, 6),
                 "comm": round(runtime.client.comm_seconds, 6), **runtime.pending}
        self.record(entry)
        if self.worker_id == 0:
            self.show_progress(clock, elapsed)
        runtime.pending.clear()

    def show_progress(self, clock, elapsed):
        """Worker 0's progress: every clock at ``debug``; at ``info`` the
        first clock and then one every :data:`PROGRESS_SECONDS`, or on a
        terminal a live record every :data:`paracel.progress.LIVE_SECONDS`."""
        runtime, live = self.runtime, bool(os.environ.get(progress.LIVE))
        every = progress.LIVE_SECONDS if live else PROGRESS_SECONDS
        due = elapsed >= self.shown_at + every or clock == 1
        self.shown_at = elapsed if due else self.shown_at
        reported = {name: value for name, value in runtime.pending.items()
                    if name in self.algorithm.metrics_}   # not what was only traced
        self.metrics_shown.update(reported)
        if live and due:
            text = progress.progress_text(clock, elapsed, self.algorithm.expected_clocks(),
                                          self.metrics_shown)
            print(progress.MARK + text, file=sys.stderr, flush=True)
        shown = "".join(f"  {name}={_short(value)}" for name, value in reported.items())
        self.algorithm.log.log(logging.INFO if due and not live else logging.DEBUG,
                               "clock %d  %.3f s  %.1f clocks/s  wait %.3f s%s", clock,
                               elapsed, clock / max(elapsed, 1e-9),
                               runtime.clock.wait_seconds, shown)

    def record(self, entry):
        """Append a history entry (and keep it for the next checkpoint)."""
        self.algorithm.history_.append(entry)
        if self.runtime.checkpointer is not None:
            self.runtime.checkpointer.record(plain(entry))

    # -- checkpoints ------------------------------------------------------------

    def checkpoint(self, clock):
        """Snapshot servers and workers at ``clock`` (collective; see
        :mod:`paracel.checkpoints`). Needs every worker to reach the same
        checkpoint clocks: the labelled barriers (:mod:`paracel.watch`) find
        one that does not."""
        runtime, algorithm = self.runtime, self.algorithm
        runtime.client.flush()
        self.barrier(watch.CHECKPOINT)
        runtime.checkpointer.save(clock, runtime.client, algorithm.state(), algorithm.metrics_,
                                  barrier=lambda: self.barrier(watch.CHECKPOINT))
        if self.worker_id == 0:
            algorithm.log.info("checkpoint at clock %d", clock)
        runtime.last_checkpoint = clock

    def resume(self):
        """Take back the algorithm's state, metrics and history."""
        algorithm = self.algorithm
        state, algorithm.metrics_, algorithm.history_ = self.runtime.checkpointer.restore()
        algorithm.restore(state)
        self.runtime.last_checkpoint = algorithm.clock
        algorithm.log.info("resumed from %s at clock %d", self.runtime.resume, algorithm.clock)

    def finished_before(self):
        """Whether this run resumed from the checkpoint taken after ``solve()``
        returned: its history already ends with what the final phase, run
        again now, reports (recording it again would repeat it)."""
        history = self.algorithm.history_
        last = history[-1] if history else {}
        return last.get("final", False) and last.get("clock") == self.algorithm.clock

    # -- the run ----------------------------------------------------------------

    def run(self):
        """Start together, ``solve()``, record what was reported after the
        last clock, take the final checkpoint, write ``metrics.json``."""
        from paracel.io import lines, outputs

        runtime, algorithm = self.runtime, self.algorithm
        if self.worker_id == 0:
            removed = outputs.claim(runtime.job.output, runtime.job.path, algorithm.resumed)
            if removed:
                algorithm.log.info("removed %d file(s) of the previous run from %s",
                                   len(removed), runtime.job.output)
        self.agree_input_sizes()
        self.barrier(watch.START)  # one start: histories share a time base
        runtime.started = time.perf_counter()
        if algorithm.resumed:
            self.resume()
        result = algorithm.solve()
        if isinstance(result, dict):
            algorithm.metrics_.update(result)
        if runtime.pending and not self.finished_before():  # reported after the last clock
            elapsed = round(time.perf_counter() - runtime.started, 6)
            self.record({"clock": algorithm.clock, "elapsed": elapsed, "final": True,
                         **runtime.pending})
        if runtime.job.checkpoint and runtime.last_checkpoint != algorithm.clock:
            self.checkpoint(algorithm.clock)
        solve_seconds = time.perf_counter() - runtime.started
        runtime.client.flush()
        runtime.clock.finish()
        self.write_metrics(solve_seconds)
        lines.forget_plain_copies()  # every worker has read all it will
        runtime.client.done()

    def agree_input_sizes(self):
        """Measure the input files once (worker 0) and give every worker the
        same sizes, so shares are cut alike and a file that grows while the
        job runs is read only up to what it held now."""
        from paracel import config
        from paracel.io import lines
        from paracel.waiting import bcast_json

        job = self.runtime.job
        sizes = None
        if self.worker_id == 0 and job.input is not None:
            sizes = {path: lines.measure(path) for path in config.input_files(job.input)}
        lines.agree_sizes(bcast_json(self.algorithm.comm, sizes) or {})

    def write_metrics(self, solve_seconds):
        """Gather every worker's timings and history; worker 0 writes
        ``metrics.json``."""
        from paracel.io import outputs
        from paracel.waiting import gather_json, wait_request

        runtime, algorithm = self.runtime, self.algorithm
        self.barrier(watch.END)
        mine = np.array([solve_seconds, runtime.clock.wait_seconds, runtime.clock.clock,
                         runtime.skipped, runtime.client.comm_seconds,
                         runtime.sync_seconds, *_cache_counts(runtime.client.cache),
                         runtime.clock.commit_seconds], dtype=np.float64)
        every = np.zeros((algorithm.num_workers, mine.size)) if self.worker_id == 0 else None
        wait_request(algorithm.comm.Igather(mine, every, root=0))
        histories = gather_json(algorithm.comm, plain(algorithm.history_))
        if self.worker_id != 0:
            return
        report = self.report(every, histories)
        with outputs.atomic_file(runtime.job.output, "metrics.json") as handle:
            json.dump(report, handle, indent=2)

    def report(self, every, histories):
        """The ``metrics.json`` contents from every worker's numbers."""
        runtime, algorithm = self.runtime, self.algorithm
        return {
            "job": runtime.job.path,
            "launch": os.environ.get(mpiexec.TOKEN),
            "algorithm": runtime.job.algorithm,
            "workers": algorithm.num_workers,
            "servers": algorithm.num_servers,
            "staleness": algorithm.staleness,
            "metrics": plain(algorithm.metrics_),
            "skipped_lines": int(every[:, 3].sum()),
            "timings": {
                "wall_seconds": round(time.time() - STARTED, 3),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(STARTED)),
                "solve_seconds": float(every[:, 0].max()),
                "per_worker_solve_seconds": every[:, 0].tolist(),
                "per_worker_clock_wait_seconds": every[:, 1].tolist(),
                "per_worker_comm_seconds": every[:, 4].tolist(),
                "per_worker_sync_wait_seconds": every[:, 5].tolist(),
                "per_worker_cache_hits": every[:, 6].astype(int).tolist(),
                "per_worker_cache_misses": every[:, 7].astype(int).tolist(),
                "per_worker_clocks": every[:, 2].astype(int).tolist(),
                "per_worker_commit_seconds": every[:, 8].tolist(),
                "clock_table": type(runtime.clock).__name__,
            },
            "placement": runtime.topology.placement(),
            "server_stats": runtime.client.stats(),
            "history": plain(algorithm.history_),
            "worker_history": histories,
            "config": runtime.job.to_dict(),
        }


def straggle(worker):
    """Benchmark-only straggler hook (``PARACEL_STRAGGLER`` in the
    environment): ``"W:F"`` makes worker W take F times as long over each
    clock (it sleeps F - 1 times the clock's elapsed time before
    committing); ``"any:F"`` slows one worker per clock, drawn from the
    clock number (the same draw on every worker), as transient stragglers
    do."""
    spec = os.environ.get(STRAGGLER, "")
    which, _, factor = spec.partition(":")
    algorithm, runtime = worker.algorithm, worker.runtime
    if which == "any":
        which = np.random.default_rng(algorithm.clock).integers(algorithm.num_workers)
    if int(which) == algorithm.worker_id:
        elapsed = time.perf_counter() - (runtime.clock_started or runtime.started)
        time.sleep(max(0.0, (float(factor) - 1.0) * elapsed))


def _cache_counts(cache):
    """(hits, misses) of the worker's parameter cache; zeros without one."""
    return (0, 0) if cache is None else (cache.hits, cache.misses)


def _short(value):
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def plain(value):
    """Metrics as JSON-friendly values (numpy scalars and arrays to Python)."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
