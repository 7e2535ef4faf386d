"""``lr``'s methods with local models: Downpour SGD (``downpour``) and
iterative parameter mixing (``ipm``), against scikit-learn on real data,
and Downpour's push rule without MPI.

Data and reference are those of ``test_alg_lr.py``: breast cancer
standardised, digits scaled to [0, 1] (class 0 against the rest),
scikit-learn's ``LogisticRegression(C, tol=1e-10)`` (lbfgs, L2); here
``C = 0.1`` on both.

Tolerances, after 30 epochs at staleness 2, with 1, 2 and 4 workers
(measured on both data sets with every count, once):

* the objective ``F`` within 0.5 % of scikit-learn's optimum on breast
  cancer (measured: +0.01 % to +0.1 %) and within 4 % on digits (an
  ill-conditioned problem on which SGD with the default schedule is still
  moving after 30 epochs; measured +1.2 % with 1 worker, +2.9 % with 4);
  never below it (beyond rounding);
* accuracy within 1 point of the reference's.

Downpour's pushes (:class:`paracel.algorithms.downpour.Replica`): every
local update is sent exactly once whatever ``n_fetch`` and ``n_push``, and
the servers end with the sum of every worker's updates.
"""

import numpy as np
import pytest

import test_alg_lr
from paracel.algorithms.downpour import Replica
from test_alg_lr import fit, reference

#: The same module-scoped fixture (the data sets written once per module).
datasets = test_alg_lr.datasets


@pytest.mark.mpi
@pytest.mark.parametrize("method,data,workers,bound", [
    ("downpour", "cancer", 1, 0.005),
    ("downpour", "digits", 2, 0.04),
    ("downpour", "cancer", 4, 0.005),
    ("ipm", "digits", 1, 0.04),
    ("ipm", "cancer", 2, 0.005),
    ("ipm", "digits", 4, 0.04),
])
def test_matches_sklearn(run_job, tmp_path, datasets, method, data, workers, bound):
    path = datasets[data]
    ref = reference(path, "l2", 0.1)
    result, metrics = fit(run_job, tmp_path, method, path, workers, 1, 2, method=method,
                          C=0.1, epochs=30, tol=None)
    print(f"{method} {data} {workers}w: objective {metrics['objective']:.6f} (ref "
          f"{ref['objective']:.6f}, {metrics['objective'] / ref['objective'] - 1:+.3%}), "
          f"accuracy {metrics['accuracy']:.4f} (ref {ref['accuracy']:.4f})")
    assert ref["objective"] * (1 - 1e-9) <= metrics["objective"] <= ref["objective"] * (1 + bound)
    assert abs(metrics["accuracy"] - ref["accuracy"]) <= 0.01
    assert metrics["epochs"] == 30
    clocks = result.metrics["timings"]["per_worker_clocks"]
    assert len(set(clocks)) == 1 and clocks[0] == (30 if method == "ipm" else clocks[0])


@pytest.mark.parametrize("n_fetch,n_push", [(1, 1), (7, 3), (3, 7), (4, 4), (10, 1)])
def test_downpour_never_pushes_an_update_twice(n_fetch, n_push):
    """Two workers' replicas over one model: step ``t`` of a worker changes
    only its own coordinate ``t`` (so a push's coordinates say which steps
    it carries). Every step's change is pushed exactly once, and the
    servers' model is the sum of all the changes; each fetch's copy is the
    servers' model plus the worker's own unpushed changes."""
    steps, rng = 40, np.random.default_rng(n_fetch * 100 + n_push)
    server = np.zeros(2 * steps)
    replicas = [Replica(2 * steps), Replica(2 * steps)]
    sent = [[], []]
    applied = np.zeros(2 * steps)
    for t in range(steps):
        for worker, replica in enumerate(replicas):
            if t % n_fetch == 0:
                replica.fetch(server.copy())
                assert np.array_equal(replica.local, server + replica.pending)
            delta = np.zeros(2 * steps)
            delta[worker * steps + t] = rng.normal()
            replica.apply(delta)
            applied += delta
            if (t + 1) % n_push == 0 or t == steps - 1:
                positions, values = replica.take()
                sent[worker].extend(positions.tolist())
                np.add.at(server, positions, values)
    for worker in range(2):
        assert sorted(sent[worker]) == list(range(worker * steps, (worker + 1) * steps))
    assert np.array_equal(server, applied)


def test_paracels_rule_would_count_pushes_twice():
    """Pushing the change accumulated since the last *fetch* (Paracel's
    downpour) sends a step again with every push until the next fetch: the
    servers end with more than the changes made. The replica's rule (since
    the last push) does not."""
    server, since_fetch, local_total = 0.0, 0.0, 0.0
    for t in range(12):                      # n_fetch 6, n_push 2, a step of 1 each
        if t % 6 == 0:
            since_fetch = 0.0
        since_fetch += 1.0
        local_total += 1.0
        if (t + 1) % 2 == 0:
            server += since_fetch
    assert server > local_total
    replica = Replica(1)
    pushed = 0.0
    for t in range(12):
        if t % 6 == 0:
            replica.fetch(np.array([pushed]))
        replica.apply(np.array([1.0]))
        if (t + 1) % 2 == 0:
            pushed += replica.take()[1].sum()
    assert pushed == 12.0 and replica.local[0] == 12.0


def test_fetch_and_push_counts_are_declared():
    """``n_fetch`` and ``n_push`` are declared: a wrong type or 0 is refused
    naming them."""
    from paracel import config
    from paracel.algorithms.lr import LogisticRegression
    from paracel.errors import ConfigError

    for name in ("n_fetch", "n_push"):
        with pytest.raises(ConfigError, match=rf"^params\.{name}: "):
            config.check_params({name: 0}, LogisticRegression.parameters)
