"""Checkpoint files (paracel.snapshot) without MPI: exact round trips, refusals.

Every value the wire format accepts (and every ``state()`` value: dicts with
any keys) must come back from a file exactly: same type, dtype, shape,
sparse format and kind, bits of floats (NaN payloads, -0.0), ints of any
size, bool apart from int, tuple apart from list. What a checkpoint cannot
store is refused naming where it is; a damaged or malicious file is refused
as one line naming it, never decoded into something else.
"""

import enum
import errno
import json
import os
import struct
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from paracel import protocol, snapshot
from paracel.errors import CheckpointError, UserError


def round_trip(tmp_path, value, name="f"):
    path = tmp_path / name
    if path.exists():
        path.unlink()
    info = snapshot.write(str(path), [("k", value)])
    assert info["size"] == path.stat().st_size
    assert info["crc32"] == zlib.crc32(path.read_bytes())
    [(key, result)] = snapshot.read(str(path))
    assert key == "k"
    return result


def assert_exact(got, expected):
    """Same type and content, bit for bit."""
    assert type(got) is type(expected), (type(got), type(expected))
    if isinstance(expected, (np.str_, np.bytes_)):  # their dtype follows their length
        assert got == expected and len(got) == len(expected)
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes()
    elif isinstance(expected, float):
        assert struct.pack("<d", got) == struct.pack("<d", expected)
    elif isinstance(expected, complex):
        assert_exact(got.real, expected.real)
        assert_exact(got.imag, expected.imag)
    elif sp.issparse(expected):
        assert got.format == expected.format and got.shape == expected.shape
        assert got.dtype == expected.dtype
        assert (got != expected).nnz == 0
    elif isinstance(expected, (tuple, list)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert_exact(a, b)
    elif isinstance(expected, dict):
        assert len(got) == len(expected)
        for (ka, va), (kb, vb) in zip(got.items(), expected.items()):
            assert_exact(ka, kb)
            assert_exact(va, vb)
    else:
        assert got == expected


# -- scalars -------------------------------------------------------------------

NAN_WITH_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]


@pytest.mark.parametrize("value", [
    None, True, False, 0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, -(2 ** 63) - 1, 3 ** 200,
    pytest.param(10 ** 5000, id="10**5000"), 0.0, -0.0, 1.5, 1e308, 5e-324, float("inf"), float("-inf"), float("nan"),
    NAN_WITH_PAYLOAD, 1 - 2j, complex(float("nan"), -0.0), "", "plain", "a\x00b", "\ud800",
    "\udfff\ud800x", "ünïcode ∑ 😀", b"", b"\x00", bytes(range(256)),
])
def test_python_scalars_round_trip_exactly(tmp_path, value):
    assert_exact(round_trip(tmp_path, value), value)


@pytest.mark.parametrize("value", [
    np.float64(1.5), np.float32(-0.0), np.float16(3), np.longdouble(1) / 3, np.int8(-3),
    np.uint64(2 ** 64 - 1), np.bool_(True), np.complex64(1 + 1j), np.str_("s\x00"),
    np.bytes_(b"b\x00\x00"), np.datetime64("2020-01-02T03:04"), np.timedelta64(5, "ms"),
    np.void(b"\x01\x02"),
])
def test_numpy_scalars_keep_their_type(tmp_path, value):
    assert_exact(round_trip(tmp_path, value), value)


def test_subclasses_of_python_scalars_are_kept_as_their_base_type(tmp_path):
    class Colour(enum.IntEnum):
        RED = 3

    class Name(str):
        pass

    assert_exact(round_trip(tmp_path, Colour.RED), 3)
    assert_exact(round_trip(tmp_path, Name("x")), "x")


# -- arrays --------------------------------------------------------------------

DTYPES = ["?", "i1", "u2", "i4", "<i8", ">i8", "u8", "f2", "f4", ">f8", "c8", "c16", "U1",
          "U7", ">U3", "S5", "V3", "M8[ns]", "M8[D]", "m8[s]",
          [("id", "<i4"), ("score", ">f8"), ("tag", "S3"), ("sub", "<f4", (2, 3))],
          [("nested", [("a", "u1"), ("b", "M8[us]")])]]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 0, 4), (2, 3)], ids=str)
def test_arrays_of_every_dtype_and_shape(tmp_path, dtype, shape):
    array = np.frombuffer(np.random.default_rng(1).bytes(np.dtype(dtype).itemsize
                                                          * int(np.prod(shape))),
                          dtype=dtype).reshape(shape)
    result = round_trip(tmp_path, array)
    assert_exact(result, array)
    assert result.flags.writeable and result.flags.c_contiguous


def test_unaligned_structured_dtype_with_padding(tmp_path):
    dtype = np.dtype({"names": ["a", "b"], "formats": ["i1", "<f8"], "offsets": [0, 8],
                      "itemsize": 24})
    array = np.zeros(3, dtype=dtype)
    array["b"] = [1.5, -2, 3]
    assert_exact(round_trip(tmp_path, array), array)


def test_views_are_stored_as_their_values(tmp_path):
    base = np.arange(60.0).reshape(6, 10)
    for view in (base[::2, 1::3], base.T, np.asfortranarray(base)):
        result = round_trip(tmp_path, view)
        assert result.flags.c_contiguous
        np.testing.assert_array_equal(result, view)


def test_big_array_is_written_from_its_own_memory(tmp_path):
    array = np.arange(3 * snapshot.CHUNK // 8, dtype=np.float64)
    _, pieces = snapshot._index([("big", array)])
    assert any(np.shares_memory(np.asarray(piece), array) for piece in pieces
               if isinstance(piece, np.ndarray))
    assert_exact(round_trip(tmp_path, array), array)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(hnp.scalar_dtypes() | hnp.unicode_string_dtypes()
                  | hnp.byte_string_dtypes() | hnp.datetime64_dtypes()
                  | hnp.timedelta64_dtypes() | hnp.array_dtypes(),
                  hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
def test_hypothesis_arrays(tmp_path_factory, array):
    tmp_path = tmp_path_factory.mktemp("h")
    assert_exact(round_trip(tmp_path, array), array)


# -- sparse ----------------------------------------------------------------------

FORMATS = ["csr", "csc", "coo", "bsr", "dia", "lil", "dok"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["matrix", "array"])
@pytest.mark.parametrize("dtype", ["f8", "f4", "i8", "c16", "?"])
def test_sparse_keeps_format_kind_and_dtype(tmp_path, fmt, kind, dtype):
    dense = (np.arange(24).reshape(4, 6) % 5 == 0).astype(dtype)
    value = getattr(sp, f"{fmt}_{kind}")(dense)
    assert_exact(round_trip(tmp_path, value), value)


def test_coo_duplicates_and_unsorted_indices_are_kept(tmp_path):
    value = sp.coo_array((np.array([1.0, 2.0, 3.0]), (np.array([2, 0, 2]), np.array([1, 1, 1]))),
                         shape=(3, 3))
    result = round_trip(tmp_path, value)
    np.testing.assert_array_equal(result.data, value.data)
    np.testing.assert_array_equal(result.coords, value.coords)


def test_one_dimensional_sparse_arrays(tmp_path):
    for value in (sp.coo_array(np.array([0, 1.5, 0, 2])), sp.csr_array(np.array([0, 1, 0, 2]))):
        assert_exact(round_trip(tmp_path, value), value)


# -- containers, and what the wire accepts ------------------------------------------

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.complex_numbers() | st.binary(max_size=8)
           | st.text(st.characters(exclude_categories=()), max_size=8))
KEYS = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(st.characters(exclude_categories=()), max_size=4)
                    | st.binary(max_size=4),
                    lambda inner: st.tuples(inner, inner), max_leaves=4)
ARRAYS = hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=2, max_side=3))
VALUES = st.recursive(
    SCALARS | ARRAYS,
    lambda inner: (st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
                   | st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_hypothesis_nested_values(tmp_path_factory, value):
    tmp_path = tmp_path_factory.mktemp("v")
    assert_exact(round_trip(tmp_path, value), value)


WIRE = st.recursive(SCALARS | ARRAYS, lambda inner: st.lists(inner, max_size=3)
                    | st.lists(inner, max_size=3).map(tuple), max_leaves=8)


@settings(max_examples=100, deadline=None)
@given(WIRE)
def test_whatever_the_wire_delivers_round_trips(tmp_path_factory, value):
    """What a server holds is what the wire decoded; that must round-trip."""
    sent = []
    spec = protocol.encode(value, sent)
    held = protocol.decode(spec, sent)
    tmp_path = tmp_path_factory.mktemp("w")
    assert_exact(round_trip(tmp_path, held), held)


def test_state_dicts_keep_non_str_keys(tmp_path):
    state = {1: "one", (2, "b"): [np.arange(3)], "s": {None: b"", 1.5: (True, 0)},
             b"raw": -0.0, False: {}}
    assert_exact(round_trip(tmp_path, state), state)


def test_rng_state_round_trips(tmp_path):
    rng = np.random.default_rng(5)
    rng.random(3)
    state = rng.bit_generator.state
    again = np.random.default_rng()
    again.bit_generator.state = round_trip(tmp_path, state)
    np.testing.assert_array_equal(again.random(4), rng.random(4))


def test_tables_with_many_kinds_of_keys_and_values(tmp_path):
    table = {"f": 1.5, "i": 7, "big": 2 ** 70, ("m", 3): np.ones((2, 2)), 5: (1, 2.5),
             ("t", ("u", 1)): "x", "nan": float("nan"), "none": None, "flag": True}
    snapshot.write(str(tmp_path / "t"), table.items())
    assert_exact(dict(snapshot.read(str(tmp_path / "t"))), table)


def test_select_reads_only_the_wanted_values(tmp_path):
    table = {f"k{i}": np.full(1000, float(i)) if i % 2 else i for i in range(20)}
    table["bytes"] = b"xyz"
    snapshot.write(str(tmp_path / "t"), table.items())
    seen = []

    def select(keys):
        seen.extend(keys)
        return [position for position, key in enumerate(keys) if key in ("k3", "k4", "bytes")]

    got = dict(snapshot.read(str(tmp_path / "t"), select=select))
    assert seen == list(table)
    assert_exact(got, {"k3": table["k3"], "k4": 4, "bytes": b"xyz"})


# -- refusals -----------------------------------------------------------------------

@pytest.mark.parametrize("value, where", [
    ({1, 2}, ""), ([1, {"a": object()}], "[1]['a']"), ((1, np.array([None])), "[1]"),
    ({"rng": {"x": frozenset()}}, "['rng']['x']"), (range(3), ""), (bytearray(b"x"), ""),
])
def test_unstorable_values_are_refused_naming_where(tmp_path, value, where):
    with pytest.raises(snapshot.Unstorable) as info:
        snapshot.write(str(tmp_path / "x"), [("key", value)])
    assert info.value.key == "key" and info.value.path() == where
    assert "a value of type" in str(info.value)
    assert not (tmp_path / "x").exists()


def test_an_existing_file_or_symlink_is_never_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.symlink(victim, tmp_path / "planted")
    with pytest.raises(UserError, match="cannot create .*planted"):
        snapshot.write(str(tmp_path / "planted"), [("k", 1)])
    assert victim.read_text() == "precious"


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, monkeypatch):
    def full(descriptor, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(snapshot.os, "write", full)
    path = tmp_path / "server-0.ckpt"
    with pytest.raises(UserError) as info:
        snapshot.write(str(path), [("k", np.zeros(10))])
    assert str(info.value) == f"checkpoint: cannot write {path}: No space left on device"
    assert not path.exists()


# -- damaged and malicious files ------------------------------------------------------

@pytest.fixture
def written(tmp_path):
    path = tmp_path / "t"
    snapshot.write(str(path), [("a", np.arange(100.0)), ("b", 3), ("c", (1.5, "x"))])
    return path


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        del data[-10:]
    elif how == "magic":
        data[0] ^= 1
    elif how == "index":
        data[30] ^= 0xFF
    elif how == "longer":
        data += b"\0"
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "magic", "index", "longer", "empty"])
def test_damaged_files_are_one_clear_error(written, how):
    _damage(written, how)
    with pytest.raises(CheckpointError) as info:
        snapshot.read(str(written))
    message = str(info.value)
    assert message.startswith(f"{written}: not a readable checkpoint file: ")
    assert "\n" not in message


def _forge(path, index, raw=b""):
    text = zlib.compress(json.dumps(index).encode())
    path.write_bytes(snapshot._HEADER.pack(snapshot.MAGIC, snapshot.VERSION, 0, len(text))
                     + text + raw)


@pytest.mark.parametrize("spec, raw", [
    (["a", "|O", [2]], b"\0" * 16),                  # object pointers from a file: never
    (["a", [["x", "|O"]], [1]], b"\0" * 8),
    (["a", "<f8", [10 ** 12]], b""),                  # a huge shape: refused, not allocated
    (["a", "<f8", [-1]], b""),
    (["zz", 1], b""),
    ({"a": 1}, b""),
    (["g", "not a dtype"], b""),
    (["b", -8], b"\0" * 8),                          # no stepping back in the file
])
def test_malicious_index_is_refused(tmp_path, spec, raw):
    path = tmp_path / "evil"
    _forge(path, {"keys": ["k"], "kinds": "j", "specs": [spec], "floats": 0, "ints": 0,
                  "raw": len(raw)}, raw)
    with pytest.raises(CheckpointError, match="not a readable checkpoint file"):
        snapshot.read(str(path))
    with pytest.raises(CheckpointError, match="not a readable checkpoint file"):
        snapshot.read(str(path), select=lambda keys: [])


@pytest.mark.parametrize("kinds", ["x", "jj", "f"])
def test_an_index_whose_kinds_do_not_add_up_is_refused(tmp_path, kinds):
    path = tmp_path / "evil"
    _forge(path, {"keys": ["k"], "kinds": kinds, "specs": [1], "floats": 0, "ints": 0,
                  "raw": 0})
    with pytest.raises(CheckpointError, match="its index is inconsistent"):
        snapshot.read(str(path))
