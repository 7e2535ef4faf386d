"""Line-aligned shares of text files.

The input (one or more files, taken in order as one byte stream) is cut into
``parts`` byte ranges of equal size; a line belongs to the range that holds
its first byte. A worker reads only its range (plus the tail of the line
that straddles its end), so no rank reads the whole input, every line is read
by exactly one worker, and ranges never split a multi-byte UTF-8 character
(cuts are moved to line starts). Windows line ends are accepted, and a
UTF-8 byte-order mark at the start of a file is dropped.

Every worker must cut the same ranges, so a file's size is measured once per
job and agreed (:func:`agree_sizes`, done for the job's input before
``solve()`` runs): a file that grows while the job runs is read only up to
its agreed size (a last line still being written counts as it was then), and
one that shrank below it is an error rather than lost lines.
"""

import os

from paracel.errors import DataError

BOM = "\ufeff"

#: The longest line a loader takes: longer ones are refused, naming file and
#: line, before they exhaust memory (no text format here needs more).
MAX_LINE_BYTES = 1 << 29

#: Agreed sizes of input files (absolute path → bytes) for this process.
_SIZES = {}


def agree_sizes(sizes):
    """Fix the sizes of files for the rest of this process (``{path: bytes}``,
    the same on every worker): ranges are cut and reads stop by them."""
    _SIZES.update({os.path.abspath(path): int(size) for path, size in sizes.items()})


def file_size(path):
    """The agreed size of ``path``, or its size now if none was agreed."""
    size = _SIZES.get(os.path.abspath(path))
    return os.path.getsize(path) if size is None else size


def open_agreed(path):
    """Open ``path`` for binary reading; a file now shorter than its agreed
    size, or a compressed one, is a DataError (its lines would be lost, or
    read as garbage)."""
    handle = open(path, "rb")
    size, now = file_size(path), os.fstat(handle.fileno()).st_size
    if now < size:
        handle.close()
        raise DataError(f"{path}: the file shrank from {size} to {now} bytes while the "
                        "job was reading it")
    kind = compression(handle.read(10))
    handle.seek(0)
    if kind is not None:
        handle.close()
        raise DataError(f"{path}: {kind}-compressed input; shares are cut by byte ranges of "
                        f"plain text, so decompress it first")
    return handle


#: Leading bytes of compressed files (none of them plain text), and what they are.
MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
         b"PK\x03\x04": "zip"}


def compression(head):
    """The compression whose magic bytes start ``head``, or ``None``. bzip2
    is known by "BZh", the block size digit and its first block's magic."""
    if len(head) >= 10 and head[:3] == b"BZh" and head[3:4].isdigit() and \
            head[4:10] == b"1AY&SY":
        return "bzip2"
    return next((kind for magic, kind in MAGIC.items() if head.startswith(magic)), None)


def byte_ranges(files, parts):
    """Split the concatenated ``files`` into ``parts`` byte ranges.

    Returns
    -------
    list of list of (str, int, int)
        For each part, the ``(path, start, end)`` pieces it covers; a line
        whose first byte is in ``[start, end)`` belongs to that part.
    """
    sizes = [file_size(path) for path in files]
    total = sum(sizes)
    bounds = [total * part // parts for part in range(parts + 1)]
    ranges = []
    for part in range(parts):
        low, high = bounds[part], bounds[part + 1]
        pieces, offset = [], 0
        for path, size in zip(files, sizes):
            start, end = max(low - offset, 0), min(high - offset, size)
            if start < end:
                pieces.append((path, start, end))
            offset += size
        ranges.append(pieces)
    return ranges


def iter_lines(files, part, parts):
    """Yield ``(path, offset, line)`` for the lines of share ``part`` of ``parts``.

    ``line`` is decoded UTF-8 without its line end; ``offset`` is its first
    byte in ``path`` (see :func:`line_number` for messages).
    """
    for path, start, end in byte_ranges(files, parts)[part]:
        yield from lines_between(path, start, end)


def lines_between(path, start, end):
    """Yield ``(path, offset, line)`` for the lines of ``path`` whose first byte
    lies in ``[start, end)``."""
    size = file_size(path)
    with open_agreed(path) as handle:
        if start > 0:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                handle.readline(size - start)
        offset = handle.tell()
        while offset < end:
            raw = handle.readline(min(size - offset, MAX_LINE_BYTES + 1))
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"{path}:{line_number(path, offset)}: the line is longer "
                                f"than {MAX_LINE_BYTES >> 20} MiB")
            text = _decode(raw, path, offset)
            yield path, offset, text[1:] if offset == 0 and text.startswith(BOM) else text
            offset += len(raw)


def _decode(raw, path, offset):
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}:{line_number(path, offset)}: not valid UTF-8 "
                        f"({error.reason})") from None


def line_number(path, offset):
    """The 1-based line number of the line starting at byte ``offset``.

    Counting newlines costs a read of the file up to ``offset``, so it is
    only done when a message needs it.
    """
    count, done = 1, 0
    with open(path, "rb") as handle:
        while done < offset:
            chunk = handle.read(min(1 << 20, offset - done))
            if not chunk:
                break
            count += chunk.count(b"\n")
            done += len(chunk)
    return count
