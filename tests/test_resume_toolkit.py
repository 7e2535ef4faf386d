"""Every bundled algorithm, killed at a random clock and resumed, gives the
uninterrupted run's result.

For each algorithm of the toolkit (``paracel.algorithms.BUNDLED``; an
algorithm without a case here fails :func:`test_every_bundled_algorithm_has_a_case`)
the job runs on the shipped data of its ``conf/`` file with a checkpoint
every 2 clocks. That run is the reference. The same job runs again (a
checkpoint every 2 clocks, or every clock if it has fewer than 4) with one
worker SIGKILLed (``tests/kill_at.py``) right after a clock chosen at random
between the first checkpoint and the last clock, or after ``solve()``
returned, so it resumes from that clock or from the one before. Then
``--resume`` must finish it, and its metrics, worker 0's history (what it
reported at each clock) and every output file must equal the reference's: bitwise where the case's tolerance is 0,
numbers within ``rtol``/``atol`` otherwise (stated per case, with why).
The random choice is printed; ``PARACEL_TEST_SEED`` repeats one.
"""

import json
import os
import random
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest

from conftest import HERE, run_command
from paracel import config
from paracel.algorithms import BUNDLED
from paracel.run import resolve

pytestmark = pytest.mark.mpi

CONF = os.path.join(os.path.dirname(HERE), "conf")


@dataclass
class Case:
    """How one algorithm is run and compared.

    Attributes
    ----------
    conf : str
        The shipped job file under ``conf/`` whose data and settings are used.
    params : dict
        Parameter overrides (a shorter run).
    job : dict
        Job-key overrides.
    rtol, atol : float
        Tolerance for numbers in metrics and outputs; 0 means bitwise.
    """

    conf: str
    params: dict = field(default_factory=dict)
    job: dict = field(default_factory=dict)
    rtol: float = 0.0
    atol: float = 0.0


#: A case per bundled algorithm, named for it; ``NAME-variant`` is one more
#: configuration of algorithm ``NAME``.
CASES = {
    "wc": Case("wc.json"),
    "sim": Case("sim.json"),
    "pagerank": Case("pagerank.json", job={"staleness": 0}),
    # three k-means++ runs of 11-12 Lloyd iterations each (37 clocks), the last
    # one best: a kill lands in any run, its hand-shake, or after the end
    "kmeans": Case("kmeans.json", params={"k": 9, "n_init": 3, "tol": 0.0}),
    # lda: an odd number of clocks, so the final checkpoint is taken after
    # solve() returned and the "end" kill resumes from a state whose final
    # phase already ran (its pushes must not count twice).
    "lda": Case("lda.json", params={"iterations": 9}, job={"staleness": 0}),
    # lr's SGD on one worker: with two, even at staleness 0 a read may or may
    # not see a peer's step of the same clock, and the servers apply
    # concurrent row updates in arrival order, so two uninterrupted runs
    # differ (measured: log-loss by 1e-4 relative, accuracy by 0.0005, the
    # predictions with it), as much as a resume bug would; one worker is
    # bitwise repeatable
    "lr": Case("lr.json", params={"epochs": 2, "batch_size": 100},
               job={"staleness": 0, "processes": 3}),
    # lr's SGD with tol: the objective evaluated at each pass's end (5 clocks
    # a pass) belongs to the next clock; a loose tol stops it after 4 passes
    # (the step halves between passes 1 and 3 at lr_decay 1), so a kill also
    # lands after the stop
    "lr-tol": Case("lr.json", params={"epochs": 8, "batch_size": 400, "tol": 0.5,
                                      "n_iter_no_change": 2, "lr_decay": 1.0},
                   job={"staleness": 0, "processes": 3}),
    # lr's GD on two workers: bitwise (gradients summed in worker order)
    "lr-gd": Case("lr.json", params={"method": "gd", "epochs": 10}, job={"staleness": 0}),
    # lr's OWL-QN (the conf's l1) on two workers: bitwise (gradients summed in
    # worker order on the servers, scalars summed in worker order)
    "lr-lbfgs": Case("lr.json", params={"method": "lbfgs", "epochs": 12},
                     job={"staleness": 0}),
    # lr's FTRL on one worker (two apply their pushes in arrival order, as SGD)
    "lr-ftrl": Case("lr.json", params={"method": "ftrl", "epochs": 2, "batch_size": 100},
                    job={"staleness": 0, "processes": 3}),
    # lr's Downpour SGD on one worker (two add their pushes in arrival order):
    # the replica (local copy, update not pushed yet) is in the worker's state;
    # n_fetch 3 and n_push 2 put fetches and pushes at every kind of clock
    "lr-downpour": Case("lr.json", params={"method": "downpour", "penalty": "l2",
                                           "epochs": 2, "batch_size": 100, "n_fetch": 3,
                                           "n_push": 2},
                        job={"staleness": 0, "processes": 3}),
    # lr's iterative parameter mixing on two workers: bitwise (the servers mix
    # the workers' changes in worker order)
    "lr-ipm": Case("lr.json", params={"method": "ipm", "penalty": "l2", "epochs": 6}),
    # mf: an even number of clocks (6 epochs of 5), so the "end" kill resumes
    # from the checkpoint of the last evaluation clock, before its report.
    "mf": Case("mf.json", params={"epochs": 6}),
    # fm on one worker (two apply their pushes in arrival order, as lr's ftrl):
    # 3 passes of 40 batches, held-out scores at each pass's end
    "fm": Case("fm.json", params={"epochs": 3, "test": os.path.join(CONF, "..", "data", "fm",
                                                                    "test.svm")},
               job={"staleness": 0, "processes": 2}),
    "als": Case("als.json", params={"iterations": 4, "lambdas": [0.03, 0.3]}),
    # adjust_ktop: one clock (the pushes); a kill after it or at the end
    # resumes into the size search, which only reads the servers
    "adjust_ktop": Case("adjust_ktop.json"),
    # dtr: 2 + 2 trees x 2 levels = 6 clocks. The servers add each level's
    # statistics in the order the two workers' pushes arrive, so the means
    # of two uninterrupted runs can differ in the last bits (the questions
    # cannot, short of costs equal to 12 decimals)
    "dtr": Case("dtr.json", rtol=1e-12, atol=1e-12),
    # recommend: one clock (the item factors loaded onto the servers), then
    # scoring that only reads: bitwise
    "recommend": Case("recommend.json"),
    # svd: the servers add the workers' A^T A V pushes in arrival order, so
    # two uninterrupted runs differ in the last bits (the Gram sums and the
    # final QR are in worker order); a fixed number of iterations (tol 0) so
    # a kill cannot move the stopping point
    "svd": Case("svd.json", params={"iterations": 8, "tol": 0.0}, rtol=1e-9, atol=1e-12),
}


def test_every_bundled_algorithm_has_a_case():
    assert {name.partition("-")[0] for name in CASES} == set(BUNDLED)


def test_every_bundled_algorithm_is_resumable():
    from paracel.run import resolve

    assert [name for name in BUNDLED if not resolve(name).resumable()] == []


def write_job(tmp_path, name, case, every=2):
    """The case's job file in ``tmp_path``: the conf's data, its own output and
    checkpoint folders, the kill hook."""
    with open(os.path.join(CONF, case.conf), encoding="utf-8") as handle:
        job = json.load(handle)
    job["input"] = os.path.normpath(os.path.join(CONF, job["input"]))
    job.update(case.job)
    job["params"] = {**job.get("params", {}), **case.params}
    job["params"] = config.resolve_param_paths(job["params"], resolve(job["algorithm"]).parameters,
                                               CONF)
    job["output"] = str(tmp_path / f"{name}-out")
    job["checkpoint"] = {"dir": str(tmp_path / f"{name}-ckpt"), "every": every, "keep": 2}
    job["modules"] = [*job.get("modules", []), "kill_at"]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(job))
    return path


def paracel(path, *args, kill=None, timeout=180):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    env.pop("PARACEL_TEST_KILL_AT", None)
    if kill:
        env["PARACEL_TEST_KILL_AT"] = kill
    return run_command([sys.executable, "-m", "paracel.run", str(path), *args], timeout,
                       env=env)


def check_model_describes_itself(output, algorithm, report):
    """A model the job saved names the algorithm, its effective parameters
    and the project version (the common model check; see test_common_check)."""
    import paracel

    path = os.path.join(output, "model.h5")
    if os.path.exists(path):
        model = paracel.load_model(path)
        assert (model.algorithm, model.version) == (algorithm, paracel.__version__)
        assert model.params == report["config"]["params"]


def metrics_of(output):
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.parametrize("name", sorted(CASES))
def test_killed_and_resumed_equals_uninterrupted(tmp_path, name):
    case = CASES[name]
    reference = write_job(tmp_path, "reference", case)
    code, _, err, _ = paracel(reference)
    assert code == 0, err[-5000:]
    expected = metrics_of(tmp_path / "reference-out")
    check_model_describes_itself(tmp_path / "reference-out", name.partition("-")[0], expected)
    workers = expected["workers"]
    last = max(expected["timings"]["per_worker_clocks"])
    seed = int(os.environ.get("PARACEL_TEST_SEED", random.randrange(10 ** 6)))
    chooser = random.Random(seed)
    every = 2 if last >= 4 else 1
    points = [str(clock) for clock in range(every, last + 1)] + ["end"]
    kill = f"{chooser.randrange(workers)}:{chooser.choice(points)}"
    where = f"{name}: killed at worker:clock {kill} (PARACEL_TEST_SEED={seed}, {last} clocks)"

    job = write_job(tmp_path, "job", case, every)
    code, _, err, _ = paracel(job, kill=kill)
    assert code != 0, f"{where}: the kill did not happen\n{err[-3000:]}"
    code, _, err, _ = paracel(job, "--resume")
    assert code == 0, f"{where}\n{err[-5000:]}"
    assert "resumed from" in err, where
    got = metrics_of(tmp_path / "job-out")
    assert_same(got["metrics"], expected["metrics"], case, f"{where}: metrics")
    assert_same(progress(got), progress(expected), case, f"{where}: history")
    assert_same_outputs(tmp_path / "job-out", tmp_path / "reference-out", case, where)


def progress(metrics):
    """Worker 0's history without its timings: the clocks and what was
    reported at each (a resume must neither lose nor repeat an entry)."""
    timings = {"elapsed", "wait", "sync", "comm"}
    return [{key: value for key, value in entry.items() if key not in timings}
            for entry in metrics["history"]]


def assert_same_outputs(got, expected, case, where):
    """Every output file but the run's own bookkeeping (metrics.json and the
    hidden files), compared by content."""
    def results(folder):
        return sorted(name for name in os.listdir(folder)
                      if name != "metrics.json" and not name.startswith("."))

    names = results(expected)
    assert results(got) == names, where
    for name in names:
        a, b = os.path.join(got, name), os.path.join(expected, name)
        if name.endswith(".npy"):
            assert_same(np.load(a), np.load(b), case, f"{where}: {name}")
        elif name.endswith(".h5"):
            assert_same(h5_contents(a), h5_contents(b), case, f"{where}: {name}")
        else:
            assert_same(text_tokens(a), text_tokens(b), case, f"{where}: {name}")


def h5_contents(path):
    """Every dataset and attribute of an HDF5 file, as plain values (but
    the time the model was written)."""
    import h5py

    found = {}
    with h5py.File(path, "r") as handle:
        found.update({f"@{key}": _plain(value) for key, value in handle.attrs.items()
                      if key != "created"})

        def visit(name, node):
            found.update({f"{name}@{key}": _plain(value) for key, value in node.attrs.items()})
            if isinstance(node, h5py.Dataset):  # text (ids) as lists, compared equal
                found[name] = node[...] if node.dtype.kind in "iufcb" else node[...].tolist()
        handle.visititems(visit)
    return found


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


def text_tokens(path):
    """A text file as lines of tokens, numbers parsed (compared within tolerance)."""
    with open(path, encoding="utf-8") as handle:
        return [[_number(token) for token in line.replace(",", " ").split()]
                for line in handle]


def _number(token):
    try:
        return float(token)
    except ValueError:
        return token


def assert_same(got, expected, case, where):
    """Equal structure; numbers within the case's tolerance (bitwise at 0)."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(expected), where
        for key in expected:
            assert_same(got[key], expected[key], case, f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)) and not _numeric(expected):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), where
        for index, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, case, f"{where}[{index}]")
    elif _numeric(expected):
        got, expected = np.asarray(got), np.asarray(expected)
        assert got.shape == expected.shape, where
        if case.rtol == 0 and case.atol == 0:
            np.testing.assert_array_equal(got, expected, err_msg=where)
        else:
            np.testing.assert_allclose(got, expected, rtol=case.rtol, atol=case.atol,
                                       err_msg=where)
    else:
        assert got == expected, where


def _numeric(value):
    """A number, a numeric array, or a flat list of numbers (bools excluded)."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iufc"
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_scalar_number(item) for item in value)
    return _scalar_number(value)


def _scalar_number(value):
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))
