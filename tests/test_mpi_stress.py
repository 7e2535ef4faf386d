"""Stress: 15 workers × 8,000 random operations over 1,000 keys per class.

Against 1, 2 and 3 servers, with staleness 2: the final table must equal the
prediction from every worker's own record (sums of all deltas, max/min of
all folds, each worker's sequential replay of its own keys) — no lost,
doubled or reordered update on any key — and the staleness bound must hold
after every clock (asserted on the workers and here).
"""

import json

import numpy as np
import pytest

from conftest import assert_ok

pytestmark = pytest.mark.mpi

WORKERS = 15


def expected_table(records, keys):
    table = {}
    sums = np.sum([r["sums"] for r in records], axis=0)
    maxes = np.max([r["maxes"] for r in records], axis=0)
    mins = np.min([r["mins"] for r in records], axis=0)
    touched_max = np.any([np.array(r["maxes"]) > np.iinfo(np.int64).min for r in records], 0)
    touched_min = np.any([np.array(r["mins"]) < np.iinfo(np.int64).max for r in records], 0)
    for k in range(keys):
        table[("max", k)] = int(maxes[k]) if touched_max[k] else None
        table[("min", k)] = int(mins[k]) if touched_min[k] else None
    for record in records:
        for key, value in record["own"]:
            table[tuple(key)] = value
    return {key: value for key, value in table.items() if value is not None}, sums


@pytest.mark.parametrize("servers", [1, 2, 3])
def test_random_operations_lose_nothing(run_job, servers):
    keys = 1000
    result = run_job("stress_algos:Stress", processes=WORKERS + servers, servers=servers,
                     staleness=2, params={"ops": 8000, "key_count": keys}, timeout=600)
    assert_ok(result)
    records = [json.loads(result.read(f"stress_{w}.json")) for w in range(WORKERS)]
    table = {tuple(key): value for key, value in json.loads(result.read("table.json"))}
    expected, sums = expected_table(records, keys)
    for key, value in expected.items():
        assert table[key] == value, key
    for k in range(keys):
        assert table.get(("sum", k), 0) == sums[k], ("sum", k)
    leftover = set(table) - set(expected) - {("sum", k) for k in range(keys)}
    assert not leftover
    assert max(g for r in records for g in r["gaps"]) <= 2
    stats = result.metrics["server_stats"]
    assert len(stats) == servers and all(s["requests"] > 0 for s in stats)
