"""The output folder's bookkeeping (paracel.io.outputs), without MPI: files
written whole and never through a planted link, a rerun removing exactly
the files the earlier run listed, a resume keeping them."""

import os

import pytest

from paracel.io import outputs


def test_atomic_file_never_writes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "out"
    folder.mkdir()
    for planted in ("result.txt.tmp", ".result.txt.tmp", "metrics.json.tmp"):
        os.symlink(victim, folder / planted)
    with outputs.atomic_file(str(folder), "result.txt") as handle:
        handle.write("new")
    assert victim.read_text() == "precious"
    assert (folder / "result.txt").read_text() == "new"


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with outputs.atomic_file(str(tmp_path), "half.txt") as handle:
            handle.write("half")
            raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []


def test_rerun_removes_only_what_the_earlier_run_listed(tmp_path):
    folder = str(tmp_path / "out")
    outputs.claim(folder, "/jobs/a.json")
    for worker, name in [(0, "wc_0"), (1, "wc_1"), (1, "sub/part")]:
        outputs.record(folder, worker, name)
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "w") as handle:
            handle.write("x")
    outputs.record(folder, 0, "../outside.txt")
    (tmp_path / "outside.txt").write_text("not ours")
    (tmp_path / "out" / "notes.txt").write_text("the user's")
    assert outputs.owner(folder) == "/jobs/a.json"
    assert outputs.claim(folder, "/jobs/a.json", resume=True) == []
    assert os.path.exists(os.path.join(folder, "wc_1"))
    assert outputs.claim(folder, "/jobs/a.json") == ["sub/part", "wc_0", "wc_1"]
    assert sorted(os.listdir(folder)) == [".paracel-job", "notes.txt", "sub"]
    assert (tmp_path / "outside.txt").read_text() == "not ours"
