"""Click-log-like LIBSVM data with a planted logistic model (committed as code).

Each example has ``--per-row`` distinct binary features. Which features
appear follows a Zipf law over ``--vocabulary`` raw features (a few are in
almost every row, most are rare), and each raw feature is hashed to an id
below ``--features`` (2**32 by default, the hashing trick of click-log
systems; ids are 0-based), so most of the id space is never touched. The
label is drawn from a planted logistic model: every raw feature has a true
weight ``N(0, --scale)`` and the intercept is ``--bias``. The rows are split
into ``train.svm`` and ``test.svm`` (``--test`` of them held out) in the
output folder, with ``meta.json`` saying how they were made, the true
model's held-out log-loss, and the file sizes.

The default (3 M rows, 40 features each, ids up to 2**32) is about 1.5 GB,
the size the project exists for; ``--rows 20000`` makes a CI-sized set.
Files already made with the same settings are reused.

Run (from the project folder)::

    .venv/bin/python benchmarks/make_clicklog.py OUT [--rows 3000000] [--features 4294967296]
"""

import argparse
import json
import os
import time

import numpy as np

CHUNK = 50_000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder")
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--per-row", type=int, default=40)
    parser.add_argument("--features", type=int, default=2 ** 32,
                        help="id space the raw features are hashed into")
    parser.add_argument("--vocabulary", type=int, default=20_000_000,
                        help="distinct raw features")
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent (> 1)")
    parser.add_argument("--scale", type=float, default=0.35,
                        help="standard deviation of the true weights")
    parser.add_argument("--bias", type=float, default=-1.2, help="true intercept")
    parser.add_argument("--test", type=float, default=0.1, help="held-out fraction")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def settings(args):
    """What determines the files (their identity for reuse)."""
    return {key: getattr(args, key) for key in
            ("rows", "per_row", "features", "vocabulary", "zipf", "scale", "bias", "test",
             "seed")}


def hashed(raw, features, seed):
    """The feature id of each raw feature: a seeded 64-bit mix, mod ``features``."""
    x = raw.astype(np.uint64) + np.uint64(seed * 0x9E3779B97F4A7C15 % 2 ** 64)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return (x % np.uint64(features)).astype(np.int64)


def true_weight(ids, scale, seed):
    """The planted weight of each feature id (a deterministic function of it)."""
    u = hashed(ids, 2 ** 53, seed + 1).astype(np.float64) / 2 ** 53
    v = hashed(ids, 2 ** 53, seed + 2).astype(np.float64) / 2 ** 53
    return scale * np.sqrt(-2.0 * np.log1p(-u)) * np.cos(2.0 * np.pi * v)


def draw_rows(rng, count, args):
    """``count`` rows as ``(ids, keep)``: each row's sorted candidate feature
    ids and which of them it has (the first ``per_row`` distinct ones), with
    the labels and the true click probabilities."""
    raw = np.minimum(rng.zipf(args.zipf, size=(count, 2 * args.per_row)), args.vocabulary)
    ids = np.sort(hashed(raw - 1, args.features, args.seed), axis=1)
    keep = np.ones(ids.shape, dtype=bool)
    keep[:, 1:] = ids[:, 1:] != ids[:, :-1]
    keep &= np.cumsum(keep, axis=1) <= args.per_row
    margins = (true_weight(ids, args.scale, args.seed) * keep).sum(axis=1)
    p = 1.0 / (1.0 + np.exp(-(margins + args.bias)))
    labels = (rng.random(count) < p).astype(np.int64)
    return (ids, keep), labels, p


def libsvm_lines(rows, labels):
    """LIBSVM text of the rows (binary features, ``id:1``)."""
    ids, keep = rows
    tokens = np.char.add(ids[keep].astype(str), ":1").tolist()
    cuts = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).tolist()
    return "".join(f"{label} {' '.join(tokens[a:b])}\n"
                   for label, a, b in zip(labels.tolist(), cuts[:-1], cuts[1:]))


def write(args):
    """Write train.svm, test.svm and meta.json into ``args.out``."""
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    paths = {name: os.path.join(args.out, f"{name}.svm") for name in ("train", "test")}
    handles = {name: open(path + ".tmp", "w", encoding="ascii") for name, path in paths.items()}
    loss, held_out, start = 0.0, 0, time.perf_counter()
    try:
        for first in range(0, args.rows, CHUNK):
            count = min(CHUNK, args.rows - first)
            rows, labels, p = draw_rows(rng, count, args)
            test = rng.random(count) < args.test
            for name, mask in (("train", ~test), ("test", test)):
                handles[name].write(libsvm_lines((rows[0][mask], rows[1][mask]), labels[mask]))
            q = np.clip(p[test], 1e-15, 1 - 1e-15)
            loss -= float(np.sum(labels[test] * np.log(q) + (1 - labels[test]) * np.log1p(-q)))
            held_out += int(test.sum())
    finally:
        for handle in handles.values():
            handle.close()
    for path in paths.values():
        os.replace(path + ".tmp", path)
    meta = {"settings": settings(args), "true_model_test_logloss": loss / max(held_out, 1),
            "bytes": {name: os.path.getsize(path) for name, path in paths.items()},
            "seconds": round(time.perf_counter() - start, 1)}
    with open(os.path.join(args.out, "meta.json"), "w", encoding="utf-8") as handle:
        json.dump(meta, handle, indent=2)
    return meta


def ensure(args):
    """The folder's meta, making the files unless they exist with these settings."""
    try:
        with open(os.path.join(args.out, "meta.json"), encoding="utf-8") as handle:
            meta = json.load(handle)
        if meta["settings"] == settings(args):
            return meta
    except (OSError, ValueError, KeyError):
        pass
    return write(args)


def main(argv=None):
    args = parse_args(argv)
    print(json.dumps(ensure(args), indent=2))


if __name__ == "__main__":
    main()
