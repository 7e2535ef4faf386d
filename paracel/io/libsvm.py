"""LIBSVM / svmlight files: ``label idx:val idx:val ... [# comment]``.

Each worker parses only its line-aligned share (:mod:`paracel.io.lines`).
Parsing is vectorised, with no Python object per token: clean input is read
straight from the share's bytes by numpy's C text parser, as unsigned 64-bit
integers when the share holds integers only (binary click logs: four times
faster than parsing floats) and as floats otherwise; input with comments or
CR line ends is split into tokens once and converted by numpy; only when
that fails is the share re-read line by line to name the first bad line.

Feature indices are exact unsigned 64-bit integers (hashed ids, raw 64-bit
ids) up to ``2**64 - 2``; ``2**64 - 1`` is refused (it marks the intercept
in models keyed by id). Two ways to load a share:

* :func:`load` -- a CSR matrix over all features, its width agreed across
  workers with one exchange (as scikit-learn's ``load_svmlight_file``);
* :func:`load_compact` -- a CSR matrix over only the features the share
  uses, renumbered ``0 .. k - 1``, with their global ids: what a model keyed
  by id (a row table) needs, whatever the size of the id space.

With ``zero_based="auto"`` indices are 1-based unless some worker sees an
index 0 (as scikit-learn guesses).
"""

import warnings

import numpy as np

from paracel.errors import DataError
from paracel.io.lines import byte_ranges, file_size, line_number, open_agreed


#: The largest feature index a file may hold; one more is refused (where a
#: longer number saturates, and the intercept's id in models keyed by id).
MAX_INDEX = 2**64 - 2

#: Bytes of text parsed at once: a worker's peak memory is its parsed share
#: plus one chunk's text and temporaries, not the whole share's.
CHUNK_BYTES = 64 << 20

#: Float64 holds every integer below this exactly.
_EXACT_FLOAT = 2**53

#: Bytes of a share of integers only (then parsed as uint64, no float parse).
_INTEGER_BYTES = b"0123456789 :\n+-"
#: ``:`` and signs become separators for the integer parse.
_TO_SPACE = bytes.maketrans(b":+-", b"   ")


def parse(data, path="<bytes>", base_offset=0, skip=False):
    """Parse LIBSVM text into labels and (row, col, value) triples.

    Parameters
    ----------
    data : bytes
        Whole lines of LIBSVM text.
    path, base_offset : str, int
        Where ``data`` came from, for messages naming the line.
    skip : bool
        Drop malformed lines (and count them) instead of raising.

    Returns
    -------
    labels : numpy.ndarray of float64
    indptr : numpy.ndarray of int64
    indices : numpy.ndarray of uint64
        The file's own (not yet shifted) feature indices, exact.
    values : numpy.ndarray of float64
    skipped : int
        How many malformed lines were dropped.
    """
    try:
        return _parse_buffer(data) + (0,)
    except ValueError:
        pass  # comments, CR line ends or a malformed line: the general path
    lines = data.replace(b"\r", b"").split(b"\n")
    if b"#" in data:
        lines = [line.split(b"#", 1)[0] for line in lines]
    lines = [line for line in lines if line.strip()]
    try:
        return _parse_tokens(lines) + (0,)
    except (ValueError, IndexError, OverflowError):
        if skip:
            good = [line for line in lines if _line_problem(line.strip()) is None]
            return _parse_tokens(good) + (len(lines) - len(good),)
        _find_bad_line(data, path, base_offset)
        raise


def _parse_buffer(data):
    """Parse clean LIBSVM bytes without a Python object per token.

    Colons are counted per line on the raw bytes and every number is read by
    numpy's C text parser, so memory stays a small multiple of the input and
    the speed matches a compiled reader. Anything unusual (comments, CR line
    ends, blank-but-not-empty lines, a malformed token) raises ValueError for
    the general path to handle and report.
    """
    if b"#" in data or b"\r" in data:
        raise ValueError("needs the general path")
    if not data.strip():
        raise ValueError("nothing to parse")
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    if data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    lines = ends > starts
    colons = np.flatnonzero(raw == ord(":"))
    counts = (np.searchsorted(colons, ends) - np.searchsorted(colons, starts))[lines]
    if not data.translate(None, _INTEGER_BYTES):
        integers = _integers(data, raw, starts[lines])
        if integers is not None:
            return _assemble(*integers, counts)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # "could not be read to its end"
        numbers = np.fromstring(data.replace(b":", b" "), dtype=np.float64, sep=" ")
    labels, indptr, indices, values = _assemble(numbers, None, counts)
    if indices.size and indices.max() >= _EXACT_FLOAT:
        return labels, indptr, _exact_indices(raw, colons, indices), values
    return labels, indptr, indices.astype(np.uint64), values


def _integers(data, raw, starts):
    """The numbers of a share of integers only, as uint64, and the lines
    (numbered among ``starts``) whose label has a minus sign; ``None`` when
    a sign stands anywhere but before a label (the float parse reads it)."""
    minus = np.flatnonzero(raw == ord("-"))
    signs = np.union1d(minus, np.flatnonzero(raw == ord("+")))
    line = np.searchsorted(starts, signs)
    if signs.size and (line.max() >= starts.size or np.any(starts[line] != signs)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        numbers = np.fromstring(data.translate(_TO_SPACE), dtype=np.uint64, sep=" ")
    if numbers.size and numbers.max() > MAX_INDEX:
        raise ValueError("a number too large (uint64 saturates)")
    return numbers, np.searchsorted(starts, minus)


def _assemble(numbers, negative, counts):
    """Labels and CSR pieces from the flat ``label (index value)*`` numbers:
    float64, or uint64 with the lines whose label is ``negative``."""
    if numbers.size != counts.size + 2 * counts.sum():
        raise ValueError("token count mismatch")
    starts = np.concatenate([[0], np.cumsum(1 + 2 * counts)[:-1]]).astype(np.int64)
    labels = numbers[starts].astype(np.float64)
    if negative is not None:
        labels[negative] *= -1.0
    is_label = np.zeros(len(numbers), dtype=bool)
    is_label[starts] = True
    pairs = numbers[~is_label].reshape(-1, 2)
    indices = pairs[:, 0]
    if negative is None and indices.size and (np.any(indices != np.floor(indices))
                                              or indices.min() < 0):
        raise ValueError("bad feature index")
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if not _increasing(indices, indptr):
        raise ValueError("feature indices out of order")
    return labels, indptr, indices, pairs[:, 1].astype(np.float64)


def _exact_indices(raw, colons, approximate):
    """Indices of ``2**53`` and more read exactly from their digits (the
    float parse rounds them): the digits before each colon, back to the
    whitespace that starts the token."""
    exact = np.zeros(colons.size, dtype=np.uint64)
    scale = np.ones(colons.size, dtype=np.uint64)
    going = np.ones(colons.size, dtype=bool)
    for back in range(1, 22):
        position = colons - back
        byte = raw[np.maximum(position, 0)]
        digit = (position >= 0) & (byte >= ord("0")) & (byte <= ord("9"))
        stops = going & ~digit
        if np.any(stops & (position >= 0) & (byte != ord(" ")) & (byte != ord("\t"))
                  & (byte != ord("\n"))):
            raise ValueError("an index that is not plain digits")
        going &= digit
        if not going.any():
            break
        exact[going] += (byte[going] - ord("0")).astype(np.uint64) * scale[going]
        scale *= np.uint64(10)
    wrapped = np.abs(exact.astype(np.float64) - approximate) > 1e-9 * approximate
    if going.any() or np.any(wrapped) or exact.max() > MAX_INDEX:
        raise ValueError("an index too large for 64 bits")
    return exact


def _parse_tokens(lines):
    """The general path: lines split into tokens, converted by numpy."""
    if not lines:
        empty = np.zeros(0)
        return empty, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint64), empty
    counts = np.fromiter((line.count(b":") for line in lines), dtype=np.int64,
                         count=len(lines))
    tokens = b" ".join(lines).replace(b":", b" ").split()
    if len(tokens) != len(lines) + 2 * counts.sum():
        raise ValueError("token count mismatch")
    tokens = np.array(tokens)
    starts = np.concatenate([[0], np.cumsum(1 + 2 * counts)[:-1]]).astype(np.int64)
    is_label = np.zeros(len(tokens), dtype=bool)
    is_label[starts] = True
    pairs = tokens[~is_label].reshape(-1, 2)
    indices = pairs[:, 0].astype(np.uint64)
    if indices.size and indices.max() > MAX_INDEX:
        raise ValueError("an index too large")
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if not _increasing(indices, indptr):
        raise ValueError("feature indices out of order")
    return (tokens[starts].astype(np.float64), indptr, indices,
            pairs[:, 1].astype(np.float64))


def _increasing(indices, indptr):
    """Whether indices strictly increase within every row."""
    bad = indices[1:] <= indices[:-1]
    crossings = indptr[1:-1] - 1
    bad[crossings[(crossings >= 0) & (crossings < bad.size)]] = False
    return not bad.any()


def _find_bad_line(data, path, base_offset):
    """Raise a DataError naming the first malformed line of ``data``."""
    offset = base_offset
    for raw in data.split(b"\n"):
        text = raw.split(b"#", 1)[0].strip()
        if text:
            problem = _line_problem(text)
            if problem:
                number = line_number(path, offset) if path != "<bytes>" else "?"
                raise DataError(f"{path}:{number}: {problem}: {raw[:80].decode('utf-8', 'replace')!r}")
        offset += len(raw) + 1


def _line_problem(text):
    parts = text.split()
    try:
        float(parts[0])
    except ValueError:
        return "the label is not a number"
    previous = -1
    for item in parts[1:]:
        index, sep, value = item.partition(b":")
        if not sep:
            return f"expected index:value, got {item.decode('utf-8', 'replace')!r}"
        if index == b"qid":
            return "qid fields are not supported"
        try:
            index, value = int(index), float(value)
        except ValueError:
            return f"bad index:value pair {item.decode('utf-8', 'replace')!r}"
        if index < 0:
            return f"negative feature index {index}"
        if index > MAX_INDEX:
            return f"feature index {index} is too large (at most 2**64 - 2)"
        if index <= previous:
            return "feature indices must increase along a line"
        previous = index
    return None


def read_share(files, part, parts, skip=False):
    """Parse share ``part`` of ``parts`` of ``files``.

    Returns CSR pieces with the file's indices and the count of skipped lines.
    """
    labels, indptrs, indices, values, skipped = [], [], [], [], 0
    for path, start, end in _aligned(files, part, parts):
        try:
            with open_agreed(path) as handle:
                handle.seek(start)
                data = handle.read(end - start)
            parsed = parse(data, path, start, skip)
        except MemoryError:
            raise DataError(f"{path}:{line_number(path, start)}: out of memory parsing this "
                            f"worker's {end - start} bytes from this line on; use more "
                            "workers") from None
        labels.append(parsed[0])
        indptrs.append(parsed[1])
        indices.append(parsed[2])
        values.append(parsed[3])
        skipped += parsed[4]
    return _concat(labels, indptrs, indices, values) + (skipped,)


def _aligned(files, part, parts):
    """The share's ``(path, start, end)`` pieces moved to line boundaries,
    each cut into chunks of about :data:`CHUNK_BYTES` (parsed one at a time,
    so the text and the parser's temporaries of only one chunk are held)."""
    for path, start, end in byte_ranges(files, parts)[part]:
        start, end = _line_start(path, start), _line_start(path, end)
        while start < end:
            cut = end if end - start <= CHUNK_BYTES else \
                min(end, _line_start(path, start + CHUNK_BYTES))
            yield path, start, cut
            start = cut


def _line_start(path, offset):
    """The first line start at or after ``offset`` (at most the file's agreed
    size: what was appended after it is not read)."""
    size = file_size(path)
    if offset == 0 or offset >= size:
        return min(offset, size)
    with open_agreed(path) as handle:
        handle.seek(offset - 1)
        if handle.read(1) == b"\n":
            return offset
        handle.readline(size - offset)
        return handle.tell()


def _concat(labels, indptrs, indices, values):
    if not labels:
        empty = np.zeros(0)
        return empty, np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.uint64), empty
    shifted, base = [], 0
    for indptr in indptrs:
        shifted.append(indptr[:-1] + base)
        base += indptr[-1]
    indptr = np.concatenate(shifted + [np.array([base], dtype=np.int64)])
    joined = [np.concatenate(labels), indptr]
    for pieces in (indices, values):                # each list freed as soon as it is joined
        joined.append(np.concatenate(pieces))
        pieces.clear()
    return tuple(joined)


def _zero_based(indices, comm, zero_based, files):
    """The indices 0-based (shifted down for a 1-based file), the base
    agreed by all workers, the largest 0-based index of any worker (-1
    without features), and whether the file's indices were 0-based."""
    low = int(indices.min()) if indices.size else MAX_INDEX + 1
    high = int(indices.max()) if indices.size else -1
    if comm is not None:
        from paracel.waiting import allgather_objects

        every = allgather_objects(comm, (low, high))
        low, high = min(pair[0] for pair in every), max(pair[1] for pair in every)
    if zero_based == "auto":
        zero_based = low == 0
    if zero_based or high < 0:
        return indices, high, bool(zero_based)
    if low == 0:
        raise DataError(f"{files[0]}...: feature index 0 found but zero_based is false")
    return indices - np.uint64(1), high - 1, False


def _checked_width(high, n_features, files):
    """The number of features: ``n_features``, or the largest index + 1."""
    width = high + 1 if n_features is None else n_features
    if high >= width:
        raise DataError(f"{files[0]}...: feature index {high} is beyond "
                        f"n_features={width}")
    return width


def load(files, comm, part, parts, n_features=None, zero_based="auto", dtype=np.float64,
         skip=False):
    """This worker's share of LIBSVM ``files`` as labels and a CSR matrix.

    Parameters
    ----------
    files : list of str
        The input files, in order.
    comm : mpi4py.MPI.Comm or None
        The workers' communicator, to agree on the feature count and base.
        ``None`` for a single process.
    part, parts : int
        This worker's share and the number of shares.
    n_features : int, optional
        Columns of the result; inferred (the largest index seen by any worker)
        when not given.
    zero_based : bool or "auto"
        Whether indices start at 0. ``"auto"``: 1-based unless some worker
        sees an index 0 (as scikit-learn guesses).
    skip : bool
        Drop malformed lines instead of raising (see ``skipped``).

    Returns
    -------
    labels : numpy.ndarray
    X : scipy.sparse.csr_matrix of shape (n_rows, n_features)
    skipped : int
        Malformed lines dropped from this worker's share (0 unless ``skip``).
    zero_based : bool
        Whether the files' indices were 0-based (as decided with ``"auto"``).
    """
    import scipy.sparse

    labels, indptr, indices, values, skipped = read_share(files, part, parts, skip)
    indices, high, zero_based = _zero_based(indices, comm, zero_based, files)
    width = _checked_width(high, n_features, files)
    if width > 2**62:
        raise DataError(f"{files[0]}...: feature index {high} is too large for a matrix "
                        "over all features (use a loader keyed by id)")
    X = scipy.sparse.csr_matrix((values.astype(dtype), indices.astype(np.int64), indptr),
                                shape=(len(labels), width))
    return labels, X, skipped, zero_based


def load_compact(files, comm, part, parts, n_features=None, zero_based="auto",
                 dtype=np.float64, skip=False):
    """This worker's share of LIBSVM ``files`` over only the features it uses.

    Parameters
    ----------
    files, comm, part, parts, zero_based, skip
        As for :func:`load`.
    n_features : int, optional
        A bound: an index at or beyond it (0-based) is an error.
    dtype : numpy dtype
        The values' type.

    Returns
    -------
    labels : numpy.ndarray
    X : scipy.sparse.csr_matrix of shape (n_rows, len(ids))
        Column ``j`` is feature ``ids[j]``.
    ids : numpy.ndarray of uint64
        The 0-based global ids of the features the share uses, increasing.
    skipped : int
        Malformed lines dropped from this worker's share (0 unless ``skip``).
    zero_based : bool
        Whether the files' indices were 0-based (as decided with ``"auto"``).
    """
    import scipy.sparse

    labels, indptr, indices, values, skipped = read_share(files, part, parts, skip)
    indices, high, zero_based = _zero_based(indices, comm, zero_based, files)
    if n_features is not None:
        _checked_width(high, n_features, files)
    ids, columns = compact_columns(indices)
    del indices                                   # a share's biggest array, no longer needed
    X = scipy.sparse.csr_matrix((values.astype(dtype, copy=False), columns, indptr),
                                shape=(len(labels), ids.size))
    return labels, X, ids, skipped, zero_based


def compact_columns(indices):
    """The distinct values of ``indices`` and the position of each among them.

    Parameters
    ----------
    indices : numpy.ndarray of uint64

    Returns
    -------
    ids : numpy.ndarray of uint64
        The distinct indices, increasing.
    columns : numpy.ndarray of int32 (int64 past 2**31 - 1 distinct ids)
        ``ids[columns[i]] == indices[i]``.

    Notes
    -----
    When an index and its position fit in 64 bits together (ids below
    ``2**(64 - log2(n))``: hashed ids) both are packed into one key and
    sorted by numpy's vectorised sort, ten times faster than ``argsort``.
    """
    count = indices.size
    if not count:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int32)
    bits = max(1, (count - 1).bit_length())
    if int(indices.max()) < 1 << (64 - bits):
        keys = indices << np.uint64(bits)
        keys |= np.arange(count, dtype=np.uint64)
        keys.sort()
        ordered = keys >> np.uint64(bits)
        keys &= np.uint64((1 << bits) - 1)          # in place: the positions
        order = keys.view(np.int64)
    else:
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
    new = np.empty(count, dtype=bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    ids = ordered[new]
    columns = np.empty(count, dtype=np.int32 if ids.size < 2**31 else np.int64)
    columns[order] = np.cumsum(new) - 1
    return ids, columns
