"""Checkpoint files: key/value pairs in an exact, non-executable encoding.

Every file of a checkpoint (a server's table, a worker's state) is one
*snapshot file*, written sequentially in one pass:

=========  =======  =====================================================
bytes      what
=========  =======  =====================================================
8          magic    ``b"PRCLSNAP"``
4          version  little-endian uint32, :data:`VERSION`
4          zero     reserved
8          size     little-endian uint64: the index's size ``n``
n          index    zlib-compressed JSON (see below)
rest       raw      float column, int column, then the raw bytes of every
                    array, numpy scalar and ``bytes`` value, in index order
=========  =======  =====================================================

The index is ``{"keys": [...], "kinds": "...", "specs": [...], "floats": F,
"ints": I, "raw": R}``: one key spec per pair, one character per value
(``f``: the next float of the float column, ``i``: the next int64 of the
int column, ``j``: the next spec of ``specs``), ``F`` and ``I`` the column
lengths and ``R`` the raw region's size. Python floats and int64-sized ints,
the bulk of a table of scalars, so cost 8 bytes each and keep their exact
bits (NaN payloads, ``-0.0``).

A *spec* is JSON: ``null``, ``true``, ``false``, a string, or an integer in
``[-2**63, 2**63)`` stand for themselves; every other value is a list whose
first item is a tag:

``["f", bits]``
    a float by its IEEE-754 bits (inside containers).
``["i", hex]``
    an int outside the int64 range.
``["c", re, im]``
    a complex number (two float specs).
``["b", n]``
    ``bytes`` of length ``n`` (in the raw region).
``["t", ...]``, ``["l", ...]``, ``["d", k, v, ...]``
    a tuple, list or dict (keys of any encodable type).
``["a", descr, shape]``
    a numpy array (C order, its own byte order) in the raw region.
``["g", descr]``
    a numpy scalar, as a 0-d array (``["gs", text]``, ``["gb", n]`` for
    ``numpy.str_`` and ``numpy.bytes_``, which may end in NULs an array
    would drop).
``["sp", format, kind, shape, parts]``
    a scipy.sparse matrix (``kind`` 0) or array (``kind`` 1) by its component
    arrays: ``data, indices, indptr`` (csr, csc, bsr; lil and dok as csr),
    ``data, *coords`` (coo), ``data, offsets`` (dia).

JSON strings are written with every non-ASCII character escaped, so NUL and
lone surrogates round-trip. Nothing is ever pickled or evaluated: a file
from someone else can at worst be refused as malformed
(:class:`paracel.errors.CheckpointError`).
"""

import functools
import json
import math
import os
import struct
import zlib
from array import array
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from paracel.errors import CheckpointError, UserError

MAGIC = b"PRCLSNAP"
VERSION = 1
_HEADER = struct.Struct("<8sII Q")

#: Raw pieces at least this big are written from the value's own memory;
#: smaller ones are gathered into chunks of about this size.
CHUNK = 1 << 20

#: Big pieces are written and checksummed in slices of this size.
_SLICE = 16 << 20

_INT64 = 1 << 63
_FLOAT_BITS = struct.Struct("<d")

#: What a checkpoint stores, for messages.
STORABLE = ("numpy arrays (not of dtype object), numpy scalars, scipy.sparse matrices, "
            "None, bool, int, float, complex, str, bytes, and tuples, lists and dicts "
            "of them")


class Unstorable(UserError):
    """A value a checkpoint cannot hold; ``where`` is its path inside the
    value being written (``["[2]", "['rng']"]``)."""

    def __init__(self, value):
        super().__init__(f"a value of type {type(value).__name__}")
        self.value = value
        self.where = []

    def path(self):
        """The value's path, e.g. ``['rng'][2]``."""
        return "".join(self.where)


# -- encoding ----------------------------------------------------------------

class _Raw:
    """The raw region being built: small pieces copied into chunks, big
    arrays kept by reference (written later from their own memory).

    ``array_specs`` caches the spec of each (dtype, shape) met, so a table of
    many small arrays shares a few spec lists.
    """

    def __init__(self):
        self.pieces = []
        self.chunk = bytearray()
        self.size = 0
        self.array_specs = {}

    def add(self, data):
        """Append ``data`` (bytes, or a 1-d uint8 array for a big value)."""
        size = len(data)
        self.size += size
        if size < CHUNK:
            self.chunk += data
            if len(self.chunk) >= CHUNK:
                self._close_chunk()
        else:
            self._close_chunk()
            self.pieces.append(data)

    def _close_chunk(self):
        if self.chunk:
            self.pieces.append(self.chunk)
            self.chunk = bytearray()

    def finish(self):
        """Every piece, in order."""
        self._close_chunk()
        return self.pieces


@functools.lru_cache(maxsize=1024)
def _descr(dtype):
    return np.lib.format.dtype_to_descr(dtype)


def _array_spec(value, raw):
    key = (value.dtype, value.shape)
    spec = raw.array_specs.get(key)
    if spec is None:
        if value.dtype.hasobject:
            raise Unstorable(value)
        spec = raw.array_specs[key] = ["a", _descr(value.dtype), list(value.shape)]
    if value.nbytes < CHUNK:
        raw.add(value.tobytes())
    else:
        raw.add(np.ascontiguousarray(value).reshape(-1).view(np.uint8))
    return spec


def _generic_spec(value, raw):
    if isinstance(value, np.str_):
        return ["gs", str.__str__(value)]
    if isinstance(value, np.bytes_):
        raw.add(bytes(value))
        return ["gb", len(value)]
    if value.dtype.hasobject:
        raise Unstorable(value)
    raw.add(value.tobytes())
    return ["g", _descr(value.dtype)]


def _float_spec(value):
    if value - value == 0.0:  # finite: JSON keeps its exact value (repr)
        return value
    return ["f", int.from_bytes(_FLOAT_BITS.pack(value), "little")]


def _items(tag, items, raw):
    try:
        return [tag, *[encode(item, raw) for item in items]]
    except Unstorable as error:
        error.where.insert(0, f"[{_first_unstorable(items)}]")
        raise


def _first_unstorable(items):
    """The position of the first item :func:`encode` refuses (one does)."""
    return next(index for index, item in enumerate(items) if not _storable(item))


def _storable(value):
    try:
        encode(value, _Raw())
    except Unstorable:
        return False
    return True


def _dict_spec(value, raw):
    spec = ["d"]
    for key, item in value.items():
        try:
            spec.append(encode(key, raw))
            spec.append(encode(item, raw))
        except Unstorable as error:
            error.where.insert(0, f"[{key!r}]")
            raise
    return spec


def _bytes_spec(value, raw):
    raw.add(value)
    return ["b", len(value)]


_ENCODERS = {
    tuple: lambda value, raw: _items("t", value, raw),
    list: lambda value, raw: _items("l", value, raw),
    dict: _dict_spec,
    bytes: _bytes_spec,
    complex: lambda value, raw: ["c", _float_spec(value.real), _float_spec(value.imag)],
    np.ndarray: _array_spec,
}

#: Subclasses of Python scalars (an IntEnum, a str subclass) are kept as
#: their base type: a checkpoint stores no classes.
_BASES = (bool, int, float, complex, str, bytes)

#: Sparse formats stored by their own components; the others go as csr.
_SPARSE_PARTS = {"csr": ("data", "indices", "indptr"), "csc": ("data", "indices", "indptr"),
                 "bsr": ("data", "indices", "indptr"), "dia": ("data", "offsets")}


def encode(value, raw):
    """The spec of ``value``, its raw bytes appended to ``raw``.

    Raises
    ------
    Unstorable
        If ``value`` holds something outside :data:`STORABLE`.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        return _float_spec(value)
    if kind is int:
        return value if -_INT64 <= value < _INT64 else ["i", hex(value)]
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value, raw)
    if isinstance(value, np.ndarray):
        return _array_spec(value, raw)
    if isinstance(value, np.generic):
        return _generic_spec(value, raw)
    if _is_sparse(value):
        return _sparse_spec(value, raw)
    for base in _BASES:
        if isinstance(value, base):
            return encode(base(value), raw)
    raise Unstorable(value)


def _is_sparse(value):
    if not type(value).__module__.startswith("scipy.sparse"):
        return False
    import scipy.sparse

    return scipy.sparse.issparse(value)


def _sparse_spec(value, raw):
    import scipy.sparse

    fmt = value.format
    if fmt == "coo":
        parts = (value.data, *value.coords)
    else:
        if fmt not in _SPARSE_PARTS:
            value = value.tocsr()
        parts = [getattr(value, name) for name in _SPARSE_PARTS.get(fmt, _SPARSE_PARTS["csr"])]
    kind = int(isinstance(value, scipy.sparse.sparray))
    return ["sp", fmt, kind, list(value.shape), [_array_spec(np.asarray(part), raw)
                                                 for part in parts]]


# -- decoding ----------------------------------------------------------------

class _Source:
    """The raw region of an open snapshot file, read in order."""

    def __init__(self, handle, size):
        self.handle = handle
        self.left = size

    def _need(self, count):
        if not 0 <= count <= self.left:
            raise ValueError(f"the index asks for {count} raw bytes; {self.left} are left")
        self.left -= count

    def array(self, dtype, shape):
        """A fresh array of ``dtype`` and ``shape`` filled from the file (read
        straight into its memory)."""
        count = math.prod(shape) * dtype.itemsize
        self._need(count)
        if not dtype.itemsize:
            return np.empty(shape, dtype=dtype)
        out = np.empty(count, dtype=np.uint8)
        got = self.handle.readinto(out)
        if got < count:  # a big read may come in parts
            self._fill(memoryview(out)[got:])
        return out.view(dtype).reshape(shape)

    def _fill(self, view):
        while view.nbytes:
            got = self.handle.readinto(view)
            if not got:
                raise ValueError("the file ends inside its raw data")
            view = view[got:]

    def bytes(self, count):
        """The next ``count`` bytes."""
        self._need(count)
        data = self.handle.read(count)
        if len(data) != count:
            raise ValueError("the file ends inside its raw data")
        return data

    def skip(self, count):
        """Step over ``count`` bytes."""
        self._need(count)
        self.handle.seek(count, os.SEEK_CUR)


@functools.lru_cache(maxsize=1024)
def _dtype_of_str(descr):
    return _checked_dtype(np.lib.format.descr_to_dtype(descr))


def _dtype(descr):
    if isinstance(descr, str):
        return _dtype_of_str(descr)
    return _checked_dtype(np.lib.format.descr_to_dtype(_descr_fields(descr)))


def _descr_fields(descr):
    """A structured descr from JSON (lists back to the tuples numpy wants)."""
    if isinstance(descr, str):
        return descr
    fields = []
    for field in descr:
        name = tuple(field[0]) if isinstance(field[0], list) else field[0]
        rest = (tuple(field[2]),) if len(field) > 2 else ()
        fields.append((name, _descr_fields(field[1]), *rest))
    return fields


def _checked_dtype(dtype):
    if dtype.hasobject:
        raise ValueError("an array of dtype object")
    return dtype


def _shape(spec):
    if type(spec) is not list or not all(type(n) is int and n >= 0 for n in spec):
        raise ValueError(f"bad shape {spec!r}")
    return tuple(spec)


def _layout(spec):
    """``(dtype, shape)`` of an array spec, checked once per distinct spec."""
    descr = spec[1]
    if type(descr) is not str:
        return _dtype(descr), _shape(spec[2])
    return _str_layout(descr, tuple(spec[2]))


@functools.lru_cache(maxsize=4096)
def _str_layout(descr, shape):
    return _dtype_of_str(descr), _shape(list(shape))


def decode(spec, source):
    """Rebuild a value from its spec, reading its raw bytes from ``source``."""
    if type(spec) is list:
        return _DECODERS[spec[0]](spec, source)
    if type(spec) is dict:  # the one JSON type that is no value here
        raise ValueError(f"bad value spec {spec!r}")
    return spec


def _decode_items(spec, source):
    items = spec[1:]
    for item in items:
        kind = type(item)
        if kind is list or kind is dict:
            return [decode(item, source) for item in items]
    return items  # all plain JSON values: nothing to rebuild


def _decode_dict(spec, source):
    items = _decode_items(spec, source)
    return dict(zip(items[0::2], items[1::2]))


def _text(spec):
    if type(spec) is not str:
        raise ValueError(f"bad text {spec!r}")
    return spec


def _decode_float(spec, source):
    return _FLOAT_BITS.unpack(int(spec[1]).to_bytes(8, "little"))[0]


def _decode_sparse(spec, source):
    import scipy.sparse

    _, fmt, kind, shape, parts = spec
    arrays = [_decode_array(part, source) for part in parts]
    stored = fmt if fmt in _SPARSE_PARTS or fmt == "coo" else "csr"
    build = getattr(scipy.sparse, f"{stored}_{'array' if kind else 'matrix'}")
    if stored == "coo":
        value = build((arrays[0], tuple(arrays[1:])), shape=_shape(shape))
    elif stored == "dia":
        value = build((arrays[0], arrays[1]), shape=_shape(shape))
    else:
        value = build(tuple(arrays), shape=_shape(shape))
    return value if stored == fmt else value.asformat(fmt)


def _decode_array(spec, source):
    if spec[0] != "a":
        raise ValueError(f"bad array spec {spec!r}")
    return source.array(*_layout(spec))


_DECODERS = {
    "f": _decode_float,
    "i": lambda spec, source: int(spec[1], 16),
    "c": lambda spec, source: complex(decode(spec[1], source), decode(spec[2], source)),
    "b": lambda spec, source: source.bytes(spec[1]),
    "t": lambda spec, source: tuple(_decode_items(spec, source)),
    "l": _decode_items,
    "d": _decode_dict,
    "a": _decode_array,
    "g": lambda spec, source: source.array(_dtype(spec[1]), ())[()],
    "gs": lambda spec, source: np.str_(_text(spec[1])),
    "gb": lambda spec, source: np.bytes_(source.bytes(spec[1])),
    "sp": _decode_sparse,
}


def raw_size(spec):
    """How many raw bytes the value of ``spec`` takes (to step over it)."""
    if type(spec) is not list:
        decode(spec, None)  # a plain value, or refused
        return 0
    tag = spec[0]
    if tag == "a":
        dtype, shape = _layout(spec)
        return math.prod(shape) * dtype.itemsize
    if tag == "g":
        return _dtype(spec[1]).itemsize
    if tag in ("b", "gb"):
        return spec[1]
    if tag == "sp":
        return sum(raw_size(part) for part in spec[4])
    if tag in ("t", "l", "d", "c"):
        return sum(raw_size(item) for item in spec[1:])
    if tag in _DECODERS:  # no raw bytes
        return 0
    raise ValueError(f"bad value spec {spec!r}")


class _NoRaw:
    """The raw sink of pair keys: a key with raw bytes is refused, so every
    key can be decoded from the index alone."""

    size = 0

    def add(self, data):
        raise Unstorable(bytes(data))


_NO_RAW = _NoRaw()


# -- files -------------------------------------------------------------------

def _index(pairs):
    """The compressed index and the raw pieces of ``pairs``."""
    raw = _Raw()
    keys, kinds, specs = [], [], []
    floats, ints = array("d"), array("q")
    for key, value in pairs:
        try:
            keys.append(key if type(key) is str else encode(key, _NO_RAW))
            kind = type(value)
            if kind is float:
                kinds.append("f")
                floats.append(value)
            elif kind is int and -_INT64 <= value < _INT64:
                kinds.append("i")
                ints.append(value)
            elif kind is np.ndarray:
                kinds.append("j")
                specs.append(_array_spec(value, raw))
            else:
                kinds.append("j")
                specs.append(encode(value, raw))
        except Unstorable as error:
            error.key = key
            raise
    index = {"keys": keys, "kinds": "".join(kinds), "specs": specs, "floats": len(floats),
             "ints": len(ints), "raw": 8 * (len(floats) + len(ints)) + raw.size}
    text = json.dumps(index, ensure_ascii=True, allow_nan=False, check_circular=False,
                      separators=(",", ":"))
    columns = [_little(floats, np.float64), _little(ints, np.int64)]
    return zlib.compress(text.encode("ascii"), 1), columns + raw.finish()


def _little(column, dtype):
    """The bytes of an ``array`` column of ``dtype``, little-endian."""
    native = np.frombuffer(column, dtype=dtype)
    return native.astype(native.dtype.newbyteorder("<"), copy=False).view(np.uint8)


def create_exclusive(path):
    """Open a new file for writing; refuse anything already at ``path``
    (a planted file or symlink is never written through)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o666)


def write(path, pairs):
    """Write ``(key, value)`` pairs to a new snapshot file, fsynced.

    Parameters
    ----------
    path : str
        Created exclusively (it must not exist).
    pairs : iterable of (key, value)
        Keys are str, int, or tuples of them (anything without raw bytes);
        values anything in :data:`STORABLE`.

    Returns
    -------
    dict
        ``{"size": bytes, "crc32": checksum}`` of the whole file.

    Raises
    ------
    Unstorable
        A value (or key) that cannot be stored; its ``key`` and
        :meth:`Unstorable.path` say where. Nothing is written then.
    UserError
        The file cannot be written (e.g. a full disk): one line naming it;
        the partial file is removed.
    """
    index, pieces = _index(pairs)
    header = _HEADER.pack(MAGIC, VERSION, 0, len(index))
    try:
        descriptor = create_exclusive(path)
    except OSError as error:
        raise UserError(f"checkpoint: cannot create {path}: {error.strerror}") from None
    try:
        crc, size = _write_all(descriptor, [header, index, *pieces])
        os.fsync(descriptor)
    except OSError as error:
        os.close(descriptor)
        os.unlink(path)
        raise UserError(f"checkpoint: cannot write {path}: {error.strerror}") from None
    os.close(descriptor)
    return {"size": size, "crc32": crc}


def _write_all(descriptor, pieces):
    """Write every piece in order; returns the CRC-32 of it all and the size.

    The checksum is computed by a helper thread, slice by slice in order,
    while the main thread writes the same slices: both release the GIL, so
    on more than one core the checksum costs almost nothing on top of the
    write (the pieces do not change meanwhile: the writer owns them).
    """
    running = [0]

    def checksum(part):
        running[0] = zlib.crc32(part, running[0])

    size = 0
    with ThreadPoolExecutor(max_workers=1) as helper:  # one thread: slices in order
        for piece in pieces:
            view = memoryview(piece).cast("B")
            size += view.nbytes
            for start in range(0, view.nbytes, _SLICE):
                part = view[start:start + _SLICE]
                helper.submit(checksum, part)
                while part.nbytes:
                    part = part[os.write(descriptor, part):]
    return running[0], size


def read(path, select=None):
    """The ``(key, value)`` pairs of a snapshot file, in file order.

    Parameters
    ----------
    path : str
        A file made by :func:`write`.
    select : callable, optional
        ``select(keys)`` gives the positions of the pairs wanted; the values
        of the others are stepped over, never read.

    Raises
    ------
    CheckpointError
        The file is missing, truncated or malformed (one line naming it).
    """
    try:
        with open(path, "rb") as handle:
            return _read(handle, select)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read: {error.strerror}") from None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, OverflowError,
            RecursionError, zlib.error, struct.error) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint file: {error}") from None


def _read(handle, select):
    size = os.fstat(handle.fileno()).st_size
    index = _read_index(handle, size)
    keys = [key if type(key) is str else _key(decode(key, None)) for key in index["keys"]]
    kinds, specs = index["kinds"], index["specs"]
    counts = [kinds.count(kind) for kind in "fij"]
    if not (len(kinds) == len(keys) == sum(counts)
            and counts == [index["floats"], index["ints"], len(specs)]):
        raise ValueError("its index is inconsistent")
    source = _Source(handle, index["raw"])
    floats = source.array(np.dtype("<f8"), (index["floats"],)).tolist()
    ints = source.array(np.dtype("<i8"), (index["ints"],)).tolist()
    values = _values(kinds, specs, floats, ints, source,
                     None if select is None else set(select(keys)))
    pairs = list(zip(keys, values)) if select is None else \
        [(keys[position], value) for position, value in values]
    if source.left:
        raise ValueError(f"{source.left} raw bytes are not accounted for by its index")
    return pairs


def _values(kinds, specs, floats, ints, source, wanted):
    """Every value in order; or, given the ``wanted`` positions, ``(position,
    value)`` of those only, stepping over the raw bytes of the others."""
    next_float, next_int, next_spec = iter(floats).__next__, iter(ints).__next__, \
        iter(specs).__next__
    if wanted is None:
        return [next_float() if kind == "f" else next_int() if kind == "i"
                else decode(next_spec(), source) for kind in kinds]
    found = []
    for position, kind in enumerate(kinds):
        value = next_float() if kind == "f" else next_int() if kind == "i" else next_spec()
        if position in wanted:
            found.append((position, decode(value, source) if kind == "j" else value))
        elif kind == "j":
            source.skip(raw_size(value))
    return found


def _read_index(handle, size):
    header = handle.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise ValueError("it is shorter than its header")
    magic, version, _, length = _HEADER.unpack(header)
    if magic != MAGIC:
        raise ValueError("it does not start like one")
    if version != VERSION:
        raise ValueError(f"it is in snapshot version {version}; this version reads {VERSION}")
    if _HEADER.size + length > size:
        raise ValueError("it ends inside its index")
    index = json.loads(zlib.decompress(handle.read(length)))
    expected = _HEADER.size + length + index["raw"]
    if expected != size:
        raise ValueError(f"it has {size} bytes; its index accounts for {expected}")
    return index


def _key(key):
    """A decoded key, which must be hashable."""
    hash(key)
    return key
