"""Tests of line-aligned input shares (paracel.io.lines), without MPI.

For every number of parts, the shares taken together must give each line of
the input exactly once, in file order, however the byte cuts fall: with and
without a final newline, with CRLF line ends, multi-byte UTF-8 characters,
empty files and more parts than lines. The reference is Python's own
``str.splitlines`` on the decoded text.
"""

import random

import pytest

from paracel.errors import DataError
from paracel.io import lines
from paracel.io.lines import byte_ranges, iter_lines, line_number

PARTS = [1, 2, 3, 7]


def _write(folder, name, data):
    path = folder / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def _expected(paths):
    """Reference: each file's lines in order, line ends dropped."""
    lines = []
    for path in paths:
        with open(path, encoding="utf-8", newline="") as handle:
            lines.extend(handle.read().splitlines())
    return lines


def _all_shares(paths, parts):
    return [list(iter_lines(paths, part, parts)) for part in range(parts)]


def _union(paths, parts):
    return [line for share in _all_shares(paths, parts) for _, _, line in share]


TEXTS = {
    "trailing_newline": "alpha\nbeta\ngamma\ndelta\nepsilon\n",
    "no_trailing_newline": "alpha\nbeta\ngamma\ndelta\nepsilon",
    "crlf": "one\r\ntwo\r\nthree\r\nfour\r\n",
    "crlf_no_trailing": "one\r\ntwo\r\nthree",
    "utf8": "ünïcödé\n€uro sign\n日本語のテキスト\n𝄞 clef\nplain\n",
    "blank_lines": "\n\nx\n\n\ny\n\n",
    "one_line": "just one line",
    "one_char": "x",
    "only_newline": "\n",
}


@pytest.mark.parametrize("parts", PARTS)
@pytest.mark.parametrize("name", sorted(TEXTS))
def test_shares_cover_every_line_once_in_order(tmp_path, name, parts):
    path = _write(tmp_path, "in.txt", TEXTS[name])
    assert _union([path], parts) == _expected([path])


@pytest.mark.parametrize("parts", PARTS)
def test_empty_file_gives_no_lines(tmp_path, parts):
    path = _write(tmp_path, "empty.txt", b"")
    assert _all_shares([path], parts) == [[] for _ in range(parts)]


@pytest.mark.parametrize("parts", [4, 7, 20])
def test_more_parts_than_lines(tmp_path, parts):
    path = _write(tmp_path, "short.txt", "a\nb\nc\n")
    shares = _all_shares([path], parts)
    assert len(shares) == parts
    assert _union([path], parts) == ["a", "b", "c"]
    assert sum(1 for share in shares if share) <= 3


@pytest.mark.parametrize("parts", PARTS)
def test_several_files_in_order_including_empty_one(tmp_path, parts):
    paths = [_write(tmp_path, "1.txt", "a1\na2\na3"),  # no final newline
             _write(tmp_path, "2.txt", b""),
             _write(tmp_path, "3.txt", "b1\r\nb2\r\n"),
             _write(tmp_path, "4.txt", "c1 ü\nc2 €\nc3\nc4\n")]
    assert _union(paths, parts) == ["a1", "a2", "a3", "b1", "b2", "c1 ü", "c2 €", "c3", "c4"]


def test_lines_carry_their_file_and_offset(tmp_path):
    first = _write(tmp_path, "first.txt", "ab\ncd\n")
    second = _write(tmp_path, "second.txt", "é\nf")
    found = [(path, offset, line) for share in _all_shares([first, second], 3)
             for path, offset, line in share]
    assert found == [(first, 0, "ab"), (first, 3, "cd"),
                     (second, 0, "é"), (second, 3, "f")]


def test_shares_are_contiguous_and_balanced(tmp_path):
    text = "".join(f"line {i:04d}\n" for i in range(1000))  # 10 bytes each
    path = _write(tmp_path, "big.txt", text)
    shares = _all_shares([path], 7)
    sizes = [len(share) for share in shares]
    assert sum(sizes) == 1000
    assert max(sizes) - min(sizes) <= 2
    numbers = [int(line.split()[1]) for share in shares for _, _, line in share]
    assert numbers == list(range(1000))


def test_random_cuts_never_lose_or_repeat_lines(tmp_path):
    rng = random.Random(7)
    alphabet = ["a", "b", " ", "é", "€", "𝄞", "日"]
    for trial in range(40):
        paths = []
        for index in range(rng.randint(1, 3)):
            lines = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
                     for _ in range(rng.randint(0, 8))]
            end = rng.choice(["\n", "\r\n"])
            text = end.join(lines) + (end if lines and rng.random() < 0.5 else "")
            paths.append(_write(tmp_path, f"t{trial}_{index}.txt", text))
        expected = _expected(paths)
        for parts in (1, 2, 3, 5, 7, 13):
            assert _union(paths, parts) == expected, (trial, parts)


def test_byte_ranges_tile_the_input(tmp_path):
    paths = [_write(tmp_path, "a.txt", "x" * 10), _write(tmp_path, "b.txt", b""),
             _write(tmp_path, "c.txt", "y" * 7)]
    ranges = byte_ranges(paths, 3)
    pieces = [piece for part in ranges for piece in part]
    covered = {path: 0 for path in paths}
    for path, start, end in pieces:
        assert start == covered[path] and end > start
        covered[path] = end
    assert covered == {paths[0]: 10, paths[1]: 0, paths[2]: 7}


# -- line numbers and bad bytes --------------------------------------------------

def test_line_number(tmp_path):
    path = _write(tmp_path, "n.txt", "a\nbb\n\nccc\n")
    offsets = [offset for _, offset, _ in iter_lines([path], 0, 1)]
    assert offsets == [0, 2, 5, 6]
    assert [line_number(path, offset) for offset in offsets] == [1, 2, 3, 4]


def test_line_number_beyond_one_read_chunk(tmp_path):
    text = "".join(f"{i}\n" for i in range(300000))  # > 1 MiB, several chunks
    path = _write(tmp_path, "long.txt", text)
    offset = len("".join(f"{i}\n" for i in range(250000)))
    assert line_number(path, offset) == 250001


@pytest.mark.parametrize("parts", PARTS)
def test_invalid_utf8_names_file_and_line(tmp_path, parts):
    path = _write(tmp_path, "bad.txt", b"good\nfine\nbad \xff\xfe here\nlast\n")
    with pytest.raises(DataError) as info:
        _union([path], parts)
    message = str(info.value)
    assert f"{path}:3:" in message
    assert "UTF-8" in message


def test_invalid_utf8_only_fails_the_share_holding_it(tmp_path):
    lines = [f"row {i:03d}" for i in range(50)]
    data = ("\n".join(lines[:45]) + "\n").encode() + b"\xc3(\n" + b"tail\n"
    path = _write(tmp_path, "late.txt", data)
    first = [line for _, _, line in iter_lines([path], 0, 4)]  # reads fine
    assert first and first == lines[:len(first)]
    with pytest.raises(DataError, match=r"late\.txt:46:"):
        list(iter_lines([path], 3, 4))


def test_truncated_multibyte_character_at_end(tmp_path):
    path = _write(tmp_path, "cut.txt", "ok\n".encode() + "€".encode()[:2])
    with pytest.raises(DataError, match=r"cut\.txt:2:"):
        _union([path], 1)


def test_byte_order_mark_is_dropped_from_first_line_only(tmp_path):
    path = _write(tmp_path, "bom.txt", "\ufefffirst\n\ufeffsecond\n")
    for parts in PARTS:
        assert _union([path], parts) == ["first", "\ufeffsecond"]


@pytest.fixture
def agreed():
    """Agreed sizes set by a test are forgotten after it."""
    from paracel.io import lines

    yield lines.agree_sizes
    lines._SIZES.clear()


@pytest.mark.parametrize("parts", PARTS)
def test_a_growing_file_is_read_up_to_its_agreed_size(tmp_path, agreed, parts):
    path = _write(tmp_path, "grows.txt", "".join(f"line {i}\n" for i in range(50)) + "half")
    before = _expected([path])
    agreed({path: len(open(path, "rb").read())})
    with open(path, "a", encoding="utf-8") as handle:  # appended once sizes were agreed
        handle.write(" and more\n" + "".join(f"late {i}\n" for i in range(30)))
    assert _union([path], parts) == before


def test_libsvm_share_of_a_growing_file_stops_at_its_agreed_size(tmp_path, agreed):
    from paracel.io.libsvm import read_share

    path = _write(tmp_path, "grows.svm", "".join(f"1 {i + 1}:1\n" for i in range(40)))
    agreed({path: len(open(path, "rb").read())})
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(f"0 {i + 1}:2\n" for i in range(40)))
    labels = [read_share([path], part, 3)[0] for part in range(3)]
    assert sum(len(part) for part in labels) == 40
    assert all((part == 1).all() for part in labels)


def test_a_file_that_shrank_below_its_agreed_size_is_an_error(tmp_path, agreed):
    path = _write(tmp_path, "shrinks.txt", "".join(f"line {i}\n" for i in range(50)))
    agreed({path: len(open(path, "rb").read())})
    _write(tmp_path, "shrinks.txt", "line 0\n")
    with pytest.raises(DataError, match=r"shrinks.txt: the file shrank from 390 to 7 bytes"):
        _union([path], 2)


def test_an_overlong_line_is_refused_naming_file_and_line(tmp_path, monkeypatch):
    from paracel.io import lines

    monkeypatch.setattr(lines, "MAX_LINE_BYTES", 1 << 20)
    path = _write(tmp_path, "long.txt", "short\n" + "x" * (3 << 20) + "\nshort\n")
    with pytest.raises(DataError, match=r"long.txt:2: the line is longer than 1 MiB"):
        _union([path], 1)


COMPRESSED = [("gzip", "gzip", ".gz"), ("bzip2", "bz2", ".bz2"), ("xz", "lzma", ".xz")]


def _compressed(folder, name, kind, data):
    import importlib

    opener = dict((k, o) for k, o, _ in COMPRESSED)[kind]
    path = folder / name
    with importlib.import_module(opener).open(path, "wb") as handle:
        handle.write(data.encode("utf-8"))
    return str(path)


@pytest.fixture
def plain_folder(tmp_path, monkeypatch):
    """Decompressed copies go to a folder of this test's own."""
    folder = tmp_path / "copies"
    monkeypatch.setattr(lines, "plain_folder", lambda: str(folder))
    yield folder
    lines.forget_plain_copies()


@pytest.mark.parametrize("kind,opener,suffix", COMPRESSED)
@pytest.mark.parametrize("parts", PARTS)
def test_compressed_input_gives_the_plain_lines(tmp_path, plain_folder, kind, opener, suffix,
                                                parts):
    text = "".join(f"{i} {i % 7}:{i * 0.5} é\n" for i in range(500))
    plain = _write(tmp_path, "plain.txt", text)
    packed = _compressed(tmp_path, "data" + suffix, kind, text)
    assert _union([packed, plain], parts) == _expected([plain, plain])
    assert len(list(plain_folder.glob("*" + suffix))) == 1  # decompressed once
    lines.forget_plain_copies()
    assert not list(plain_folder.iterdir())


def test_messages_name_the_compressed_file_and_its_line(tmp_path, plain_folder):
    from paracel.io import dense

    path = _compressed(tmp_path, "points.csv.gz", "gzip", "1,2.0\n2,3.0\n3,x\n")
    with pytest.raises(DataError, match=r"points\.csv\.gz:3: "):
        dense.load([path], None, 0, 1, has_id=True)


def test_a_truncated_compressed_file_is_an_error_naming_it(tmp_path, plain_folder):
    whole = _compressed(tmp_path, "whole.gz", "gzip", "1 1:1\n" * 5000)
    path = tmp_path / "cut.gz"
    path.write_bytes(open(whole, "rb").read()[:-30])
    with pytest.raises(DataError, match=r"cut\.gz: cannot decompress this gzip file"):
        list(iter_lines([str(path)], 0, 1))
    assert not [name for name in plain_folder.iterdir() if name.suffix != ".lock"]


def test_compressions_that_are_not_read_are_refused_naming_the_file(tmp_path):
    path = _write(tmp_path, "data.zst", b"\x28\xb5\x2f\xfd" + b"\0" * 20)
    with pytest.raises(DataError, match=r"data\.zst: zstd-compressed input; only gzip, "
                                        "bzip2 and xz are read"):
        list(iter_lines([path], 0, 1))


def test_text_that_starts_like_a_magic_number_is_read():
    assert lines.compression(b"BZh is a word\n") is None
