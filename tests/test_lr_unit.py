"""``lr``'s server-side row updates and proximal maps, without MPI.

The SGD update functions are checked against the formulas they implement
(plain NumPy), on the rows pushed only; the cumulative L1 penalty against a
sequential replay of Tsuruoka et al.'s rule, and its key property: noise
around zero does not keep a weight alive.
"""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from paracel.algorithms import lr
from paracel.server.updates import lookup


def test_update_functions_are_registered_by_name():
    assert lookup("lr_sgd_l2") is lr.sgd_l2
    assert lookup("lr_sgd_l1") is lr.sgd_l1


def test_sgd_l2_steps_then_shrinks_only_the_pushed_rows():
    block = np.arange(6, dtype=float)
    rows = np.array([1, 4])
    values = np.array([[0.5, 2.0], [-1.0, 1.25]])
    out = lr.sgd_l2(block.copy(), (rows, values))
    expected = block.copy()
    expected[rows] = (block[rows] + values[:, 0]) / values[:, 1]
    np.testing.assert_array_equal(out, expected)


def test_sgd_l1_applies_what_is_owed_and_never_crosses_zero():
    block = np.array([[1.0, 0.0], [-1.0, 0.0], [0.2, -0.5], [0.0, 0.0]])
    rows = np.arange(4)
    steps = np.array([0.1, -0.1, 0.0, 0.0])
    owed = np.full(4, 0.3)
    out = lr.sgd_l1(block.copy(), (rows, np.column_stack([steps, owed])))
    # 1.1 - 0.3; -1.1 + 0.3; 0.2 owes 0.3 - 0.5 < 0 so nothing; 0 stays 0
    np.testing.assert_allclose(out[:, 0], [0.8, -0.8, 0.2, 0.0])
    np.testing.assert_allclose(out[:, 1], [-0.3, 0.3, -0.5, 0.0])
    # a weight owed more than its size stops at exactly zero
    out = lr.sgd_l1(np.array([[0.1, 0.0]]), (np.array([0]), np.array([[0.05, 1.0]])))
    assert out[0, 0] == 0.0 and out[0, 1] == pytest.approx(-0.15)


def test_cumulative_penalty_kills_noise_that_plain_truncation_keeps():
    rng = np.random.default_rng(0)
    steps = rng.normal(scale=0.05, size=2000)        # pure noise, mean 0
    per_step = 0.01
    cumulative = np.zeros((1, 2))
    plain, alive_cumulative, alive_plain = 0.0, 0, 0
    for t, step in enumerate(steps, start=1):
        cumulative = lr.sgd_l1(cumulative, (np.array([0]), np.array([[step, t * per_step]])))
        plain = lr.prox(np.array([plain + step]), per_step, "l1")[0]
        alive_cumulative += cumulative[0, 0] != 0
        alive_plain += plain != 0
    assert alive_cumulative < alive_plain / 5


def test_prox_maps():
    v = np.array([-2.0, -0.5, 0.0, 0.3, 3.0])
    np.testing.assert_array_equal(lr.prox(v, 0.5, "l1"), [-1.5, 0.0, 0.0, 0.0, 2.5])
    np.testing.assert_allclose(lr.prox(v, 1.0, "l2"), v / 2)
    np.testing.assert_array_equal(lr.prox(v, 1.0, "none"), v)


def test_log_losses_are_stable_for_large_margins():
    z = np.array([-800.0, 0.0, 800.0])
    y = np.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(lr.log_losses(z, y), [800.0, np.log(2.0), 800.0])


def test_bad_row_update_is_a_user_error():
    from paracel.errors import UserError

    with pytest.raises(UserError):
        lr.sgd_l2(np.zeros(3), (np.array([0]), np.array([1.0])))


# -- the methods' kernels, without MPI ------------------------------------------

from paracel.algorithms import downpour, ftrl, gd, ipm, lbfgs, lr_data, sgd  # noqa: E402


def test_schedule_divides_eta_by_the_workers_and_finds_the_reference_pass():
    inverse = sgd.Schedule(eta0=2.0, kind="inverse", decay=1.0, workers=4)
    assert inverse.step_size(0) == 0.5 and inverse.step_size(3) == pytest.approx(0.125)
    root = sgd.Schedule(eta0=2.0, kind="inverse_sqrt", decay=1.0, workers=1)
    assert root.step_size(3) == pytest.approx(1.0)
    # after 3 passes the step is 1/4 of eta0: pass 1 had 1/2, at least twice
    assert inverse.objective_before([10.0, 9.0, 8.5]) == 10.0
    assert inverse.objective_before([10.0]) is None
    constant = sgd.Schedule(eta0=2.0, kind="constant", decay=1.0, workers=1)
    assert constant.objective_before([10.0, 9.0, 8.5]) is None


def test_pace_weighs_every_example_the_same():
    sizes = np.array([100, 40])
    batches = sgd.batches_per_pass(sizes, 32)
    assert batches == 4
    pace = sgd.pace(sizes, batches, worker=1)
    assert pace == (8, 140 / 8, 4 / 8)
    # stepping exactly at its share: the weight is 1 / mean batch
    assert pace.example_weight(mine=4, steps=8) == pytest.approx(1 / pace.mean_batch)
    # twice its share of the steps so far: half the weight
    assert pace.example_weight(mine=1000, steps=1000) == pytest.approx(0.5 / pace.mean_batch,
                                                                      rel=0.01)
    # a small share that made every step: clipped to a quarter
    small = sgd.pace(np.array([200, 2]), sgd.batches_per_pass(np.array([200, 2]), 32), 1)
    assert small.my_share == 2 / 9
    assert small.example_weight(mine=900, steps=900) == pytest.approx(0.25 / small.mean_batch)


def test_batch_step_is_the_weighted_log_loss_gradient():
    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.5, 2.0], [0.0, -1.0]]))
    y = np.array([1.0, 0.0, 1.0])
    w, b, eta, weight = np.array([0.3, -0.2]), 0.1, 0.5, 0.25
    step = sgd.batch_step(X, y, w, b, eta, weight)
    z = X.toarray() @ w + b
    residual = (1 / (1 + np.exp(-z)) - y) * weight
    np.testing.assert_allclose(step.features, -eta * X.toarray().T @ residual)
    assert step.intercept == pytest.approx(-eta * residual.sum())
    assert step.loss == pytest.approx(np.sum(np.log1p(np.exp(-(2 * y - 1) * z))))


def test_penalised_push_picks_the_row_function():
    step = np.array([0.1, -0.2])
    values, fn = sgd.penalised_push("l2", step, 0.5, 0.2, np.array([1.0, 2.0]), 0.0)
    assert fn == "lr_sgd_l2"
    np.testing.assert_allclose(values, [[0.1, 1.1], [-0.2, 1.1 ** 2]])
    values, fn = sgd.penalised_push("l1", step, 0.5, 0.2, None, 0.7)
    assert fn == "lr_sgd_l1" and np.array_equal(values, [[0.1, 0.7], [-0.2, 0.7]])
    values, fn = sgd.penalised_push("none", step, 0.5, 0.2, None, 0.0)
    assert fn == "add" and values is step
    # a feature in every example is shrunk on every step; a rare one as much, lazily
    np.testing.assert_allclose(sgd.shrink_exponents(np.array([10.0, 1.0]), 10, 4.0),
                               [1.0, 1.0 / (1.0 - 0.9 ** 4)])


def test_counters_rows_name_the_shared_vector():
    assert sgd.Counters.rows(2) == [0, 1, 2, 5] and sgd.Counters.size(4) == 7
    counters = sgd.Counters(*np.array([0.5, 0.1, 7.0, 3.0]))
    assert (counters.intercept, counters.owed, counters.steps, counters.mine) == \
        (0.5, 0.1, 7.0, 3.0)


def test_gd_block_update_and_sums():
    y, x = np.array([1.0, -2.0]), np.array([0.5, -1.0])
    parts = [np.array([2.0, 0.0]), np.array([1.0, 4.0])]
    new, following = gd.block_update(y, x, parts, eta=0.5, n=3, lam=0.2, penalty="l1",
                                     beta=0.5)
    expected = lr.prox(y - 0.5 * (parts[0] + parts[1]) / 3, 0.1, "l1")
    np.testing.assert_array_equal(new, expected)
    np.testing.assert_array_equal(following, new + 0.5 * (new - x))
    found = gd.BlockSums().add(y, x, new)
    assert found.dot == pytest.approx((y - new) @ (new - x))
    assert found.change == pytest.approx(np.abs(new - x).max())
    assert found.largest == pytest.approx(np.abs(new).max())


def test_gd_share_sums_pack_and_combine_in_worker_order():
    a = gd.ShareSums(1.0, 0.5, gd.BlockSums(0.25, 3.0, 4.0))
    b = gd.ShareSums(2.0, -0.5, gd.BlockSums(-1.0, 1.0, 6.0))
    total = gd.ShareSums.total([a.pack(), b.pack()])
    assert total == gd.ShareSums(3.0, 0.0, gd.BlockSums(-0.75, 3.0, 6.0))


def test_gd_intercept_step_restarts_momentum_uphill():
    start = gd.GDProgress(x_b=1.0, y_b=1.0, found=gd.BlockSums(), momentum=3.0)
    downhill = gd.ShareSums(0.0, 6.0, gd.BlockSums(dot=-1.0))
    progress, beta = gd.intercept_step(start, downhill, eta=0.5, n=3, acceleration=True,
                                       fit_intercept=True)
    following = (1 + np.sqrt(1 + 4 * 9.0)) / 2
    assert beta == pytest.approx(2.0 / following) and progress.momentum == following
    assert progress.x_b == 0.0 and progress.change_b == 1.0
    assert progress.y_b == pytest.approx(-beta)
    uphill = downhill._replace(found=gd.BlockSums(dot=1.0))
    _, beta = gd.intercept_step(start, uphill, 0.5, 3, True, True)
    assert beta == 0.0                                    # restarted: momentum 1
    assert start.x_b == 1.0                               # the input is not changed
    assert gd.within_tol(progress, uphill._replace(found=gd.BlockSums(0, 0.01, 2.0)), 0.5)


def test_gd_progress_state_round_trips():
    progress = gd.GDProgress(x_b=0.5, y_b=0.25, found=gd.BlockSums(1.0, 2.0, 3.0), within=2)
    state = progress.state()
    assert type(state["found"]) is list
    assert gd.GDProgress.from_state(state) == progress


def test_share_and_helpers():
    X = sp.csr_matrix(np.array([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0]]))
    columns = np.unique(X.indices)
    Xc = lr.compact(X, columns)
    np.testing.assert_array_equal(Xc.toarray(), [[1.0, 2.0], [0.0, 3.0]])
    used, local = lr_data.local_columns(Xc[[1]])
    np.testing.assert_array_equal(used, [1])
    np.testing.assert_array_equal(local.toarray(), [[3.0]])
    share = lr_data.Share(y=np.ones(2), X=Xc, ids=columns, sizes=np.array([5, 2, 3]),
                          worker=1, lam=0.1, negative=-1, zero_based=False)
    assert share.n == 10 and share.offset == 5 and share.test is None
    weights = lr_data.weights_at(np.array([7, 3], dtype=np.uint64), np.array([0.7, 0.3]),
                                 np.array([3, 4, 7], dtype=np.uint64))
    np.testing.assert_array_equal(weights, [0.3, 0.0, 0.7])
    assert lr_data.weights_at(np.array([], dtype=np.uint64), np.array([]),
                              np.array([1], dtype=np.uint64)).tolist() == [0.0]


@pytest.mark.parametrize("seen,negative", [({-1.0, 1.0}, -1), ({0.0, 1.0}, 0), ({1.0}, 0)])
def test_label_convention(seen, negative):
    assert lr_data.label_convention(seen, "f") == negative


@pytest.mark.parametrize("seen", [set(), {0.0, -1.0, 1.0}, {2.0, 1.0}])
def test_bad_labels_are_data_errors(seen):
    from paracel.errors import DataError

    with pytest.raises(DataError):
        lr_data.label_convention(seen, "f")


def test_every_method_restores_its_progress():
    assert sorted(lr.METHODS) == ["downpour", "ftrl", "gd", "ipm", "lbfgs", "sgd"]
    fresh = {"sgd": sgd.SGDProgress(epoch=2, objectives=[1.0]),
             "gd": gd.GDProgress(x_b=1.0, y_b=2.0, found=gd.BlockSums(0.0, 1.0, 2.0)),
             "ftrl": ftrl.Progress(epoch=1, batch=3),
             "lbfgs": lbfgs.Progress(memory=2),
             "ipm": ipm.Progress(rng={"a": 1}),
             "downpour": downpour.Progress(epoch=1, replica=downpour.Replica(3))}
    def plain(state):
        return json.dumps(state, default=lambda value: value.tolist(), sort_keys=True)

    for name, progress in fresh.items():
        back = lr.METHODS[name].progress.from_state(progress.state())
        assert plain(back.state()) == plain(progress.state())
