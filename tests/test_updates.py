"""Tests of the server-side update functions (paracel.server.updates) and of
how the table store (paracel.server.store.Store) applies them.

Every built-in is checked against a plain NumPy / SciPy reference on dense
blocks of several dtypes, scalars and sparse blocks; errors must be
UserErrors with a message that says what did not fit. No MPI.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from paracel.errors import UserError
from paracel.server import updates
from paracel.server.store import MISSING, Store
from paracel.server.updates import lookup, names, update_function

ELEMENTWISE = [("add", np.add), ("sub", np.subtract), ("max", np.maximum),
               ("min", np.minimum)]


def _pair(dtype, shape=(4, 3), seed=0):
    rng = np.random.default_rng(seed)
    old = rng.integers(-5, 5, size=shape).astype(dtype)
    delta = rng.integers(-5, 5, size=shape).astype(dtype)
    return old, delta


def _fresh_name(base):
    """A registry name no other test uses."""
    name, n = base, 0
    while name in names():
        n += 1
        name = f"{base}_{n}"
    return name


# -- dense blocks ------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("name, ufunc", ELEMENTWISE)
def test_elementwise_dense_in_place(name, ufunc, dtype):
    old, delta = _pair(dtype)
    expected = ufunc(old, delta)
    result = lookup(name)(old, delta)
    assert result is old  # the stored block is updated in place
    assert result.dtype == dtype
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("name, ufunc", [("add", np.add), ("sub", np.subtract)])
def test_add_sub_complex(name, ufunc):
    old, delta = _pair(np.complex128)
    old += 1j * np.arange(12).reshape(4, 3)
    expected = ufunc(old, delta)
    result = lookup(name)(old, delta)
    assert result.dtype == np.complex128
    np.testing.assert_array_equal(result, expected)


def test_add_float32_block_accepts_float64_delta():
    old = np.zeros(3, dtype=np.float32)
    result = lookup("add")(old, np.array([0.5, 1.5, 2.5]))
    assert result is old and result.dtype == np.float32
    np.testing.assert_array_equal(result, np.array([0.5, 1.5, 2.5], dtype=np.float32))


def test_add_int_block_accepts_smaller_int_delta():
    old = np.arange(3, dtype=np.int64)
    lookup("add")(old, np.ones(3, dtype=np.int8))
    np.testing.assert_array_equal(old, [1, 2, 3])


def test_replace_returns_delta():
    delta = np.ones(3)
    assert lookup("replace")(np.zeros(3), delta) is delta
    assert lookup("replace")(None, 5) == 5


def test_zero_d_block_with_scalar_delta():
    old = np.array(2.0)
    result = lookup("add")(old, 3)
    assert result is old and float(result) == 5.0
    assert float(lookup("max")(np.array(2.0), np.float64(7.0))) == 7.0


# -- errors ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["add", "sub", "max", "min"])
def test_shape_mismatch_is_a_user_error(name):
    old = np.zeros((4, 3))
    with pytest.raises(UserError, match=r"shape \(3, 4\).*shape \(4, 3\)"):
        lookup(name)(old, np.ones((3, 4)))
    np.testing.assert_array_equal(old, 0)  # untouched


def test_no_broadcasting():
    with pytest.raises(UserError, match="does not fit"):
        lookup("add")(np.zeros((4, 3)), np.ones(3))


@pytest.mark.parametrize("name", ["add", "sub", "max", "min"])
def test_float_delta_into_int_block_is_a_user_error(name):
    old = np.zeros(3, dtype=np.int64)
    with pytest.raises(UserError, match="dtype int64") as info:
        lookup(name)(old, np.full(3, 0.5))
    assert "float64" in str(info.value)
    np.testing.assert_array_equal(old, 0)


def test_complex_delta_into_float_block_is_a_user_error():
    with pytest.raises(UserError, match="dtype float64"):
        lookup("add")(np.zeros(2), np.ones(2, dtype=np.complex128))


def test_scalar_and_array_do_not_mix():
    with pytest.raises(UserError):
        lookup("add")(1.0, np.ones(2))
    with pytest.raises(UserError):
        lookup("add")(np.ones(2), 1.0)


# -- scalars and missing keys --------------------------------------------------

@pytest.mark.parametrize("name, old, delta, expected", [
    ("add", 2, 3, 5), ("sub", 2, 3, -1), ("max", 2, 3, 3), ("min", 2, 3, 2),
    ("add", 1.5, 2.25, 3.75), ("add", 1 + 2j, 1j, 1 + 3j),
    ("add", 1.5, np.float64(2.0), 3.5), ("add", np.int64(4), 1, 5),
    ("max", np.float32(1.0), -1.0, 1.0),
])
def test_scalars(name, old, delta, expected):
    assert lookup(name)(old, delta) == expected


@pytest.mark.parametrize("name", ["add", "max", "min", "replace"])
def test_missing_key_takes_the_delta(name):
    delta = np.arange(3.0)
    assert lookup(name)(None, delta) is delta
    assert lookup(name)(None, 7) == 7


def test_missing_key_sub_counts_as_zero():
    np.testing.assert_array_equal(lookup("sub")(None, np.arange(3.0)), [0.0, -1.0, -2.0])
    assert lookup("sub")(None, 4) == -4
    sparse = lookup("sub")(None, sp.csr_matrix(np.eye(2)))
    np.testing.assert_array_equal(sparse.toarray(), -np.eye(2))


# -- sparse values -------------------------------------------------------------

def _sparse_pair(seed=0):
    old = sp.random(6, 5, density=0.4, format="csr", random_state=seed)
    delta = sp.random(6, 5, density=0.4, format="csr", random_state=seed + 1)
    return old, delta


@pytest.mark.parametrize("name, ufunc", ELEMENTWISE)
def test_sparse_onto_sparse(name, ufunc):
    old, delta = _sparse_pair()
    expected = ufunc(old.toarray(), delta.toarray())
    result = lookup(name)(old, delta)
    assert sp.issparse(result)
    np.testing.assert_allclose(result.toarray(), expected)


def test_sparse_shape_mismatch_is_a_user_error():
    with pytest.raises(UserError, match="shape"):
        lookup("add")(sp.csr_matrix((3, 3)), sp.csr_matrix((3, 4)))


@pytest.mark.parametrize("name, sign", [("add", 1), ("sub", -1)])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_delta_onto_dense_adds_only_nonzeros_in_place(name, sign, fmt):
    old = np.arange(30, dtype=np.float64).reshape(6, 5)
    before = old.copy()
    delta = sp.random(6, 5, density=0.3, format=fmt, random_state=3)
    result = lookup(name)(old, delta)
    assert result is old
    np.testing.assert_allclose(result, before + sign * delta.toarray())
    untouched = delta.toarray() == 0
    np.testing.assert_array_equal(result[untouched], before[untouched])


def test_sparse_coo_delta_with_duplicates_accumulates():
    old = np.zeros((2, 2))
    delta = sp.coo_matrix(([1.0, 2.0, 4.0], ([0, 0, 1], [1, 1, 0])), shape=(2, 2))
    lookup("add")(old, delta)
    np.testing.assert_array_equal(old, [[0.0, 3.0], [4.0, 0.0]])


def test_sparse_array_delta_onto_dense():
    old = np.ones((3, 3))
    lookup("add")(old, sp.csr_array(np.eye(3)))
    np.testing.assert_array_equal(old, np.ones((3, 3)) + np.eye(3))


def test_sparse_max_onto_dense():
    old = np.full((2, 2), -1.0)
    delta = sp.csr_matrix(np.array([[0.0, 5.0], [0.0, 0.0]]))
    result = lookup("max")(old, delta)
    np.testing.assert_array_equal(result, [[0.0, 5.0], [0.0, 0.0]])


def test_sparse_float_delta_into_int_block_is_a_user_error():
    old = np.zeros((2, 2), dtype=np.int64)
    with pytest.raises(UserError, match="int64"):
        lookup("add")(old, sp.csr_matrix(np.eye(2) * 0.5))
    np.testing.assert_array_equal(old, 0)


def test_sparse_delta_onto_dense_shape_mismatch():
    with pytest.raises(UserError, match="shape"):
        lookup("add")(np.zeros((3, 3)), sp.csr_matrix((3, 2)))


# -- add_rows ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.complex128])
def test_add_rows_matches_np_add_at(dtype):
    rng = np.random.default_rng(1)
    old = rng.integers(0, 9, size=(8, 3)).astype(dtype)
    rows = np.array([0, 5, 5, 2, 0, 0, 7])
    values = rng.integers(-3, 3, size=(len(rows), 3)).astype(dtype)
    expected = old.copy()
    np.add.at(expected, rows, values)
    result = lookup("add_rows")(old, (rows, values))
    assert result is old
    np.testing.assert_array_equal(result, expected)


def test_add_rows_leaves_other_rows_alone_and_accepts_lists():
    old = np.zeros((4, 2))
    lookup("add_rows")(old, ([1, 1], [[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(old, [[0, 0], [4, 6], [0, 0], [0, 0]])


def test_add_rows_on_vector():
    old = np.zeros(5)
    lookup("add_rows")(old, ([4, 0, 4], [1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(old, [2.0, 0, 0, 0, 4.0])


def test_add_rows_with_no_rows_is_a_no_op():
    old = np.ones((3, 2))
    assert lookup("add_rows")(old, ([], np.zeros((0, 2)))) is old
    np.testing.assert_array_equal(old, 1.0)


@pytest.mark.parametrize("old, delta, fragment", [
    (None, ([0], [[1.0]]), "existing dense block"),
    (np.zeros((3, 2)), ([0], np.ones((1, 3))), "do not fit"),
    (np.zeros((3, 2)), ([3], np.ones((1, 2))), "out of range"),
    (np.zeros((3, 2)), ([-1], np.ones((1, 2))), "out of range"),
    (np.zeros((3, 2)), ([0.5], np.ones((1, 2))), "integers"),
    (np.zeros((3, 2), dtype=np.int64), ([0], np.full((1, 2), 0.5)), "int64"),
    (np.zeros((3, 2)), np.ones((1, 2)), "(rows, values)"),
])
def test_add_rows_errors(old, delta, fragment):
    with pytest.raises(UserError) as info:
        lookup("add_rows")(old, delta)
    assert fragment in str(info.value)
    if old is not None:
        np.testing.assert_array_equal(old, 0)


# -- max_rows, min_rows ------------------------------------------------------

@pytest.mark.parametrize("name, ufunc", [("max_rows", np.maximum), ("min_rows", np.minimum)])
def test_max_min_rows_match_np_ufunc_at(name, ufunc):
    rng = np.random.default_rng(2)
    old = rng.integers(0, 9, size=(8, 3)).astype(np.float64)
    rows = np.array([0, 5, 5, 2, 0, 0, 7])
    values = rng.integers(-2, 12, size=(len(rows), 3)).astype(np.float64)
    expected = old.copy()
    ufunc.at(expected, rows, values)
    result = lookup(name)(old, (rows, values))
    assert result is old
    np.testing.assert_array_equal(result, expected)
    untouched = [1, 3, 4, 6]
    np.testing.assert_array_equal(result[untouched], expected[untouched])


def test_max_rows_on_vector_keeps_the_largest_of_repeats():
    old = np.array([5.0, 0, 0, 0, 1.0])
    lookup("max_rows")(old, ([4, 0, 4], [3.0, 2.0, 7.0]))
    np.testing.assert_array_equal(old, [5.0, 0, 0, 0, 7.0])


def test_max_rows_errors():
    with pytest.raises(UserError, match="existing dense block"):
        lookup("max_rows")(None, ([0], [1.0]))
    with pytest.raises(UserError, match="out of range"):
        lookup("min_rows")(np.zeros(3), ([3], [1.0]))


# -- the registry ------------------------------------------------------------

def test_builtins_are_registered():
    assert {"add", "sub", "max", "min", "replace", "add_rows", "set_rows", "max_rows",
            "min_rows"} <= set(names())
    assert names() == sorted(names())


def test_register_user_function_by_decorator():
    name = _fresh_name("scaled_add")

    @update_function(name)
    def scaled(old, delta):
        return delta if old is None else old + 0.5 * delta

    assert lookup(name) is scaled
    assert name in names()
    assert lookup(name)(2.0, 4.0) == 4.0


def test_register_under_own_name_with_and_without_call():
    def shrink_half(old, delta):
        return delta / 2

    def shrink_third(old, delta):
        return delta / 3

    for fn in (shrink_half, shrink_third):
        assert fn.__name__ not in names()
    assert update_function()(shrink_half) is shrink_half
    assert update_function(shrink_third) is shrink_third  # bare @update_function
    assert lookup("shrink_half") is shrink_half
    assert lookup("shrink_third") is shrink_third


def test_registering_the_same_function_twice_is_allowed():
    name = _fresh_name("twice")

    def fn(old, delta):
        return delta

    update_function(name)(fn)
    update_function(name)(fn)
    assert lookup(name) is fn


def test_duplicate_name_with_different_function_raises():
    with pytest.raises(UserError, match="'add' is already registered"):
        @update_function("add")
        def other_add(old, delta):
            return delta
    assert lookup("add") is updates.add


def test_unknown_name_lists_known_names():
    with pytest.raises(UserError) as info:
        lookup("ad")
    message = str(info.value)
    assert "unknown update function 'ad'" in message
    for name in ("add", "sub", "max", "min", "replace", "add_rows"):
        assert name in message


def test_unhashable_name_is_a_user_error():
    with pytest.raises(UserError, match="unknown update function"):
        lookup(["add"])


# -- the store ---------------------------------------------------------------

def test_store_update_reports_traceback_and_updates_other_keys():
    name = _fresh_name("fails_on_negative")

    @update_function(name)
    def fails_on_negative(old, delta):
        if delta < 0:
            raise ValueError(f"negative delta {delta}")
        return (old or 0) + delta

    store = Store()
    store.write(["a", "b", "c"], [1, 10, 100])
    errors = store.update(name, ["a", "b", "c", "d"], [1, -5, 2, 3])
    assert len(errors) == 1
    user, report = errors[0]
    assert not user
    assert repr(name) in report and "'b'" in report
    assert "negative delta -5" in report
    assert "Traceback" in report and "ValueError" in report
    assert "fails_on_negative" in report  # the server-side frame
    assert store.read(["a", "b", "c", "d"]) == [2, 10, 102, 3]


def test_store_update_builtin_on_arrays_and_missing_keys():
    store = Store()
    store.write(["w"], [np.zeros(3)])
    assert store.update("add", ["w", "new"], [np.ones(3), np.full(2, 4.0)]) == []
    w, new = store.read(["w", "new"])
    np.testing.assert_array_equal(w, 1.0)
    np.testing.assert_array_equal(new, 4.0)


def test_store_update_user_error_keeps_old_value():
    store = Store()
    block = np.zeros(3, dtype=np.int64)
    store.write(["k"], [block])
    errors = store.update("add", ["k"], [np.full(3, 0.5)])
    assert errors == [(True, errors[0][1])] and "int64" in errors[0][1]
    assert "Traceback" not in errors[0][1]
    assert store.read(["k"])[0] is block
    np.testing.assert_array_equal(block, 0)


def test_update_fn_returning_none_deletes_the_key():
    name = _fresh_name("delete_key")

    @update_function(name)
    def delete_key(old, delta):
        return None

    store = Store()
    store.write(["x", "y"], [1, 2])
    assert store.update(name, ["x", "never"], [0, 0]) == []
    assert store.read(["x", "y", "never"]) == [MISSING, 2, MISSING]
    assert store.contains(["x", "y"]) == [False, True]


def test_store_update_unknown_function_raises():
    with pytest.raises(UserError, match="unknown update function"):
        Store().update("no_such_fn", ["k"], [1])


def test_store_many_adds_are_not_lost():
    store = Store()
    for _ in range(50):
        store.update("add", ["n", "v"], [1, np.ones(2)])
    n, v = store.read(["n", "v"])
    assert n == 50
    np.testing.assert_array_equal(v, 50.0)


def test_dense_delta_onto_sparse_block_stores_a_plain_array():
    old = sp.csr_matrix(np.eye(3))
    new = lookup("add")(old, np.ones((3, 3)))
    assert type(new) is np.ndarray
    np.testing.assert_array_equal(new, np.eye(3) + 1)


@pytest.mark.parametrize("rows", [[0, 2, 5, 7], [7, 5, 2, 0], [1, 1, 3, 1], [4]])
def test_add_rows_matches_add_at_whatever_the_row_order(rows):
    # increasing rows take a fancy-index fast path: it must sum exactly like add.at
    rng = np.random.default_rng(len(rows))
    old = rng.random((8, 3)).astype(np.float32)
    values = rng.random((len(rows), 3))
    expected = old.copy()
    np.add.at(expected, np.array(rows), values)
    got = updates.lookup("add_rows")(old, (np.array(rows), values))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("returned,kind", [
    ({"a": 1}, "dict"), (object(), "object"), (np.array([{}], dtype=object), "dtype object"),
    ((1.0, [set()]), "set")])
def test_user_function_returning_an_unstorable_value_is_refused_at_apply_time(returned, kind):
    @update_function(f"returns_{kind.replace(' ', '_')}")
    def bad(old, delta):
        return returned

    store = Store()
    store.table["k"] = 1.0
    errors = store.update(f"returns_{kind.replace(' ', '_')}", ["k"], [2.0])
    assert len(errors) == 1 and errors[0][0], errors
    assert f"update function 'returns_{kind.replace(' ', '_')}' failed on key 'k'" in errors[0][1]
    assert kind in errors[0][1]
    assert store.table["k"] == 1.0
