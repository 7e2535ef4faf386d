"""Columns of CSV/TSV tables (paracel.io.table) and the loaders that use
them, without MPI: a table with a header and columns chosen by name or
position loads exactly as the same data in the plain format does.
"""

import numpy as np
import pytest

from paracel import config
from paracel.errors import ConfigError, DataError
from paracel.io import dense, graph
from paracel.io.table import Layout

MOVIELENS = "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n" \
            "2,10,4.0,835355493\n7,31,3.0,851866703\n"
PLAIN = "1 31 2.5\n1 1029 3.0\n2 10 4.0\n7 31 3.0\n"


def _write(folder, name, text):
    path = folder / name
    path.write_text(text)
    return str(path)


def _same_triples(a, b):
    assert a.src_ids.tolist() == b.src_ids.tolist() and a.dst_ids.tolist() == b.dst_ids.tolist()
    assert (a.matrix() != b.matrix()).nnz == 0


@pytest.mark.parametrize("columns", [
    {"user": "userId", "item": "movieId", "rating": "rating"},
    {"user": 0, "item": 1, "rating": 2},
    {"rating": "rating", "item": "movieId", "user": "userId"},   # order does not matter
])
def test_movielens_csv_with_a_header_loads_as_plain_ratings(tmp_path, columns):
    table = graph.load_ratings([_write(tmp_path, "ratings.csv", MOVIELENS)], None, 0, 1,
                               layout=Layout(True, columns))
    _same_triples(table, graph.load_ratings([_write(tmp_path, "r.txt", PLAIN)], None, 0, 1))


def test_a_header_alone_skips_the_first_line_of_every_file(tmp_path):
    files = [_write(tmp_path, f"part{i}.csv", "user,item,rating\n" + PLAIN.replace(" ", ","))
             for i in range(2)]
    table = graph.load_ratings(files, None, 0, 1, layout=Layout(header=True))
    _same_triples(table, graph.load_ratings([_write(tmp_path, "r.txt", PLAIN * 2)], None, 0, 1))


def test_graph_columns_choose_source_destination_and_weight(tmp_path):
    text = "from\tto\tkind\tw\na\tb\tx\t2\nb\tc\ty\t3\n"
    path = _write(tmp_path, "edges.tsv", text)
    weighted = graph.load_graph([path], None, 0, 1,
                                layout=Layout(True, {"src": "from", "dst": "to", "weight": "w"}))
    _same_triples(weighted, graph.load_graph([_write(tmp_path, "e.txt", "a b 2\nb c 3\n")],
                                             None, 0, 1))
    unweighted = graph.load_graph([path], None, 0, 1, layout=Layout(True, {"src": 0, "dst": 1}))
    assert not unweighted.weighted and unweighted.weight.tolist() == [1.0, 1.0]


def test_dense_table_without_an_id_column_and_chosen_features(tmp_path):
    text = "sepal,petal,species\n5.1,1.4,a\n4.9,1.5,b\n"
    path = _write(tmp_path, "iris.csv", text)
    ids, X, _ = dense.load([path], None, 0, 1,
                           layout=Layout(True, {"id": None, "features": ["sepal", "petal"]}))
    assert X.tolist() == [[5.1, 1.4], [4.9, 1.5]] and len(set(ids)) == 2
    ids, X, _ = dense.load([path], None, 0, 1, layout=Layout(True, {"id": "species"}))
    assert ids == ["a", "b"] and X.tolist() == [[5.1, 1.4], [4.9, 1.5]]


def test_a_first_column_that_cannot_be_an_id_is_refused(tmp_path):
    path = _write(tmp_path, "points.csv", "5.1,3.5,1.4\n4.9,3.0,1.4\n")
    with pytest.raises(DataError, match=r"points\.csv:1: the first field '5\.1' is read as "
                                        r"the vector's id.*\"columns\": \{\"id\": null\}"):
        dense.load([path], None, 0, 1)


def test_a_repeated_id_is_refused_naming_both_lines(tmp_path):
    path = _write(tmp_path, "points.csv", "1,3,1\n2,3,0\n1,4,4\n")
    with pytest.raises(DataError, match=r"points\.csv:3: id '1' again \(first at .*"
                                        r"points\.csv:1\)"):
        dense.load([path], None, 0, 1)


def test_a_line_without_a_chosen_column_is_bad_and_can_be_skipped(tmp_path):
    path = _write(tmp_path, "r.csv", "u,i,r\n1,2,3\n4,5\n6,7,8\n")
    layout = Layout(True, {"user": "u", "item": "i", "rating": "r"})
    with pytest.raises(DataError, match=r"r\.csv:3: 2 fields, but column 2 \(0-based\) is read"):
        graph.load_ratings([path], None, 0, 1, layout=layout)
    table = graph.load_ratings([path], None, 0, 1, layout=layout, skip=True)
    assert table.skipped == 1 and table.matrix().nnz == 2


@pytest.mark.parametrize("layout,message", [
    (Layout(False, {"user": "userId"}), r"columns\.user: 'userId' is a column name, so the "
                                        r"input needs a header line"),
    (Layout(True, {"user": "user"}), r"columns\.user: no column 'user' in the header "
                                     r"\(userId, movieId, rating, timestamp\)"),
    (Layout(True, {"id": 0}), r"columns: id is not a column this loader reads"),
    (Layout(True, {"rating": None}), r"columns\.rating: this loader needs a rating column"),
])
def test_columns_a_loader_cannot_use_are_refused_naming_the_key(tmp_path, layout, message):
    with pytest.raises(ConfigError, match=message):
        graph.load_ratings([_write(tmp_path, "r.csv", MOVIELENS)], None, 0, 1, layout=layout)


def test_files_with_different_headers_are_refused(tmp_path):
    files = [_write(tmp_path, "a.csv", MOVIELENS),
             _write(tmp_path, "b.csv", MOVIELENS.replace("userId", "user"))]
    with pytest.raises(DataError, match=r"b\.csv:1: its header .* differs from"):
        graph.load_ratings(files, None, 0, 1, layout=Layout(True, {"user": "userId"}))


@pytest.mark.parametrize("columns,message", [
    ({"usr": 0}, r"columns: unknown key 'usr' \(did you mean 'user'\?\)"),
    ({"user": -1}, r"columns\.user: expected a column name or a 0-based position"),
    ({"features": [0, True]}, r"columns\.features\[1\]: expected a column name"),
])
def test_the_job_file_refuses_columns_before_launch(columns, message):
    with pytest.raises(ConfigError, match=message):
        config.validate({"algorithm": "kmeans", "columns": columns})


def test_quoted_csv_fields_may_hold_commas(tmp_path):
    text = 'movieId,title,userId,rating\n31,"Dangerous Minds, The (1995)",1,2.5\n' \
           '10,"GoldenEye #7 (1995)",2,4.0\n'
    table = graph.load_ratings([_write(tmp_path, "m.csv", text)], None, 0, 1,
                               layout=Layout(True, {"user": "userId", "item": "movieId",
                                                    "rating": "rating"}))
    assert table.matrix().toarray().tolist() == [[0.0, 2.5], [4.0, 0.0]]


def test_matrix_market_entries_follow_the_bad_line_rule(tmp_path):
    from paracel.io import mtx

    path = _write(tmp_path, "m.mtx", "%%MatrixMarket matrix coordinate real general\n"
                                     "3 3 3\n1 1 2.0\n9 9 1.0\n3 2 x\n2 3 4.0\n")
    with pytest.raises(DataError, match=r"m\.mtx:4: entry \(9, 9\) is outside the 3 x 3"):
        mtx.load(path, 0, 1)
    matrix, skipped = mtx.load(path, 0, 1, skip=True)
    assert skipped == 2 and matrix.toarray().tolist() == [[2, 0, 0], [0, 0, 4], [0, 0, 0]]
