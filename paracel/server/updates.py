"""Update functions: how a server folds a worker's delta into a stored value.

An update function is ``fn(old, delta) -> new`` and runs on the server that
holds the key, one request at a time, so every update is atomic per key.
``old`` is ``None`` when the key is missing. Built-ins are registered here by
name; users register their own with :func:`update_function` in a module that
the job file lists under ``"modules"`` (imported on every rank, so workers and
servers agree on the names).

Built-ins
---------
``add``, ``sub``
    Elementwise sum / difference; a missing key counts as zero. Dense blocks
    are updated in place; a sparse delta onto a dense block adds only its
    non-zeros. Shapes must match exactly (no broadcasting).
``max``, ``min``
    Elementwise maximum / minimum; a missing key takes the delta.
``replace``
    Store the delta.
``add_rows``
    ``delta = (rows, values)``: add ``values[i]`` to row ``rows[i]`` of a
    dense block (repeated rows accumulate), without touching other rows.
``set_rows``
    ``delta = (rows, values)``: overwrite the given rows of a dense block
    (for a repeated row, the last value wins).
``max_rows``, ``min_rows``
    ``delta = (rows, values)``: the elementwise maximum / minimum of the given
    rows of a dense block and ``values`` (a repeated row takes the largest /
    smallest of its values), other rows untouched.
"""

import numpy as np

from paracel.errors import UserError

_REGISTRY = {}


def update_function(name=None):
    """Register ``fn(old, delta) -> new`` under ``name`` (default: its own name).

    Examples
    --------
    >>> @update_function("scaled_add")
    ... def scaled_add(old, delta):
    ...     return delta if old is None else old + 0.5 * delta
    """
    if callable(name):  # bare @update_function: register under the function's own name
        return update_function()(name)

    def register(fn):
        key = name or fn.__name__
        known = _REGISTRY.get(key)
        if known is not None and known is not fn:
            raise UserError(f"update function {key!r} is already registered "
                            f"(by {known.__module__}.{known.__qualname__})")
        _REGISTRY[key] = fn
        return fn
    return register


def lookup(name):
    """Return the update function called ``name``; unknown names list the known."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown update function {name!r}; known: "
                        f"{', '.join(names())}") from None


def name_of(fn):
    """The registered name of update function ``fn`` (a name or the
    function itself), checked before anything is sent so that a typo is the
    caller's error, not a server's."""
    if callable(fn):
        for name in names():
            if _REGISTRY[name] is fn:
                return name
        raise UserError(f"update function {fn!r} is not registered; decorate it with "
                        "@paracel.update_function and list its module under \"modules\"")
    lookup(fn)
    return fn


def is_builtin(fn):
    """Whether ``fn`` is one of the built-ins defined here."""
    return getattr(fn, "__module__", None) == __name__


def names():
    """Sorted names of all registered update functions."""
    return sorted(_REGISTRY)


def _is_sparse(value):
    return type(value).__module__.startswith("scipy.sparse")


def _is_number(value):
    return isinstance(value, (int, float, complex, np.generic))


def _shape(value):
    """A value's shape; a Python or numpy scalar counts as shape ``()``."""
    return () if _is_number(value) else getattr(value, "shape", None)


def _check_fit(old, delta):
    """Refuse a delta whose shape differs from the stored block's."""
    old_shape = _shape(old)
    delta_shape = _shape(delta)
    if old_shape != delta_shape:
        raise UserError(f"delta of shape {delta_shape} does not fit the stored value "
                        f"of shape {old_shape}")


def _elementwise(old, delta, ufunc, sparse_method):
    _check_fit(old, delta)
    if isinstance(old, np.ndarray) and _is_sparse(delta):
        if ufunc is np.add or ufunc is np.subtract:
            coo = delta.tocoo()
            data = coo.data if ufunc is np.add else -coo.data
            _in_place(np.add.at, old, (coo.row, coo.col), data)
            return old
        delta = delta.toarray()
    if isinstance(old, np.ndarray) and _is_number(delta):  # 0-d block, scalar delta
        delta = np.asarray(delta)
    if isinstance(old, np.ndarray) and isinstance(delta, np.ndarray):
        _in_place(ufunc, old, delta, out=old)
        return old
    if _is_sparse(old):
        return _sparse_combine(old, delta, sparse_method)
    return _scalar(old, delta, ufunc)


def _in_place(op, old, *args, **kwargs):
    try:
        if "out" in kwargs:
            op(old, *args, casting="same_kind", **kwargs)
        else:
            if not np.can_cast(np.asarray(args[-1]).dtype, old.dtype, "same_kind"):
                raise TypeError(f"cannot add {np.asarray(args[-1]).dtype} to {old.dtype}")
            op(old, *args)
    except TypeError as error:
        raise UserError(f"delta does not fit the stored block of dtype {old.dtype}: "
                        f"{error}") from None


def _sparse_combine(old, delta, method):
    if method == "add":
        result = old + delta
    elif method == "sub":
        result = old - delta
    else:
        result = getattr(old, method)(delta)
    # sparse + dense gives numpy.matrix; store a plain ndarray instead
    return np.asarray(result) if isinstance(result, np.matrix) else result


def _scalar(old, delta, ufunc):
    if isinstance(delta, np.ndarray) or isinstance(old, np.ndarray):
        raise UserError(f"cannot combine {type(old).__name__} with {type(delta).__name__}")
    if ufunc is np.add:
        return old + delta
    if ufunc is np.subtract:
        return old - delta
    return max(old, delta) if ufunc is np.maximum else min(old, delta)


@update_function("add")
def add(old, delta):
    """Elementwise sum; a missing key takes the delta."""
    return delta if old is None else _elementwise(old, delta, np.add, "add")


@update_function("sub")
def sub(old, delta):
    """Elementwise difference; a missing key counts as zero."""
    return -delta if old is None else _elementwise(old, delta, np.subtract, "sub")


@update_function("max")
def maximum(old, delta):
    """Elementwise maximum; a missing key takes the delta."""
    return delta if old is None else _elementwise(old, delta, np.maximum, "maximum")


@update_function("min")
def minimum(old, delta):
    """Elementwise minimum; a missing key takes the delta."""
    return delta if old is None else _elementwise(old, delta, np.minimum, "minimum")


@update_function("replace")
def replace(old, delta):
    """Store the delta."""
    return delta


def _row_delta(name, old, delta):
    """Check ``delta = (rows, values)`` against the dense block ``old``."""
    if not (isinstance(delta, (tuple, list)) and len(delta) == 2):
        raise UserError(f"{name} expects delta = (rows, values)")
    rows, values = np.asarray(delta[0]), np.asarray(delta[1])
    if rows.size == 0:
        rows = rows.astype(np.intp)  # np.asarray([]) is float64
    if rows.ndim != 1 or rows.dtype.kind not in "iu":
        raise UserError(f"{name} rows must be a 1-d sequence of integers, got "
                        f"dtype {rows.dtype} and shape {rows.shape}")
    if old is None or not isinstance(old, np.ndarray):
        raise UserError(f"{name} needs an existing dense block; write it first")
    if values.shape != (len(rows),) + old.shape[1:]:
        raise UserError(f"{name} values of shape {values.shape} do not fit "
                        f"{len(rows)} rows of a block of shape {old.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= old.shape[0]):
        raise UserError(f"{name} row index out of range for a block of {old.shape[0]} rows")
    return rows, values


@update_function("add_rows")
def add_rows(old, delta):
    """Add ``values`` to the given ``rows`` of a dense block: ``delta = (rows, values)``."""
    rows, values = _row_delta("add_rows", old, delta)
    _in_place(_add_at_rows, old, rows, values)
    return old


def _add_at_rows(old, rows, values):
    """``np.add.at(old, rows, values)``; rows in increasing order (distinct,
    as pulls and pushes of distributed matrices send them) take one fancy
    ``+=`` instead, the same sums and about 5x faster on 2-d blocks."""
    if old.ndim > 1 and rows.size > 1 and np.all(rows[1:] > rows[:-1]):
        old[rows] += values
    else:
        np.add.at(old, rows, values)


@update_function("set_rows")
def set_rows(old, delta):
    """Overwrite the given ``rows`` of a dense block: ``delta = (rows, values)``."""
    rows, values = _row_delta("set_rows", old, delta)
    if not np.can_cast(values.dtype, old.dtype, "same_kind"):
        raise UserError(f"delta does not fit the stored block of dtype {old.dtype}: "
                        f"cannot store {values.dtype}")
    old[rows] = values
    return old


@update_function("max_rows")
def max_rows(old, delta):
    """Raise the given ``rows`` of a dense block to ``values`` where larger:
    ``delta = (rows, values)``."""
    rows, values = _row_delta("max_rows", old, delta)
    _in_place(np.maximum.at, old, rows, values)
    return old


@update_function("min_rows")
def min_rows(old, delta):
    """Lower the given ``rows`` of a dense block to ``values`` where smaller:
    ``delta = (rows, values)``."""
    rows, values = _row_delta("min_rows", old, delta)
    _in_place(np.minimum.at, old, rows, values)
    return old
