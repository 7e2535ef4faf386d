"""The wire format between workers and servers.

A message is one small pickled tuple followed by zero or more raw array
buffers. The tuple holds the operation, the keys and a *spec* per value:
scalars and small arrays ride inside it (one MPI message for a small request),
arrays of :data:`INLINE_LIMIT` bytes or more travel as their own ``Send`` of
numpy memory, received straight into a preallocated array: no big array is
ever pickled.

Value specs (tuples, first item the kind):

``("s", obj)``
    A Python scalar (int, float, bool, complex, str, bytes, None). numpy
    scalars travel as the Python scalar they hold, subclasses of Python
    scalars (an ``IntEnum``) as their base type: what a server keeps is
    always a plain value, which a checkpoint can store exactly.
``("a", descr, shape, payload)``
    A numpy array; ``payload`` is ``bytes`` (inline) or the index of its
    out-of-line buffer.
``("sp", fmt, shape, is_array, parts)``
    A scipy.sparse matrix or array as its component arrays (``data``,
    ``indices``, ``indptr`` for csr/csc; ``data``, ``row``, ``col`` for coo);
    other formats travel as csr.
``("t", items)`` / ``("l", items)``
    A tuple or list of values (used for row updates: ``(rows, values)``).

Messages (each one pickled tuple, its out-of-line buffers following it):

request ``(op, keys, arg, ack, payload)``
    Built by :func:`request_header`, read by the server as a :class:`Request`.
    ``ack`` asks the server to send an :data:`ACK`-shaped reply once the
    request has been applied, as a fence would: a push (a write whose data
    travels out of line) then costs one round trip instead of two.
reply ``(data, errors, payload)``
    Read by the worker as a :class:`Reply`. ``errors`` are the failures of
    this worker's earlier updates.

A *payload* is ``(specs, count)``, ``count`` the number of out-of-line
buffers that follow, so a receiver knows at once when there is nothing more
to receive.

On the wire both are plain tuples (a header may name no class, see
:class:`_HeaderUnpickler`); the named types exist on each side only.
"""

import functools
import io
import pickle
from typing import NamedTuple

import numpy as np

from paracel.errors import UserError
from paracel.waiting import wait_request

INLINE_LIMIT = 64 * 1024

#: The most bytes one MPI call carries: counts are C ints, so an array of
#: 2**31 elements or more travels as several pieces (:func:`pieces`).
MAX_PIECE_BYTES = 1 << 30

TAG_REQUEST = 11
TAG_DATA = 12
TAG_REPLY = 13
TAG_REPLY_DATA = 14

SCALAR_TYPES = (int, float, bool, complex, str, bytes, type(None),
                np.integer, np.floating, np.bool_, np.complexfloating)

#: The exact types of Python scalars, checked first (one set lookup).
_PLAIN = frozenset(SCALAR_TYPES[:7])

#: The payload of a message without values.
EMPTY = ((), 0)

#: The reply to a request that asked for an ack, when the server has no
#: failures to report, and a fence (a request that only asks for the ack):
#: pickled once, sent as raw bytes (``comm.Send``: small, so MPI sends them
#: eagerly, without waiting for the receiver) and read like any other
#: message (:func:`recv_header`).
ACK = pickle.dumps((None, (), EMPTY), pickle.HIGHEST_PROTOCOL)


def request_header(op, keys=(), arg=None, ack=False, payload=EMPTY):
    """The pickled part of a request, as it travels: a plain tuple.

    Parameters
    ----------
    op : str
        The operation, a key of the server's handler table.
    keys : list
        The keys (or, for row tables, ``[name]``).
    arg : object
        The operation's one plain-data argument (an update function's name,
        a prefix, a folder, ...), or ``None``.
    ack : bool
        Whether the server sends an :data:`ACK`-shaped reply once applied.
    payload : tuple
        ``(specs, count)`` from :func:`pack`.
    """
    return (op, keys, arg, ack, payload)


FENCE = pickle.dumps(request_header("fence", ack=True), pickle.HIGHEST_PROTOCOL)


class Request(NamedTuple):
    """A request as a server reads it: its sender and the named fields of
    the header (see :func:`request_header`), so that no handler depends on
    the tuple's layout."""

    source: int
    op: str
    keys: list
    arg: object
    ack: bool
    payload: tuple

    @property
    def out_of_line(self):
        """How many raw buffers follow the header (0: all values are inline)."""
        return self.payload[1]


class Reply(NamedTuple):
    """A server's reply as a worker reads it.

    Attributes
    ----------
    data : object
        The answer (``None`` for an ack).
    errors : sequence of (bool, str)
        Failures of this worker's earlier updates on that server.
    payload : tuple
        ``(specs, count)`` of the values that follow.
    """

    data: object
    errors: tuple
    payload: tuple


#: The only globals a message header may name: what pickling the tuples of
#: :func:`encode` needs (complex scalars; numpy scalars and dtypes used as
#: keys). Anything else in a header is refused, never imported or called.
_HEADER_GLOBALS = frozenset([("builtins", "complex"), ("numpy", "dtype"),
                             ("numpy.core.multiarray", "scalar"),
                             ("numpy._core.multiarray", "scalar")])


class _HeaderUnpickler(pickle.Unpickler):
    """Unpickles plain data only: tuples, lists, dicts, strings, bytes and
    numbers (and the globals of :data:`_HEADER_GLOBALS`)."""

    def find_class(self, module, name):
        if (module, name) in _HEADER_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a message header may not build {module}.{name}")


def recv_header(message, status):
    """Receive the pickled part of a message matched by ``improbe`` (with its
    ``status``) and decode it without running code: headers come from any
    rank, so they are read as plain data (:class:`_HeaderUnpickler`)."""
    from mpi4py import MPI

    data = bytearray(status.Get_count(MPI.BYTE))
    message.Recv([data, MPI.BYTE])
    return decode_header(data)


def recv_request(message, status):
    """The :class:`Request` matched by ``improbe`` (see :func:`recv_header`)."""
    return Request(status.Get_source(), *recv_header(message, status))


def recv_reply(message, status):
    """The :class:`Reply` matched by ``improbe`` (see :func:`recv_header`)."""
    return Reply._make(recv_header(message, status))


def decode_header(data):
    """The header pickled in ``data``, read as plain data only."""
    return _HeaderUnpickler(io.BytesIO(data)).load()


@functools.lru_cache(maxsize=256)
def _descr(dtype):
    """numpy's portable description of ``dtype`` (cached: 1-2 us a call)."""
    return np.lib.format.dtype_to_descr(dtype)


def _dtype(descr):
    """Inverse of :func:`_descr` (structured descrs are lists: not cached)."""
    if isinstance(descr, str):
        return _dtype_of_str(descr)
    return np.lib.format.descr_to_dtype(descr)


@functools.lru_cache(maxsize=256)
def _dtype_of_str(descr):
    return np.lib.format.descr_to_dtype(descr)


def _sparse():
    import scipy.sparse

    return scipy.sparse


def _is_sparse(value):
    module = type(value).__module__
    return module.startswith("scipy.sparse") and _sparse().issparse(value)


def encode(value, buffers):
    """Turn ``value`` into a picklable spec, appending big arrays to ``buffers``.

    Parameters
    ----------
    value : object
        A numpy array, scipy.sparse matrix, Python scalar, or tuple/list of them.
    buffers : list
        Receives the contiguous arrays that must travel out of line.

    Returns
    -------
    tuple
        The spec (see the module docstring).
    """
    if type(value) in _PLAIN:
        return ("s", value)
    if isinstance(value, np.ndarray):
        return _encode_array(value, buffers)
    if isinstance(value, SCALAR_TYPES):
        return ("s", _plain_scalar(value))
    if isinstance(value, (tuple, list)):
        kind = "t" if isinstance(value, tuple) else "l"
        return (kind, [encode(item, buffers) for item in value])
    if _is_sparse(value):
        return _encode_sparse(value, buffers)
    raise UserError(
        f"values of type {type(value).__name__} cannot be stored; use numpy arrays, "
        "scipy.sparse matrices, Python scalars, or tuples/lists of them")


def _plain_scalar(value):
    """A numpy scalar's Python value, or a Python scalar subclass's base value."""
    if isinstance(value, np.generic):
        return value.item()
    base = next(base for base in (int, float, complex, str, bytes) if isinstance(value, base))
    return base(value)


def check_storable(value):
    """Raise :class:`UserError` unless :func:`encode` can carry ``value`` (what
    the store may hold), without encoding it."""
    if type(value) in _PLAIN or isinstance(value, SCALAR_TYPES):
        return
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise UserError("a numpy array of dtype object cannot be stored")
        return
    if isinstance(value, (tuple, list)):
        for item in value:
            check_storable(item)
        return
    if not _is_sparse(value):
        raise UserError(f"a value of type {type(value).__name__} cannot be stored; use "
                        "numpy arrays, scipy.sparse matrices, Python scalars, or "
                        "tuples/lists of them")


def _encode_array(array, buffers):
    if array.dtype.hasobject:
        raise UserError("numpy arrays of dtype object cannot be stored; use a numeric dtype")
    if not array.flags.c_contiguous:
        # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
        array = np.array(array, order="C")
    descr = _descr(array.dtype)
    if array.nbytes < INLINE_LIMIT:
        return ("a", descr, array.shape, array.tobytes())
    buffers.append(array)
    return ("a", descr, array.shape, len(buffers) - 1)


def _encode_sparse(matrix, buffers):
    fmt = matrix.format if matrix.format in ("csr", "csc", "coo") else "csr"
    matrix = matrix.asformat(fmt)
    if fmt == "coo":
        parts = (matrix.data, matrix.row, matrix.col)
    else:
        parts = (matrix.data, matrix.indices, matrix.indptr)
    is_array = isinstance(matrix, _sparse().sparray)
    specs = [_encode_array(np.asarray(part), buffers) for part in parts]
    return ("sp", fmt, tuple(matrix.shape), is_array, specs)


def out_of_line(spec, found=None):
    """List ``(index, descr, shape)`` of every out-of-line array in ``spec``."""
    found = [] if found is None else found
    kind = spec[0]
    if kind == "a" and not isinstance(spec[3], bytes):
        found.append((spec[3], spec[1], spec[2]))
    elif kind == "sp":
        for part in spec[4]:
            out_of_line(part, found)
    elif kind in ("t", "l"):
        for item in spec[1]:
            out_of_line(item, found)
    return found


def allocate(specs, out=None, targets=None):
    """Allocate receive buffers for the out-of-line arrays of ``specs``.

    Parameters
    ----------
    specs : list of tuple
        Value specs, as in a received payload.
    out : numpy.ndarray, optional
        Where the single out-of-line array should land (zero-copy read into
        the caller's memory); its dtype and shape must match.
    targets : list, optional
        One entry per spec: an array to receive that value into when the
        value is one out-of-line array of the same dtype and shape (memory
        reused instead of fresh pages), else ``None``.

    Returns
    -------
    list of numpy.ndarray
        Buffers in index order, ready for ``Recv``.
    """
    found = []
    for spec in specs:  # in index order: encode numbered them in this same walk
        out_of_line(spec, found)
    reuse = _reusable(specs, targets) if targets else {}
    buffers = []
    for index, descr, shape in found:
        dtype = _dtype(descr)
        if index in reuse and reuse[index].dtype == dtype and reuse[index].shape == tuple(shape):
            buffers.append(reuse[index])
        elif out is not None and len(found) == 1:
            if out.dtype != dtype or out.shape != tuple(shape) or not out.flags.c_contiguous:
                raise UserError(f"out= has dtype {out.dtype} and shape {out.shape}; "
                                f"the value has dtype {dtype} and shape {tuple(shape)}")
            buffers.append(out)
        else:
            buffers.append(np.empty(shape, dtype=dtype))
    return buffers


def _reusable(specs, targets):
    """``{buffer index: target}`` for specs that are one out-of-line array."""
    return {spec[3]: target for spec, target in zip(specs, targets)
            if target is not None and spec[0] == "a" and not isinstance(spec[3], bytes)
            and target.flags.c_contiguous and target.flags.writeable}


def decode(spec, buffers):
    """Rebuild a value from its spec and the received out-of-line buffers.

    Inline arrays are copied into fresh writable memory, so every decoded
    array is owned by its receiver and may be updated in place.
    """
    kind = spec[0]
    if kind == "s":
        return spec[1]
    if kind == "a":
        _, descr, shape, payload = spec
        if isinstance(payload, bytes):
            dtype = _dtype(descr)
            return np.frombuffer(payload, dtype=dtype).reshape(shape).copy()
        return buffers[payload]
    if kind == "sp":
        return _decode_sparse(spec, buffers)
    items = [decode(item, buffers) for item in spec[1]]
    return tuple(items) if kind == "t" else items


def _decode_sparse(spec, buffers):
    sparse = _sparse()
    _, fmt, shape, is_array, parts = spec
    arrays = [decode(part, buffers) for part in parts]
    builders = {
        "csr": (sparse.csr_array, sparse.csr_matrix),
        "csc": (sparse.csc_array, sparse.csc_matrix),
        "coo": (sparse.coo_array, sparse.coo_matrix),
    }
    build = builders[fmt][0 if is_array else 1]
    if fmt == "coo":
        data, row, col = arrays
        return build((data, (row, col)), shape=shape)
    return build(tuple(arrays), shape=shape)


def pack(values):
    """Encode ``values`` for one message.

    Returns
    -------
    payload : tuple
        ``(specs, count)``, for the pickled part of the message.
    buffers : list of numpy.ndarray
        The ``count`` arrays that travel out of line, in order.
    """
    if not values:
        return EMPTY, []
    buffers = []
    specs = [encode(value, buffers) for value in values]
    return (specs, len(buffers)), buffers


def send(comm, dest, message, buffers, tag, data_tag):
    """Send one message: the pickled ``message``, then each raw buffer, and
    return once all have gone.

    This is how servers reply: the worker asked and is waiting, so it posts
    its ``Recv`` as soon as it reads the message, and the transfers complete
    before the server moves on (none is left needing its later progress).
    They are waited for with tests and pauses (:func:`wait_request`), not in
    a blocking ``Send``, which polls inside MPI and would spin a core for as
    long as the copy takes.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The parameter-server communicator.
    dest : int
        Destination rank in ``comm``.
    message : tuple
        The picklable part (see the module docstring), holding the payload
        that :func:`pack` made along with ``buffers``.
    buffers : list of numpy.ndarray
        The out-of-line arrays.
    tag, data_tag : int
        Tags of the message and of its buffers.
    """
    comm.send(message, dest=dest, tag=tag)
    if buffers:
        wait_request([comm.Isend(piece, dest=dest, tag=data_tag)
                      for buffer in buffers for piece in pieces(buffer)])


def pieces(array):
    """``array`` as the contiguous pieces it travels in: itself, or byte views
    of at most :data:`MAX_PIECE_BYTES` each (sender and receiver cut alike)."""
    if array.nbytes <= MAX_PIECE_BYTES:
        return [array]
    flat = array.reshape(-1).view(np.uint8)
    return [flat[start:start + MAX_PIECE_BYTES]
            for start in range(0, flat.size, MAX_PIECE_BYTES)]


def post(comm, dest, message, buffers):
    """Like :func:`send` for a request, but without blocking: returns the
    requests to complete. The buffers must stay unchanged until they have."""
    requests = [comm.isend(message, dest=dest, tag=TAG_REQUEST)]
    if buffers:
        requests += [comm.Isend(piece, dest=dest, tag=TAG_DATA)
                     for buffer in buffers for piece in pieces(buffer)]
    return requests


def receive(comm, source, payload, data_tag=TAG_DATA, out=None, targets=None):
    """Receive the raw buffers of ``payload`` and decode its values (see
    :func:`allocate` for ``out`` and ``targets``)."""
    specs, count = payload
    if not count:  # everything rode in the pickled message
        return [spec[1] if spec[0] == "s" else decode(spec, ()) for spec in specs]
    buffers = allocate(specs, out, targets)
    for buffer in buffers:
        for piece in pieces(buffer):
            comm.Recv(piece, source=source, tag=data_tag)
    return [decode(spec, buffers) for spec in specs]
