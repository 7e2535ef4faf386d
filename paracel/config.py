"""The job file: schema, defaults, command-line overrides and validation.

A job file is one JSON object. Every key is checked before any rank starts:
an unknown key, a wrong type, a missing required key or a missing input file
each give one :class:`paracel.errors.ConfigError` that names the file and the
key and says what is allowed (the known keys, the allowed values). Relative
paths in a job file are relative to the job file's folder, so a job runs the
same from any working directory; paths given on the command line are
relative to the current directory.

This module does not import MPI.
"""

import copy
import difflib
import glob
import json
import os
from dataclasses import dataclass, field
from typing import Any

from paracel.errors import ConfigError

REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One parameter of an algorithm, or one key of the job file.

    Parameters
    ----------
    type : type or tuple of types
        Accepted Python type(s) after JSON decoding (an int is accepted where
        a float is; a bool never counts as a number).
    default : object
        The value when absent; :data:`REQUIRED` makes the key mandatory.
    help : str
        One line on what it means, shown by ``--describe``.
    choices : tuple, optional
        The only allowed values.
    low, high : float, optional
        Bounds for numbers, inclusive unless ``closed`` says otherwise.
    closed : {"both", "left", "right", "neither"}
        Which of ``low`` and ``high`` a value may equal (as scikit-learn's
        ``Interval``): ``Param(float, 1.0, low=0, closed="neither")`` is
        "> 0".
    items : Param, optional
        For a list: what every element must be (``min_items`` of them at
        least).
    min_items : int
        For a list: the fewest elements.
    nullable : bool
        Whether ``null`` is allowed.
    path : bool
        A file or folder: a relative value is resolved against the job file's
        folder, like ``input``.
    """

    type: Any
    default: Any = REQUIRED
    help: str = ""
    choices: tuple = None
    low: float = None
    high: float = None
    closed: str = "both"
    items: Any = None
    min_items: int = 0
    nullable: bool = False
    path: bool = False

    def check(self, where, value):
        """Return ``value`` if it is allowed here, else raise ConfigError.

        Parameters
        ----------
        where : str
            The key's full name in messages, e.g. ``params.alpha``.
        """
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"{where}: must not be null; expected {self.describe_type()}")
        if not _is_instance(value, self.type):
            raise ConfigError(f"{where}: expected {self.describe_type()}, "
                              f"got {type(value).__name__} {value!r}")
        if isinstance(value, float) and value != value:
            raise ConfigError(f"{where}: NaN is not allowed; expected {self.describe_type()}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: {value!r} is not allowed; choose one of "
                              f"{', '.join(map(repr, self.choices))}")
        self._check_bounds(where, value)
        if self.items is not None:
            if len(value) < self.min_items:
                raise ConfigError(f"{where}: expected at least {self.min_items} element(s), "
                                  f"got {value!r}")
            value = [self.items.check(f"{where}[{i}]", item) for i, item in enumerate(value)]
        return float(value) if self.type is float else value

    def _check_bounds(self, where, value):
        """Raise unless ``value`` is within ``low`` and ``high``."""
        low_open, high_open = self.closed in ("right", "neither"), self.closed in ("left",
                                                                                  "neither")
        if self.low is not None and (value < self.low or (low_open and value == self.low)):
            if low_open:
                raise ConfigError(f"{where}: must be > {self.low}, got {value!r}")
            raise ConfigError(f"{where}: {value!r} is below the minimum {self.low}")
        if self.high is not None and (value > self.high or (high_open and value == self.high)):
            if high_open:
                raise ConfigError(f"{where}: must be < {self.high}, got {value!r}")
            raise ConfigError(f"{where}: {value!r} is above the maximum {self.high}")

    def describe_type(self):
        """The type in words, e.g. ``float >= 0 or null``."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        text = " or ".join(t.__name__ for t in types)
        left, right = ("[", "]") if self.closed == "both" else (
            "(" if self.closed in ("right", "neither") else "[",
            ")" if self.closed in ("left", "neither") else "]")
        if self.low is not None and self.high is not None:
            text += f" in {left}{self.low}, {self.high}{right}"
        elif self.low is not None:
            text += f" {'>' if left == '(' else '>='} {self.low}"
        elif self.high is not None:
            text += f" {'<' if right == ')' else '<='} {self.high}"
        if self.items is not None:
            text += f" of {self.items.describe_type()}"
        return text + (" or null" if self.nullable else "")


def _is_instance(value, types):
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


#: The job file's keys.
SCHEMA = {
    "algorithm": Param(str, help="bundled algorithm name (see --list) or 'package.module:Class'"),
    "description": Param(str, "", help="free text about the job"),
    "processes": Param(int, 4, low=2, help="MPI processes when paracel.run launches mpiexec"),
    "servers": Param(int, 1, low=1, help="how many ranks are parameter servers; the rest work"),
    "staleness": Param(int, 0, low=0, nullable=True,
                       help="SSP bound s: 0 is BSP, null is fully asynchronous"),
    "seed": Param(int, 0, help="random seed; with staleness 0 a job is deterministic"),
    "clock": Param(str, "auto", choices=("auto", "window", "messages"),
                   help="how workers share their clocks: a one-sided MPI window (fast "
                        "on one host), messages to server 0 (across hosts), or auto "
                        "(the window on one host, messages otherwise)"),
    "cache": Param(bool, False,
                   help="workers keep copies of what they read and serve reads from them "
                        "while fresh enough for the staleness bound (fewer messages)"),
    "input": Param((str, list), None, nullable=True,
                   help="input file, folder or glob (or a list of them)"),
    "output": Param(str, None, nullable=True,
                    help="output folder (default: output/<job name> in the current folder)"),
    "modules": Param(list, [], help="modules imported on every rank (update functions)"),
    "params": Param(dict, {}, help="the algorithm's parameters (see --describe NAME)"),
    "header": Param(bool, False, help="the first line of every input file names the columns "
                                      "(and is not data)"),
    "columns": Param(dict, {}, help="which input column plays which role, by header name or "
                                    "0-based position, e.g. {\"user\": \"userId\", \"item\": "
                                    "\"movieId\", \"rating\": \"rating\"} or {\"id\": null}; "
                                    "roles: id, features (dense), src, dst, weight (graphs), "
                                    "user, item, rating (ratings)"),
    "bad_lines": Param(str, "raise", choices=("raise", "skip"),
                       help="a malformed input line stops the job, or is skipped and "
                            "counted in metrics.json"),
    "checkpoint": Param(dict, None, nullable=True,
                        help="{\"dir\": folder, \"every\": N clocks, \"keep\": K}: "
                             "snapshot servers and workers (see --resume)"),
    "request_timeout": Param(float, 300.0, low=0.001, nullable=True,
                             help="seconds an update function may run on a server before "
                                  "the job is stopped with a message (null: no limit)"),
    "log_level": Param(str, "info", choices=("debug", "info", "warning", "error"),
                       help="logging threshold"),
}


@dataclass
class Job:
    """A validated job: every key of :data:`SCHEMA`, paths made absolute."""

    path: str
    values: dict = field(default_factory=dict)

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def name(self):
        """The job's name: the job file's name without its extension."""
        return _stem(self.path)

    def to_dict(self):
        """The effective configuration, as written to ``metrics.json``."""
        return dict(self.values)


def load(path, overrides=()):
    """Read, override and validate a job file.

    Parameters
    ----------
    path : str
        The JSON job file.
    overrides : sequence of (str, object)
        ``(dotted.key, value)`` pairs applied after reading, e.g.
        ``("params.alpha", 0.05)``; their paths are relative to the current
        folder.

    Returns
    -------
    Job
    """
    raw = read_json(path)
    base = os.path.dirname(os.path.abspath(path))
    raw = resolve_paths(raw, base)
    for dotted, value in overrides:
        apply_override(raw, dotted, resolve_paths({dotted: value}, os.getcwd())[dotted])
    values = validate(raw, path)
    if values["output"] is None:
        values["output"] = os.path.abspath(os.path.join("output", _stem(path)))
    _check_folder("output", values["output"], path)
    if values["checkpoint"] is not None:
        _check_folder("checkpoint.dir", values["checkpoint"]["dir"], path)
    return Job(os.path.abspath(path), values)


def _check_folder(key, folder, path):
    """Refuse a folder key naming a file (or a folder under a file): found
    now, not after the ranks have started."""
    existing = folder
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{path}: {key}: {existing} is a file, not a folder")


def _stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def read_json(path):
    """The job file's JSON object; unreadable or invalid JSON names the line."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such job file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the job file: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        line = f" line {error.lineno} column {error.colno}:" if hasattr(error, "lineno") else ""
        raise ConfigError(f"{path}:{line} not valid JSON: {getattr(error, 'msg', error)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a job file must be a JSON object {{...}}, "
                          f"not {type(raw).__name__}")
    return raw


def validate(raw, path="job"):
    """Check a job dictionary against :data:`SCHEMA`; fill in defaults."""
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"{path}: {unknown_key_message(unknown[0], SCHEMA)}")
    values = {}
    for key, param in SCHEMA.items():
        if key not in raw:
            if param.default is REQUIRED:
                raise ConfigError(f"{path}: missing required key {key!r} ({param.help})")
            values[key] = copy.deepcopy(param.default)  # never share a mutable default
        else:
            try:
                values[key] = param.check(key, raw[key])
            except ConfigError as error:
                raise ConfigError(f"{path}: {error}") from None
    _check_modules(values["modules"], path)
    _check_columns(values["columns"], path)
    if values["checkpoint"] is not None:
        values["checkpoint"] = _check_checkpoint(values["checkpoint"], path)
    _check_inputs(values["input"], path)
    return values


def unknown_key_message(key, known, where=""):
    """``unknown key 'x' (did you mean 'y'?); known keys: ...``."""
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    full = f"{where}{key}"
    return (f"unknown key {full!r}{hint}; known keys: "
            f"{', '.join(sorted(known))}")


def check_params(params, schema, where="params"):
    """Validate an algorithm's parameters against its declared schema.

    Parameters
    ----------
    params : dict
        The values given (e.g. the job file's ``params``).
    schema : dict of str to Param
        The algorithm's ``parameters``.

    Returns
    -------
    dict
        Every parameter, with defaults filled in.
    """
    unknown = sorted(set(params) - set(schema))
    if unknown:
        raise ConfigError(unknown_key_message(unknown[0], schema, where + "."))
    values = {}
    for name, param in schema.items():
        if name in params:
            values[name] = param.check(f"{where}.{name}", params[name])
        elif param.default is REQUIRED:
            raise ConfigError(f"missing required parameter {where}.{name} ({param.help})")
        else:
            values[name] = copy.deepcopy(param.default)  # never share a mutable default
    return values


def resolve_param_paths(params, schema, base):
    """``params`` with every relative path parameter joined to ``base``."""
    return {name: resolve_path(value, base)
            if name in schema and schema[name].path and isinstance(value, str) else value
            for name, value in params.items()}


def parse_override(text):
    """Split ``key.path=value``; the value is JSON if it parses, else a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. params.alpha=0.05")
    key, _, value = text.partition("=")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def input_files(spec):
    """Expand an ``input`` value (file, folder, glob, or list of them) to files.

    Folders give their files (not hidden ones), sorted; globs give their
    matches, sorted. Nothing matching is a ConfigError naming the pattern.
    """
    specs = spec if isinstance(spec, list) else [spec]
    if not specs:
        raise ConfigError("input: the list of inputs is empty")
    files = []
    for item in specs:
        if not isinstance(item, str):
            raise ConfigError(f"input: expected a path, got {type(item).__name__} {item!r}")
        files.extend(_expand(item))
    return files


def _expand(item):
    if os.path.isdir(item):
        names = sorted(name for name in os.listdir(item) if not name.startswith("."))
        files = [os.path.join(item, name) for name in names
                 if os.path.isfile(os.path.join(item, name))]
        if not files:
            raise ConfigError(f"input: the folder {item!r} holds no files")
        return files
    if glob.has_magic(item):
        matches = sorted(path for path in glob.glob(item) if os.path.isfile(path))
        if not matches:
            raise ConfigError(f"input: the pattern {item!r} matches no file")
        return matches
    if not os.path.exists(item):
        raise ConfigError(f"input: no such file or folder {item!r}")
    if not os.access(item, os.R_OK):
        raise ConfigError(f"input: {item!r} is not readable")
    return [item]


def _check_inputs(spec, path):
    if spec is None:
        return
    try:
        input_files(spec)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


CHECKPOINT_SCHEMA = {
    "dir": Param(str, help="folder of the checkpoints (relative to the job file)"),
    "every": Param(int, 10, low=1, help="clocks between checkpoints"),
    "keep": Param(int, 2, low=1, help="how many complete checkpoints to keep"),
}


def _check_checkpoint(raw, path):
    try:
        return check_params(raw, CHECKPOINT_SCHEMA, where="checkpoint")
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


#: The roles a loader's columns can play (see paracel.io.table).
COLUMN_ROLES = ("id", "features", "src", "dst", "weight", "user", "item", "rating")


def _check_columns(columns, path):
    """Refuse a ``columns`` entry no loader could use, before any launch."""
    for role, column in columns.items():
        if role not in COLUMN_ROLES:
            raise ConfigError(f"{path}: columns: {unknown_key_message(role, COLUMN_ROLES)}")
        for index, item in enumerate(column if isinstance(column, list) and
                                     role == "features" else [column]):
            if not (item is None or isinstance(item, str) and item or
                    isinstance(item, int) and not isinstance(item, bool) and item >= 0):
                where = f"columns.{role}" + (f"[{index}]" if isinstance(column, list) else "")
                raise ConfigError(f"{path}: {where}: expected a column name or a 0-based "
                                  f"position (or null), got {item!r}")


def _check_modules(modules, path):
    for index, name in enumerate(modules):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: modules[{index}]: expected a module name, got {name!r}")


def resolve_paths(raw, base):
    """Make the job's own path keys absolute against ``base``."""
    raw = dict(raw)
    checkpoint = raw.get("checkpoint")
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("dir"), str):
        raw["checkpoint"] = {**checkpoint, "dir": resolve_path(checkpoint["dir"], base)}
    for key in ("input", "output"):
        value = raw.get(key)
        if isinstance(value, str):
            raw[key] = resolve_path(value, base)
        elif isinstance(value, list):
            raw[key] = [resolve_path(v, base) if isinstance(v, str) else v for v in value]
    return raw


def resolve_path(value, base):
    """``value`` with ``~`` expanded, relative to ``base`` unless absolute."""
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def apply_override(raw, dotted, value):
    """Set ``raw[a][b]... = value`` for ``dotted = 'a.b...'``."""
    parts = dotted.split(".")
    if parts[0] not in SCHEMA:
        raise ConfigError(f"--set: {unknown_key_message(parts[0], SCHEMA)}")
    target = raw
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: {part!r} is not an object")
        target = child
    target[parts[-1]] = value
