"""One check every bundled algorithm must pass (as scikit-learn's
``check_estimator``), without MPI: a new algorithm is covered by adding its
line to :data:`CONFS`.

What it checks, for each algorithm:

* ``--describe`` is complete: a summary, the input format, and for every
  parameter a type, a default (or "required") and a line of help;
* its declared defaults pass its own declarations, and the class builds
  from them (parameters stored in ``__init__`` only);
* every parameter refuses a value of the wrong type with one message that
  names ``params.<name>``, before anything is launched;
* it implements the resume contract (``state`` and ``restore``);
* its shipped job file validates and names data that exists.

and, under mpiexec, on its shipped data made short (the resume cases'
parameters):

* it runs with 1 worker and 2 servers (more servers than workers, every
  share on one worker): exit 0, ``metrics.json`` with its metrics (2
  workers run in every resume case, 4 in every algorithm's own tests);
* a model it saves describes itself (algorithm, parameters, version).

Resuming every algorithm after a kill is checked by
``tests/test_resume_toolkit.py``, results against references by the
per-algorithm tests.
"""

import json
import os
import sys

import pytest

from conftest import HERE, run_command
from test_resume_toolkit import CASES, check_model_describes_itself, metrics_of
from paracel import config
from paracel.algorithms import BUNDLED
from paracel.errors import ConfigError
from paracel.run import resolve

ROOT = os.path.dirname(HERE)

#: Every bundled algorithm and its shipped job file.
CONFS = {"adjust_ktop": "adjust_ktop.json", "als": "als.json", "dtr": "dtr.json",
         "fm": "fm.json", "kmeans": "kmeans.json", "lasso": "lasso.json", "lda": "lda.json",
         "lr": "lr.json", "mf": "mf.json", "mvv": "mvv.json", "pagerank": "pagerank.json",
         "recommend": "recommend.json", "ridge": "ridge.json", "sim": "sim.json",
         "ssi": "ssi.json", "svd": "svd.json", "wc": "wc.json"}


def test_every_bundled_algorithm_is_checked():
    assert sorted(CONFS) == sorted(BUNDLED)


@pytest.mark.parametrize("name", sorted(CONFS))
def test_describe_is_complete(name):
    cls = resolve(name)
    assert cls.summary.strip() and cls.reads.strip(), f"{name}: summary and reads"
    text = cls.describe()
    assert "\ninput:\n" in text
    for param_name, param in cls.parameters.items():
        assert param.help.strip(), f"{name}.{param_name} has no help"
        assert f"  {param_name} ({param.describe_type()}, default " in text


def required_from_conf(name, cls):
    """The values the shipped job file gives the required parameters (e.g.
    recommend's model)."""
    job = config.load(os.path.join(ROOT, "conf", CONFS[name]))
    return {key: job.params[key] for key, param in cls.parameters.items()
            if param.default is config.REQUIRED}


@pytest.mark.parametrize("name", sorted(CONFS))
def test_defaults_pass_the_declarations_and_build(name):
    cls = resolve(name)
    defaults = {key: param.default for key, param in cls.parameters.items()
                if param.default is not config.REQUIRED}
    defaults.update(required_from_conf(name, cls))
    assert config.check_params(defaults, cls.parameters) == defaults
    algorithm = cls(**defaults)
    assert algorithm.get_params() == defaults


def wrong_value(param):
    """A value of a type ``param`` does not take."""
    types = param.type if isinstance(param.type, tuple) else (param.type,)
    return {"a string"} if str in types else "a string"


@pytest.mark.parametrize("name", sorted(CONFS))
def test_every_parameter_refuses_the_wrong_type_naming_it(name):
    cls = resolve(name)
    required = required_from_conf(name, cls)
    for param_name, param in cls.parameters.items():
        with pytest.raises(ConfigError, match=rf"^params\.{param_name}: "):
            config.check_params({**required, param_name: wrong_value(param)}, cls.parameters)


@pytest.mark.parametrize("name", sorted(CONFS))
def test_is_resumable(name):
    assert resolve(name).resumable()


@pytest.mark.parametrize("name", sorted(CONFS))
def test_shipped_job_file_validates(name):
    job = config.load(os.path.join(ROOT, "conf", CONFS[name]))
    assert job.algorithm == name
    cls = resolve(name)
    cls.check_job(cls(**config.resolve_param_paths(job.params, cls.parameters,
                                                     os.path.dirname(job.path))), job)
    assert config.input_files(job.input)


@pytest.mark.mpi
@pytest.mark.parametrize("workers,servers", [(1, 2)])
@pytest.mark.parametrize("name", sorted(CONFS))
def test_runs_with_any_number_of_workers_and_servers(tmp_path, name, workers, servers):
    case = CASES[name]
    with open(os.path.join(ROOT, "conf", CONFS[name]), encoding="utf-8") as handle:
        job = json.load(handle)
    job.update({**case.job, "processes": workers + servers, "servers": servers,
                "input": os.path.normpath(os.path.join(ROOT, "conf", job["input"])),
                "output": str(tmp_path / "out"),
                # path parameters (e.g. recommend's model) stay relative to conf/
                "params": config.resolve_param_paths({**job.get("params", {}), **case.params},
                                                     resolve(name).parameters,
                                                     os.path.join(ROOT, "conf"))})
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    code, _, err, _ = run_command([sys.executable, "-m", "paracel.run", str(path)], 120)
    assert code == 0, err[-5000:]
    report = metrics_of(tmp_path / "out")
    assert (report["workers"], report["servers"]) == (workers, servers)
    assert report["metrics"], "no metrics"
    check_model_describes_itself(tmp_path / "out", name, report)
