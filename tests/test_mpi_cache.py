"""The worker-side cache honours ``sync()``: after it, reads see every
update made before it, at any staleness (tests/mpi_algos.py SyncedReads)."""

import pytest

from conftest import assert_ok

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("staleness", [0, 2, None])
def test_sync_refreshes_cached_copies(run_job, staleness):
    result = run_job("mpi_algos:SyncedReads", processes=4, servers=1, staleness=staleness,
                     cache=True, modules=["mpi_algos"], params={"rounds": 5})
    assert_ok(result)
    assert result.metrics["metrics"]["c"] == 15.0
