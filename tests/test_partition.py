"""Tests of paracel.partition: key encoding, hashing and the consistent-hash ring.

No MPI here; one test starts plain Python subprocesses to show that the
mapping does not depend on the process's hash seed.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from paracel.errors import ConfigError, UserError
from paracel.partition import (DEFAULT_VNODES, Ring, block_key, key_bytes,
                               row_block, stable_hash)

SAMPLE_KEYS = ["w", "key-0", "", "ünïcode", 0, -1, 2 ** 70, ("a", "b"),
               ("@matrix", "W", 3), (1, ("x", (2, 3)))]


def _servers(ring, keys):
    """Return the server of every key as an array, via ``ring.group``."""
    servers = np.full(len(keys), -1)
    for server, positions in ring.group(keys).items():
        servers[positions] = server
    return servers


def test_key_bytes_distinguishes_lookalike_keys():
    lookalikes = [("a", "b"), ("ab",), "ab", 1, "1", (1,), ((1,),), (), "",
                  -1, 255, 256, ("a", ("b",)), (("a",), "b"),
                  ("s", ""), ("", "s"), ("ts", "i"), ("t", "si")]
    encoded = [key_bytes(key) for key in lookalikes]
    assert len(set(encoded)) == len(lookalikes)
    assert key_bytes(("a", "b")) != key_bytes(("ab",))
    assert key_bytes(1) != key_bytes("1")
    assert key_bytes((1,)) != key_bytes(1)
    # Tag bytes alone are no separators: lengths must tell these apart.
    assert key_bytes(("s", "")) != key_bytes(("", "s"))


def test_key_bytes_is_a_pure_function_of_the_key():
    assert key_bytes(("x", 7)) == key_bytes(("x", 7))
    assert stable_hash("w") == stable_hash("w")
    assert all(0 <= stable_hash(k) < 2 ** 64 for k in SAMPLE_KEYS)


@pytest.mark.parametrize("key, type_name", [
    (3.5, "float"), (b"ab", "bytes"), (["a"], "list"), (None, "NoneType"),
    (True, "bool"), (("a", 2.0), "float"), (np.float64(3), "float64"),
    (np.bool_(True), "bool")])
def test_unsupported_key_types_are_user_errors_naming_the_type(key, type_name):
    with pytest.raises(UserError, match="unsupported type %s;" % type_name):
        key_bytes(key)
    with pytest.raises(UserError, match=type_name):
        Ring(2).server_of(key)


def test_numpy_strings_and_integers_are_the_same_keys_as_python_ones():
    assert key_bytes(np.str_("w")) == key_bytes("w")
    assert key_bytes(("m", np.int64(3))) == key_bytes(("m", 3))
    assert Ring(3).server_of(np.int32(7)) == Ring(3).server_of(7)


def test_mapping_is_the_same_in_processes_with_other_hash_seeds():
    ring = Ring(5)
    expected = [ring.server_of(k) for k in SAMPLE_KEYS]
    script = ("import json; from paracel.partition import Ring; r = Ring(5); "
              "print(json.dumps([r.server_of(k) for k in %r]))" % (SAMPLE_KEYS,))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed,
                   PYTHONPATH=os.pathsep.join(
                       filter(None, [root, os.environ.get("PYTHONPATH")])))
        out = subprocess.run([sys.executable, "-c", script], env=env,
                             capture_output=True, text=True, check=True)
        assert json.loads(out.stdout) == expected
    assert len(set(expected)) > 1  # the keys do spread over the servers


def test_shares_of_100k_keys_on_4_servers_are_within_10_percent():
    keys = ["key-%d" % i for i in range(100_000)]
    counts = np.bincount(_servers(Ring(4), keys), minlength=4)
    assert counts.sum() == len(keys)
    assert np.abs(counts / counts.mean() - 1).max() < 0.10


@pytest.mark.parametrize("n", range(1, 6))
def test_adding_a_server_moves_about_a_share_and_only_to_it(n):
    keys = ["key-%d" % i for i in range(20_000)]
    before = _servers(Ring(n), keys)
    after = _servers(Ring(n + 1), keys)
    moved = before != after
    assert 0.5 / (n + 1) < moved.mean() < 1.5 / (n + 1)
    assert np.all(after[moved] == n)


def test_group_agrees_with_server_of_and_keeps_order():
    ring = Ring(3)
    keys = ["k%d" % i for i in range(500)] + [("t", i) for i in range(500)]
    groups = ring.group(keys)
    assert sorted(p for ps in groups.values() for p in ps) == list(range(1000))
    for server, positions in groups.items():
        assert positions == sorted(positions)
        assert positions  # only servers that get keys appear
        assert all(ring.server_of(keys[p]) == server for p in positions)
    assert set(groups) == {0, 1, 2}


def test_group_of_no_keys_or_one_key():
    ring = Ring(4)
    assert ring.group([]) == {}
    assert ring.group(["w"]) == {ring.server_of("w"): [0]}


def test_one_server_holds_everything():
    ring = Ring(1)
    assert {ring.server_of(k) for k in SAMPLE_KEYS} == {0}
    assert ring.group(SAMPLE_KEYS) == {0: list(range(len(SAMPLE_KEYS)))}


def test_ring_parameters_are_validated():
    ring = Ring(3)
    assert (ring.num_servers, ring.vnodes) == (3, DEFAULT_VNODES)
    for bad in (0, -2, 1.5, True, "3"):
        with pytest.raises(ConfigError, match="num_servers"):
            Ring(bad)
    with pytest.raises(ConfigError, match="vnodes"):
        Ring(2, vnodes=0)


def test_block_key_and_row_block():
    assert block_key("W", 3) == ("@matrix", "W", 3)
    assert block_key("W", np.int64(2)) == ("@matrix", "W", 2)
    assert type(block_key("W", np.int64(2))[2]) is int
    assert key_bytes(block_key("W", 1)) != key_bytes(block_key("W", 2))
    assert [row_block(r, 4) for r in (0, 3, 4, 9)] == [0, 0, 1, 2]
    assert row_block(np.int32(7), 2) == 3
    with pytest.raises(ConfigError, match="block_size"):
        row_block(5, 0)
    with pytest.raises(UserError, match="row"):
        row_block(-1, 4)
    with pytest.raises(UserError, match="row"):
        row_block(1.0, 4)
    with pytest.raises(UserError, match="block"):
        block_key("W", -1)
    with pytest.raises(UserError, match="name"):
        block_key(5, 0)
