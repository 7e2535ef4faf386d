"""Tests of paracel.config: the job file schema, defaults, overrides and messages.

Plain unit tests, no MPI. Job files are written to pytest's ``tmp_path``; the
current directory is moved with ``monkeypatch.chdir`` where paths matter.
"""

import json
import os

import pytest

from paracel import config
from paracel.config import REQUIRED, SCHEMA, Param, check_params, parse_override
from paracel.errors import ConfigError, UserError


def _write_job(folder, job, name="job.json"):
    path = folder / name
    path.write_text(json.dumps(job) if not isinstance(job, str) else job, encoding="utf-8")
    return str(path)


def _error(call, *args, **kwargs):
    """Run ``call`` expecting a ConfigError; return its message."""
    with pytest.raises(ConfigError) as info:
        call(*args, **kwargs)
    return str(info.value)


# -- a valid job ------------------------------------------------------------

def test_valid_job_gets_every_default_filled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = config.load(_write_job(tmp_path, {"algorithm": "lr"}))
    assert set(job.values) == set(SCHEMA)
    assert job.algorithm == "lr"
    assert job.servers == 1
    assert job.processes == 4
    assert job.staleness == 0
    assert job.seed == 0
    assert job.input is None
    assert job.modules == [] and job.params == {}
    assert job.log_level == "info"
    assert job.name == "job"
    assert job.path == str(tmp_path / "job.json")


def test_given_values_are_kept(tmp_path):
    job = config.load(_write_job(tmp_path, {"algorithm": "lr", "servers": 3, "staleness": 2,
                                            "seed": 7, "params": {"alpha": 0.1},
                                            "log_level": "debug"}))
    assert (job.servers, job.staleness, job.seed) == (3, 2, 7)
    assert job.params == {"alpha": 0.1}
    assert job.log_level == "debug"
    assert job.to_dict()["servers"] == 3


def test_default_output_is_output_slash_stem_under_cwd(tmp_path, monkeypatch):
    jobs, cwd = tmp_path / "jobs", tmp_path / "elsewhere"
    jobs.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    job = config.load(_write_job(jobs, {"algorithm": "lr"}, name="my_run.json"))
    assert job.output == os.path.join(str(cwd), "output", "my_run")


def test_mutable_defaults_are_not_shared_between_jobs(tmp_path):
    path = _write_job(tmp_path, {"algorithm": "lr"})
    first = config.load(path)
    first.params["alpha"] = 1.0
    first.modules.append("mine")
    second = config.load(path)
    assert second.params == {} and second.modules == []
    assert SCHEMA["params"].default == {} and SCHEMA["modules"].default == []


def test_staleness_null_means_asynchronous(tmp_path):
    job = config.load(_write_job(tmp_path, {"algorithm": "lr", "staleness": None}))
    assert job.staleness is None


# -- unknown keys and wrong types -------------------------------------------

def test_unknown_key_names_it_suggests_and_lists_known_keys(tmp_path):
    path = _write_job(tmp_path, {"algorithm": "lr", "stalenes": 1})
    message = _error(config.load, path)
    assert path in message
    assert "'stalenes'" in message
    assert "did you mean 'staleness'" in message
    for key in SCHEMA:
        assert key in message


def test_unknown_key_without_close_match_has_no_suggestion():
    message = _error(config.validate, {"algorithm": "lr", "zzzzqqq": 1})
    assert "'zzzzqqq'" in message
    assert "did you mean" not in message
    assert "known keys:" in message


@pytest.mark.parametrize("key, value, expected", [
    ("servers", "two", "int"),
    ("servers", 2.0, "int"),
    ("servers", True, "int"),
    ("staleness", True, "int"),
    ("staleness", "1", "int"),
    ("seed", False, "int"),
    ("params", [1], "dict"),
    ("modules", "mymod", "list"),
    ("input", 5, "str or list"),
    ("algorithm", 3, "str"),
])
def test_wrong_type_names_key_and_expected_type(key, value, expected):
    message = _error(config.validate, {"algorithm": "lr", key: value}, "j.json")
    assert message.startswith("j.json: ")
    assert f"{key}: expected {expected}" in message
    assert type(value).__name__ in message


def test_negative_staleness_names_key_and_minimum():
    message = _error(config.validate, {"algorithm": "lr", "staleness": -1})
    assert "staleness" in message
    assert "-1" in message and "minimum 0" in message


def test_servers_below_one_rejected():
    message = _error(config.validate, {"algorithm": "lr", "servers": 0})
    assert "servers" in message and "minimum 1" in message


def test_null_not_allowed_where_not_nullable():
    message = _error(config.validate, {"algorithm": "lr", "servers": None})
    assert "servers: must not be null" in message
    assert "int >= 1" in message


def test_log_level_choices_listed():
    message = _error(config.validate, {"algorithm": "lr", "log_level": "loud"})
    assert "log_level" in message and "'loud'" in message
    for level in ("debug", "info", "warning", "error"):
        assert repr(level) in message


def test_missing_algorithm_is_reported():
    message = _error(config.validate, {"servers": 1}, "j.json")
    assert "missing required key 'algorithm'" in message
    assert "j.json" in message


def test_module_entries_must_be_names():
    message = _error(config.validate, {"algorithm": "lr", "modules": ["ok", ""]})
    assert "modules[1]" in message


# -- the JSON itself --------------------------------------------------------

def test_invalid_json_names_the_line(tmp_path):
    path = _write_job(tmp_path, '{\n  "algorithm": "lr",\n  "servers": 2,,\n}\n')
    message = _error(config.load, path)
    assert path in message
    assert "line 3" in message
    assert "not valid JSON" in message


@pytest.mark.parametrize("text, kind", [("[1, 2]", "list"), ('"lr"', "str"), ("3", "int")])
def test_non_object_json_is_refused(tmp_path, text, kind):
    message = _error(config.load, _write_job(tmp_path, text))
    assert "must be a JSON object" in message
    assert kind in message


def test_missing_job_file(tmp_path):
    path = str(tmp_path / "absent.json")
    message = _error(config.load, path)
    assert path in message and "no such job file" in message


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, UserError)


# -- input files ------------------------------------------------------------

def test_missing_input_file_names_it(tmp_path):
    message = _error(config.load, _write_job(tmp_path, {"algorithm": "lr",
                                                        "input": "nope.txt"}))
    assert "input" in message
    assert str(tmp_path / "nope.txt") in message


def test_glob_matching_nothing_names_the_pattern(tmp_path):
    message = _error(config.load, _write_job(tmp_path, {"algorithm": "lr",
                                                        "input": "data/*.csv"}))
    assert "matches no file" in message
    assert str(tmp_path / "data" / "*.csv") in message


def test_folder_input_expands_to_sorted_visible_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("b.txt", "a.txt", "c.txt", ".hidden"):
        (folder / name).write_text("x\n")
    (folder / "sub").mkdir()
    files = config.input_files(str(folder))
    assert files == [str(folder / name) for name in ("a.txt", "b.txt", "c.txt")]


def test_glob_and_list_inputs_expand_in_order(tmp_path):
    for name in ("p2.txt", "p1.txt", "q.txt"):
        (tmp_path / name).write_text("x\n")
    files = config.input_files([str(tmp_path / "q.txt"), str(tmp_path / "p*.txt")])
    assert files == [str(tmp_path / n) for n in ("q.txt", "p1.txt", "p2.txt")]


def test_relative_input_is_resolved_against_job_folder(tmp_path, monkeypatch):
    jobs = tmp_path / "jobs"
    (jobs / "data").mkdir(parents=True)
    (jobs / "data" / "train.txt").write_text("1\n")
    monkeypatch.chdir(tmp_path)  # not the job's folder
    job = config.load(_write_job(jobs, {"algorithm": "lr", "input": "data/train.txt",
                                        "output": "out"}))
    assert job.input == str(jobs / "data" / "train.txt")
    assert job.output == str(jobs / "out")


def test_home_folder_paths_are_expanded(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    (home / "data" / "train.txt").write_text("1\n")
    monkeypatch.setenv("HOME", str(home))
    job = config.load(_write_job(tmp_path, {"algorithm": "lr", "input": "~/data/train.txt",
                                            "output": "~/out",
                                            "checkpoint": {"dir": "~/ckpt"}}))
    assert job.input == str(home / "data" / "train.txt") and job.output == str(home / "out")
    assert job.checkpoint["dir"] == str(home / "ckpt")
    params = config.resolve_param_paths({"init_model": "~/m.h5"},
                                        {"init_model": config.Param(str, path=True)}, "/x")
    assert params == {"init_model": str(home / "m.h5")}


def test_override_paths_are_resolved_against_cwd(tmp_path, monkeypatch):
    jobs, cwd = tmp_path / "jobs", tmp_path / "cwd"
    jobs.mkdir()
    cwd.mkdir()
    (cwd / "mine.txt").write_text("1\n")
    monkeypatch.chdir(cwd)
    path = _write_job(jobs, {"algorithm": "lr"})
    job = config.load(path, [("input", "mine.txt"), ("output", "res")])
    assert job.input == str(cwd / "mine.txt")
    assert job.output == str(cwd / "res")


# -- command-line overrides -------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("params.alpha=0.05", ("params.alpha", 0.05)),
    ("servers=2", ("servers", 2)),
    ("staleness=null", ("staleness", None)),
    ("flag=true", ("flag", True)),
    ("modules=[\"a\", \"b\"]", ("modules", ["a", "b"])),
    ("params={\"k\": 3}", ("params", {"k": 3})),
    ("algorithm=lr", ("algorithm", "lr")),
    ("input=data/a b.txt", ("input", "data/a b.txt")),
    ("description=", ("description", "")),
    ("description=a=b", ("description", "a=b")),
    (" seed =3", ("seed", 3)),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_parse_override_without_equals_sign():
    message = _error(parse_override, "params.alpha")
    assert "'params.alpha'" in message and "KEY=VALUE" in message


def test_override_sets_nested_params(tmp_path):
    path = _write_job(tmp_path, {"algorithm": "lr", "params": {"alpha": 0.1, "rounds": 3}})
    job = config.load(path, [parse_override("params.alpha=0.05"),
                             parse_override("params.beta=2")])
    assert job.params == {"alpha": 0.05, "rounds": 3, "beta": 2}


def test_override_creates_params_when_absent(tmp_path):
    job = config.load(_write_job(tmp_path, {"algorithm": "lr"}), [("params.alpha", 0.5)])
    assert job.params == {"alpha": 0.5}


def test_override_replaces_top_level_values(tmp_path):
    path = _write_job(tmp_path, {"algorithm": "lr", "staleness": 2})
    job = config.load(path, [("staleness", None), ("servers", 3)])
    assert job.staleness is None and job.servers == 3


def test_override_of_unknown_top_level_key(tmp_path):
    path = _write_job(tmp_path, {"algorithm": "lr"})
    message = _error(config.load, path, [("sevrers", 2)])
    assert "--set" in message
    assert "'sevrers'" in message and "did you mean 'servers'" in message


def test_override_into_non_object_is_refused(tmp_path):
    path = _write_job(tmp_path, {"algorithm": "lr", "staleness": 1})
    message = _error(config.load, path, [("staleness.x", 1)])
    assert "staleness.x" in message and "not an object" in message


def test_override_values_are_validated(tmp_path):
    path = _write_job(tmp_path, {"algorithm": "lr"})
    message = _error(config.load, path, [parse_override("servers=two")])
    assert "servers: expected int" in message


# -- algorithm parameters (check_params with Param) --------------------------

ALGO = {
    "alpha": Param(float, 0.1, help="learning rate", low=0.0),
    "rounds": Param(int, 10, help="passes", low=1, high=1000),
    "loss": Param(str, "log", choices=("log", "hinge")),
    "k": Param(int, help="clusters"),
    "tol": Param(float, None, nullable=True),
}


def test_check_params_fills_defaults_and_keeps_given():
    values = check_params({"k": 4, "alpha": 0.5}, ALGO)
    assert values == {"alpha": 0.5, "rounds": 10, "loss": "log", "k": 4, "tol": None}


def test_check_params_accepts_int_for_float_and_converts():
    values = check_params({"k": 2, "alpha": 1}, ALGO)
    assert values["alpha"] == 1.0 and isinstance(values["alpha"], float)


@pytest.mark.parametrize("name, value, fragment", [
    ("k", True, "params.k: expected int"),
    ("k", 2.5, "params.k: expected int"),
    ("alpha", False, "params.alpha: expected float"),
    ("alpha", "0.1", "params.alpha: expected float"),
    ("loss", 1, "params.loss: expected str"),
])
def test_check_params_type_errors(name, value, fragment):
    params = {"k": 2, name: value}
    message = _error(check_params, params, ALGO)
    assert fragment in message
    assert type(value).__name__ in message


def test_check_params_choices():
    message = _error(check_params, {"k": 2, "loss": "squared"}, ALGO)
    assert "params.loss" in message and "'squared'" in message
    assert "'log'" in message and "'hinge'" in message


@pytest.mark.parametrize("name, value, fragment", [
    ("alpha", -0.5, "below the minimum 0.0"),
    ("rounds", 0, "below the minimum 1"),
    ("rounds", 1001, "above the maximum 1000"),
])
def test_check_params_bounds(name, value, fragment):
    message = _error(check_params, {"k": 2, name: value}, ALGO)
    assert f"params.{name}" in message and fragment in message


#: Open bounds and list elements, declared (scikit-learn's ``Interval`` style).
BOUNDED = {"rate": Param(float, 0.5, low=0, high=1, closed="neither"),
           "sizes": Param(list, [1], items=Param(int, low=1), min_items=1)}


@pytest.mark.parametrize("name, value, message", [
    ("rate", 0.0, "params.rate: must be > 0, got 0.0"),
    ("rate", 1.0, "params.rate: must be < 1, got 1.0"),
    ("sizes", [], "params.sizes: expected at least 1 element(s), got []"),
    ("sizes", [2, 0], "params.sizes[1]: 0 is below the minimum 1"),
    ("sizes", [2, "x"], "params.sizes[1]: expected int >= 1, got str 'x'"),
])
def test_open_bounds_and_list_elements(name, value, message):
    assert _error(check_params, {name: value}, BOUNDED) == message


def test_open_bounds_and_list_elements_in_words():
    assert BOUNDED["rate"].describe_type() == "float in (0, 1)"
    assert BOUNDED["sizes"].describe_type() == "list of int >= 1"
    assert check_params({"rate": 1e-9, "sizes": [3]}, BOUNDED) == {"rate": 1e-9, "sizes": [3]}


def test_check_params_bounds_are_inclusive():
    values = check_params({"k": 2, "alpha": 0, "rounds": 1000}, ALGO)
    assert values["alpha"] == 0.0 and values["rounds"] == 1000


def test_check_params_required_missing():
    message = _error(check_params, {}, ALGO)
    assert "missing required parameter params.k" in message
    assert "clusters" in message


def test_check_params_unknown_names_with_params_prefix():
    message = _error(check_params, {"k": 2, "alpah": 0.1}, ALGO)
    assert "unknown key 'params.alpah'" in message
    assert "did you mean 'alpha'" in message
    for name in ALGO:
        assert name in message


def test_check_params_nullable():
    assert check_params({"k": 1, "tol": None}, ALGO)["tol"] is None
    message = _error(check_params, {"k": None}, ALGO)
    assert "params.k: must not be null" in message


def test_check_params_does_not_share_mutable_defaults():
    schema = {"layers": Param(list, [])}
    first = check_params({}, schema)
    first["layers"].append(5)
    assert check_params({}, schema)["layers"] == []


def test_param_describe_type():
    assert Param(int, low=0, nullable=True).describe_type() == "int >= 0 or null"
    assert Param(float, high=1.0).describe_type() == "float <= 1.0"
    assert Param((str, list)).describe_type() == "str or list"
    assert Param(int, low=1, high=3).describe_type() == "int in [1, 3]"
    assert Param(int).default is REQUIRED


def test_nan_is_refused():
    with pytest.raises(ConfigError, match="params.alpha: NaN is not allowed"):
        check_params({"alpha": float("nan")}, {"alpha": Param(float, 0.1)})


def test_empty_input_folder_or_list_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no files"):
        config.input_files(str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="list of inputs is empty"):
        config.input_files([])
