"""Property-based tests: any job file and any input file either loads or
raises the project's own error naming the file, line or key.

Never an internal traceback (any other exception fails the test), never a
hang. The number of cases per area is set by ``EXAMPLES``.
"""

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paracel import config
from paracel.errors import ConfigError, DataError, UserError
from paracel.io import dense, graph, libsvm, lines, mtx

EXAMPLES = 300
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)
KEYS = st.sampled_from(sorted(config.SCHEMA) + ["sever", "param", "", "x.y"])


@SETTINGS
@given(st.dictionaries(KEYS, JSON, max_size=6))
def test_any_job_dictionary_validates_or_names_a_key(raw):
    try:
        config.validate(raw, "job.json")
    except ConfigError as error:
        assert str(error).startswith("job.json: ")
        named = re.findall(r"'([^']*)'", str(error)) + [key for key in config.SCHEMA
                                                        if key in str(error)]
        assert named, str(error)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_job_file_bytes_load_or_raise_config_error(tmp_path, data):
    path = tmp_path / "job.json"
    path.write_bytes(data)
    try:
        config.load(str(path))
    except ConfigError as error:
        assert str(path) in str(error)


# -- loaders ---------------------------------------------------------------

TOKENS = st.sampled_from(["1", "-1", "+1", "0", "2.5", "1e3", "nan", "x", "3:1.5", "1:2",
                          "0:0", "5:x", ":", "qid:1", "#", "# c", "a,b", "1,2,3", "u v",
                          "%", "\t", "é", "∞", "", "10:1 2:1"])
LINE = st.lists(TOKENS, max_size=5).map(" ".join)
TEXT = st.lists(LINE, max_size=12).map("\n".join)
ENDING = st.sampled_from(["", "\n", "\r\n"])


def write(tmp_path, name, text, ending=""):
    path = tmp_path / name
    data = text.replace("\n", "\r\n") if ending == "\r\n" else text
    path.write_bytes((data + ("\n" if ending and text else "")).encode("utf-8"))
    return str(path)


def assert_names_file_and_line(error, path):
    text = str(error)
    assert path in text, text
    # a line, or a property of the whole file (its compression)
    assert re.search(re.escape(path) + r"(:\d+|\.\.\.|: \w+-compressed input)", text) or \
        "n_features" in text, text


@SETTINGS
@given(TEXT, ENDING, st.integers(1, 3))
def test_libsvm_loads_or_names_the_line(tmp_path, text, ending, parts):
    path = write(tmp_path, "in.svm", text, ending)
    for part in range(parts):
        try:
            libsvm.load([path], None, part, parts)
        except DataError as error:
            assert_names_file_and_line(error, path)


@SETTINGS
@given(TEXT, ENDING)
def test_libsvm_skip_mode_never_raises_on_bad_lines(tmp_path, text, ending):
    path = write(tmp_path, "in.svm", text, ending)
    try:
        labels, X, skipped, _ = libsvm.load([path], None, 0, 1, skip=True)
    except DataError as error:  # only the file-wide index checks may remain
        assert "zero_based" in str(error) or "n_features" in str(error)
    else:
        assert X.shape[0] == len(labels) and skipped >= 0


@SETTINGS
@given(TEXT, ENDING, st.booleans())
def test_dense_vectors_load_or_name_the_line(tmp_path, text, ending, has_id):
    path = write(tmp_path, "in.csv", text, ending)
    try:
        ids, X, _ = dense.load([path], None, 0, 1, has_id)
        assert X.shape[0] == len(ids)
    except DataError as error:
        assert_names_file_and_line(error, path)


@SETTINGS
@given(TEXT, ENDING, st.sampled_from(["raise", "skip"]), st.sampled_from([None, True, False]))
def test_triples_load_or_name_the_line(tmp_path, text, ending, on_error, weighted):
    path = write(tmp_path, "edges.txt", text, ending)
    try:
        triples = graph.load_triples([path], None, 0, 1, weighted=weighted,
                                     skip=on_error == "skip")
        assert triples.matrix().shape == triples.shape
    except DataError as error:
        assert_names_file_and_line(error, path)


@SETTINGS
@given(st.sampled_from(["%%MatrixMarket matrix coordinate real general",
                        "%%MatrixMarket matrix coordinate pattern symmetric",
                        "%%MatrixMarket matrix array real general", "garbage", ""]),
       st.sampled_from(["3 3 2", "3 3", "x y z", "2 2 1", ""]), TEXT)
def test_matrix_market_loads_or_names_the_line(tmp_path, banner, sizes, body):
    path = write(tmp_path, "m.mtx", "\n".join([banner, sizes, body]) + "\n")
    try:
        mtx.load(path, 0, 1)
    except DataError as error:
        assert_names_file_and_line(error, path)
    except ValueError as error:  # scipy's own reader, for dense "array" files only
        assert "array" in banner, error


@SETTINGS
@given(st.binary(max_size=300), st.integers(1, 4))
def test_lines_of_any_bytes_load_or_name_the_line(tmp_path, data, parts):
    path = tmp_path / "bytes.txt"
    path.write_bytes(data)
    for part in range(parts):
        try:
            list(lines.iter_lines([str(path)], part, parts))
        except DataError as error:
            assert_names_file_and_line(error, str(path))


def test_every_error_class_is_a_user_error():
    assert issubclass(DataError, UserError) and issubclass(ConfigError, UserError)
