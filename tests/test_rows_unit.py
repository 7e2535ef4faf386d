"""Row tables without MPI: the 64-bit mix and placement, the vectorised id
map (against a dict), a server's shard and the worker's RowTable (against
the plain reference of tests/rows_reference.py, through an in-process
stand-in for the servers), table functions, admission, checkpoints and
re-sharding, and the one-line errors.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paracel import protocol
from paracel.errors import CheckpointError, RemoteError, UserError
from paracel.partition import id_servers, mix64
from paracel.rows import RowTable, group_by_server
from paracel.server import checkpoint, idmap, rowfns
from paracel.server.idmap import IdMap, distinct
from paracel.server.rowtable import COLUMNAR_WIDTH, RowShard, check_saved
from paracel.server.store import Store
from rows_algos import EDGES, clip_add
from rows_reference import ReferenceTable, sorted_items

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
MASK = 2**64 - 1

#: Ids from a small pool (so they repeat) and from anywhere in 64 bits.
IDS = st.lists(st.one_of(st.sampled_from([int(i) for i in EDGES] + list(range(12))),
                         st.integers(0, MASK)), max_size=40)


def python_mix64(value):
    """The splitmix64 finaliser in Python integers."""
    value ^= value >> 30
    value = value * 0xBF58476D1CE4E5B9 & MASK
    value ^= value >> 27
    value = value * 0x94D049BB133111EB & MASK
    return value ^ value >> 31


# -- placement -----------------------------------------------------------------

def test_mix64_is_splitmix64():
    gamma = 0x9E3779B97F4A7C15  # splitmix64 seeded with 0 outputs mix64(k * gamma)
    steps = np.array([gamma, 2 * gamma & MASK, 3 * gamma & MASK], dtype=np.uint64)
    assert mix64(steps).tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4,
                                     0x06C45D188009454F]


@given(st.lists(st.integers(0, MASK), max_size=50), st.integers(1, 300))
def test_mix64_and_id_servers_agree_with_python(ids, servers):
    array = np.array(ids, dtype=np.uint64)
    mixed = [python_mix64(i) for i in ids]
    assert mix64(array).tolist() == mixed
    assert id_servers(array, servers).tolist() == [(m >> 32) * servers >> 32 for m in mixed]


def test_placement_is_balanced_and_the_same_in_every_process():
    for ids in (np.arange(100_000, dtype=np.uint64),
                np.arange(100_000, dtype=np.uint64) << np.uint64(32)):
        counts = np.bincount(id_servers(ids, 4).astype(np.int64), minlength=4)
        assert np.abs(counts / counts.mean() - 1).max() < 0.05
    script = ("import json, numpy as np; from paracel.partition import id_servers; "
              "print(json.dumps(id_servers(np.array(%r, dtype=np.uint64), 5).tolist()))"
              % ([int(i) for i in EDGES],))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONHASHSEED="4242"))
    assert json.loads(out.stdout) == id_servers(EDGES, 5).tolist()


@pytest.mark.parametrize("servers", [1, 2, 6, 7, 300])
def test_grouping_by_server_keeps_every_id_once_in_order(servers):
    ids = np.concatenate([EDGES, np.random.default_rng(3).integers(0, MASK, 5_000, np.uint64)])
    groups = group_by_server(ids, servers)
    places = id_servers(ids, servers)
    assert sorted(np.concatenate([positions for _, positions in groups]).tolist()) == \
        list(range(ids.size))
    for server, positions in groups:
        assert positions.size and (places[positions] == server).all()
        assert (np.diff(positions) > 0).all()
    assert [server for server, _ in groups] == sorted(set(places.tolist()))


# -- the id map ------------------------------------------------------------------

@pytest.fixture
def small_tables(monkeypatch):
    """Tiny tables, so that inserts grow them and probes wrap around."""
    monkeypatch.setattr(idmap, "MIN_SLOTS", 4)


@SETTINGS
@given(st.lists(IDS, max_size=12), IDS)
def test_id_map_against_a_dict(small_tables, batches, queries):
    table, rows = IdMap(), {}
    for batch in batches:
        known = len(rows)
        got = table.insert(np.array(batch, dtype=np.uint64))
        for key, row in zip(batch, got.tolist()):
            assert rows.setdefault(key, row) == row
        assert len(table) == len(rows)
        new = sorted(row for row in rows.values() if row >= known)
        assert new == list(range(known, len(rows)))  # new ids take the next rows
    assert table.ids.tolist() == sorted(rows, key=rows.get)
    asked = np.array(queries + list(rows), dtype=np.uint64)
    assert table.find(asked).tolist() == [rows.get(key, -1) for key in asked.tolist()]
    assert sorted(distinct(asked).tolist()) == sorted(set(asked.tolist()))


def test_id_map_keeps_its_rows_through_growth():
    rng = np.random.default_rng(0)
    ids = np.unique(rng.integers(0, MASK, 50_000, dtype=np.uint64, endpoint=True))
    table = IdMap(ids[:10])
    rows = [np.arange(10)] + [table.insert(ids[start:start + 7_000])
                              for start in range(10, ids.size, 7_000)]
    np.testing.assert_array_equal(table.find(ids), np.concatenate(rows))
    np.testing.assert_array_equal(table.ids[np.concatenate(rows)], ids)
    assert len(table) <= idmap.MAX_LOAD * table._capacity


def test_repeated_ids_do_not_grow_an_id_map():
    table = IdMap()
    capacity = table._capacity
    rows = table.insert(np.tile(np.array([5, 2**64 - 1, 0], dtype=np.uint64), 100_000))
    assert table._capacity == capacity and len(table) == 3
    assert rows[:3].tolist() == sorted(rows[:3].tolist())


# -- a server's shard --------------------------------------------------------------

PUSH = st.tuples(IDS, st.sampled_from(["add", "replace", "clip_add"]), st.integers(0, 2**31))


def deltas_for(count, width, seed):
    return np.random.default_rng(seed).integers(-4, 5, (count, width)).astype(np.float64)


@SETTINGS
@given(st.integers(1, 3), st.integers(0, 3), st.lists(PUSH, max_size=10), IDS)
def test_shard_against_the_reference(width, admit, pushes, queries):
    shard, reference = RowShard("t", width, np.float64, admit), ReferenceTable(width, admit)
    for ids, fn, seed in pushes:
        ids = np.array(ids, dtype=np.uint64)
        deltas = deltas_for(ids.size, width, seed)
        source = seed % 3
        if seed % 2:  # pulled first: the push reuses the rows the pull found
            np.testing.assert_array_equal(shard.pull(ids.copy(), source), reference.pull(ids))
        shard.push(ids, deltas, fn, (5.0,), source)
        reference.push(ids, deltas, fn, clip_add, (5.0,))
    asked = np.array(queries + [0, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(shard.pull(asked), reference.pull(asked))
    ids, values = sorted_items(*shard.items())
    want_ids, want_values = reference.items()
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(values, want_values)
    counts = dict(zip(shard.map.ids.tolist(), shard.counts.tolist()))
    assert counts == {key: reference.counts[key] for key in reference.rows}
    assert shard.stats()["waiting"] == reference.waiting()


def test_a_push_of_the_ids_just_pulled_finds_only_the_new_ones(monkeypatch):
    shard = RowShard("t", 1, np.float64, 2)
    ids = np.array([1, 2, 3, 3], dtype=np.uint64)
    shard.push(ids[:2], np.ones((2, 1)), "add", (), source=0)
    shard.push(ids[:2], np.ones((2, 1)), "add", (), source=0)  # 1 and 2 admitted
    shard.pull(ids, source=5)
    shard.push(np.array([3], dtype=np.uint64), np.ones((1, 1)), "add", (), source=0)
    looked_up = []
    find = shard.map.find
    monkeypatch.setattr(shard.map, "find", lambda asked: looked_up.append(asked) or find(asked))
    shard.push(ids, np.full((4, 1), 10.0), "add", (), source=5)
    assert [asked.tolist() for asked in looked_up] == [[3, 3]]  # 3 was no row when pulled
    np.testing.assert_array_equal(shard.pull(ids)[:, 0], [11, 11, 20, 20])
    shard.push(ids, np.ones((4, 1)), "add", (), source=5)  # no pull since: all looked up
    assert [asked.tolist() for asked in looked_up][-1] == [1, 2, 3, 3]


def test_repeated_ids_accumulate_like_add_at():
    shard = RowShard("t", 2, np.float64, 0)
    ids = np.array([3, 3, 9, 3, 9], dtype=np.uint64)
    deltas = np.random.default_rng(1).random((5, 2))
    shard.push(ids, deltas, "add", ())
    expected = np.zeros((10, 2))
    np.add.at(expected, ids.astype(np.int64), deltas)
    np.testing.assert_array_equal(shard.pull(np.array([3, 9], dtype=np.uint64)),
                                  expected[[3, 9]])


def test_admission_counts_pushes_and_drops_the_ones_before():
    shard = RowShard("t", 1, np.float64, 3)
    one = np.array([7], dtype=np.uint64)
    for expected in (0.0, 0.0, 1.0, 2.0):
        shard.push(one, np.ones((1, 1)), "add", ())
        assert shard.pull(one)[0, 0] == expected
    shard.push(np.array([8, 8, 8], dtype=np.uint64), np.ones((3, 1)), "add", ())
    assert shard.pull(np.array([8], dtype=np.uint64))[0, 0] == 3.0  # the third arrives with it
    assert (len(shard), shard.stats()["waiting"]) == (2, 0)


def test_a_row_function_runs_only_on_rows_that_exist():
    @rowfns.row_function("test_needs_rows")
    def needs_rows(rows, deltas, params):
        rows[:, 0] = deltas.max()  # fails on no rows

    shard = RowShard("t", 1, np.float64, 2)
    ids = np.array([4, 5], dtype=np.uint64)
    shard.push(ids, np.array([1.0, 2.0]), "test_needs_rows", ())  # waiting: nothing to run
    shard.push(ids, np.array([1.0, 2.0]), "test_needs_rows", ())
    np.testing.assert_array_equal(shard.pull(ids)[:, 0], [2.0, 2.0])


def test_admitted_ids_leave_the_waiting_map():
    shard = RowShard("t", 1, np.float64, 2)
    ids = np.arange(10_000, dtype=np.uint64)
    shard.push(ids, np.ones((ids.size, 1)), "add", ())
    assert (len(shard), len(shard.waiting)) == (0, 10_000)
    shard.push(ids, np.ones((ids.size, 1)), "add", ())
    assert (len(shard), len(shard.waiting), len(shard.waiting.map)) == (10_000, 0, 0)


def test_memory_follows_the_rows_that_exist():
    empty = RowShard("t", 1, np.float64, 0).nbytes()
    assert empty < 64 * 1024
    shard = RowShard("t", 1, np.float64, 0)
    shard.push(np.arange(200_000, dtype=np.uint64) * np.uint64(2**40), np.ones((200_000, 1)),
               "add", ())
    assert (shard.nbytes() - empty) / 200_000 < 100  # bytes per row, slots included


def test_table_functions_against_numpy():
    shard = RowShard("t", 3, np.float64, 0)
    ids = np.array([1, 2**63, 2**64 - 1, 2**33], dtype=np.uint64)
    values = np.random.default_rng(2).random((4, 3))
    shard.push(ids, values, "replace", ())
    assert shard.map_values("dot", (0, 2)) == pytest.approx(values[:, 0] @ values[:, 2])
    assert shard.map_values("sum_sq", (1,)) == pytest.approx(values[:, 1] @ values[:, 1])
    for fn, params, change in [
            ("axpy", (2.0, 0, 1), lambda v: v[:, 1].__iadd__(2.0 * v[:, 0])),
            ("scale", (2, -3.0), lambda v: v[:, 2].__imul__(-3.0)),
            ("copy", (0, 2), lambda v: v[:, 2].__setitem__(slice(None), v[:, 0])),
            ("fill", (1, 7.0), lambda v: v[:, 1].__setitem__(slice(None), 7.0))]:
        assert shard.map_values(fn, params) is None
        change(values)
        np.testing.assert_allclose(shard.pull(ids), values)


@pytest.mark.parametrize("fn,params,message", [
    ("dot", (0, 3), "column 3 is not one of 0..2"),
    ("dot", (0,), r"dot takes params \(a, b\), got 1 value\(s\)"),
    ("fill", (1.0, 2.0), "column 1.0 is not one of 0..2"),
    ("nothing", (), "unknown table function 'nothing'; known: axpy, copy, ")])
def test_bad_table_function_calls_are_user_errors(fn, params, message):
    with pytest.raises(UserError, match=message):
        RowShard("t", 3, np.float64, 0).map_values(fn, params)


def test_row_function_returning_rows_and_the_wrong_rows():
    @rowfns.row_function("test_doubled")
    def doubled(rows, deltas, params):
        return 2 * rows + deltas

    @rowfns.row_function("test_too_wide")
    def too_wide(rows, deltas, params):
        return np.zeros((rows.shape[0], 5))

    shard = RowShard("t", 2, np.float64, 0)
    ids = np.array([4, 4, 5], dtype=np.uint64)
    shard.push(ids, np.ones((3, 2)), "test_doubled", ())
    np.testing.assert_array_equal(shard.pull(ids[1:]), [[2.0, 2.0], [1.0, 1.0]])
    with pytest.raises(UserError, match=r"row function 'too_wide' returned float64 rows of "
                                        r"shape \(2, 5\); the rows are float64 of shape"):
        shard.push(ids, np.ones((3, 2)), "test_too_wide", ())
    np.testing.assert_array_equal(shard.pull(ids[1:]), [[2.0, 2.0], [1.0, 1.0]])


def test_registering_row_and_table_functions():
    assert rowfns.names("row")[-2:] == ["add", "replace"]
    with pytest.raises(UserError, match="row function 'add' is built in"):
        rowfns.row_function("add")(lambda rows, deltas, params: None)
    with pytest.raises(UserError, match="table function 'dot' is already registered"):
        rowfns.table_function("dot")(lambda values, params: None)
    with pytest.raises(UserError, match="is not registered; decorate it with "
                                        "@paracel.row_function"):
        rowfns.name_of("row", lambda rows, deltas, params: None)
    assert rowfns.name_of("row", clip_add) == "clip_add"
    assert rowfns.name_of("table", "dot") == "dot"


def test_store_reports_failures_and_keeps_the_rows():
    store = Store()
    assert store.create_rows("t", 2, "<f8", 1) is None
    assert store.create_rows("t", 2, "<f8", 1) is None
    assert store.create_rows("t", 2, "<f4", 1) == (
        "row table 't' exists with width 2, dtype float64, admit 1; asked for width 2, "
        "dtype float32, admit 1")
    ids = np.array([1, 2], dtype=np.uint64)
    assert store.push_rows("t", "add", ids, np.ones((2, 2)), ()) == []
    [(user, report)] = store.push_rows("t", "broken_rows", ids, np.ones((2, 2)), ())
    assert not user and "broken_rows was asked to fail" in report and "Traceback" in report
    np.testing.assert_array_equal(store.row_shard("t").pull(ids), np.ones((2, 2)))
    result, [(user, report)] = store.map_rows("t", "dot", (0, 5))
    assert result is None and user
    assert store.map_rows("t", "dot", (0, 1)) == (2.0, [])
    with pytest.raises(UserError, match="no row table 'u' on this server"):
        store.row_shard("u")


# -- checkpoints --------------------------------------------------------------------

def filled_store(admit=2, count=3_000):
    store = Store()
    store.table["plain"] = np.arange(3.0)
    store.create_rows("w", 2, "<f8", admit)
    store.create_rows("empty", 1, "<i8", 1)
    rng = np.random.default_rng(5)
    for _ in range(3):
        ids = rng.integers(0, count, count).astype(np.uint64) * np.uint64(2**35)
        store.push_rows("w", "add", ids, rng.integers(-5, 5, (count, 2)).astype(float), ())
    return store


def saved_in(tmp_path, stores):
    for server, store in enumerate(stores):
        checkpoint.write_shard(str(tmp_path), server, store.pairs())
    return {"num_servers": len(stores)}


class _Ring:
    """Stands in for paracel.partition.Ring: the plain key lives on server 0."""

    def __init__(self, num_servers):
        self.num_servers = num_servers

    def group(self, keys):
        return {0: list(range(len(keys)))} if keys else {}


def test_checkpoint_keeps_row_tables_exactly(tmp_path):
    store = filled_store()
    table, rows = checkpoint.load_shard(str(tmp_path), saved_in(tmp_path, [store]), 0,
                                        _Ring(1))
    np.testing.assert_array_equal(table["plain"], np.arange(3.0))
    assert set(rows) == {"w", "empty"}
    for name, shard in store.rows.items():
        back = rows[name]
        assert back.spec == shard.spec
        np.testing.assert_array_equal(back.map.ids, shard.map.ids)
        np.testing.assert_array_equal(back.values, shard.values)
        np.testing.assert_array_equal(back.counts, shard.counts)
    assert len(rows["w"].waiting) == len(store.rows["w"].waiting) > 0
    # an id that waited resumes its count: one more push admits it
    waiting, _ = store.rows["w"].waiting.live(2)
    rows["w"].push(waiting[:1], np.ones((1, 2)), "add", ())
    np.testing.assert_array_equal(rows["w"].pull(waiting[:1]), [[1.0, 1.0]])


@pytest.mark.parametrize("before,after", [(1, 3), (2, 3), (3, 1), (2, 2)])
def test_row_tables_are_resharded_by_id(tmp_path, before, after):
    whole = filled_store()
    ids, values = whole.rows["w"].items()
    places = id_servers(ids, before)
    stores = []
    for server in range(before):
        store = Store()
        store.create_rows("w", 2, "<f8", 2)
        mine = places == server
        store.push_rows("w", "add", np.repeat(ids[mine], 2), np.repeat(values[mine], 2, 0) / 2,
                        ())
        stores.append(store)
    manifest = saved_in(tmp_path, stores)
    parts = [checkpoint.load_shard(str(tmp_path), manifest, server, _Ring(after))[1]["w"]
             for server in range(after)]
    for server, shard in enumerate(parts):
        assert (id_servers(shard.map.ids, after) == server).all()
    got_ids = np.concatenate([shard.map.ids for shard in parts])
    got_values = np.concatenate([shard.values for shard in parts])
    got, want = sorted_items(got_ids, got_values), sorted_items(ids, values)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_a_damaged_saved_table_is_refused():
    shard = filled_store().rows["w"]
    admit, ids, values, counts, waiting_ids, waiting_counts = shard.saved()
    for bad in [(admit, ids[1:], values, counts, waiting_ids, waiting_counts),
                (admit, ids.astype(np.int64), values, counts, waiting_ids, waiting_counts),
                (admit, ids, values, counts),
                ("2", ids, values, counts, waiting_ids, waiting_counts)]:
        with pytest.raises(CheckpointError, match="row table 'w': its saved arrays do not "
                                                  "fit together"):
            check_saved("w", bad)


# -- the worker's side, over in-process servers ----------------------------------------

class LocalServers:
    """Stands in for paracel.client.Client: each row-table request goes
    through the wire encoding to a Store in this process, as a server would
    apply it."""

    def __init__(self, servers):
        self.server_ranks = list(range(servers))
        self.stores = [Store() for _ in range(servers)]
        self.errors = []

    def ask(self, requests):
        return {server: self._serve(server, op, keys, arg, values)
                for server, op, keys, arg, values in requests}

    def post(self, op, requests):
        for server, keys, arg, values in requests:
            self._serve(server, op, keys, arg, values)
        if self.errors:
            raise RemoteError(self.errors.pop()[1])

    def _serve(self, server, op, keys, arg, values):
        payload, buffers = protocol.pack(values)
        values = [protocol.decode(spec, buffers) for spec in payload[0]]
        store, name = self.stores[server], keys[0]
        if op == "rows_create":
            return store.create_rows(name, *arg), []
        if op == "rows_push":
            self.errors += store.push_rows(name, arg, *values[:3], None, *values[3:])
            return None
        if op == "rows_map":
            result, errors = store.map_rows(name, arg, *values)
            self.errors += errors
            return None, [result]
        shard = store.row_shard(name)
        if op == "rows_pull":
            return None, [shard.pull(*values, None, arg)]
        if op == "rows_size":
            return len(shard), []
        return None, list(shard.items(arg))


@SETTINGS
@given(st.integers(1, 3), st.sampled_from([1, 2, 3, COLUMNAR_WIDTH]), st.integers(0, 2),
       st.lists(PUSH, max_size=8), IDS)
def test_row_table_against_the_reference(servers, width, admit, pushes, queries):
    local = LocalServers(servers)
    table, reference = RowTable(local, "t", width, np.float64, admit), \
        ReferenceTable(width, admit)
    table.create()
    for ids, fn, seed in pushes:
        deltas = deltas_for(len(ids), width, seed)
        signed = np.array(ids, dtype=np.uint64).view(np.int64)  # the same bits, as int64
        table.push(signed if seed % 2 else np.array(ids, dtype=np.uint64), deltas, fn, (5.0,))
        reference.push(np.array(ids, dtype=np.uint64), deltas, fn, clip_add, (5.0,))
    asked = np.array(queries + [0, 2**64 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(table.pull(asked), reference.pull(asked))
    last = [width - 1, 0]  # any order, repeats allowed
    np.testing.assert_array_equal(table.pull(asked, columns=last), reference.pull(asked)[:, last])
    if width > 1 and queries:  # a push into one column leaves the others
        before = table.pull(asked)
        table.push(asked, np.ones((asked.size, 1)), "add", columns=[1])
        after = table.pull(asked)
        np.testing.assert_array_equal(np.delete(after, 1, axis=1), np.delete(before, 1, axis=1))
        reference.push(asked, np.eye(width)[[1] * asked.size], "add", clip_add, ())
    ids, values = sorted_items(*table.items())
    np.testing.assert_array_equal(ids, reference.items()[0])
    np.testing.assert_array_equal(values, reference.items()[1])
    assert table.size() == len(reference.rows)
    assert table.map("sum_sq", (0,)) == pytest.approx(float(values[:, 0] @ values[:, 0]))
    each = table.map("sum_sq", (0,), each=True)
    assert len(each) == servers and sum(each) == pytest.approx(float(values[:, 0] @ values[:, 0]))
    for server, store in enumerate(local.stores):
        assert (id_servers(store.row_shard("t").map.ids, servers) == server).all()


def test_map_results_that_do_not_add_up_are_one_line():
    @rowfns.table_function("test_first_column")
    def first_column(values, params):
        return values[:, 0]

    table = RowTable(LocalServers(2), "t", 2, np.float64, 0)
    table.create()
    ids = np.arange(51, dtype=np.uint64)  # an odd count: the servers' shares differ
    table.push(ids, np.ones((51, 2)))
    with pytest.raises(UserError, match=r"^row table 't': table function 'test_first_column' "
                                        r"returned results that do not add up over the "
                                        r"servers: ndarray \(\d+,\), ndarray \(\d+,\)$"):
        table.map(first_column)
    assert table.map("count_positive", (1,)) == 51


@pytest.mark.parametrize("width", [2, 9])   # stored by rows, by columns
def test_layouts_agree(width):
    table = RowTable(LocalServers(2), "t", width, np.float64, 0)
    table.create()
    ids = np.array([5, 2**63, 7, 5], dtype=np.uint64)
    deltas = np.arange(4 * width, dtype=np.float64).reshape(4, width)
    table.push(ids, deltas)
    table.push(ids[:2], deltas[:2, :1] * 10, "replace", columns=[width - 1])
    expected = np.zeros((3, width))
    expected[0] = deltas[0] + deltas[3]
    expected[1], expected[2] = deltas[1], deltas[2]
    expected[0, -1], expected[1, -1] = 0.0, 10.0 * width
    np.testing.assert_array_equal(table.pull(ids[:3]), expected)


def test_pull_columns_outside_the_table_is_one_line():
    table = RowTable(LocalServers(1), "t", 2, np.float64, 0)
    table.create()
    with pytest.raises(UserError, match=r"^row table 't': columns \(2,\) are not a non-empty "
                                        r"selection of 0..1$"):
        table.pull([1], columns=[2])


def test_a_push_of_one_number_per_id_fits_a_table_of_width_one():
    table = RowTable(LocalServers(2), "v", 1, np.float32, 0)
    table.create()
    table.push(np.arange(100), np.arange(100, dtype=np.int32))
    pulled = table.pull(np.arange(-1, 101))
    assert pulled.dtype == np.float32 and pulled.shape == (102, 1)
    np.testing.assert_array_equal(pulled[1:-1, 0], np.arange(100))
    assert pulled[0, 0] == pulled[-1, 0] == 0
    assert table.pull([]).shape == (0, 1)


@pytest.mark.parametrize("call,message", [
    (lambda t: t.pull([1.0, 2.0]), r"ids must be integers \(int64 or uint64\), got dtype "
                                   "float64"),
    (lambda t: t.pull([[1, 2]]), r"ids must be 1-d, got shape \(1, 2\)"),
    (lambda t: t.pull(["a"]), r"ids must be integers \(int64 or uint64\), got dtype <U1"),
    (lambda t: t.push([1, 2], np.ones((2, 3))), r"deltas of shape \(2, 3\) do not fit 2 ids "
                                                "of width 2"),
    (lambda t: t.push([1, 2], np.ones(2)), r"deltas of shape \(2,\) do not fit 2 ids"),
    (lambda t: t.push([1], np.ones((1, 2)) * 1j), "complex128 deltas do not fit a table of "
                                                  "float64"),
    (lambda t: t.push([1], np.ones((1, 2)), fn="nope"), "row table 't': unknown row "
                                                        "function 'nope'"),
    (lambda t: t.push([1], np.ones((2, 2)), fn="clip_add"), r"row function 'clip_add' "
                                                            r"needs numeric deltas of shape"),
    (lambda t: t.map("nope"), "row table 't': unknown table function 'nope'"),
    (lambda t: t.map("dot", 0), "row table 't': params must be a tuple, got int"),
    (lambda t: t.push([1], np.ones((1, 2)), params=2.0), "params must be a tuple, got float")])
def test_bad_calls_are_one_line_user_errors(call, message):
    table = RowTable(LocalServers(1), "t", 2, np.float64, 0)
    table.create()
    with pytest.raises(UserError, match=message) as caught:
        call(table)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("options,message", [
    ({"width": 0}, "row table 't': width must be an int >= 1, got 0"),
    ({"width": 2.0}, "row table 't': width must be an int >= 1, got 2.0"),
    ({"admit": -1}, "row table 't': admit must be an int >= 0, got -1"),
    ({"dtype": "U3"}, "row table 't': dtype must be a number type, got 'U3'"),
    ({"dtype": "nonsense"}, "row table 't': dtype must be a number type, got 'nonsense'")])
def test_bad_table_options_are_user_errors(options, message):
    with pytest.raises(UserError, match=message):
        RowTable(LocalServers(1), "t", **options)
