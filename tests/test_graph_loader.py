"""Tests of the edge-list / triples / ratings loader (paracel.io.graph).

Without MPI (one worker, ``comm=None``): parsing of every accepted layout,
weights, the id maps' order, error messages naming file and line, skip mode,
and the matrix against a reference built from the generating Python data.

Under mpiexec (K = 1..4 ranks, every partition mode): each rank runs
``graph_algos.py`` on a batch of cases and saves what it loaded; the tests
check that the workers' triples together are exactly the single-process load,
that each triple lies in its worker's owned block, that every worker has the
same id maps, and that the workers' matrices sum to the single-process one.
One mpiexec launch per K serves all the cases.
"""

import json
import os
import random
import sys

import networkx as nx
import numpy as np
import pytest
import scipy.sparse

from conftest import HERE, run_command
from paracel.errors import DataError
from paracel.io.graph import (block_range, grid_shape, load_graph, load_ratings,
                              load_triples)
from paracel import mpiexec

PARTITIONS = ["fmap", "smap", "fsmap"]


def _write(folder, name, text, newline="\n"):
    path = folder / name
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return str(path)


def _triples(loaded):
    """The loaded triples as a sorted list of ``(src id, dst id, weight)``."""
    return sorted(zip(loaded.src_ids[loaded.src].tolist(), loaded.dst_ids[loaded.dst].tolist(),
                      loaded.weight.tolist()))


def _id_order(ids):
    """The expected order of an id map, computed independently of the loader."""
    try:
        return sorted(ids, key=lambda name: (int(name), name))
    except ValueError:
        return sorted(ids)


# ---------------------------------------------------------------- parsing


def test_separators_comments_blank_lines_and_crlf(tmp_path):
    text = ("# a header comment\n"
            "a b 0.5\n"
            "\n"
            "   \t \n"
            "b\tc\t2  # trailing comment\n"
            "c,d,-1.25\n"
            " d , e , 3 \n"
            "#a z 9\n")
    path = _write(tmp_path, "edges.txt", text, newline="\r\n")
    loaded = load_triples([path], None, 0, 1)
    assert _triples(loaded) == [("a", "b", 0.5), ("b", "c", 2.0), ("c", "d", -1.25),
                                ("d", "e", 3.0)]
    assert loaded.weighted and loaded.skipped == 0


def test_comma_separated_ids_may_hold_spaces(tmp_path):
    path = _write(tmp_path, "r.csv", "Ada Lovelace,Analytical Engine,5\n")
    loaded = load_ratings(path, None, 0, 1)
    assert _triples(loaded) == [("Ada Lovelace", "Analytical Engine", 5.0)]


def test_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff1 2\n".encode("utf-8"))
    assert _triples(load_graph([str(path)], None, 0, 1)) == [("1", "2", 1.0)]


def test_unweighted_edges_weigh_one(tmp_path):
    path = _write(tmp_path, "e.txt", "1 2\n2 3\n1 2\n")
    loaded = load_graph([path], None, 0, 1)
    assert not loaded.weighted
    assert _triples(loaded) == [("1", "2", 1.0), ("1", "2", 1.0), ("2", "3", 1.0)]
    assert loaded.matrix()[0, 1] == 2.0


def test_files_are_read_in_order_as_one_input(tmp_path):
    first = _write(tmp_path, "a.txt", "1 2 1\n")
    empty = _write(tmp_path, "empty.txt", "")
    last = _write(tmp_path, "b.txt", "2 3 2")
    loaded = load_triples([first, empty, last], None, 0, 1)
    assert _triples(loaded) == [("1", "2", 1.0), ("2", "3", 2.0)]


@pytest.mark.parametrize("text", ["", "# only a comment\n\n", "\r\n"])
def test_empty_input(tmp_path, text):
    loaded = load_graph([_write(tmp_path, "e.txt", text)], None, 0, 1)
    assert loaded.shape == (0, 0) and len(loaded.src) == len(loaded.src_ids) == 0
    assert loaded.src.dtype == np.int64 and loaded.weight.dtype == np.float64
    assert loaded.matrix().shape == (0, 0)


# ---------------------------------------------------------------- id maps


def test_integer_ids_sort_numerically(tmp_path):
    path = _write(tmp_path, "e.txt", "10 9\n-1 01\n1 100\n")
    loaded = load_graph([path], None, 0, 1)
    assert loaded.src_ids.tolist() == ["-1", "01", "1", "9", "10", "100"]
    assert loaded.src_ids is loaded.dst_ids and loaded.shape == (6, 6)
    assert loaded.src_index("10") == 4 and loaded.dst_index("01") == 1


def test_any_non_integer_id_sorts_all_as_text(tmp_path):
    path = _write(tmp_path, "e.txt", "10 9\n9 x\n")
    assert load_graph([path], None, 0, 1).src_ids.tolist() == ["10", "9", "x"]


def test_ratings_keep_separate_maps(tmp_path):
    path = _write(tmp_path, "r.txt", "7 b 4\n12 a 1\n7 c 2.5\n")
    loaded = load_ratings([path], None, 0, 1)
    assert loaded.src_ids.tolist() == ["7", "12"]
    assert loaded.dst_ids.tolist() == ["a", "b", "c"]
    assert loaded.shape == (2, 3)
    assert loaded.src_index("12") == 1 and loaded.dst_index("c") == 2
    with pytest.raises(KeyError):
        loaded.dst_index("7")
    assert loaded.matrix().toarray().tolist() == [[0, 4, 2.5], [1, 0, 0]]


def test_triples_keep_separate_maps_unless_same_ids(tmp_path):
    path = _write(tmp_path, "t.txt", "1 2\n3 4\n")
    apart = load_triples([path], None, 0, 1)
    assert apart.src_ids.tolist() == ["1", "3"] and apart.dst_ids.tolist() == ["2", "4"]
    together = load_triples([path], None, 0, 1, same_ids=True)
    assert together.src_ids.tolist() == ["1", "2", "3", "4"]


def test_matrix_matches_a_plain_python_reference(tmp_path):
    rng = random.Random(7)
    users = [f"u{n}" for n in range(30)]
    items = [str(n * 7) for n in range(25)]
    rows = [(rng.choice(users), rng.choice(items), rng.randint(-8, 20) / 4) for _ in range(400)]
    lines = [f"{u},{i},{w}" if n % 3 else f"{u}\t{i} {w}" for n, (u, i, w) in enumerate(rows)]
    path = _write(tmp_path, "r.txt", "\n".join(lines) + "\n")
    loaded = load_ratings([path], None, 0, 1)
    user_ids = _id_order({r[0] for r in rows})
    item_ids = _id_order({r[1] for r in rows})
    assert loaded.src_ids.tolist() == user_ids and loaded.dst_ids.tolist() == item_ids
    dense = np.zeros((len(user_ids), len(item_ids)))
    for user, item, weight in rows:
        dense[user_ids.index(user), item_ids.index(item)] += weight
    matrix = loaded.matrix()
    assert isinstance(matrix, scipy.sparse.csr_matrix) and matrix.has_canonical_format
    np.testing.assert_array_equal(matrix.toarray(), dense)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("weighted,text,line,fragment", [
    (None, "1 2\n3\n", 2, "expected 2 or 3 fields (src dst [weight]), found 1"),
    (None, "1 2 3 4\n", 1, "expected 2 or 3 fields (src dst [weight]), found 4"),
    (None, "1 2 0.5\n# c\n2 3 heavy\n", 3, "weight 'heavy' is not a number"),
    (None, "1 2 nan\n", 1, "weight 'nan' is not a finite number"),
    (None, "1,,2\n", 1, "empty field"),
    (None, "1 2\n2 3\n\n3 4 1.0\n", 4, "3 fields, but the first data line"),
    (None, "1 2 1\n2 3\n", 2, "2 fields, but the first data line"),
    (True, "1 2 1\n2 3\n", 2, "expected 3 fields (src dst weight), found 2"),
    (False, "1 2\n2 3 1\n", 2, "expected 2 fields (src dst), found 3"),
])
def test_malformed_line_names_file_and_line(tmp_path, weighted, text, line, fragment):
    path = _write(tmp_path, "bad.txt", text, newline="\r\n")
    with pytest.raises(DataError) as error:
        load_triples([path], None, 0, 1, weighted=weighted)
    message = str(error.value)
    assert message.startswith(f"{path}:{line}: ") and fragment in message


def test_mixing_message_names_the_first_data_line(tmp_path):
    path = _write(tmp_path, "mixed.txt", "# c\n1 2\n2 3 4\n")
    with pytest.raises(DataError, match=rf"^{path}:3: 3 fields, but the first data line "
                                        rf"\({path}:2\) has 2"):
        load_graph([path], None, 0, 1)


def test_error_in_a_later_file_names_that_file(tmp_path):
    good = _write(tmp_path, "good.txt", "1 2\n2 3\n")
    bad = _write(tmp_path, "bad.txt", "3 4\n\n4 5 6 7\n")
    with pytest.raises(DataError, match=rf"^{bad}:3: expected 2 or 3 fields"):
        load_graph([good, bad], None, 0, 1)


def test_ratings_messages_speak_of_ratings(tmp_path):
    path = _write(tmp_path, "r.txt", "1 a five\n")
    with pytest.raises(DataError, match=rf"^{path}:1: rating 'five' is not a number"):
        load_ratings([path], None, 0, 1)
    path = _write(tmp_path, "r2.txt", "1 a\n")
    with pytest.raises(DataError, match=r"expected 3 fields \(user item rating\), found 2"):
        load_ratings([path], None, 0, 1)


def test_skip_mode_drops_and_counts_bad_lines(tmp_path):
    text = "1 2 1\n1\n2 3 x\n# fine\n3 4 2\n4 5 6 7\n5,,6\n6 7 inf\n7 8 3\n"
    path = _write(tmp_path, "bad.txt", text)
    loaded = load_graph([path], None, 0, 1, skip=True)
    assert loaded.skipped == 5
    assert _triples(loaded) == [("1", "2", 1.0), ("3", "4", 2.0), ("7", "8", 3.0)]
    assert "x" not in loaded.src_ids.tolist()


def test_skip_mode_drops_lines_of_the_other_field_count(tmp_path):
    path = _write(tmp_path, "mixed.txt", "1 2 5\n2 3\n3 4 6\n4 5\n")
    loaded = load_graph([path], None, 0, 1, skip=True)
    assert loaded.weighted and loaded.skipped == 2
    assert _triples(loaded) == [("1", "2", 5.0), ("3", "4", 6.0)]
    assert loaded.src_ids.tolist() == ["1", "2", "3", "4"]


@pytest.mark.parametrize("skip", [False, True])
def test_undecodable_bytes_stop_the_load_in_either_mode(tmp_path, skip):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"1 2\n# comment\nJos\xe9 3\n4 5\n")
    with pytest.raises(DataError, match=rf"^{path}:3: not valid UTF-8"):
        load_graph([str(path)], None, 0, 1, skip=skip)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_graph([str(tmp_path / "nope.txt")], None, 0, 1)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"partition": "rows"}, "partition must be one of"),
    ({"weighted": "yes"}, "weighted must be"),
    ({"parts": 2}, "need a communicator"),
])
def test_bad_arguments(tmp_path, kwargs, fragment):
    path = _write(tmp_path, "e.txt", "1 2\n")
    arguments = {"files": [path], "comm": None, "part": 0, "parts": 1, **kwargs}
    with pytest.raises(ValueError, match=fragment):
        load_triples(**arguments)


# ---------------------------------------------------------------- layouts


@pytest.mark.parametrize("parts,shape", [(1, (1, 1)), (2, (1, 2)), (3, (1, 3)), (4, (2, 2)),
                                         (6, (2, 3)), (7, (1, 7)), (12, (3, 4)), (16, (4, 4))])
def test_grid_shape(parts, shape):
    assert grid_shape(parts) == shape


@pytest.mark.parametrize("n", [0, 1, 5, 12, 13])
@pytest.mark.parametrize("blocks", [1, 2, 3, 4, 7])
def test_block_ranges_follow_the_owner_rule(n, blocks):
    for block in range(blocks):
        start, stop = block_range(block, blocks, n)
        assert set(range(start, stop)) == {k for k in range(n) if k * blocks // n == block}


@pytest.mark.parametrize("partition", PARTITIONS)
def test_one_worker_owns_everything(tmp_path, partition):
    path = _write(tmp_path, "e.txt", "1 2\n2 3\n3 1\n")
    loaded = load_graph([path], None, 0, 1, partition=partition)
    assert loaded.rows == (0, 3) and loaded.cols == (0, 3) and loaded.partition == partition
    assert len(loaded.src) == 3


# ---------------------------------------------------------------- under MPI


def _real_graphs(folder):
    """Les Misérables (names, weighted) and Zachary's karate club (ints and
    names, unweighted) as edge-list files."""
    les = nx.les_miserables_graph()
    les_text = "".join(f"{u} {v} {d['weight']}\n" for u, v, d in les.edges(data=True))
    karate = nx.karate_club_graph()
    ints = "# Zachary's karate club\n" + "".join(f"{u}\t{v}\n" for u, v in karate.edges())
    names = "".join(f"member{u},member{v}\n" for u, v in karate.edges())
    return (_write(folder, "lesmis.txt", les_text), _write(folder, "karate.txt", ints),
            _write(folder, "karate_names.csv", names, newline="\r\n"))


def _random_triples(folder):
    """Two files of string-id triples with duplicates, comments, blank lines,
    CRLF and commas, plus an empty file between them."""
    rng = random.Random(11)
    names = [f"n{rng.randint(0, 60)}" for _ in range(300)]
    lines = []
    for n in range(300):
        lines.append(f"{names[n]} {rng.choice(names)} {rng.randint(-4, 40) / 4}")
        if n % 37 == 0:
            lines.append("# a comment\n")
    first = _write(folder, "t1.txt", "\n".join(lines[:150]) + "\n", newline="\r\n")
    empty = _write(folder, "t0.txt", "")
    second = _write(folder, "t2.csv", "\n".join(line.replace(" ", ",") for line in lines[150:]))
    return [first, empty, second]


def _cases(folder):
    """Every loaded case: (name, loader, files, kwargs)."""
    lesmis, karate, karate_names = _real_graphs(folder)
    ratings = _write(folder, "ratings.csv", "".join(
        f"{u},item{(u * 7 + k) % 23},{(u + k) % 5 + 1}\n" for u in range(40) for k in range(3)))
    tiny = _write(folder, "tiny.txt", "b a 2\na c 1\n")
    empty = _write(folder, "empty.txt", "")
    mixed = _write(folder, "mixed.txt", "".join(
        f"{n} {n + 1}\n" if n < 120 else f"{n} {n + 1} 2\n" for n in range(200)))
    dirty = _write(folder, "dirty.txt", "".join(
        f"{n} {n % 17}\n" if n % 9 else f"{n} oops 2 3\n" for n in range(150)))
    bad_weight = _write(folder, "bad_weight.txt", "".join(
        f"{n} {n + 1} {'oops' if n in (149, 180) else n}\n" for n in range(200)))
    latin1 = folder / "latin1.txt"
    latin1.write_bytes(b"".join(b"%d %d\n" % (n, n + 1) if n != 169 else b"Jos\xe9 1\n"
                                for n in range(200)))
    cases = []
    for partition in PARTITIONS:
        cases += [
            (f"triples_{partition}", "load_triples", _random_triples(folder), {}),
            (f"lesmis_{partition}", "load_graph", [lesmis], {}),
            (f"karate_{partition}", "load_graph", [karate], {"weighted": False}),
            (f"karate_names_{partition}", "load_graph", [karate_names], {}),
            (f"ratings_{partition}", "load_ratings", [ratings], {}),
            (f"tiny_{partition}", "load_graph", [tiny, empty], {}),
        ]
    cases = [(name, loader, files, dict(kwargs, partition=name.rsplit("_", 1)[1]))
             for name, loader, files, kwargs in cases]
    cases += [
        ("empty_fsmap", "load_graph", [empty], {"partition": "fsmap"}),
        ("skip_mixed_fmap", "load_graph", [mixed], {"skip": True}),
        ("skip_dirty_fsmap", "load_graph", [dirty], {"partition": "fsmap", "skip": True}),
        ("error_mixed_fmap", "load_graph", [mixed], {}),
        ("error_weight_smap", "load_graph", [bad_weight], {"partition": "smap"}),
        ("error_utf8_fmap", "load_graph", [str(latin1)], {"skip": True}),
    ]
    return cases


@pytest.fixture(scope="module")
def mpi_runs(tmp_path_factory):
    """``run(K)``: the cases, run once per K on K ranks (cached), and the
    single-process references."""
    data = tmp_path_factory.mktemp("graph_data")
    cases = {name: (loader, files, kwargs) for name, loader, files, kwargs in _cases(data)}
    spec = data / "spec.json"
    spec.write_text(json.dumps([{"name": name, "loader": loader, "files": files,
                                 "kwargs": kwargs}
                                for name, (loader, files, kwargs) in cases.items()]))
    done = {}

    def run(processes):
        if processes not in done:
            out = tmp_path_factory.mktemp(f"graph_k{processes}")
            command, env = mpiexec.command(mpiexec.find(), processes)
            command += [sys.executable, os.path.join(HERE, "graph_algos.py"), str(spec), str(out)]
            code, _, err, _ = run_command(command, timeout=60, env=env)
            assert code == 0, f"exit {code}\n{err[-5000:]}"
            done[processes] = out
        return done[processes]

    return run, cases


def _reference(cases, name):
    loader, files, kwargs = cases[name]
    load = {"load_triples": load_triples, "load_graph": load_graph,
            "load_ratings": load_ratings}[loader]
    return load(files, None, 0, 1, **kwargs)


def _expected_block(partition, worker, workers, shape):
    """The row and column index sets ``worker`` must own, from the rule itself."""
    n_rows, n_cols = shape
    grid_rows = max(d for d in range(1, workers + 1) if workers % d == 0 and d * d <= workers)
    grid = {"fmap": (workers, 1), "smap": (1, workers),
            "fsmap": (grid_rows, workers // grid_rows)}[partition]
    i, j = divmod(worker, grid[1])
    return ({r for r in range(n_rows) if r * grid[0] // n_rows == i},
            {c for c in range(n_cols) if c * grid[1] // n_cols == j})


LOADED = [f"{kind}_{partition}" for partition in PARTITIONS
          for kind in ("triples", "lesmis", "karate", "karate_names", "ratings", "tiny")]
LOADED += ["empty_fsmap", "skip_mixed_fmap", "skip_dirty_fsmap"]
FAILING = {"error_mixed_fmap": ("mixed.txt", 121, "3 fields, but the first data line"),
           "error_weight_smap": ("bad_weight.txt", 150, "weight 'oops' is not a number"),
           "error_utf8_fmap": ("latin1.txt", 170, "not valid UTF-8")}


@pytest.mark.mpi
@pytest.mark.parametrize("name", LOADED)
@pytest.mark.parametrize("processes", [1, 2, 3, 4])
def test_workers_together_equal_one_process(mpi_runs, processes, name):
    run, cases = mpi_runs
    out = run(processes)
    reference = _reference(cases, name)
    partition = cases[name][2].get("partition", "fmap")
    shards = [np.load(out / f"{name}_{rank}.npz") for rank in range(processes)]
    union, total = [], scipy.sparse.csr_matrix(reference.shape)
    for rank, shard in enumerate(shards):
        assert shard["src_ids"].tolist() == reference.src_ids.tolist()
        assert shard["dst_ids"].tolist() == reference.dst_ids.tolist()
        assert bool(shard["same"]) == (reference.src_ids is reference.dst_ids)
        assert tuple(shard["shape"]) == reference.shape
        assert bool(shard["weighted"]) == reference.weighted
        rows, cols = _expected_block(partition, rank, processes, reference.shape)
        assert set(range(*shard["rows"])) == rows and set(range(*shard["cols"])) == cols
        assert all(r in rows for r in shard["src"].tolist())
        assert all(c in cols for c in shard["dst"].tolist())
        assert shard["src"].dtype == np.int64 and shard["weight"].dtype == np.float64
        union += zip(shard["src"].tolist(), shard["dst"].tolist(), shard["weight"].tolist())
        total = total + scipy.sparse.csr_matrix(
            (shard["data"], shard["indices"], shard["indptr"]), shape=reference.shape)
    # each worker counts the lines it skipped: together, every skipped line once
    assert sum(int(shard["skipped"]) for shard in shards) == reference.skipped
    expected = zip(reference.src.tolist(), reference.dst.tolist(), reference.weight.tolist())
    assert sorted(union) == sorted(expected)
    assert (total != reference.matrix()).nnz == 0


@pytest.mark.mpi
@pytest.mark.parametrize("name", sorted(FAILING))
@pytest.mark.parametrize("processes", [1, 2, 3, 4])
def test_every_worker_reports_the_first_bad_line(mpi_runs, processes, name):
    run, cases = mpi_runs
    out = run(processes)
    file_name, line, fragment = FAILING[name]
    path = next(path for path in cases[name][1] if path.endswith(file_name))
    with pytest.raises(DataError) as error:
        _reference(cases, name)
    messages = {(out / f"{name}_{rank}.error").read_text() for rank in range(processes)}
    assert messages == {str(error.value)}
    assert str(error.value).startswith(f"{path}:{line}: ") and fragment in str(error.value)


def test_real_graph_reference_is_the_networkx_graph(tmp_path):
    lesmis, karate, karate_names = _real_graphs(tmp_path)
    graph = nx.les_miserables_graph()
    loaded = load_graph([lesmis], None, 0, 1)
    assert loaded.src_ids.tolist() == sorted(graph.nodes)
    expected = nx.to_scipy_sparse_array(graph, nodelist=sorted(graph.nodes), weight="weight")
    symmetric = loaded.matrix() + loaded.matrix().T
    assert (symmetric != expected).nnz == 0
    clubs = load_graph([karate], None, 0, 1)
    assert clubs.src_ids.tolist() == [str(n) for n in range(34)]
    assert clubs.matrix().nnz == nx.karate_club_graph().number_of_edges()
    named = load_graph([karate_names], None, 0, 1)
    assert named.src_ids.tolist() == sorted(f"member{n}" for n in range(34))
