"""``paracel.run_job``: a job launched from Python (a script or a notebook)
is checked as the command line checks it, runs under mpiexec, and gives back
its metrics and output folder; a model it saved is read back with
``paracel.load_model`` and predicts as the job did.

Each case runs in a fresh Python process (as a user's script would), in a
scratch folder, so that relative paths are the user's own.
"""

import json
import os
import sys

import numpy as np
import pytest

from conftest import HERE, run_command

pytestmark = pytest.mark.mpi

ROOT = os.path.dirname(HERE)


def python(code, cwd, timeout=120):
    """Run ``code`` in a fresh interpreter in ``cwd``; ``(exit, stdout, stderr)``."""
    code, out, err, _ = run_command([sys.executable, "-c", code], timeout, cwd=str(cwd))
    return code, out, err


def test_run_job_returns_the_metrics_and_the_output_folder(tmp_path):
    data = os.path.join(ROOT, "data", "kmeans", "blobs.csv")
    os.symlink(data, tmp_path / "points.csv")
    code, out, err = python(
        "import json, paracel\n"
        "result = paracel.run_job({'algorithm': 'kmeans', 'processes': 3, 'input': "
        "'points.csv', 'seed': 1, 'params': {'k': 5}}, name='blobs')\n"
        "model = paracel.load_model(result.output + '/model.h5')\n"
        "print(json.dumps([result.output, result.metrics['inertia'], "
        "model['centers'].tolist(), model.algorithm, model.params['k']]))\n", tmp_path)
    assert code == 0, err
    output, inertia, centers, algorithm, k = json.loads(out.strip().splitlines()[-1])
    assert output == str(tmp_path / "output" / "blobs")
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
        assert json.load(handle)["metrics"]["inertia"] == inertia
    on_disk = np.loadtxt(os.path.join(output, "centers.txt"), delimiter=",")
    assert np.array_equal(np.array(centers), on_disk) and (algorithm, k) == ("kmeans", 5)
    assert "kmeans finished" in out  # the same summary as the command line prints
    with open(os.path.join(output, "job.json"), encoding="utf-8") as handle:
        assert json.load(handle)["input"] == str(tmp_path / "points.csv")


def test_run_job_refuses_what_the_command_line_refuses_before_launch(tmp_path):
    code, out, err = python(
        "import paracel\n"
        "try:\n"
        "    paracel.run_job({'algorithm': 'kmeans', 'input': 'nowhere.csv', "
        "'params': {'k': 0}})\n"
        "except paracel.ConfigError as error:\n"
        "    print('refused:', error)\n", tmp_path)
    assert code == 0, err
    assert "refused:" in out and "nowhere.csv" in out
    assert not (tmp_path / "output").exists() or not os.listdir(tmp_path / "output")
    (tmp_path / "points.csv").write_text("1,2.0\n")
    code, out, err = python(
        "import paracel\n"
        "try:\n"
        "    paracel.run_job({'algorithm': 'kmeans', 'input': 'points.csv', "
        "'params': {'k': 0}})\n"
        "except paracel.ConfigError as error:\n"
        "    print('refused:', error)\n", tmp_path)
    assert "refused:" in out and "refused: job 'job': params.k: 0 is below the minimum 1" in out, out + err
    assert not os.listdir(tmp_path / "output")


def test_run_job_raises_when_the_job_fails_and_protects_other_results(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2.0\n2,x\n")
    code, out, err = python(
        "import paracel\n"
        "try:\n"
        "    paracel.run_job({'algorithm': 'kmeans', 'processes': 3, 'input': 'bad.csv', "
        "'params': {'k': 1}}, name='bad')\n"
        "except paracel.ParacelError as error:\n"
        "    print('failed:', error)\n", tmp_path)
    assert code == 0, err
    assert "failed: the job 'bad' failed with exit status 2" in out
    assert err.count("bad.csv:2") == 1
    other = tmp_path / "output" / "other"
    other.mkdir(parents=True)
    (other / "result.txt").write_text("someone's results\n")
    code, out, err = python(
        "import paracel\n"
        "try:\n"
        "    paracel.run_job({'algorithm': 'kmeans', 'input': 'bad.csv'}, name='other')\n"
        "except paracel.ConfigError as error:\n"
        "    print('refused:', error)\n", tmp_path)
    assert "refused: output:" in out and "--overwrite" in out
    assert sorted(os.listdir(other)) == ["result.txt"]
