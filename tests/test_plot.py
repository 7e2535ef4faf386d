"""``python -m paracel.run plot OUTPUT``: a finished job's history drawn as
a PNG, from its ``metrics.json``; a folder that is not a job's output is
refused with one line (exit 2)."""

import json
import os
import sys

import pytest

from conftest import HERE, run_command
from paracel import plot

ROOT = os.path.dirname(HERE)

HISTORY = [{"clock": 1, "elapsed": 0.1, "wait": 0.01, "sync": 0.0, "loss": 0.9, "epoch": 1,
            "converged": False, "name": "x"},
           {"clock": 2, "elapsed": 0.2, "wait": 0.02, "sync": 0.01, "loss": 0.5},
           {"clock": 2, "elapsed": 0.25, "final": True, "accuracy": 0.8}]


def job_output(folder):
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(
        {"algorithm": "lr", "history": HISTORY, "worker_history": [HISTORY[:2], HISTORY[:2]]}))
    return str(folder)


def test_metrics_are_the_numbers_worker_0_reported_in_order():
    assert plot.metric_names(HISTORY) == ["loss", "epoch", "accuracy"]
    assert plot.series(HISTORY, "loss", "clock") == ([1, 2], [0.9, 0.5])
    assert plot.series(HISTORY, "accuracy", "elapsed") == ([0.25], [0.8])


def test_plot_writes_a_png_next_to_the_results(tmp_path):
    pytest.importorskip("matplotlib")
    output = job_output(tmp_path / "out")
    code, out, err, _ = run_command([sys.executable, "-m", "paracel.run", "plot", output], 60)
    assert code == 0, err
    picture = os.path.join(output, "history.png")
    assert out.strip() == f"paracel: wrote {picture}"
    with open(picture, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_folder_without_a_finished_job_is_refused(tmp_path):
    code, _, err, _ = run_command([sys.executable, "-m", "paracel.run", "plot", str(tmp_path)],
                                  60)
    assert code == 2
    assert err.strip() == (f"paracel: error: {tmp_path}: no metrics.json: not the output "
                           "folder of a finished job")
