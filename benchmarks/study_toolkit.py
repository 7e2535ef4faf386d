"""Toolkit study: every bundled algorithm against its single-process reference.

Runs the toolkit benchmarks (``benchmarks/bench_<name>.py``) one after the
other, each as its own process with ``--json`` (never two at once, so none
disturbs another's timings), and gathers their main cases into one table. Each benchmark runs a
paracel job with 4 workers + 1 server and its reference on the same data:

======== ===================================== ==================================
name     reference                             cases kept
======== ===================================== ==================================
wc       ``collections.Counter``               the only one
pagerank ``networkx.pagerank``                 the only one
kmeans   scikit-learn ``KMeans``               given init (same initial centers)
sim      scikit-learn ``cosine_similarity``    MovieLens ratings and digits
mf       NumPy mini-batch SGD                  staleness 0
als      NumPy ALS-WR                          the only one (3 λ)
lda      the ``lda`` package (Cython)          staleness 0
lr       scikit-learn ``LogisticRegression``   gd and sgd, staleness 0
======== ===================================== ==================================

The benchmarks still run their other cases (lr's sgd at staleness 2 and
null, mf's at 2 and null, kmeans from its own k-means++); only the rows above
are reported. Per case: the job's wall time (launch of 5 MPI ranks
included), its ``solve`` time (slowest worker), the reference's time, their
ratio, the quality metric of both sides and how far apart they are. A second
table splits each job's worker time into computing, communicating (requests
and replies) and waiting (clock and barrier waits), from ``metrics.json``.

Writes ``docs/toolkit.md`` and ``docs/toolkit.png`` (solve / reference time
ratio per case, log scale).

Run (from the project folder)::

    ./run_bench.sh study_toolkit [--only wc,lr] [--timeout 600]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from _common import (DOCS, LoadMeter,
                     print_table, pyplot, write_study)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name: (reference, cases kept; None keeps every case)
BENCHES = {
    "wc": ("collections.Counter", None),
    "pagerank": ("networkx.pagerank", None),
    "kmeans": ("sklearn KMeans", ["given init"]),
    "sim": ("sklearn cosine_similarity", None),
    "adjust_ktop": ("NumPy per-user residuals", None),
    "dtr": ("sklearn DecisionTreeRegressor", None),
    "mf": ("NumPy SGD", ["staleness 0"]),
    "als": ("NumPy ALS-WR", None),
    "lda": ("lda package", None),
    "lr": ("sklearn LogisticRegression", ["gd-0", "sgd-0"]),
    "fm": ("NumPy FM", ["regression-0", "binary-0"]),
    "svd": ("scipy svds", ["insteval-svds", "movielens-svds"]),
    "recommend": ("NumPy brute force", None),
}

HEADER = ["algorithm", "data", "job wall s", "solve s", "reference s", "solve/ref", "metric",
          "paracel", "reference", "agreement"]
TIME_HEADER = ["algorithm", "solve s", "clocks", "compute", "communicate", "wait (mean)",
               "wait (max worker)"]


def run_bench(name, folder, timeout):
    """Run ``bench_<name>.py --json`` alone; return its kept rows.

    Parameters
    ----------
    name : str
        A key of :data:`BENCHES`.
    folder : str
        Where the benchmark writes its JSON, and its temporary folder
        (``TMPDIR``): what a stopped benchmark leaves goes with it.
    timeout : float
        Seconds before the benchmark and its MPI job are stopped.

    Returns
    -------
    list of dict
        The rows of :func:`_common.result_row` whose case is kept.

    Raises
    ------
    RuntimeError
        If the benchmark fails or runs out of time (with its last output).
    """
    path = os.path.join(folder, f"{name}.json")
    command = [sys.executable, os.path.join(HERE, f"bench_{name}.py"), "--json", path]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "TMPDIR": folder},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        raise RuntimeError(f"bench_{name} ran out of its {timeout:.0f} s") from None
    except KeyboardInterrupt:  # it runs in its own session: Ctrl-C does not reach it
        stop(process)
        raise
    if process.returncode != 0:
        raise RuntimeError(f"bench_{name} failed (exit {process.returncode}):\n"
                           f"{output[-2000:]}")
    with open(path, encoding="utf-8") as handle:
        rows = json.load(handle)
    kept = BENCHES[name][1]
    return [row for row in rows if kept is None or row["case"] in kept]


def stop(process):
    """End a benchmark's process group (the script, the paracel launcher and
    mpiexec, which ends the ranks): SIGTERM, then SIGKILL after 30 s."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def agreement(row):
    """How far paracel's metric is from the reference's, and the benchmark's
    own check."""
    found, expected = row["paracel"], row["reference"]
    if found == expected:
        closeness = "identical"
    else:
        closeness = f"rel. diff {abs(found - expected) / abs(expected):.1e}"
    return f"{closeness}; {row['note']}" if row["note"] else closeness


def table_row(name, row):
    """One row of the main table."""
    return [f"{name} ({row['case']})", row["data"], f"{row['job_wall_s']:.2f}",
            f"{row['solve_s']:.2f}", f"{row['reference_s']:.3f}",
            f"{row['solve_s'] / row['reference_s']:.1f}", row["metric"],
            f"{row['paracel']:.6g}", f"{row['reference']:.6g}", agreement(row)]


def time_row(name, row):
    """Where one job's worker time went: fractions of each worker's solve
    time (compute is what is neither communicating nor waiting)."""
    timings = row["timings"]
    solve = np.array(timings["per_worker_solve_seconds"])
    comm = np.array(timings["per_worker_comm_seconds"]) / solve
    wait = (np.array(timings["per_worker_clock_wait_seconds"])
            + np.array(timings["per_worker_sync_wait_seconds"])) / solve
    compute = 1 - comm - wait
    return [f"{name} ({row['case']})", f"{timings['solve_seconds']:.2f}",
            max(timings["per_worker_clocks"]), f"{compute.mean():.1%}", f"{comm.mean():.1%}",
            f"{wait.mean():.1%}", f"{wait.max():.1%}"]


def plot(results, path):
    """Horizontal bars of solve / reference time per case, log scale, drawn
    from the line at 1 (left: paracel faster, right: slower)."""
    plt = pyplot()
    labels = [f"{name} ({row['case']})" for name, row in results]
    ratios = [row["solve_s"] / row["reference_s"] for name, row in results]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(results) + 1.4))
    positions = np.arange(len(results))[::-1]
    colors = ["tab:green" if ratio <= 1 else "tab:red" for ratio in ratios]
    ax.barh(positions, np.array(ratios) - 1, left=1, color=colors)
    ax.set_yticks(positions, labels)
    ax.set_xscale("log")
    ax.axvline(1, color="black", linewidth=1)
    for position, ratio in zip(positions, ratios):
        slower = ratio > 1
        ax.annotate(f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x", (ratio, position),
                    xytext=(3 if slower else -3, 0), textcoords="offset points",
                    ha="left" if slower else "right", va="center", fontsize=8)
    ax.set_xlabel("paracel solve time / reference time (4 workers + 1 server; "
                  "< 1: paracel faster)")
    ax.set_xlim(min(min(ratios), 1) / 2, max(max(ratios), 1) * 3)
    ax.set_title("Toolkit against single-process references")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_all(names, timeout):
    """Run the benchmarks in turn: ``[(name, row)]`` and the failures."""
    results, failures = [], []
    with tempfile.TemporaryDirectory(prefix="paracel-toolkit-") as folder:
        for name in names:
            start = time.perf_counter()
            try:
                results += [(name, row) for row in run_bench(name, folder, timeout)]
            except RuntimeError as error:
                failures.append(str(error).splitlines()[0])
                print(error, file=sys.stderr)
            print(f"bench_{name}: {time.perf_counter() - start:.1f} s", flush=True)
    return results, failures


def parse_args():
    """The command line: ``--only`` and ``--timeout``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(BENCHES),
                        help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds allowed per benchmark (default 600)")
    args = parser.parse_args()
    args.names = args.only.split(",")
    unknown = sorted(set(args.names) - set(BENCHES))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    return args


def main():
    args = parse_args()
    meter = LoadMeter()
    results, failures = run_all(args.names, args.timeout)
    wall = time.perf_counter() - meter.started
    load = meter.line()
    if not results:
        sys.exit(f"{load}\nno benchmark finished: docs/toolkit.md not written")
    rows = [table_row(name, row) for name, row in results]
    times = [time_row(name, row) for name, row in results]
    caption = ("Paracel job (4 workers + 1 server) against the single-process reference ("
               + "; ".join(f"{name}: {BENCHES[name][0]}" for name in args.names) + ")")
    time_caption = ("Where each job's worker time goes (fraction of each worker's solve "
                    "time, mean over the 4 workers; max for waiting)")
    print_table(caption, HEADER, rows)
    print_table(time_caption, TIME_HEADER, times)
    print(load)
    print(f"study took {wall:.0f} s")
    os.makedirs(DOCS, exist_ok=True)
    plot(results, os.path.join(DOCS, "toolkit.png"))
    sections = [(caption, HEADER, rows), (time_caption, TIME_HEADER, times)]
    if failures:
        sections.append(("Benchmarks that did not finish", ["failure"],
                         [[line] for line in failures]))
    command = " ".join(["./run_bench.sh study_toolkit", *sys.argv[1:]])
    print(write_study("toolkit", "Toolkit against single-process references", command,
                      sections, load))
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
