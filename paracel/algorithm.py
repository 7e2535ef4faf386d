"""``paracel.Algorithm``: everything a user's algorithm sees.

Subclass it, declare ``parameters``, write ``solve()``::

    class MyAlgorithm(paracel.Algorithm):
        summary = "what it computes, in one line"
        parameters = {"rounds": paracel.Param(int, 10, "how many clocks", low=1)}

        def solve(self):
            for _ in range(self.rounds):
                w = self.read("w", default=0.0)
                self.update("w", 1.0, "add")
                self.iter_commit()

Parameters are validated and stored in ``__init__`` only (as in
scikit-learn); what the run learns or measures ends in ``_`` (``metrics_``).
Inside ``solve()`` a worker has its identity (``worker_id``, ``num_workers``,
``num_servers``, ``comm`` for worker-to-worker collectives), the parameter
store verbs (``read``, ``read_multi``, ``write``, ``write_multi``,
``update``, ``update_multi``, ``bupdate``, ``contains``, ``remove``,
``keys``), synchronisation (``sync``, ``iter_commit``) and ``report`` for
progress metrics.
"""

import logging
import os
import textwrap
import time

import numpy as np

from paracel import config, watch

#: When this process started (its first import of the project): the job's
#: wall time in metrics.json counts from here (launch, load, solve, write).
STARTED = time.time()

_NO_DEFAULT = object()


class Algorithm:
    """Base class of every algorithm run by ``python -m paracel.run``.

    Class attributes
    ----------------
    summary : str
        One line for ``--list``.
    reads : str
        The input format(s), for ``--describe``.
    parameters : dict of str to paracel.Param
        The algorithm's parameters, for validation and ``--describe``.
    """

    summary = ""
    reads = ""
    parameters = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        clashes = sorted(name for name in cls.parameters if hasattr(Algorithm, name))
        if clashes:
            raise TypeError(f"{cls.__qualname__}: parameter name(s) {', '.join(clashes)} "
                            "would hide paracel.Algorithm attributes; rename them")

    def __init__(self, **params):
        for name, value in config.check_params(params, type(self).parameters).items():
            setattr(self, name, value)
        self.metrics_ = {}
        self.history_ = []

    def check_job(self, job):
        """Refuse job settings this algorithm cannot work with (override).

        Called before any process starts, with the validated
        :class:`paracel.config.Job` (``job.staleness``, ``job.servers``, ...);
        raise :class:`paracel.ConfigError` naming the key to stop the job
        with exit 2.
        """

    def get_params(self):
        """The parameters this instance was made with."""
        return {name: getattr(self, name) for name in type(self).parameters}

    @classmethod
    def describe(cls):
        """Human-readable parameter table, for ``--describe``."""
        lines = [f"{cls.__module__}:{cls.__qualname__}", f"  {cls.summary}", ""]
        if cls.reads:
            lines += ["input:", *textwrap.wrap(cls.reads, 76, initial_indent="  ",
                                               subsequent_indent="  "), ""]
        lines.append("parameters:")
        for name, param in cls.parameters.items():
            default = "required" if param.default is config.REQUIRED else repr(param.default)
            choices = f"; one of {', '.join(map(repr, param.choices))}" if param.choices else ""
            lines.append(f"  {name} ({param.describe_type()}, default {default}{choices})")
            lines.append(f"      {param.help}")
        return "\n".join(lines)

    def solve(self):
        """The algorithm; runs on every worker. May return a dict of final metrics."""
        raise NotImplementedError(f"{type(self).__name__} must define solve()")

    def expected_clocks(self):
        """How many clocks the run will take, if known (override): the live
        progress line then shows a bar and an estimate of the time left."""
        return None

    def join_run(self, other):
        """Work inside ``other``'s running job (its store, input and
        collectives): for an algorithm applying its own model within another
        job (``predict``). Returns ``self``."""
        self._runtime, self._worker = other._runtime, other._worker
        return self

    @classmethod
    def resumable(cls):
        """Whether this algorithm implements the resume contract: it overrides
        both :meth:`state` and :meth:`restore` (and so, by that promise,
        loops on ``self.clock`` and keeps in its state all it carries between
        clocks). Only such an algorithm may take checkpoints or ``--resume``:
        any other would silently start over on top of the restored tables."""
        return cls.state is not Algorithm.state and cls.restore is not Algorithm.restore

    def state(self):
        """This worker's loop state to keep in a checkpoint (override).

        A dict of numpy arrays, scipy.sparse matrices, scalars, strings, and
        lists/tuples/dicts of them (e.g. a generator's
        ``bit_generator.state``). The parameter tables are saved by the
        servers; only what lives on the worker belongs here.
        """
        return {}

    def restore(self, state):
        """Take back what :meth:`state` returned, before ``solve()`` runs again
        on a resumed job (override). ``solve()`` then sees ``self.resumed``
        and ``self.clock`` at the checkpoint's clock, and should continue from
        there, e.g. ``for it in range(self.clock, self.iterations)``."""

    # -- identity ----------------------------------------------------------

    @property
    def worker_id(self):
        """This worker's index, 0 ≤ worker_id < num_workers."""
        return self._runtime.topology.index

    @property
    def num_workers(self):
        """How many workers run ``solve()``."""
        return self._runtime.topology.num_workers

    @property
    def num_servers(self):
        """How many parameter servers hold the tables."""
        return self._runtime.topology.num_servers

    @property
    def comm(self):
        """The workers' communicator (mpi4py ``Comm``) for collectives among them."""
        return self._runtime.topology.workers

    @property
    def staleness(self):
        """The SSP bound s (``None``: asynchronous)."""
        return self._runtime.job.staleness

    @property
    def seed(self):
        """The job's random seed."""
        return self._runtime.job.seed

    @property
    def output(self):
        """The job's output folder (created before ``solve()`` runs)."""
        return self._runtime.job.output

    @property
    def input(self):
        """The job's ``input`` value, paths made absolute."""
        return self._runtime.job.input

    @property
    def job_dir(self):
        """The job file's folder (resolve path parameters against it)."""
        return os.path.dirname(self._runtime.job.path)

    @property
    def input_files(self):
        """The input expanded to a sorted list of files."""
        return config.input_files(self._runtime.job.input)

    @property
    def clock(self):
        """This worker's SSP clock: how many ``iter_commit`` calls so far."""
        return self._runtime.clock.clock

    @property
    def resumed(self):
        """Whether this run restarted from a checkpoint (tables already hold
        the model: ``matrix()`` then attaches instead of initialising)."""
        return self._runtime.resume is not None

    @property
    def slowest_clock(self):
        """The slowest worker's clock as last seen by ``iter_commit``."""
        return self._runtime.clock.slowest

    @property
    def log(self):
        """A logger whose lines carry this rank's tag."""
        return logging.getLogger("paracel.algorithm")

    def rng(self, stream=0):
        """A NumPy generator seeded from the job's seed, this worker and ``stream``."""
        return np.random.default_rng([self.seed, self.worker_id, stream])

    # -- the parameter store -----------------------------------------------

    def read(self, key, default=_NO_DEFAULT, out=None):
        """The value under ``key`` (``KeyError`` if missing and no ``default``)."""
        if default is _NO_DEFAULT:
            return self._runtime.client.read(key, out=out)
        return self._runtime.client.read(key, default, out)

    def read_multi(self, keys, default=_NO_DEFAULT):
        """Values of many keys in order; one message per server."""
        if default is _NO_DEFAULT:
            return self._runtime.client.read_multi(keys)
        return self._runtime.client.read_multi(keys, default)

    def write(self, key, value):
        """Store ``value`` under ``key``."""
        self._runtime.client.write(key, value)

    def write_multi(self, mapping):
        """Store many ``key: value`` pairs; one message per server."""
        self._runtime.client.write_multi(mapping)

    def update(self, key, delta, fn="add"):
        """Asynchronously fold ``delta`` into ``key`` with update function ``fn``;
        returns a handle whose ``wait()`` returns once it is applied."""
        return self._runtime.client.update(key, delta, fn)

    def update_multi(self, mapping, fn="add"):
        """Asynchronous update of many keys with one function; returns a handle."""
        return self._runtime.client.update_multi(mapping, fn)

    def bupdate(self, key, delta, fn="add"):
        """Update ``key`` and return once the server has applied it."""
        self._runtime.client.update(key, delta, fn).wait()

    def bupdate_multi(self, mapping, fn="add"):
        """Update many keys and return once all are applied."""
        self._runtime.client.update_multi(mapping, fn).wait()

    def contains(self, key):
        """Whether ``key`` is stored."""
        return self._runtime.client.contains(key)

    def remove(self, key):
        """Drop ``key``; returns whether it was there."""
        return self._runtime.client.remove(key)

    def keys(self, prefix=None):
        """Every stored key, or those whose name starts with ``prefix``."""
        return self._runtime.client.keys(prefix)

    # -- distributed matrices ----------------------------------------------

    def pull_many(self, requests):
        """Rows of several matrices at once: ``[(matrix, rows), ...]`` gives
        what each ``matrix.pull(rows)`` would, in one round trip to each
        server instead of one per matrix."""
        from paracel.matrix import pull_many

        return pull_many(requests)

    def matrix(self, name, shape, dtype=np.float64, block_rows=None, sparse=False,
               init="zeros", value=0.0, scale=1.0, create=True):
        """A matrix or vector on the servers, stored as row blocks.

        With ``create`` (the default) this is collective: every worker writes
        its share of the blocks (``init`` = ``"zeros"``, ``"constant"`` with
        ``value``, or ``"random"`` uniform in ``[0, scale)`` from the job's
        seed, the same for any number of workers), then all ``sync()``.
        With ``create=False``, or in a resumed job, it attaches to the
        existing matrix.

        Returns
        -------
        paracel.matrix.DistMatrix
            With ``pull(rows)``, ``push(rows, deltas, fn)``, ``to_numpy()``
            and ``assign(array)``.
        """
        from paracel.matrix import DistMatrix

        matrix = DistMatrix(self._runtime.client, name, shape, dtype, block_rows, sparse)
        if create and not self.resumed:
            matrix.create(self.my_blocks(matrix), init=init, value=value, seed=self.seed,
                          scale=scale)
            self.sync()
        return matrix

    def rows(self, name, width=1, dtype=np.float64, admit=0):
        """A row table on the servers: rows of ``width`` numbers keyed by
        64-bit ids, only the rows pushed so far taking memory.

        Creates the table, or attaches to it (in a resumed job, or when
        another worker made it first): every worker that uses it calls this,
        with the same ``width``, ``dtype`` and ``admit``; no barrier.
        ``admit=k`` makes an id a row only with its k-th push (counted per
        id on its server; until then it reads as zeros).

        Returns
        -------
        paracel.rows.RowTable
            With ``pull(ids)``, ``push(ids, deltas, fn, params)``,
            ``map(fn, params)``, ``size()`` and ``items()``.
        """
        from paracel.rows import open_table

        return open_table(self._runtime.client, name, width, dtype, admit)

    def my_range(self, n):
        """This worker's even, contiguous share of ``n`` items (vertices,
        rows): ``numpy.arange(start, stop)``."""
        return np.arange(self.worker_id * n // self.num_workers,
                         (self.worker_id + 1) * n // self.num_workers)

    def my_blocks(self, matrix):
        """The blocks of ``matrix`` this worker creates, loads or writes when
        the workers share a whole-matrix task: every ``num_workers``-th."""
        return range(self.worker_id, matrix.num_blocks, self.num_workers)

    def save_model(self, path, matrices, **attrs):
        """Write matrices to one HDF5 file (collective; worker 0 writes):
        distributed matrices, or ``(name, array)`` pairs of worker 0's.

        The file describes itself: besides ``attrs`` it records the
        algorithm, its parameters and the project version
        (:func:`paracel.model.stamp`); :func:`paracel.load_model` reads it.

        ``path`` is relative to the output folder unless absolute (a file
        inside the output folder is replaced by a rerun, see :meth:`open_output`).
        """
        from paracel import model
        from paracel.io import h5, outputs

        self.sync()
        if self.worker_id == 0:
            path = os.path.join(self.output, path)
            mine = outputs.inside(self.output, path)
            if mine is not None:
                outputs.record(self.output, self.worker_id, mine)
            stamp = model.stamp(self._runtime.job.algorithm, self.get_params())
            h5.save_matrices(path, matrices, {**stamp, **attrs})
        self.sync()

    def load_model(self, path, name, block_rows=None, dtype=None):
        """Read matrix ``name`` from a model file into the servers (collective).

        Works with any number of servers and workers (warm start). ``dtype``
        (default: the file's) is what the servers will hold: the file's
        values must convert to it without loss, and must be finite.
        """
        from paracel.io import h5

        shape, stored, sparse = h5.matrix_info(path, name)
        matrix = self.matrix(name, shape, dtype or stored, block_rows, sparse, create=False)
        h5.load_blocks(path, matrix, self.my_blocks(matrix))
        self.sync()
        return matrix

    # -- loading this worker's share ---------------------------------------

    def _files(self, files):
        return config.input_files(self._runtime.job.input if files is None else files)

    @property
    def _skip_bad_lines(self):
        return self._runtime.job.bad_lines == "skip"

    @property
    def _layout(self):
        from paracel.io.table import Layout

        job = self._runtime.job
        return Layout(job.header, job.columns or {})

    def skipped_lines(self, count):
        """Count malformed input lines this worker skipped (job key
        ``"bad_lines": "skip"``); the total lands in ``metrics.json``."""
        self._runtime.skipped += int(count)

    def _kept_some(self, files, rows, skipped):
        """Refuse input whose every line was skipped as malformed (a
        collective call): nothing would be learned, silently."""
        from paracel.errors import DataError

        kept, dropped = self.sum_over_workers([rows, skipped])
        if kept == 0 and dropped > 0:
            raise DataError(f"{files[0]}{'...' if len(files) > 1 else ''}: every line "
                            f"({int(dropped)}) was malformed and skipped (bad_lines: skip); "
                            "nothing is left to learn from")

    def load_lines(self, files=None):
        """This worker's share of the input's lines (line ends dropped)."""
        from paracel.io.lines import iter_lines

        return [line for _, _, line in
                iter_lines(self._files(files), self.worker_id, self.num_workers)]

    def for_each_line(self, fn, files=None):
        """Call ``fn(line)`` on each line of this worker's share, without
        holding them all; returns how many lines there were."""
        from paracel.io.lines import iter_lines

        count = 0
        for _, _, line in iter_lines(self._files(files), self.worker_id, self.num_workers):
            fn(line)
            count += 1
        return count

    def load_libsvm(self, files=None, n_features=None, zero_based="auto", compact=False):
        """This worker's share of LIBSVM input: ``(labels, csr_matrix)`` whose
        column count is the global feature count, agreed by all workers; or
        with ``compact``, ``(labels, csr_matrix, ids)`` over only the
        features the share uses, column ``j`` being feature ``ids[j]``
        (uint64, 0-based; ids up to 2**64 - 2, for row tables), with
        ``n_features`` only a bound. Either way ``zero_based_`` then says
        whether the files' indices were 0-based (as decided with ``"auto"``)."""
        from paracel.io import libsvm

        paths = self._files(files)
        if compact:
            labels, X, ids, skipped, self.zero_based_ = libsvm.load_compact(
                paths, self.comm, self.worker_id, self.num_workers, n_features,
                zero_based, skip=self._skip_bad_lines)
            self.skipped_lines(skipped)
            self._kept_some(paths, labels.size, skipped)
            return labels, X, ids
        labels, X, skipped, self.zero_based_ = libsvm.load(
            paths, self.comm, self.worker_id, self.num_workers, n_features, zero_based,
            skip=self._skip_bad_lines)
        self.skipped_lines(skipped)
        self._kept_some(paths, labels.size, skipped)
        return labels, X

    def load_dense(self, files=None, has_id=True):
        """This worker's share of dense vectors (``id,f1,...,fk``): ``(ids, array)``.

        The job's ``header`` and ``columns`` (roles ``id``, ``features``)
        choose the columns of a CSV/TSV table; ``"id": null`` for none."""
        from paracel.io import dense

        paths = self._files(files)
        ids, X, skipped = dense.load(paths, self.comm, self.worker_id, self.num_workers, has_id,
                                     skip=self._skip_bad_lines, layout=self._layout)
        self.skipped_lines(skipped)
        self._kept_some(paths, len(ids), skipped)
        return ids, X

    def load_graph(self, files=None, partition="fmap", weighted=None):
        """This worker's part of an edge list (``src dst [weight]``), one shared
        node id map. ``partition``: ``"fmap"`` (by source), ``"smap"`` (by
        destination) or ``"fsmap"`` (2-D blocks). Returns
        :class:`paracel.io.graph.Triples`."""
        return self._triples("load_graph", files, partition, weighted=weighted)

    def load_ratings(self, files=None, partition="fmap"):
        """This worker's part of ``user item rating`` triples (separate user and
        item id maps); see :meth:`load_graph`."""
        return self._triples("load_ratings", files, partition)

    def load_triples(self, files=None, partition="fmap", weighted=None, same_ids=False):
        """The general form of :meth:`load_graph` and :meth:`load_ratings`."""
        return self._triples("load_triples", files, partition, weighted=weighted,
                             same_ids=same_ids)

    def _triples(self, loader, files, partition, **options):
        from paracel.io import graph

        paths = self._files(files)
        triples = getattr(graph, loader)(paths, self.comm, self.worker_id, self.num_workers,
                                         partition, skip=self._skip_bad_lines,
                                         layout=self._layout, **options)
        self.skipped_lines(triples.skipped)
        self._kept_some(paths, len(triples.src), triples.skipped)
        return triples

    def load_mtx(self, files=None):
        """This worker's share of a MatrixMarket file (coo entries, or dense rows)."""
        from paracel.io import mtx

        path = self._one_file(files, "load_mtx")
        matrix, skipped = mtx.load(path, self.worker_id, self.num_workers,
                                   skip=self._skip_bad_lines)
        self.skipped_lines(skipped)
        self._kept_some([path], matrix.nnz if hasattr(matrix, "nnz") else len(matrix), skipped)
        return matrix

    def load_h5(self, dataset, files=None):
        """This worker's row slice of an HDF5 dataset."""
        from paracel.io import h5

        return h5.load_rows(self._one_file(files, "load_h5"), dataset, self.worker_id,
                            self.num_workers)

    def _one_file(self, files, loader):
        """The single file a whole-file loader reads (its rows are split by
        position, not by lines)."""
        from paracel.errors import ConfigError

        paths = self._files(files)
        if len(paths) != 1:
            raise ConfigError(f"{loader} reads one file; the input names {len(paths)}: "
                              f"{', '.join(paths[:3])}{'...' if len(paths) > 3 else ''}")
        return paths[0]

    # -- results -----------------------------------------------------------

    def dump(self, prefix, items, sep=",", merge_as=None):
        """Write ``OUTPUT/<prefix><worker_id>`` (``key\tvalue`` lines); with
        ``merge_as`` also one merged file of every worker's lines (collective)."""
        from paracel.io import outputs, writers

        outputs.record(self.output, self.worker_id, f"{prefix}{self.worker_id}")
        path = writers.dump_lines(self.output, prefix, self.worker_id, items, sep)
        if merge_as is not None:
            self.sync()
            if self.worker_id == 0:
                outputs.record(self.output, self.worker_id, merge_as)
                path = writers.merge(self.output, prefix, self.num_workers, merge_as)
            self.sync()
        return path

    def open_output(self, name, mode="w"):
        """Write the result file ``OUTPUT/name`` whole (a context manager
        yielding the open file; text in UTF-8 unless ``mode`` has ``b``).

        The file appears only once the block ends, under its final name; a
        rerun of the job removes it before writing its own results (files
        written by other means are not tracked and stay).
        """
        from paracel.io import outputs

        outputs.record(self.output, self.worker_id, name)
        return outputs.atomic_file(self.output, name, mode)

    # -- synchronisation ---------------------------------------------------

    def sync(self):
        """Barrier of all workers, after each has flushed its updates: every
        read after it sees every update made before it (cached copies are
        dropped). The time spent here counts as waiting
        (``per_worker_sync_wait_seconds``)."""
        client = self._runtime.client
        client.flush()
        start = time.perf_counter()
        self._barrier(watch.SYNC)
        self._runtime.sync_seconds += time.perf_counter() - start
        if client.cache is not None:
            client.cache.clear()

    def allgather(self, values):
        """Every worker's ``values`` as a ``(num_workers, k)`` float64 array in
        worker order: a collective call of all workers, each with ``k``
        numbers (a 1-d array or a number). Waited for without spinning;
        workers in different collective calls, or with different ``k``, get
        a clear error instead of a hang."""
        from paracel.waiting import wait_request

        values = np.ascontiguousarray(values, dtype=np.float64).ravel()
        self._barrier(watch.GATHER, values.size)
        every = np.empty((self.num_workers, values.size), dtype=np.float64)
        wait_request(self.comm.Iallgather(values, every))
        return every

    def allgather_objects(self, value):
        """Every worker's picklable ``value`` (ids, names, small lists), as a
        list in worker order: a collective call of all workers, waited for
        without spinning and checked like :meth:`allgather`."""
        from paracel.waiting import allgather_objects

        self._barrier(watch.GATHER)
        return allgather_objects(self.comm, value)

    def sum_over_workers(self, values):
        """The sum of every worker's ``values`` (see :meth:`allgather`),
        added in worker order: the same bits on every worker and in every
        run, whatever order the workers arrive in."""
        every = self.allgather(values)
        total = every[0].copy()
        for row in every[1:]:
            total += row
        return total

    def iter_commit(self):
        """End this worker's clock: flush updates, advance the clock, and wait
        until the slowest worker is within the staleness bound (a checkpoint
        is taken at the clocks the job asks for)."""
        self._worker.commit()

    def _barrier(self, kind, size=0):
        self._worker.barrier(kind, size)

    def finish_clock(self):
        """Leave the clock table early: this worker will call ``iter_commit``
        no more, and never holds the others back again (e.g. it converged).
        ``solve()`` returning does this too."""
        self._runtime.client.flush()
        self._runtime.clock.finish()

    def report(self, **metrics):
        """Record metrics (e.g. ``loss=0.3``): logged with the next clock, and
        the last value of each lands in ``metrics.json``."""
        self.metrics_.update(metrics)
        self._runtime.pending.update(metrics)

    def trace(self, **values):
        """Record values in this worker's per-clock history only (``metrics.json``
        ``worker_history``), not as final metrics: per-worker progress for
        plots, e.g. each worker's own share of an objective."""
        self._runtime.pending.update(values)

    # -- the run -----------------------------------------------------------

    def run(self, runtime):
        """Run ``solve()`` on this worker, then finish its part of the job
        (see :class:`paracel.worker.Worker`). Called by the launcher;
        ``runtime`` carries the topology, the client, the clock table and
        the job."""
        from paracel.worker import Worker

        self._runtime = runtime
        self._worker = Worker(self, runtime)
        self._worker.run()
