"""``python -m paracel.run plot OUTPUT``: a job's per-clock history as a picture.

Reads ``OUTPUT/metrics.json`` and writes ``OUTPUT/history.png``: each
metric worker 0 reported, against the clock and against wall time, and each
worker's time spent waiting (on the clock bound and on barriers), so that a
slow metric, a straggler or a bad staleness bound shows at a glance.
matplotlib is an optional extra (``pip install 'paracel[plot]'``).
"""

import json
import os

from paracel.errors import ConfigError, DataError

#: History fields that are timings, not metrics.
TIMINGS = ("clock", "elapsed", "wait", "sync", "comm", "final")

#: The most metrics drawn (the first reported ones).
MOST_METRICS = 6


def read_history(output):
    """``(algorithm, worker 0's history, every worker's history)`` of a job."""
    path = os.path.join(output, "metrics.json")
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except OSError:
        raise ConfigError(f"{output}: no metrics.json: not the output folder of a finished "
                          "job") from None
    except ValueError as error:
        raise DataError(f"{path}: not JSON ({error})") from None
    return report["algorithm"], report.get("history", []), report.get("worker_history", [])


def metric_names(history):
    """The numeric metrics worker 0 reported, in the order they first appear."""
    names = []
    for entry in history:
        for name, value in entry.items():
            if name not in TIMINGS and name not in names and _number(value):
                names.append(name)
    return names[:MOST_METRICS]


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def series(history, name, axis):
    """``(x, y)`` of metric ``name`` against ``axis`` ("clock" or "elapsed")."""
    points = [(entry[axis], entry[name]) for entry in history
              if _number(entry.get(name)) and axis in entry]
    return [x for x, _ in points], [y for _, y in points]


def plot(output, path=None):
    """Draw the history of the job in ``output``; returns the picture's path."""
    pyplot = _pyplot()
    algorithm, history, workers = read_history(output)
    names = metric_names(history)
    rows = len(names) + 1
    figure, axes = pyplot.subplots(rows, 2, figsize=(11, 2.6 * rows), squeeze=False)
    for row, name in enumerate(names):
        for column, axis in enumerate(("clock", "elapsed")):
            axes[row][column].plot(*series(history, name, axis), marker=".", linewidth=1)
            axes[row][column].set_ylabel(name)
    for worker, entries in enumerate(workers):
        waited = [{**entry, "waiting": entry["wait"] + entry.get("sync", 0)}
                  for entry in entries if "wait" in entry]
        for column, axis in enumerate(("clock", "elapsed")):
            axes[-1][column].plot(*series(waited, "waiting", axis), label=f"worker {worker}",
                                  linewidth=1)
    axes[-1][0].set_ylabel("waiting s (total)")
    axes[-1][0].set_xlabel("clock")
    axes[-1][1].set_xlabel("wall time s")
    if len(workers) <= 8:
        axes[-1][1].legend(fontsize="small")
    figure.suptitle(f"{algorithm}: {output}")
    figure.tight_layout()
    path = path or os.path.join(output, "history.png")
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
    return path


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'paracel[plot]' (or "
                          "matplotlib)") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot
