"""LIBSVM / svmlight files: ``label idx:val idx:val ... [# comment]``.

Each worker parses only its line-aligned share (:mod:`paracel.io.lines`).
Parsing is vectorised: clean input is read straight from the share's bytes by
numpy's C text parser (no Python object per token); input with comments or
CR line ends is split into tokens once and converted by numpy; only when that
fails is the share re-read line by line to name the first bad line. The global feature
count (and, with ``zero_based="auto"``, whether indices start at 0 or 1) is
agreed across workers with one ``allreduce``, so every worker's matrix has the
same number of columns.
"""

import warnings

import numpy as np

from paracel.errors import DataError
from paracel.io.lines import byte_ranges, file_size, line_number, open_agreed


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
    indptr, indices, values : numpy.ndarray
        CSR structure with the file's own (not yet shifted) feature indices.
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
        return _parse_fast(lines) + (0,)
    except (ValueError, IndexError):
        if skip:
            good = [line for line in lines if _line_problem(line.strip()) is None]
            return _parse_fast(good) + (len(lines) - len(good),)
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
    colons = np.flatnonzero(raw == ord(":"))
    counts = (np.searchsorted(colons, ends) - np.searchsorted(colons, starts))[ends > starts]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # "could not be read to its end"
        numbers = np.fromstring(data.replace(b":", b" "), dtype=np.float64, sep=" ")
    return _assemble(numbers, counts)


def _assemble(numbers, counts):
    """Labels and CSR pieces from the flat ``label (index value)*`` numbers."""
    if numbers.size != counts.size + 2 * counts.sum():
        raise ValueError("token count mismatch")
    starts = np.concatenate([[0], np.cumsum(1 + 2 * counts)[:-1]]).astype(np.int64)
    labels = numbers[starts]
    is_label = np.zeros(len(numbers), dtype=bool)
    is_label[starts] = True
    pairs = numbers[~is_label].reshape(-1, 2)
    indices = pairs[:, 0]
    if indices.size and (np.any(indices != np.floor(indices)) or indices.min() < 0):
        raise ValueError("bad feature index")
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if not _increasing(indices, indptr):
        raise ValueError("feature indices out of order")
    return labels, indptr, indices.astype(np.int64), pairs[:, 1]


def _parse_fast(lines):
    if not lines:
        empty = np.zeros(0)
        return empty, np.zeros(1, dtype=np.int64), empty.astype(np.int64), empty
    counts = np.fromiter((line.count(b":") for line in lines), dtype=np.int64,
                         count=len(lines))
    tokens = b" ".join(lines).replace(b":", b" ").split()
    if len(tokens) != len(lines) + 2 * counts.sum():
        raise ValueError("token count mismatch")
    return _assemble(np.array(tokens).astype(np.float64), counts)


def _increasing(indices, indptr):
    """Whether indices strictly increase within every row."""
    bad = np.diff(indices) <= 0
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
    """The share's ``(path, start, end)`` pieces moved to line boundaries."""
    for path, start, end in byte_ranges(files, parts)[part]:
        yield path, _line_start(path, start), _line_start(path, end)


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
        return empty, np.zeros(1, dtype=np.int64), empty.astype(np.int64), empty
    shifted, base = [], 0
    for indptr in indptrs:
        shifted.append(indptr[:-1] + base)
        base += indptr[-1]
    indptr = np.concatenate(shifted + [np.array([base], dtype=np.int64)])
    return (np.concatenate(labels), indptr, np.concatenate(indices), np.concatenate(values))


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
    """
    import scipy.sparse

    labels, indptr, indices, values, skipped = read_share(files, part, parts, skip)
    low = int(indices.min()) if indices.size else np.iinfo(np.int64).max
    high = int(indices.max()) if indices.size else -1
    if comm is not None:
        from mpi4py import MPI

        low = comm.allreduce(low, op=MPI.MIN)
        high = comm.allreduce(high, op=MPI.MAX)
    if zero_based == "auto":
        zero_based = low == 0
    if not zero_based and high >= 0:
        if low == 0:
            raise DataError(f"{files[0]}...: feature index 0 found but zero_based is false")
        indices = indices - 1
        high -= 1
    width = max(high + 1, 0) if n_features is None else n_features
    if indices.size and indices.max() >= width:
        raise DataError(f"{files[0]}...: feature index {int(indices.max())} is beyond "
                        f"n_features={width}")
    X = scipy.sparse.csr_matrix((values.astype(dtype), indices, indptr),
                                shape=(len(labels), width))
    return labels, X, skipped
