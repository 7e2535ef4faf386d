"""A rerun replaces the results of the run before it, and only those.

The same job run with 4 workers, then with 2, must leave only the second
run's files (no stale ``wc_2``/``wc_3`` next to a ``metrics.json`` that does
not count them); a file the user put into the folder stays; a result file
written with ``open_output`` is replaced like the others.
"""

import os

import pytest

from conftest import assert_ok, HERE

pytestmark = pytest.mark.mpi

TEXT = os.path.join(os.path.dirname(HERE), "data", "text")


def test_rerun_with_fewer_workers_removes_the_earlier_runs_files(run_job, tmp_path):
    first = run_job("wc", processes=6, servers=2, input=TEXT)
    assert_ok(first)
    assert {"wc_0", "wc_1", "wc_2", "wc_3", "topk.txt"} <= set(os.listdir(first.output))
    (tmp_path / "out" / "notes.txt").write_text("mine")
    second = run_job("wc", processes=4, servers=2, input=TEXT)
    assert_ok(second)
    visible = sorted(name for name in os.listdir(second.output) if not name.startswith("."))
    assert visible == ["metrics.json", "notes.txt", "topk.txt", "wc_0", "wc_1"]
    words = sum(int(line.split("\t")[1]) for w in range(2)
                for line in second.read(f"wc_{w}").splitlines())
    assert words == second.metrics["metrics"]["words"]
