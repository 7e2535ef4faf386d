"""Checkpoint cost: the snapshot format against the HDF5 format it replaced.

Three measurements, each in this one process (no MPI: a server's part of a
checkpoint is :func:`paracel.server.checkpoint.write_shard` and
:func:`~paracel.server.checkpoint.load_shard`, which is what this times):

1. **Many small keys.** A table of ``--keys`` keys (default 10^6), a quarter
   each float scalars, int scalars, ``(int, float)`` tuples and float64
   arrays of 4: write (fsynced), read back whole, and read back as one of
   3 servers re-sharding a 2-server checkpoint. Reported: seconds (wall and
   this process's CPU), bytes on disk against the values' bytes (what
   ``Store.nbytes`` counts: 8 per scalar, an array's ``nbytes``) and against
   keys + values. The old format (one HDF5 group per key) is run on
   ``--old-keys`` keys (default 10^5) in the same run, and the new one on the
   same table, for a like-for-like line.
2. **Big arrays.** ``--big-mb`` MiB of float64 in 128 MiB arrays: the
   snapshot write against a raw ``os.write`` + ``fsync`` of the same bytes
   (the disk's speed here), what the CRC-32 alone costs, the read back
   against a raw ``readinto`` of the file, and the old format's write. Raw
   and snapshot runs alternate twice; the best of each is kept (the first
   read after a write is often several times slower, for both).
3. **History.** A worker's per-clock history at 1,000 and 10,000 entries:
   the old format rewrote all of it into every checkpoint; now each
   checkpoint appends the entries since the previous one (here 10).

Run from the project folder::

    .venv/bin/python benchmarks/bench_checkpoint.py [--keys 1000000] [--old-keys 100000]
        [--big-mb 512] [--dir /tmp] [--skip-old]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import zlib

import numpy as np

from _common import LoadMeter, own_cpu_seconds, print_table
from paracel import checkpoints
from paracel.partition import Ring
from paracel.server import checkpoint
from paracel.server.store import Store

MB = 1e6


def timed(action):
    """``(result, wall seconds, CPU seconds of this process)`` of ``action()``."""
    wall, cpu = time.perf_counter(), own_cpu_seconds()
    result = action()
    return result, time.perf_counter() - wall, own_cpu_seconds() - cpu


def small_table(count, seed=0):
    """``count`` keys: float and int scalars, (int, float) tuples, float64[4]."""
    rng = np.random.default_rng(seed)
    floats = rng.random(count).tolist()
    table = {}
    for i in range(count):
        kind = i % 4
        if kind == 0:
            table[f"w{i}"] = floats[i]
        elif kind == 1:
            table[("count", i)] = i * 7
        elif kind == 2:
            table[f"t{i}"] = (i, floats[i])
        else:
            table[f"a{i}"] = rng.random(4)
    return table


def value_bytes(table):
    store = Store()
    store.table = table
    return store.nbytes()


def key_bytes(table):
    return sum(len(json.dumps(key)) for key in table)


def disk_bytes(folder):
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))


def new_table_rows(base, table, label):
    """Write, read, and re-shard ``table`` in the snapshot format."""
    folder = tempfile.mkdtemp(dir=base)
    _, write_wall, write_cpu = timed(lambda: checkpoint.write_shard(folder, 0, table.items()))
    manifest = {"num_servers": 1}
    (back, _), read_wall, read_cpu = timed(lambda: checkpoint.load_shard(folder, manifest, 0,
                                                                         Ring(1)))
    assert len(back) == len(table)
    size = disk_bytes(folder)
    shutil.rmtree(folder)
    rows = [[label, "snapshot", len(table), f"{write_wall:.2f}", f"{write_cpu:.2f}",
             f"{read_wall:.2f}", f"{read_cpu:.2f}", f"{size / MB:.1f}",
             f"{size / value_bytes(table):.2f}",
             f"{size / (value_bytes(table) + key_bytes(table)):.2f}"]]
    return rows, reshard(base, table)


def reshard(base, table):
    """Seconds for one of 3 servers to load its keys from a 2-server checkpoint."""
    folder = tempfile.mkdtemp(dir=base)
    two = Ring(2)
    groups = two.group(list(table))
    keys = list(table)
    for server, positions in groups.items():
        checkpoint.write_shard(folder, server, [(keys[p], table[keys[p]]) for p in positions])
    (loaded, _), wall, cpu = timed(lambda: checkpoint.load_shard(folder, {"num_servers": 2},
                                                                 0, Ring(3)))
    shutil.rmtree(folder)
    return len(loaded), wall, cpu


def old_table_rows(base, table, label):
    folder = tempfile.mkdtemp(dir=base)
    path = os.path.join(folder, "server-0.h5")
    _, write_wall, write_cpu = timed(lambda: old_write_table(path, table))
    back, read_wall, read_cpu = timed(lambda: old_read_table(path))
    assert len(back) == len(table)
    size = disk_bytes(folder)
    shutil.rmtree(folder)
    return [[label, "old HDF5", len(table), f"{write_wall:.2f}", f"{write_cpu:.2f}",
             f"{read_wall:.2f}", f"{read_cpu:.2f}", f"{size / MB:.1f}",
             f"{size / value_bytes(table):.2f}",
             f"{size / (value_bytes(table) + key_bytes(table)):.2f}"]]


def big_rows(base, megabytes, old, repeats=2):
    """Raw writes and snapshot writes alternate ``repeats`` times (best kept:
    the machine is shared); then one read and the old format."""
    arrays = {f"block{i}": np.random.default_rng(i).random(16 << 20)
              for i in range(max(1, megabytes // 128))}
    total = sum(array.nbytes for array in arrays.values())
    folder = tempfile.mkdtemp(dir=base)
    best = {}
    for _ in range(repeats):
        for name, action in (("raw os.write + fsync", lambda: raw_write(folder, arrays)),
                             ("snapshot write", lambda: checkpoint.write_shard(
                                 folder, 0, arrays.items()))):
            _, wall, cpu = timed(action)
            best[name] = min(best.get(name, (wall, cpu)), (wall, cpu))
            for leftover in os.listdir(folder):
                os.remove(os.path.join(folder, leftover))
    best["CRC-32 alone"] = timed(lambda: [zlib.crc32(a.view(np.uint8))
                                               for a in arrays.values()])[1:]
    checkpoint.write_shard(folder, 0, arrays.items())
    path = os.path.join(folder, "server-0.ckpt")
    for _ in range(repeats):
        for name, action in (("raw readinto", lambda: raw_read(path)),
                             ("snapshot read", lambda: checkpoint.load_shard(
                                 folder, {"num_servers": 1}, 0, Ring(1)))):
            _, wall, cpu = timed(action)
            best[name] = min(best.get(name, (wall, cpu)), (wall, cpu))
    if old:
        best["old HDF5 write"] = timed(lambda: old_write_table(os.path.join(folder, "old.h5"),
                                                               arrays))[1:]
    shutil.rmtree(folder)
    return total, [[name, f"{wall:.2f}", f"{cpu:.2f}", f"{total / wall / MB:.0f}"]
                   for name, (wall, cpu) in best.items()]


def raw_read(path):
    """The whole file into one fresh buffer: the page cache's (or disk's) speed."""
    with open(path, "rb") as handle:
        handle.readinto(np.empty(os.path.getsize(path), dtype=np.uint8))


def raw_write(folder, arrays):
    """The same bytes with plain writes and one fsync: the disk's speed."""
    descriptor = os.open(os.path.join(folder, "raw"), os.O_WRONLY | os.O_CREAT, 0o644)
    for array in arrays.values():
        view = memoryview(array.view(np.uint8))
        while view.nbytes:
            view = view[os.write(descriptor, view):]
    os.fsync(descriptor)
    os.close(descriptor)


def history_rows(base, old):
    rows = []
    for length in (1000, 10000):
        history = [{"clock": c, "elapsed": c * 0.01, "wait": 0.001 * c, "sync": 0.0,
                    "comm": 0.002 * c, "loss": 1.0 / (c + 1)} for c in range(length)]
        folder = tempfile.mkdtemp(dir=base)
        log = checkpoints.History(os.path.join(folder, "worker-0.jsonl"))
        for entry in history[:-10]:
            log.add(entry)
        log.flush()
        for entry in history[-10:]:
            log.add(entry)
        _, wall, _ = timed(log.flush)
        row = [length, f"{wall * 1000:.2f}"]
        if old:
            path = os.path.join(folder, "worker-0.h5")
            _, old_wall, _ = timed(lambda: old_write_state(path, {"history": history}))
            row.append(f"{old_wall * 1000:.0f}")
        rows.append(row)
        shutil.rmtree(folder)
    return rows


# -- the HDF5 format before checkpoint format 2, kept only as the baseline -----

def old_write_value(group, name, value):
    if isinstance(value, np.ndarray):
        group.create_dataset(name, data=value).attrs["kind"] = "array"
    elif isinstance(value, (tuple, list, dict)):
        node = group.create_group(name)
        node.attrs["kind"] = "dict" if isinstance(value, dict) else type(value).__name__
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        node.attrs["keys"] = json.dumps([str(key) for key, _ in items])
        for index, (_, item) in enumerate(items):
            old_write_value(node, str(index), item)
    else:
        node = group.create_group(name)
        node.attrs.update(kind=type(value).__name__, value=value)


def old_read_value(node):
    kind = node.attrs["kind"]
    if kind == "array":
        return node[...]
    if kind in ("tuple", "list", "dict"):
        count = len(json.loads(node.attrs["keys"]))
        return [old_read_value(node[str(index)]) for index in range(count)]
    return node.attrs["value"]


def old_write_table(path, table):
    import h5py

    with h5py.File(path, "w") as handle:
        for index, (key, value) in enumerate(table.items()):
            old_write_value(handle, str(index), value)
            handle[str(index)].attrs["key"] = json.dumps(key)
    descriptor = os.open(path, os.O_RDONLY)
    os.fsync(descriptor)
    os.close(descriptor)


def old_read_table(path):
    import h5py

    with h5py.File(path, "r") as handle:
        return {handle[name].attrs["key"]: old_read_value(handle[name]) for name in handle}


def old_write_state(path, state):
    import h5py

    with h5py.File(path, "w") as handle:
        old_write_value(handle, "state", state)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--old-keys", type=int, default=100_000)
    parser.add_argument("--big-mb", type=int, default=512)
    parser.add_argument("--dir", default=None, help="where to write (default: the temp dir)")
    parser.add_argument("--skip-old", action="store_true", help="no old-format baseline")
    args = parser.parse_args(argv)
    meter = LoadMeter()
    base = tempfile.mkdtemp(prefix="bench-checkpoint-", dir=args.dir)
    try:
        header = ["table", "format", "keys", "write s", "write cpu", "read s", "read cpu",
                  "disk MB", "disk/values", "disk/(keys+values)"]
        rows, resharded = new_table_rows(base, small_table(args.keys), "big")
        if not args.skip_old:
            small = small_table(args.old_keys, seed=1)
            rows += old_table_rows(base, small, "same")
            rows += new_table_rows(base, small, "same")[0]
        print_table("1. many small keys (a quarter each float, int, (int, float), float64[4])",
                    header, rows)
        count, wall, cpu = resharded
        print(f"re-sharding 2 -> 3 servers, server 0 of {args.keys} keys: {count} keys "
              f"loaded in {wall:.2f} s ({cpu:.2f} s CPU)")
        total, rows = big_rows(base, args.big_mb, not args.skip_old)
        print_table(f"2. big arrays: {total / MB:.0f} MB of float64 in 128 MiB arrays",
                    ["what", "seconds", "cpu", "MB/s"], rows)
        header = ["history entries", "append 10, ms"] + ([] if args.skip_old else
                                                         ["old: rewrite all, ms"])
        print_table("3. a worker's history at one checkpoint", header,
                    history_rows(base, not args.skip_old))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n{meter.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
