"""``lr``'s server-side row updates and proximal maps, without MPI.

The SGD update functions are checked against the formulas they implement
(plain NumPy), on the rows pushed only; the cumulative L1 penalty against a
sequential replay of Tsuruoka et al.'s rule, and its key property: noise
around zero does not keep a weight alive.
"""

import numpy as np
import pytest

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
