"""Checkpoint folders (paracel.checkpoints) without MPI.

Checkpoints are made here as the workers and servers make them (snapshot
files, history files, manifest, publish), then damaged, mixed with other
runs' checkpoints or resumed by another job: ``--resume`` must fall back
past a damaged newest checkpoint and say so, refuse with one line naming
the folder and what is wrong when nothing is usable or the job differs, and
pruning must never delete another run's checkpoints. Also the files on
disk: nothing is ever written through a planted symlink, the checkpoint
folder's parent is fsynced after publishing, and model files (paracel.io.h5)
are written the same careful way.
"""

import json
import os
import uuid

import numpy as np
import pytest

from paracel import checkpoints, config, snapshot
from paracel.errors import CheckpointError
from paracel.server.checkpoint import shard_name


def identity(**changes):
    base = {"algorithm": "m:A", "params": {"clocks": 8, "rate": 0.5}, "seed": 3,
            "staleness": 0, "cache": False, "bad_lines": "raise", "modules": ["m"],
            "inputs": [], "workers": 2}
    return {**base, **changes}


def make_checkpoint(directory, clock, run, job=None, servers=2, workers=2):
    """A checkpoint of ``clock`` as a run would publish it; returns its folder."""
    job = job or identity(workers=workers)
    staging = checkpoints.stage(str(directory), clock, run)
    shards = [{"name": shard_name(i),
               **snapshot.write(os.path.join(staging, shard_name(i)),
                                [(f"k{i}", np.full(4, float(clock))), (("n", i), clock)])}
              for i in range(servers)]
    mine = []
    for w in range(workers):
        history = checkpoints.History(checkpoints.history_path(str(directory), run, w))
        if os.path.exists(history.path):
            history.reopen(_last_history(directory, run, w))
        history.add({"clock": clock, "loss": 1.0 / (clock + 1)})
        path = os.path.join(staging, checkpoints.worker_name(w))
        mine.append({"file": snapshot.write(path, [("state", {"w": w, "clock": clock}),
                                                   ("metrics", {})]),
                     "history": history.flush()})
        os.close(history.descriptor)
    manifest = checkpoints.make_manifest(clock, run, job, {"note": "config"}, shards, mine)
    return checkpoints.publish(str(directory), staging, manifest)


def _last_history(directory, run, worker):
    clock, path = next((clock, path) for clock, path in checkpoints.folders(str(directory))
                       if checkpoints.read_manifest(path)[0]["run"] == run)
    return checkpoints.read_manifest(path)[0]["history"][str(worker)]


@pytest.fixture
def run():
    return uuid.uuid4().hex


@pytest.fixture
def two(tmp_path, run):
    """A folder with this run's checkpoints of clocks 4 and 8."""
    make_checkpoint(tmp_path, 4, run)
    make_checkpoint(tmp_path, 8, run)
    return tmp_path


def choose(directory, job=None):
    said = []
    folder, manifest = checkpoints.choose(str(directory), job or identity(), said.append)
    return os.path.basename(folder), manifest, said


def test_the_newest_verified_checkpoint_is_chosen_silently(two, run):
    name, manifest, said = choose(two)
    assert (name, manifest["clock"], manifest["run"], said) == ("ckpt-00000008", 8, run, [])


def _edit_manifest(folder, change):
    path = os.path.join(folder, checkpoints.MANIFEST)
    with open(path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    change(manifest)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)


def _flip(path, offset=-5):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x01
    open(path, "wb").write(bytes(data))


DAMAGE = {
    "missing file": (lambda folder: os.remove(os.path.join(folder, "server-1.ckpt")),
                     "server-1.ckpt is missing"),
    "truncated file": (lambda folder: os.truncate(os.path.join(folder, "worker-0.ckpt"), 20),
                       "worker-0.ckpt has 20 bytes; the manifest says"),
    "flipped byte": (lambda folder: _flip(os.path.join(folder, "server-0.ckpt")),
                     "server-0.ckpt does not match its checksum"),
    "edited clock": (lambda folder: _edit_manifest(folder, lambda m: m.update(clock=9)),
                     "manifest.json does not match its checksum (edited or damaged)"),
    "invalid JSON": (lambda folder: open(os.path.join(folder, "manifest.json"), "w").write("{"),
                     "manifest.json is not valid JSON"),
    "missing keys": (lambda folder: _edit_manifest(folder, lambda m: m.pop("files")),
                     "manifest.json lacks 'files'"),
    "no manifest": (lambda folder: os.remove(os.path.join(folder, "manifest.json")),
                    "it has no manifest.json"),
    "old format": (lambda folder: _edit_manifest(folder, lambda m: m.update(format_version=1)),
                   "it is in checkpoint format 1; this version of paracel reads format 2"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(two, damage):
    spoil, problem = DAMAGE[damage]
    spoil(str(two / "ckpt-00000008"))
    name, manifest, said = choose(two)
    assert (name, manifest["clock"]) == ("ckpt-00000004", 4)
    assert len(said) == 1 and said[0].startswith(f"checkpoint: ckpt-00000008 is damaged ({problem}")
    assert said[0].endswith("; resuming from ckpt-00000004 (clock 4) instead")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_nothing_usable_is_one_line_naming_the_folder(two, damage):
    spoil, problem = DAMAGE[damage]
    spoil(str(two / "ckpt-00000008"))
    os.remove(two / "ckpt-00000004" / "worker-1.ckpt")
    with pytest.raises(CheckpointError) as info:
        choose(two)
    message = str(info.value)
    assert message.startswith(f"--resume: no usable checkpoint in {two}: "
                              f"ckpt-00000008 is damaged ({problem}")
    assert message.endswith("ckpt-00000004 is damaged (worker-1.ckpt is missing)")
    assert "\n" not in message


def test_a_damaged_history_prefix_is_damage(two, run):
    history = checkpoints.history_path(str(two), run, 1)
    _flip(history, offset=-3)  # in the entry only ckpt-8 covers
    name, _, said = choose(two)
    assert name == "ckpt-00000004"
    assert "ckpt-00000008 is damaged (the history of worker 1 does not match its checksum)" \
        in said[0]


def test_an_edited_clock_with_a_recomputed_checksum_is_still_refused(two):
    def forge(manifest):
        manifest["clock"] = 9
        manifest["checksum"] = checkpoints.manifest_checksum(manifest)

    _edit_manifest(str(two / "ckpt-00000008"), forge)
    _, manifest, said = choose(two)
    assert manifest["clock"] == 4
    assert "its manifest is for clock 9, not 8" in said[0]


def test_a_manifest_cannot_send_reads_out_of_its_folder(two):
    def forge(manifest):
        manifest["run"] = "../../etc"
        manifest["checksum"] = checkpoints.manifest_checksum(manifest)

    _edit_manifest(str(two / "ckpt-00000008"), forge)
    _, manifest, said = choose(two)
    assert "invalid run id" in said[0]


def test_no_checkpoint_at_all(tmp_path):
    with pytest.raises(CheckpointError, match=f"no complete checkpoint in {tmp_path} "):
        choose(tmp_path)
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        choose(tmp_path / "never-made")


# -- identity ------------------------------------------------------------------------

@pytest.mark.parametrize("changes, expected", [
    ({"seed": 4}, "seed 3 -> 4"),
    ({"params": {"clocks": 8, "rate": 0.25}}, "params.rate 0.5 -> 0.25"),
    ({"params": {"clocks": 8}}, 'params.rate 0.5 -> "(unset)"'),
    ({"staleness": None, "cache": True}, "staleness 0 -> null; cache false -> true"),
    ({"workers": 3}, "workers 2 -> 3 (servers may change on resume, workers may not)"),
    ({"algorithm": "m:B"}, 'algorithm "m:A" -> "m:B"'),
])
def test_another_jobs_checkpoint_is_refused_naming_what_differs(two, changes, expected):
    with pytest.raises(CheckpointError) as info:
        choose(two, identity(**changes))
    message = str(info.value)
    assert message.startswith(f"--resume: {two / 'ckpt-00000008'} is a checkpoint of another "
                              "job: ")
    assert expected in message and "\n" not in message


def test_job_identity_names_changed_input_files(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("1 2\n")
    (tmp_path / "job.json").write_text(json.dumps({
        "algorithm": "wc", "input": "data.txt", "servers": 2, "processes": 5,
        "description": "x", "log_level": "debug", "checkpoint": {"dir": "ck", "every": 3}}))
    job = config.load(str(tmp_path / "job.json"))
    before = checkpoints.job_identity(job, 3, {})
    assert before["inputs"] == [[str(data), 4, os.stat(data).st_mtime_ns]]
    assert set(before) == {*checkpoints.IDENTITY_KEYS, "inputs", "workers"}
    other = config.load(str(tmp_path / "job.json"),
                        [("servers", 3), ("processes", 6), ("description", "y"),
                         ("log_level", "info"), ("checkpoint.every", 5)])
    assert checkpoints.job_identity(other, 3, {}) == before  # none of these matter
    data.write_text("1 2 3\n")
    after = checkpoints.job_identity(job, 3, {})
    assert checkpoints.differences(before, after) == [
        f"input file {data} changed (size 4 -> 6 bytes, or its modification time)"]


def test_path_parameters_count_as_inputs(tmp_path):
    model = tmp_path / "init.h5"
    model.write_bytes(b"x")
    (tmp_path / "job.json").write_text(json.dumps({"algorithm": "wc",
                                                   "params": {"init": str(model)}}))
    job = config.load(str(tmp_path / "job.json"))
    parameters = {"init": config.Param(str, None, path=True, nullable=True)}
    assert checkpoints.job_identity(job, 2, parameters)["inputs"][0][0] == str(model)


def test_checkpoints_of_several_runs_are_refused(two):
    make_checkpoint(two, 12, uuid.uuid4().hex)
    with pytest.raises(CheckpointError, match="holds checkpoints of 2 runs"):
        choose(two)


# -- pruning, fresh runs, overwrite ------------------------------------------------------

def test_pruning_deletes_only_this_runs_checkpoints(tmp_path, run):
    other = uuid.uuid4().hex
    for clock in (35, 40):
        make_checkpoint(tmp_path, clock, other)
    for clock in (4, 8, 12):
        make_checkpoint(tmp_path, clock, run)
    make_checkpoint(tmp_path, 60, run)  # an abandoned line after clock 12
    leftover = checkpoints.stage(str(tmp_path), 16, run)
    theirs = checkpoints.stage(str(tmp_path), 44, other)
    checkpoints.prune(str(tmp_path), run, 12, keep=2)
    assert sorted(clock for clock, _ in checkpoints.folders(str(tmp_path))) == [8, 12, 35, 40]
    assert not os.path.exists(leftover) and os.path.exists(theirs)


def test_a_fresh_run_refuses_a_folder_with_checkpoints(two):
    before = sorted(os.listdir(two))
    with pytest.raises(CheckpointError) as info:
        checkpoints.check_fresh(str(two), overwrite=False, announce=print, act=True)
    assert str(info.value) == (
        f"checkpoint.dir: {two} already holds checkpoints of an earlier run (ckpt-00000004, "
        "ckpt-00000008); pass --resume to continue that run, or --overwrite to move them "
        "aside and start afresh")
    assert sorted(os.listdir(two)) == before


def test_overwrite_moves_the_earlier_run_aside(two, run):
    said = []
    checkpoints.check_fresh(str(two), overwrite=True, announce=said.append, act=True)
    [aside] = [name for name in os.listdir(two) if name.startswith(checkpoints.REPLACED)]
    assert os.listdir(two) == [aside]
    assert sorted(os.listdir(two / aside)) == ["ckpt-00000004", "ckpt-00000008",
                                               f"history-{run}"]
    assert said == [f"--overwrite: moved 2 checkpoint(s) of an earlier run from {two} into "
                    f"{two / aside} (delete it when no longer needed)"]
    checkpoints.check_fresh(str(two), overwrite=False, announce=said.append, act=True)


# -- files on disk ---------------------------------------------------------------------

def test_staging_folders_have_unpredictable_names(tmp_path, run):
    first = checkpoints.stage(str(tmp_path), 4, run)
    second = checkpoints.stage(str(tmp_path), 4, run)
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
    assert os.path.basename(first).startswith(f"{checkpoints.STAGING}00000004-{run}-")


def test_publish_never_writes_through_a_planted_symlink(tmp_path, run):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    directory = tmp_path / "ck"
    directory.mkdir()
    os.symlink(victim, directory / "ckpt-00000004")
    folder = make_checkpoint(directory, 4, run)
    assert os.path.isdir(folder) and not os.path.islink(folder)
    assert (victim / "precious").read_text() == "keep me"
    assert choose(directory)[1]["clock"] == 4


def test_a_planted_history_file_is_never_written_through(tmp_path, run):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = checkpoints.history_path(str(tmp_path), run, 0)
    os.makedirs(os.path.dirname(path))
    os.symlink(victim, path)
    history = checkpoints.History(path)
    history.add({"clock": 1})
    with pytest.raises(FileExistsError):
        history.flush()
    assert victim.read_text() == "keep me"


def test_the_parent_folder_is_fsynced_after_publishing(tmp_path, run, monkeypatch):
    synced = []
    real = checkpoints.fsync_folder

    def record(path):
        synced.append((path, sorted(os.listdir(path))))
        real(path)

    monkeypatch.setattr(checkpoints, "fsync_folder", record)
    make_checkpoint(tmp_path, 4, run)
    assert synced[-1][0] == str(tmp_path) and "ckpt-00000004" in synced[-1][1]


def test_history_is_appended_not_rewritten_and_cut_back_on_resume(two, run):
    path = checkpoints.history_path(str(two), run, 0)
    manifests = {clock: checkpoints.read_manifest(folder)[0]
                 for clock, folder in checkpoints.folders(str(two))}
    assert os.path.getsize(path) == manifests[8]["history"]["0"]["size"]
    assert manifests[4]["history"]["0"]["size"] < manifests[8]["history"]["0"]["size"]
    history = checkpoints.History(path)
    entries = history.reopen(manifests[4]["history"]["0"])
    assert entries == [{"clock": 4, "loss": 0.2}]
    assert os.path.getsize(path) == manifests[4]["history"]["0"]["size"]


def test_model_files_are_written_without_a_predictable_temporary_name(tmp_path):
    from paracel.io import h5

    class Matrix:
        name, shape, dtype, sparse, block_rows, num_blocks = "W", (4, 2), np.float64, False, 2, 2

        class client:
            @staticmethod
            def read_multi(keys, fresh=False):
                return [np.full((2, 2), float(key)) for key in keys]

        @staticmethod
        def block_key(block):
            return block

        @staticmethod
        def block_range(block):
            return 2 * block, 2 * block + 2

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    path = tmp_path / "model.h5"
    for name in (f"model.h5.tmp-{os.getpid()}", "model.h5.tmp"):
        os.symlink(victim, tmp_path / name)
    h5.save_matrices(str(path), [Matrix()])
    assert victim.read_text() == "keep me"
    assert h5.matrix_info(str(path), "W")[0] == (4, 2)
    assert sorted(os.listdir(tmp_path)) == sorted(["victim", "model.h5",
                                                   f"model.h5.tmp-{os.getpid()}",
                                                   "model.h5.tmp"])


def test_the_launchers_choice_is_rechecked_on_the_ranks(two, tmp_path_factory):
    folder, manifest = checkpoints.reopen(str(two), str(two / "ckpt-00000004"), identity())
    assert manifest["clock"] == 4
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(CheckpointError, match="is not a checkpoint folder of"):
        checkpoints.reopen(str(elsewhere), str(two / "ckpt-00000004"), identity())
    with pytest.raises(CheckpointError, match="is a checkpoint of another job: seed 3 -> 5"):
        checkpoints.reopen(str(two), str(two / "ckpt-00000004"), identity(seed=5))
    os.remove(two / "ckpt-00000004" / "server-0.ckpt")
    with pytest.raises(CheckpointError, match=r"is damaged \(server-0.ckpt is missing\)"):
        checkpoints.reopen(str(two), str(two / "ckpt-00000004"), identity())
