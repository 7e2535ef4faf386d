"""Which server holds a key: a consistent-hash ring with virtual nodes.

Every rank must agree on where a key lives without talking to the others, so
the mapping depends on nothing but the key and the number of servers. Keys are
hashed with BLAKE2b over a canonical byte encoding (:func:`key_bytes`), never
with Python's ``hash()``, which is salted per process (``PYTHONHASHSEED``) and
would send the same key to different servers from different ranks.

Each server owns many points ("virtual nodes") on a 64-bit ring; a key belongs
to the server owning the first point at or after the key's hash, wrapping
around past the top. Many points per server even out the shares, and because a
ring for ``n + 1`` servers holds every point of the ring for ``n``, adding a
server moves only the keys that land on its new points: about ``1/(n+1)`` of
them, all to the new server.

Distributed matrices are stored as row blocks, each one table key made by
:func:`block_key` from the matrix name and the block number
(:func:`row_block`).

Rows of a row table (:mod:`paracel.rows`) are not keys: millions of 64-bit
ids are placed at once by :func:`id_servers`, from :func:`mix64` of the id
(a fixed bijective 64-bit mix, vectorised with numpy), never by the ring.

This module does not import MPI.
"""

import bisect
import functools
import hashlib

import numpy as np

from paracel.errors import ConfigError, UserError

#: Virtual nodes per server. Measured on 100,000 keys, 2048 points keep every
#: server's share within 3 % of the mean on 4 servers and within 6 % on 2 to
#: 16 servers (1024 points drift past 10 %). The ring costs 16 KiB per server,
#: a few milliseconds per server to build, and a lookup is one binary search.
DEFAULT_VNODES = 2048

_STR_CACHE_SIZE = 65536

#: Up to this many keys, :meth:`Ring.group` loops in Python: numpy's fixed
#: costs (20-35 us) dominate short calls such as a single write.
SMALL_GROUP = 32
_TAG_STR = b"s"
_TAG_INT = b"i"
_TAG_TUPLE = b"t"


def key_bytes(key):
    """Encode a key as bytes that are the same in every process.

    Parameters
    ----------
    key : str, int or tuple
        A string, an integer (not a bool), or a tuple of such keys (tuples may
        nest).

    Returns
    -------
    bytes
        A type tag, a length and the payload for each part, so the encoding
        is one-to-one: ``("a", "b")``, ``("ab",)``, ``"ab"``, ``1``, ``"1"``
        and ``(1,)`` all encode differently.

    Raises
    ------
    UserError
        If the key, or any part of it, has another type. Bools are refused
        because ``True == 1`` would make two different-looking keys one.
    """
    parts = []
    _encode(key, key, parts)
    return b"".join(parts)


def _encode(part, key, out):
    """Append the tagged, length-prefixed encoding of ``part`` to ``out``."""
    kind = type(part)
    if kind is not str and kind is not int and kind is not tuple:
        part, kind = _plain_part(part)
    if kind is str:
        data = part.encode("utf-8", "surrogatepass")
        out += (_TAG_STR, len(data).to_bytes(8, "big"), data)
    elif kind is int:
        data = part.to_bytes(part.bit_length() // 8 + 1, "big", signed=True)
        out += (_TAG_INT, len(data).to_bytes(8, "big"), data)
    elif kind is tuple:
        out += (_TAG_TUPLE, len(part).to_bytes(8, "big"))
        for item in part:
            _encode(item, key, out)
    else:
        where = "" if part is key else " (in key %r)" % (key,)
        raise UserError(
            "key %r%s has unsupported type %s; keys are str, int, or tuples "
            "of str/int" % (part, where, kind.__name__))


def _plain_part(part):
    """numpy strings and integers count as ``str`` and ``int`` (they compare
    and hash equal to them); anything else keeps its type and is refused."""
    if isinstance(part, str):
        return str(part), str
    if isinstance(part, np.integer):
        return int(part), int
    return part, type(part)


def stable_hash(key):
    """Hash a key to a 64-bit unsigned integer, the same in every process.

    Parameters
    ----------
    key : str, int or tuple
        Any key :func:`key_bytes` accepts.

    Returns
    -------
    int
        The BLAKE2b digest (8 bytes, big-endian) of ``key_bytes(key)``.
    """
    digest = hashlib.blake2b(key_bytes(key), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@functools.lru_cache(maxsize=_STR_CACHE_SIZE)
def _str_hash(key):
    """Cached :func:`stable_hash` of a str; only str, since ``True == 1``."""
    return stable_hash(key)


def _hash(key):
    """:func:`stable_hash`, cached for the common case of string keys."""
    if type(key) is str:
        return _str_hash(key)
    return stable_hash(key)


class Ring:
    """Consistent-hash ring with virtual nodes.

    Parameters
    ----------
    num_servers : int
        How many servers share the keys; at least 1.
    vnodes : int, optional
        Points on the ring per server; more points even out the shares at
        the cost of memory and build time (see :data:`DEFAULT_VNODES`).

    Attributes
    ----------
    num_servers : int
        The number of servers, numbered ``0 .. num_servers - 1``.
    vnodes : int
        Points per server.

    Raises
    ------
    ConfigError
        If ``num_servers`` or ``vnodes`` is not a positive integer.

    Notes
    -----
    Point ``v`` of server ``s`` sits at ``stable_hash(("@server", s, v))``,
    so a ring depends only on its two parameters and the ring for ``n``
    servers is a subset of the ring for ``n + 1``.
    """

    def __init__(self, num_servers, vnodes=DEFAULT_VNODES):
        self.num_servers = _positive_int("num_servers", num_servers)
        self.vnodes = _positive_int("vnodes", vnodes)
        hashes = np.array(
            [stable_hash(("@server", s, v))
             for s in range(self.num_servers) for v in range(self.vnodes)],
            dtype=np.uint64)
        owners = np.repeat(np.arange(self.num_servers), self.vnodes)
        order = np.lexsort((owners, hashes))  # ties, if ever, go by server
        self._points = hashes[order]
        self._owners = owners[order]
        self._point_list = self._points.tolist()
        self._owner_list = self._owners.tolist()

    def __repr__(self):
        return "Ring(num_servers=%d, vnodes=%d)" % (self.num_servers,
                                                    self.vnodes)

    def server_of(self, key):
        """Return the server that holds ``key``.

        Parameters
        ----------
        key : str, int or tuple
            Any key :func:`key_bytes` accepts.

        Returns
        -------
        int
            A server number in ``range(num_servers)``.
        """
        index = bisect.bisect_left(self._point_list, _hash(key))
        return self._owner_list[index % len(self._owner_list)]

    def group(self, keys):
        """Sort keys by the server that holds them, for one message per server.

        Parameters
        ----------
        keys : sequence
            Keys that :func:`key_bytes` accepts.

        Returns
        -------
        dict of int to list of int
            For each server that holds at least one of the keys, the
            positions of its keys in ``keys``, in their original order.
            Servers are listed in increasing order.
        """
        if len(keys) <= SMALL_GROUP:  # common short calls, without numpy's overheads
            groups = {}
            for position, key in enumerate(keys):
                groups.setdefault(self.server_of(key), []).append(position)
            return dict(sorted(groups.items()))
        hashes = np.fromiter((_hash(key) for key in keys), dtype=np.uint64)
        index = np.searchsorted(self._points, hashes, side="left")
        return group_by_server(self._owners[index % len(self._owners)])


def group_by_server(servers):
    """``{server: positions}`` for an array giving each key's server (see
    :meth:`Ring.group`); for callers that already know where keys live."""
    servers = np.asarray(servers, dtype=np.int64)
    order = np.argsort(servers, kind="stable")
    present, counts = np.unique(servers, return_counts=True)
    chunks = np.split(order, np.cumsum(counts)[:-1])
    return {int(s): chunk.tolist() for s, chunk in zip(present, chunks)}


#: The multipliers of the splitmix64 finaliser (Steele, Lea and Flood 2014).
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(ids):
    """The splitmix64 finaliser of every id: a bijection of the 64-bit
    integers whose every output bit depends on every input bit.

    Parameters
    ----------
    ids : numpy.ndarray of uint64
        Row ids (1-d).

    Returns
    -------
    numpy.ndarray of uint64
        A new array; sequential ids come out spread over the whole range, so
        its high bits place ids on servers and its low bits on hash slots.
    """
    mixed = ids >> np.uint64(30)
    mixed ^= ids
    mixed *= _MIX1
    mixed ^= mixed >> np.uint64(27)
    mixed *= _MIX2
    mixed ^= mixed >> np.uint64(31)
    return mixed


def id_servers(ids, num_servers):
    """The server of each row id: the top 32 bits of :func:`mix64`, scaled
    to ``range(num_servers)``.

    Parameters
    ----------
    ids : numpy.ndarray of uint64
        Row ids (1-d).
    num_servers : int
        How many servers share the rows.

    Returns
    -------
    numpy.ndarray of uint64
        The server of each id, the same on every rank and in every run.
    """
    top = mix64(ids) >> np.uint64(32)
    top *= np.uint64(num_servers)
    top >>= np.uint64(32)
    return top


def block_key(name, block):
    """Return the table key of row block ``block`` of matrix ``name``.

    Parameters
    ----------
    name : str
        The distributed matrix's name.
    block : int or numpy integer
        The row block's number, from :func:`row_block`; at least 0.

    Returns
    -------
    tuple
        ``("@matrix", name, block)`` with ``block`` a Python int; the
        ``"@matrix"`` tag keeps block keys apart from any key a user writes
        directly.

    Raises
    ------
    UserError
        If ``name`` is not a str or ``block`` is not an int >= 0.
    """
    if type(name) is not str:
        raise UserError("matrix name %r must be a str, not %s"
                        % (name, type(name).__name__))
    if not _is_int(block) or block < 0:
        raise UserError("row block %r of matrix %r must be an int >= 0"
                        % (block, name))
    return ("@matrix", name, int(block))


def row_block(row, block_size):
    """Return the number of the row block that holds ``row``.

    Parameters
    ----------
    row : int or numpy integer
        A row index, at least 0.
    block_size : int
        Rows per block, at least 1.

    Returns
    -------
    int
        ``row // block_size``.

    Raises
    ------
    UserError
        If ``row`` is negative or not an int.
    ConfigError
        If ``block_size`` is not a positive int.
    """
    block_size = _positive_int("block_size", block_size)
    if not _is_int(row) or row < 0:
        raise UserError("row %r must be an int >= 0" % (row,))
    return int(row) // block_size


def _positive_int(name, value):
    """Return ``value`` as an int, or raise ConfigError naming ``name``."""
    if not _is_int(value) or value < 1:
        raise ConfigError("%s must be an int >= 1, got %r" % (name, value))
    return int(value)


def _is_int(value):
    """Tell whether ``value`` is a Python or numpy integer, but not a bool."""
    return (isinstance(value, (int, np.integer))
            and not isinstance(value, bool))
