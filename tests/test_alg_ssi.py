"""The ``ssi`` algorithm against a plain NumPy version of its iteration and a
stationarity check.

Reference: the same iteration written densely here (``a, s = a (p / a W
s)^ω, s (p / s W^T a)^ω`` from ones), stopped by the same rule; and, for
the scores the job writes, the transition matrix ``P = D_r^-1 W D_s``
built here from ``W`` and checked for ``p P = p``.

Tolerances:

- ``P`` from the job's scores against ``P`` from the reference's: max abs
  difference <= 5e-3 (the brief's bound; measured about 1e-16, the two
  being the same iteration up to summation order); and, when the job
  converged, against ``P`` from the reference run to a residual of 1e-13:
  <= 5e-3 as well;
- the job's scores against the reference's: 1e-9 relative (same iterates);
- the stationarity residual ``||p P - p||_1`` recomputed here from the
  written scores: at most ``tol`` when the job says converged, and equal to
  the reported residual within 1e-12.

Real data: networkx's Les Misérables co-appearance graph (77 vertices, 254
weighted edges) with a self-loop of weight 1 on every vertex, undirected,
with the uniform target (1 and 4 workers) and a seeded non-uniform one (2
workers); strongly connected directed graphs (the largest strongly
connected component of seeded orientations of it, with self-loops),
converged, and stopped by ``max_iter`` unconverged.
"""

import glob
import json
import os
import sys

import h5py
import networkx as nx
import numpy as np
import pytest

from conftest import assert_ok, run_command
from paracel.algorithms.ssi import balance, target_problem

pytestmark = pytest.mark.mpi

ALGORITHM = "paracel.algorithms.ssi:SteadyStateInversion"
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "data", "pagerank", "graph.txt")


def dense_reference(W, p, tol, max_iter, step=0.5):
    """The iteration in plain dense NumPy: ``(scores summing to 1, iterations,
    residual)``."""
    a = np.ones(len(p))
    s = np.ones(len(p))
    for iteration in range(max_iter + 1):
        P = W * s / (W @ s)[:, None]
        residual = np.abs(p @ P - p).sum()
        if residual <= tol or iteration == max_iter:
            return s / s.sum(), iteration, residual
        a, s = (a * (p / (a * (W @ s))) ** step, s * (p / (s * (W.T @ a))) ** step)


def transition(W, s):
    """``P_ij = w_ij s_j / sum_k w_ik s_k``."""
    return W * s / (W @ s)[:, None]


def write_edges(graph, path):
    with open(path, "w", encoding="utf-8") as handle:
        for u, v, w in graph.edges(data="weight", default=1):
            handle.write(f"{u} {v} {w}\n")
    return str(path)


def read_scores(output, nodes):
    """The job's scores in ``nodes`` order, each vertex written exactly once."""
    scores = {}
    files = sorted(glob.glob(os.path.join(output, "ssi_*")))
    assert files
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                vertex, value = line.rstrip("\n").split("\t")
                assert vertex not in scores
                scores[vertex] = float(value)
    assert sorted(scores) == sorted(str(v) for v in nodes)
    return np.array([scores[str(v)] for v in nodes])


def les_miserables():
    """Les Misérables, undirected, its vertices sorted as the loader sorts
    them (as text), and ``W`` with a self-loop of weight 1 added."""
    graph = nx.les_miserables_graph()
    nodes = sorted(graph)
    W = nx.to_numpy_array(graph, nodelist=nodes, weight="weight") + np.eye(len(nodes))
    return graph, nodes, W


def assert_matches(result, nodes, W, p, tol, max_iter, converged=True, step=0.5):
    assert_ok(result)
    expected, iterations, residual = dense_reference(W, p, tol, max_iter, step)
    scores = read_scores(result.output, nodes)
    metrics = result.metrics["metrics"]
    assert metrics["iterations"] == iterations
    assert metrics["converged"] is converged
    assert np.abs(transition(W, scores) - transition(W, expected)).max() <= 5e-3
    np.testing.assert_allclose(scores, expected, rtol=1e-9)
    here = np.abs(p @ transition(W, scores) - p).sum()
    assert here == pytest.approx(metrics["residual"], abs=1e-12)
    assert here == pytest.approx(residual, abs=1e-12)
    if converged:
        assert here <= tol
        exact = dense_reference(W, p, 1e-13, 100000, step)[0]
        assert np.abs(transition(W, scores) - transition(W, exact)).max() <= 5e-3
    else:
        assert here > tol
    assert np.isclose(scores.sum(), 1.0)
    with h5py.File(os.path.join(result.output, "model.h5"), "r") as model:
        assert [name.decode() for name in model["ids"][...]] == [str(v) for v in nodes]
        np.testing.assert_array_equal(model["scores"][...], scores)
        np.testing.assert_allclose(model["target"][...], p, rtol=1e-12)
        assert bool(model.attrs["converged"]) is converged
        assert model.attrs["step"] == step
    return metrics


@pytest.mark.parametrize("processes,servers,partition", [(2, 1, "smap"), (5, 2, "fsmap")])
def test_les_miserables_uniform(run_job, tmp_path, processes, servers, partition):
    graph, nodes, W = les_miserables()
    tol = 1e-10
    result = run_job(ALGORITHM, processes=processes, servers=servers, staleness=0,
                     input=write_edges(graph, tmp_path / "edges.txt"),
                     params={"undirected": True, "self_loop": 1.0, "tol": tol,
                             "partition": partition})
    metrics = assert_matches(result, nodes, W, np.full(len(nodes), 1 / len(nodes)), tol, 1000)
    assert (metrics["nodes"], metrics["edges"]) == (77, 2 * 254 + 77)


def test_les_miserables_target_file(run_job, tmp_path):
    """A seeded non-uniform target (written unnormalised: it is scaled to
    1), with a step of 0.6."""
    graph, nodes, W = les_miserables()
    weights = np.random.default_rng(3).uniform(0.5, 3.0, len(nodes))
    target = tmp_path / "target.txt"
    target.write_text("# vertex probability\n" + "".join(
        f"{v},{float(w)!r}\n" for v, w in reversed(list(zip(nodes, weights)))))
    tol = 1e-10
    result = run_job(ALGORITHM, processes=3, servers=1, staleness=0,
                     input=write_edges(graph, tmp_path / "edges.txt"),
                     params={"undirected": True, "self_loop": 1.0, "tol": tol,
                             "target": str(target), "step": 0.6})
    assert_matches(result, nodes, W, weights / weights.sum(), tol, 1000, step=0.6)


@pytest.mark.parametrize("seed,tol,max_iter,converged", [(2, 1e-5, 1000, True),
                                                         (1, 1e-10, 40, False)])
def test_directed(run_job, tmp_path, seed, tol, max_iter, converged):
    """A directed strongly connected graph (the largest strongly connected
    component of a seeded orientation of Les Misérables, self-loops added;
    step 1 by default): converged to ``tol``, or stopped by ``max_iter``
    with the reference's iterate, ``converged: false`` and its true
    residual."""
    full = nx.les_miserables_graph()
    flips = np.random.default_rng(seed).random(full.number_of_edges()) < 0.5
    digraph = nx.DiGraph()
    digraph.add_weighted_edges_from((v, u, w) if flip else (u, v, w) for (u, v, w), flip
                                    in zip(full.edges(data="weight"), flips))
    graph = digraph.subgraph(max(nx.strongly_connected_components(digraph), key=len))
    nodes = sorted(graph)
    W = nx.to_numpy_array(graph, nodelist=nodes, weight="weight") + np.eye(len(nodes))
    result = run_job(ALGORITHM, processes=3, servers=1, staleness=0,
                     input=write_edges(graph, tmp_path / "edges.txt"),
                     params={"self_loop": 1.0, "tol": tol, "max_iter": max_iter})
    metrics = assert_matches(result, nodes, W, np.full(len(nodes), 1 / len(nodes)), tol,
                             max_iter, converged=converged, step=1.0)
    assert (metrics["iterations"] == max_iter) is not converged


@pytest.mark.parametrize("target,params,fragment", [
    ("Myriel 0.5\nNobody 0.5\n", {}, "target.txt:2: vertex 'Nobody' is not in the graph"),
    ("Myriel 0.5\n", {}, "vertex 'Anzelma' of the graph has no probability"),
    ("".join(f"{v} 1\n" for v in sorted(nx.les_miserables_graph())) + "\nMyriel 2\n", {},
     "vertex 'Myriel' is given 2 times (lines "),
    (None, {"undirected": False, "self_loop": 0.0}, "' has no out-edge of positive weight"),
])
def test_bad_input_names_the_file_line_or_vertex(run_job, tmp_path, target, params, fragment):
    graph = nx.les_miserables_graph()
    options = {"undirected": True, "self_loop": 1.0, **params}
    if target is not None:
        (tmp_path / "target.txt").write_text(target)
        options["target"] = str(tmp_path / "target.txt")
    result = run_job(ALGORITHM, processes=3, servers=1, staleness=0,
                     input=write_edges(graph, tmp_path / "edges.txt"), params=options)
    assert result.returncode != 0
    assert fragment in result.stderr


def test_staleness_other_than_zero_is_refused(tmp_path):
    """Refused by ``python -m paracel.run`` before it launches mpiexec."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": DATA, "staleness": 2,
                               "output": str(tmp_path / "out")}))
    code, _, stderr, _ = run_command([sys.executable, "-m", "paracel.run", str(job)],
                                     timeout=60)
    assert code == 2
    assert "staleness: ssi runs BSP supersteps and needs 0, not 2" in stderr


def test_bad_parameter_exits_2(tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": DATA, "staleness": 0,
                               "output": str(tmp_path / "out")}))
    code, _, stderr, _ = run_command([sys.executable, "-m", "paracel.run", str(job),
                                      "--set", "params.self_loop=-1"], timeout=60)
    assert code == 2
    assert "params.self_loop" in stderr


def test_serial_version_is_the_dense_reference():
    """:func:`balance` (scipy.sparse, used by the benchmark) is the dense
    iteration, without MPI."""
    _, _, W = les_miserables()
    p = np.random.default_rng(0).uniform(1, 2, len(W))
    p /= p.sum()
    scores, iterations, residual = balance(W, p, 1e-10, 1000)
    expected, expected_iterations, expected_residual = dense_reference(W, p, 1e-10, 1000)
    assert iterations == expected_iterations and residual <= 1e-10
    np.testing.assert_allclose(scores, expected, rtol=1e-9)


@pytest.mark.parametrize("fields,fragment", [
    (["a"], "expected 2 fields"), (["a", "1", "2"], "expected 2 fields"),
    (["z", "0.1"], "not in the graph"), (["a", "x"], "not a number"),
    (["a", "-1"], "positive"), (["a", "0"], "positive"), (["a", "inf"], "positive")])
def test_target_line_problems(fields, fragment):
    assert fragment in target_problem(fields, {"a": 0})
    assert target_problem(["a", "0.25"], {"a": 0}) is None


def test_serial_version_without_a_solution_says_so():
    """No scaling exists when ``W`` lacks support (both leaves of a star can
    only go back to its centre, so the uniform target is out of reach): the
    scalings stop being finite and the residual says so; with support but
    not total support the residual only creeps down, unconverged."""
    W = np.zeros((3, 3))
    W[0, 1] = W[0, 2] = W[1, 0] = W[2, 0] = 1
    with np.errstate(all="ignore"):
        _, iterations, residual = balance(W, np.full(3, 1 / 3), 1e-9, 10000)
    assert iterations < 10000 and not np.isfinite(residual)
    W = np.zeros((3, 3))
    W[0, 1] = W[1, 2] = W[2, 0] = W[0, 2] = 1
    _, iterations, residual = balance(W, np.full(3, 1 / 3), 1e-9, 2000, step=1.0)
    assert iterations == 2000 and 1e-9 < residual < 1e-3
