"""Tests of the wire format (paracel.protocol) without MPI.

A round trip is ``encode`` (header spec + out-of-line buffers), a pickle of
the spec as ``comm.send`` would do, ``allocate`` of receive buffers, a copy of
each sent buffer into its receive buffer (what ``Recv`` does), and
``decode``. Values must come back equal, with dtype, shape, sparse format and
sparse kind (matrix or array) preserved; big arrays must travel out of line
and never inside the pickled header.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from paracel import protocol
from paracel.errors import UserError
from paracel.protocol import INLINE_LIMIT, allocate, decode, encode, out_of_line


def round_trip(value):
    """Encode, 'send', 'receive' and decode ``value``; return (result, spec, sent)."""
    sent = []
    spec = encode(value, sent)
    spec = pickle.loads(pickle.dumps(spec))  # the header goes through comm.send
    received = allocate([spec])
    assert len(received) == len(sent)
    for target, source in zip(received, sent):
        assert target.dtype == source.dtype and target.shape == source.shape
        assert source.flags.c_contiguous
        target[...] = source  # what comm.Recv does with the raw bytes
    return decode(spec, received), spec, sent


def assert_same_array(result, expected):
    assert isinstance(result, np.ndarray)
    assert result.dtype == expected.dtype
    assert result.shape == expected.shape
    assert result.tobytes() == np.ascontiguousarray(expected).tobytes()


# -- numpy arrays ------------------------------------------------------------

DTYPES = ["?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8",
          "c8", "c16", ">i4", ">f8", "U7", "S5", "M8[s]", "m8[ms]"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_small_arrays_of_many_dtypes_travel_inline(dtype):
    array = np.arange(24).reshape(2, 3, 4).astype(dtype)
    result, spec, sent = round_trip(array)
    assert sent == []
    assert spec[0] == "a" and isinstance(spec[3], bytes)
    assert_same_array(result, array)
    assert result.flags.writeable and result.flags.owndata


@pytest.mark.parametrize("dtype", ["?", "i1", "u2", "i8", "f2", "f4", "f8", "c16", ">f8"])
def test_big_arrays_travel_out_of_line(dtype):
    count = INLINE_LIMIT // np.dtype(dtype).itemsize + 3
    array = (np.arange(count) % 100).astype(dtype)
    result, spec, sent = round_trip(array)
    assert len(sent) == 1 and spec[3] == 0
    assert out_of_line(spec) == [(0, spec[1], array.shape)]
    assert len(pickle.dumps(spec)) < 1024  # the payload is not in the header
    assert_same_array(result, array)


def test_inline_limit_boundary():
    below = np.zeros(INLINE_LIMIT // 8 - 1)
    exact = np.zeros(INLINE_LIMIT // 8)
    assert isinstance(round_trip(below)[1][3], bytes)
    assert round_trip(exact)[2] != []  # nbytes == INLINE_LIMIT goes out of line


def test_out_of_line_buffer_is_not_a_copy():
    array = np.arange(20000, dtype=np.float64)
    sent = []
    encode(array, sent)
    assert sent[0] is array  # contiguous arrays are sent from their own memory


def test_structured_dtype():
    dtype = np.dtype([("id", "<i4"), ("score", "<f8"), ("tag", "S3")])
    array = np.array([(1, 0.5, b"ab"), (2, -1.5, b"xyz")], dtype=dtype)
    result, _, _ = round_trip(array)
    assert result.dtype == dtype
    assert result.tolist() == array.tolist()


def test_big_structured_array():
    dtype = np.dtype([("a", "<i8"), ("b", "<f4")])
    array = np.zeros(INLINE_LIMIT // 12 + 10, dtype=dtype)
    array["a"] = np.arange(len(array))
    result, _, sent = round_trip(array)
    assert len(sent) == 1
    np.testing.assert_array_equal(result["a"], array["a"])


def test_zero_d_array_keeps_shape():
    result, _, _ = round_trip(np.array(3.25))
    assert result.shape == ()
    assert result.dtype == np.float64 and float(result) == 3.25


@pytest.mark.parametrize("shape", [(0,), (0, 5), (3, 0), (2, 0, 4)])
def test_empty_arrays(shape):
    array = np.zeros(shape, dtype=np.float32)
    result, _, _ = round_trip(array)
    assert_same_array(result, array)


def test_fortran_ordered_array():
    array = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    result, _, _ = round_trip(array)
    np.testing.assert_array_equal(result, array)
    assert result.flags.c_contiguous


def test_big_fortran_ordered_array_goes_out_of_line_as_c_order():
    array = np.asfortranarray(np.arange(INLINE_LIMIT, dtype=np.float64).reshape(-1, 64))
    result, _, sent = round_trip(array)
    assert len(sent) == 1 and sent[0].flags.c_contiguous
    np.testing.assert_array_equal(result, array)


@pytest.mark.parametrize("make", [
    lambda: np.arange(100)[::3],
    lambda: np.arange(60.0).reshape(6, 10)[1:5, 2:9:2],
    lambda: np.arange(40000.0)[::2],
    lambda: np.arange(24).reshape(2, 3, 4).transpose(2, 0, 1),
])
def test_non_contiguous_views(make):
    array = make()
    assert not array.flags.c_contiguous
    result, _, _ = round_trip(array)
    np.testing.assert_array_equal(result, array)
    assert result.shape == array.shape


def test_decoded_inline_array_is_writable_and_independent():
    array = np.arange(4.0)
    result, _, _ = round_trip(array)
    result += 1
    np.testing.assert_array_equal(array, [0.0, 1.0, 2.0, 3.0])


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(
    dtype=st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                    hnp.floating_dtypes(), hnp.complex_number_dtypes()),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6)))
def test_hypothesis_arrays_round_trip(array):
    result, _, _ = round_trip(array)
    assert_same_array(result, array)


@settings(max_examples=20, deadline=None)
@given(hnp.arrays(dtype=hnp.floating_dtypes(sizes=(32, 64)),
                  shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=8)),
       st.integers(1, 3))
def test_hypothesis_strided_views(array, step):
    view = array[::step]
    result, _, _ = round_trip(view)
    assert_same_array(result, view)


def test_object_arrays_are_refused():
    with pytest.raises(UserError, match="dtype object"):
        encode(np.array([1, "a", None], dtype=object), [])
    with pytest.raises(UserError, match="dtype object"):
        encode(np.zeros(2, dtype=[("a", "O")]), [])


# -- scipy.sparse ------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_sparse_keeps_format_and_kind(fmt, kind):
    dense = sp.random(7, 5, density=0.4, random_state=2).toarray()
    build = getattr(sp, f"{fmt}_{kind}")
    value = build(dense)
    result, spec, _ = round_trip(value)
    assert type(result) is type(value)
    assert result.format == fmt
    assert result.shape == value.shape and result.dtype == value.dtype
    np.testing.assert_array_equal(result.toarray(), dense)


@pytest.mark.parametrize("make, expected_type", [
    (lambda d: sp.lil_matrix(d), sp.csr_matrix),
    (lambda d: sp.dok_matrix(d), sp.csr_matrix),
    (lambda d: sp.bsr_matrix(d), sp.csr_matrix),
    (lambda d: sp.dia_matrix(d), sp.csr_matrix),
    (lambda d: sp.lil_array(d), sp.csr_array),
    (lambda d: sp.dia_array(d), sp.csr_array),
])
def test_other_sparse_formats_travel_as_csr(make, expected_type):
    dense = np.array([[1.0, 0, 2], [0, 0, 3], [4, 5, 0], [0, 0, 0]])
    result, _, _ = round_trip(make(dense))
    assert type(result) is expected_type
    np.testing.assert_array_equal(result.toarray(), dense)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.complex128, np.bool_])
def test_sparse_dtypes(dtype):
    value = sp.csr_matrix(np.eye(4, dtype=dtype))
    result, _, _ = round_trip(value)
    assert result.dtype == dtype
    np.testing.assert_array_equal(result.toarray(), np.eye(4, dtype=dtype))


def test_big_sparse_parts_go_out_of_line():
    value = sp.random(2000, 2000, density=0.005, format="csr", random_state=0)
    assert value.data.nbytes >= INLINE_LIMIT
    result, spec, sent = round_trip(value)
    assert len(sent) >= 2  # data and indices at least
    assert len(pickle.dumps(spec)) < INLINE_LIMIT  # only the small indptr rides inline
    assert (result != value).nnz == 0


def test_empty_sparse_matrix():
    value = sp.csr_matrix((3, 4))
    result, _, _ = round_trip(value)
    assert result.shape == (3, 4) and result.nnz == 0


def test_coo_with_duplicates_keeps_entries():
    value = sp.coo_matrix(([1.0, 2.0], ([0, 0], [1, 1])), shape=(2, 2))
    result, _, _ = round_trip(value)
    assert result.nnz == 2
    np.testing.assert_array_equal(result.toarray(), [[0, 3.0], [0, 0]])


# -- scalars and containers --------------------------------------------------

@pytest.mark.parametrize("value", [0, -7, 2 ** 100, -(2 ** 80), 1.5, float("inf"), 1 - 2j,
                                   "", "ünïcode ∑", b"", b"\x00\xff", None, True, False])
def test_python_scalars(value):
    result, spec, sent = round_trip(value)
    assert sent == [] and spec[0] == "s"
    assert type(result) is type(value)
    assert result == value


def test_nan_scalar():
    result, _, _ = round_trip(float("nan"))
    assert isinstance(result, float) and result != result


@pytest.mark.parametrize("value, kind", [
    (np.float32(1.5), float), (np.float64(-2.0), float), (np.int8(-3), int),
    (np.uint64(2 ** 64 - 1), int), (np.int64(5), int), (np.bool_(True), bool),
    (np.complex64(1 + 1j), complex), (np.str_("s"), str),
])
def test_numpy_scalars_become_python(value, kind):
    result, _, _ = round_trip(value)
    assert type(result) is kind
    assert result == value


def test_subclasses_of_python_scalars_travel_as_their_base_type():
    import enum

    class Colour(enum.IntEnum):
        RED = 3

    class Name(str):
        pass

    for value, kind in [(Colour.RED, int), (Name("x"), str)]:
        result, spec, _ = round_trip(value)
        assert type(spec[1]) is kind and type(result) is kind  # no user class is pickled
        assert result == value


def test_nested_tuples_and_lists():
    value = (np.array([1, 2], dtype=np.int32), [3.5, ("x", None), []],
             sp.csr_matrix(np.eye(2)), np.zeros(INLINE_LIMIT // 8 + 1))
    result, spec, sent = round_trip(value)
    assert isinstance(result, tuple) and len(result) == 4
    assert_same_array(result[0], value[0])
    assert result[1] == [3.5, ("x", None), []]
    assert isinstance(result[1][1], tuple) and isinstance(result[1], list)
    assert type(result[2]) is sp.csr_matrix
    assert len(sent) == 1
    np.testing.assert_array_equal(result[3], value[3])


def test_row_update_payload():
    rows = np.array([0, 4, 4])
    values = np.ones((3, INLINE_LIMIT // 8))
    result, _, sent = round_trip((rows, values))
    assert len(sent) == 1
    np.testing.assert_array_equal(result[0], rows)
    np.testing.assert_array_equal(result[1], values)


def test_several_values_share_one_buffer_list():
    big = [np.full(INLINE_LIMIT // 8, float(i)) for i in range(3)]
    sent = []
    specs = [encode(v, sent) for v in [big[0], 1, big[1], big[2]]]
    assert [s[3] for s in specs if s[0] == "a"] == [0, 1, 2]
    received = allocate(specs)
    for target, source in zip(received, sent):
        target[...] = source
    decoded = [decode(s, received) for s in specs]
    for i, index in enumerate([0, 2, 3]):
        np.testing.assert_array_equal(decoded[index], big[i])
    assert decoded[1] == 1


def test_allocate_into_out():
    value = np.arange(INLINE_LIMIT // 8 + 5, dtype=np.float64)
    sent = []
    spec = encode(value, sent)
    out = np.empty_like(value)
    received = allocate([spec], out=out)
    assert received[0] is out
    with pytest.raises(UserError, match="dtype"):
        allocate([spec], out=np.empty(3))


@pytest.mark.parametrize("value", [{1, 2}, {"a": 1}, object(), frozenset(), range(3),
                                   bytearray(b"x"), [1, {2}]])
def test_unsupported_types_are_refused(value):
    with pytest.raises(UserError, match="cannot be stored"):
        encode(value, [])


# -- messages ----------------------------------------------------------------

class FakeComm:
    """Stands in for a communicator: ``Recv`` copies the next sent buffer."""

    def __init__(self, sent):
        self.sent = list(sent)
        self.received = 0

    def Recv(self, buffer, source, tag):  # noqa: N802 (mpi4py's name)
        buffer[...] = self.sent.pop(0)
        self.received += 1


def test_pack_without_values_is_the_empty_payload():
    assert protocol.pack(()) == (protocol.EMPTY, [])
    assert protocol.pack([]) == (protocol.EMPTY, [])


def test_pack_counts_out_of_line_buffers():
    big = np.arange(INLINE_LIMIT // 8 + 1, dtype=np.float64)
    payload, buffers = protocol.pack([1.5, big, np.arange(3), (big, 2)])
    specs, count = payload
    assert count == len(buffers) == 2 and buffers[0] is big
    assert len(pickle.dumps(payload)) < 1024


def test_receive_without_buffers_asks_nothing_of_mpi():
    payload, buffers = protocol.pack([1.5, np.arange(3), "s", (None, [2])])
    assert buffers == []
    comm = FakeComm([])
    values = protocol.receive(comm, 0, pickle.loads(pickle.dumps(payload)))
    assert comm.received == 0
    assert values[0] == 1.5 and values[2] == "s" and values[3] == (None, [2])
    np.testing.assert_array_equal(values[1], np.arange(3))


def test_receive_with_buffers_into_targets():
    big = np.arange(INLINE_LIMIT // 8 + 1, dtype=np.float64)
    payload, buffers = protocol.pack([big, 7, big * 2])
    target = np.empty_like(big)
    comm = FakeComm(buffers)
    values = protocol.receive(comm, 0, payload, targets=[target, None, None])
    assert comm.received == 2 and values[0] is target and values[1] == 7
    np.testing.assert_array_equal(values[0], big)
    np.testing.assert_array_equal(values[2], big * 2)


def test_constant_messages():
    assert pickle.loads(protocol.ACK) == (None, (), protocol.EMPTY)  # reply: no data, no errors
    assert pickle.loads(protocol.FENCE) == ("fence", (), None, True, protocol.EMPTY)


def test_requests_travel_as_plain_tuples_and_are_read_by_name():
    payload, buffers = protocol.pack([np.zeros(protocol.INLINE_LIMIT), 1.0])
    header = protocol.request_header("update", ["k", "j"], "add", True, payload)
    assert type(header) is tuple  # a header may name no class
    request = protocol.Request(3, *protocol.decode_header(pickle.dumps(header)))
    assert (request.source, request.op, request.keys, request.arg, request.ack) == \
        (3, "update", ["k", "j"], "add", True)
    assert request.out_of_line == len(buffers) == 1
    assert protocol.Request(0, *pickle.loads(protocol.FENCE)).out_of_line == 0
    reply = protocol.Reply._make(pickle.loads(protocol.ACK))
    assert (reply.data, reply.errors, reply.payload) == (None, (), protocol.EMPTY)


# -- no MPI -----------------------------------------------------------------

def test_modules_import_without_mpi():
    code = ("import sys\n"
            "import paracel, paracel.config, paracel.partition, paracel.protocol\n"
            "import paracel.server.updates, paracel.server.store, paracel.ssp\n"
            "import paracel.io.lines\n"
            "assert 'mpi4py.MPI' not in sys.modules, 'mpi4py.MPI was imported'\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_protocol_module_has_no_mpi_import():
    assert not hasattr(protocol, "MPI")


def test_headers_are_decoded_as_plain_data_only():
    import os
    import pickle

    from paracel.protocol import FENCE, decode_header

    header = ("update", [("w", 3), np.int64(7), "k"], "add", True,
              ([("s", 1 + 2j), ("s", None), ("a", "<f8", (2,), b"\0" * 16)], 0))
    assert decode_header(pickle.dumps(header, pickle.HIGHEST_PROTOCOL)) == header
    assert decode_header(FENCE)[0] == "fence"

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="may not build posix.system"):
        decode_header(pickle.dumps(("read", [Evil()], None, False, ((), 0))))
