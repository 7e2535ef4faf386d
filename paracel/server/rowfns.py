"""Row functions and table functions: the server-side maths of row tables.

A *row function* ``fn(rows, deltas, params)`` runs on the server when a
worker pushes with it (``T.push(ids, deltas, fn="name", params=...)``):
``rows`` is a ``(k, width)`` array holding the pushed rows that exist (each
row once: deltas of an id repeated in one push are summed first), ``deltas``
their deltas (``(k,)`` or ``(k, c)``, as pushed), ``params`` the tuple
pushed. It updates ``rows`` in place (or returns the new rows, of the same
shape), and the server writes them back: a read-modify-write that no other
push interleaves with, e.g. an FTRL step that turns gradients into its
``z`` and ``n`` columns.

A *table function* ``fn(values, params)`` runs on every server's whole
shard of a table (``T.map("name", params)``): ``values`` is the
``(rows, width)`` array of the rows that exist, to read or modify in place;
it returns a number, an array or ``None``, and the worker gets the sum over
the servers. Dot products, norms, axpy between columns: algorithms such as
L-BFGS keep their vectors on the servers and move only scalars
(DistBelief's Sandblaster).

Both are registered by name, in modules the job file lists under
``"modules"`` (imported on every rank, so every rank knows the names).

Built-ins
---------
Pushes with ``fn="add"`` (repeated ids accumulate, like ``np.add.at``) and
``fn="replace"`` (the last of repeated ids wins) are built into the row
table (:data:`BUILTIN_ROW`; deltas of the table's width). Table functions,
with column numbers in ``params``: ``dot(a, b)`` and ``sum_sq(col)``
return sums; ``axpy(alpha, x, y)``
(column y += alpha * column x), ``scale(col, a)``, ``copy(src, dst)`` and
``fill(col, value)`` modify the table and return ``None``.
"""

import numpy as np

from paracel.errors import UserError

#: The row functions built into the row table itself.
BUILTIN_ROW = ("add", "replace")

_ROW = {}
_TABLE = {}
_KINDS = {"row": _ROW, "table": _TABLE}


def _register(kind, name):
    registry = _KINDS[kind]

    def register(fn):
        key = name or fn.__name__
        if kind == "row" and key in BUILTIN_ROW:
            raise UserError(f"row function {key!r} is built in; choose another name")
        known = registry.get(key)
        if known is not None and known is not fn:
            raise UserError(f"{kind} function {key!r} is already registered "
                            f"(by {known.__module__}.{known.__qualname__})")
        registry[key] = fn
        return fn
    return register


def row_function(name=None):
    """Register ``fn(rows, deltas, params)`` as a row function called ``name``
    (default: its own name); see the module docstring.

    Examples
    --------
    >>> @row_function("clipped_add")
    ... def clipped_add(rows, deltas, params):
    ...     np.clip(rows + deltas, -params[0], params[0], out=rows)
    """
    if callable(name):
        return row_function()(name)
    return _register("row", name)


def table_function(name=None):
    """Register ``fn(values, params) -> number, array or None`` as a table
    function called ``name`` (default: its own name); see the module
    docstring."""
    if callable(name):
        return table_function()(name)
    return _register("table", name)


def lookup(kind, name):
    """The ``kind`` (``"row"`` or ``"table"``) function called ``name``;
    unknown names list the known ones."""
    registry = _KINDS[kind]
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown {kind} function {name!r}; known: "
                        f"{', '.join(names(kind))}") from None


def names(kind):
    """Sorted names of the ``kind`` functions, built-ins included."""
    return sorted(_KINDS[kind]) + (list(BUILTIN_ROW) if kind == "row" else [])


def name_of(kind, fn):
    """The registered name of ``fn`` (a name, or the function itself)."""
    if callable(fn):
        for name, known in _KINDS[kind].items():
            if known is fn:
                return name
        raise UserError(f"{kind} function {fn!r} is not registered; decorate it with "
                        f"@paracel.{kind}_function and list its module under \"modules\"")
    if not (kind == "row" and fn in BUILTIN_ROW):
        lookup(kind, fn)
    return fn


def columns(values, params, *positions):
    """Check that ``params[i]`` is a column of ``values`` for each position
    ``i`` (for table functions that take column numbers)."""
    width = values.shape[1]
    for position in positions:
        column = params[position]
        if not isinstance(column, (int, np.integer)) or not 0 <= column < width:
            raise UserError(f"column {column!r} is not one of 0..{width - 1}")


def _params(name, params, count, names):
    if len(params) != count:
        raise UserError(f"{name} takes params ({names}), got {len(params)} value(s)")
    return params


# -- built-in table functions -------------------------------------------------

@table_function("dot")
def dot(values, params):
    """``params = (a, b)``: the sum of column a times column b."""
    a, b = _params("dot", params, 2, "a, b")
    columns(values, params, 0, 1)
    return float(np.dot(values[:, a], values[:, b]))


@table_function("sum_sq")
def sum_sq(values, params):
    """``params = (col,)``: the sum of squares of column col."""
    (col,) = _params("sum_sq", params, 1, "col")
    columns(values, params, 0)
    return float(np.dot(values[:, col], values[:, col]))


@table_function("axpy")
def axpy(values, params):
    """``params = (alpha, x, y)``: column y += alpha * column x."""
    alpha, x, y = _params("axpy", params, 3, "alpha, x, y")
    columns(values, params, 1, 2)
    values[:, y] += alpha * values[:, x]


@table_function("scale")
def scale(values, params):
    """``params = (col, a)``: column col *= a."""
    col, a = _params("scale", params, 2, "col, a")
    columns(values, params, 0)
    values[:, col] *= a


@table_function("copy")
def copy(values, params):
    """``params = (src, dst)``: column dst = column src."""
    src, dst = _params("copy", params, 2, "src, dst")
    columns(values, params, 0, 1)
    values[:, dst] = values[:, src]


@table_function("fill")
def fill(values, params):
    """``params = (col, value)``: every row's column col = value."""
    col, value = _params("fill", params, 2, "col, value")
    columns(values, params, 0)
    values[:, col] = value
