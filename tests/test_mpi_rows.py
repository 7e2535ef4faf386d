"""Row tables under mpiexec: pulls, pushes, table functions, admission,
size and items against the plain reference (tests/rows_reference.py), with
1-3 servers and 1-4 workers; no push lost under concurrency; bad calls as
one line; checkpoints, resume and re-sharding of row tables.
"""

import json

import numpy as np
import pytest

from conftest import assert_ok
from test_mpi_resume import checkpoint_clocks, job_file, paracel

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("processes,servers,width,admit", [
    (2, 1, 1, 0), (4, 2, 2, 3), (5, 3, 3, 2), (7, 3, 2, 0)])
def test_against_the_reference(run_job, processes, servers, width, admit):
    result = run_job("rows_algos:AgainstReference", processes=processes, servers=servers,
                     modules=["rows_algos"], params={"width": width, "admit": admit})
    assert_ok(result)
    seen = json.loads(result.read("rows_0.json"))
    tables = [stats["row_tables"]["t"] for stats in result.metrics["server_stats"]]
    assert len(tables) == servers
    assert sum(table["rows"] for table in tables) == seen["size"] > 0
    assert sum(table["waiting"] for table in tables) == seen["waiting"]
    assert (seen["waiting"] > 0) == (admit > 1)


@pytest.mark.parametrize("admit", [0, 3])
def test_concurrent_pushes_lose_nothing(run_job, admit):
    workers, repeats = 4, 50
    result = run_job("rows_algos:Totals", processes=7, servers=3, modules=["rows_algos"],
                     params={"repeats": repeats, "admit": admit}, timeout=180)
    assert_ok(result)
    total = workers * repeats
    # with admission every push carries the same occurrences, so exactly the
    # pushes before the one that reaches `admit` are dropped, whatever the order
    dropped_once = max(admit, 1) - 1
    dropped_twice = 2 * (-(-max(admit, 1) // 2) - 1)
    for worker in range(workers):
        seen = json.loads(result.read(f"totals_{worker}.json"))
        assert seen["once"] == [total - dropped_once] * len(seen["once"])
        assert seen["twice"] == [2 * total - dropped_twice] * len(seen["twice"])


def test_bad_calls_are_one_line(run_job):
    result = run_job("rows_algos:Mistakes", processes=3, servers=1, modules=["rows_algos"])
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert ("paracel: error: [worker 0] row table 'm': ids must be integers (int64 or "
            "uint64), got dtype float64") in result.stderr
    for worker in range(2):
        seen = json.loads(result.read(f"mistakes_{worker}.json"))
        assert seen["shape"] == "row table 'm': deltas of shape (2, 3) do not fit 2 ids of width 2"
        assert seen["fn"].startswith("row table 'm': unknown row function 'no_such_function'; "
                                     "known: ")
        assert "clip_add" in seen["fn"] and "replace" in seen["fn"]
        assert seen["map"].startswith("row table 'm': unknown table function "
                                      "'no_such_function'; known: ")
        assert seen["width"] == ("row table 'm' exists with width 2, dtype float64, admit 1; "
                                 "asked for width 3, dtype float64, admit 1")
        assert seen["ids"] == "row table 'm': ids must be 1-d, got shape (2, 2)"
        assert "broken_rows was asked to fail" in seen["remote"]
        assert "row function 'broken_rows' failed on row table 'm'" in seen["remote"]
        assert seen["column"] == ("server 0 reported 1 failed update(s); the first: table "
                                  "function 'dot' failed on row table 'm': column 9 is not "
                                  "one of 0..1")
        assert all("\n" not in seen[name] for name in seen if name != "remote")


@pytest.fixture(scope="module")
def resumable_reference(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("rows-reference")
    code, out, err, _ = paracel(rows_job(tmp_path, "whole"))
    assert code == 0, err
    return np.load(tmp_path / "whole" / "ids.npy"), np.load(tmp_path / "whole" / "values.npy")


def rows_job(tmp_path, name, **extra):
    return job_file(tmp_path, name, algorithm="rows_algos:Resumable",
                    modules=["rows_algos", *extra.pop("modules", [])], params={"clocks": 16},
                    **extra)


@pytest.mark.parametrize("servers", [2, 1, 3])
def test_killed_job_resumes_its_row_tables(tmp_path, resumable_reference, servers):
    path = rows_job(tmp_path, "job", modules=["kill_at"])
    code, out, err, _ = paracel(path, kill="1:10")
    assert code != 0, err[-3000:]
    assert checkpoint_clocks(tmp_path / "job-ckpt") == [4, 8]
    code, out, err, _ = paracel(path, "--resume", "--servers", str(servers),
                                "-n", str(3 + servers))
    assert code == 0, err
    assert "at clock 8" in err
    ids, values = resumable_reference
    np.testing.assert_array_equal(np.load(tmp_path / "job" / "ids.npy"), ids)
    np.testing.assert_array_equal(np.load(tmp_path / "job" / "values.npy"), values)
    assert ids.size > 100 and ids.min() >= 2**40
