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

Compressed files (gzip, bzip2, xz) are read through a plain copy: the first
process of a host that needs one decompresses the file once into
:func:`plain_folder` (the others wait for it), and byte ranges, sizes and
line numbers are those of the decompressed text, while messages still name
the user's file. Copies are keyed by the file's path, size and modification
time, so a changed file is decompressed anew, and a job removes them when
it ends (:func:`forget_plain_copies`).
"""

import bz2
import fcntl
import gzip
import hashlib
import lzma
import os
import shutil
import tempfile

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


def measure(path):
    """The size of ``path``'s text now (decompressed, for a compressed file)."""
    return os.path.getsize(readable(path))


def file_size(path):
    """The agreed size of ``path``'s text, or its size now if none was agreed."""
    size = _SIZES.get(os.path.abspath(path))
    return measure(path) if size is None else size


def open_agreed(path):
    """Open ``path``'s text for binary reading; a file now shorter than its
    agreed size is a DataError (its lines would be lost)."""
    handle = open(readable(path), "rb")
    size, now = file_size(path), os.fstat(handle.fileno()).st_size
    if now < size:
        handle.close()
        raise DataError(f"{path}: the file shrank from {size} to {now} bytes while the "
                        "job was reading it")
    return handle


#: Leading bytes of compressed files (none of them plain text), and what they are.
MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
         b"PK\x03\x04": "zip"}

#: How each compression this module reads is opened.
OPENERS = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}

#: ``absolute path -> decompressed copy`` (None: the file is plain) for this process.
_READABLE = {}


def plain_folder():
    """Where this host keeps decompressed copies (``$TMPDIR/paracel-inputs-<uid>``)."""
    return os.path.join(tempfile.gettempdir(), f"paracel-inputs-{os.getuid()}")


def readable(path):
    """The file holding ``path``'s text: ``path``, or its decompressed copy."""
    key = os.path.abspath(path)
    if key not in _READABLE:
        with open(path, "rb") as handle:
            kind = compression(handle.read(10))
        if kind is not None and kind not in OPENERS:
            raise DataError(f"{path}: {kind}-compressed input; only gzip, bzip2 and xz are "
                            "read, so decompress it first")
        _READABLE[key] = None if kind is None else _plain_copy(path, kind)
    return _READABLE[key] or path


def _plain_copy(path, kind):
    """Decompress ``path`` once per host and return the copy: the first
    process to take the lock does it, the others block on the lock (no
    spinning; a lock dies with its process) and find the copy made."""
    stat = os.stat(path)
    stamp = f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    folder = plain_folder()
    os.makedirs(folder, exist_ok=True)
    copy = os.path.join(folder, hashlib.sha1(stamp).hexdigest() + "-" + os.path.basename(path))
    with open(copy + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(copy):
            _decompress(path, kind, copy)
    return copy


def _decompress(path, kind, copy):
    from paracel.io.outputs import atomic_file

    try:
        with OPENERS[kind](path, "rb") as source, \
                atomic_file(os.path.dirname(copy), os.path.basename(copy), "wb") as target:
            shutil.copyfileobj(source, target, 1 << 22)
    except (OSError, EOFError, lzma.LZMAError) as error:
        raise DataError(f"{path}: cannot decompress this {kind} file ({error})") from None


def forget_plain_copies():
    """Remove the decompressed copies this process used (the job is over:
    every process of every host calls it, so each host's copies go)."""
    for copy in filter(None, _READABLE.values()):
        for name in (copy, copy + ".lock"):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
    _READABLE.clear()


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


def iter_lines(files, part, parts, header=False):
    """Yield ``(path, offset, line)`` for the lines of share ``part`` of ``parts``.

    ``line`` is decoded UTF-8 without its line end; ``offset`` is its first
    byte in ``path`` (see :func:`line_number` for messages). With
    ``header``, each file's first line is not yielded.
    """
    for path, start, end in byte_ranges(files, parts)[part]:
        for found in lines_between(path, start, end):
            if not (header and found[1] == 0):
                yield found


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
    with open(readable(path), "rb") as handle:
        while done < offset:
            chunk = handle.read(min(1 << 20, offset - done))
            if not chunk:
                break
            count += chunk.count(b"\n")
            done += len(chunk)
    return count
