"""Word count: a 4-worker Paracel job against ``collections.Counter``.

The data: every ``.rst`` file of scikit-learn's ``datasets/descr`` folder
(real English prose and tables, about 47 kB) concatenated ``--copies`` times
(default 40, about 1.9 MB) and cut into ``--files`` files (default 8) in a
temporary folder.

1. The job: ``python -m paracel.run JOB -n 5 --servers 1`` (4 workers, 1
   server; ``--processes``/``--servers`` change it), ``topk`` 10, timed from
   launch to exit; its ``solve_seconds`` (slowest worker) comes from
   ``metrics.json``.
2. The reference, in this process: ``Counter`` over
   ``re.findall(r"[^\\W_]+(?:'[^\\W_]+)*", text.lower())`` of every file, and the top 10 by
   (count descending, word), timed from reading the files to the top-k.

Printed: the wall times and their ratio, distinct and total words and the
top word of each side, whether the counts and the whole top 10 agree, and
the other load on the machine during the job. ``--json PATH`` also writes
the result as JSON (``_common.result_row``).

Run (from the project folder)::

    .venv/bin/python benchmarks/bench_wc.py [--copies 40] [--files 8] [--processes 5]
        [--json PATH]
"""

import argparse
import os
import re
import tempfile
import time
from collections import Counter

import sklearn

from _common import (print_table, result_row, run_paracel, write_json)

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
TOPK = 10


def write_corpus(folder, copies, files):
    """``copies`` concatenations of the descr files cut into ``files`` files
    under ``folder/text``; returns that folder and the total bytes."""
    descr = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "descr")
    text = "".join(open(os.path.join(descr, name), encoding="utf-8").read()
                   for name in sorted(os.listdir(descr)) if name.endswith(".rst"))
    target = os.path.join(folder, "text")
    os.makedirs(target)
    for index in range(files):
        share = copies * (index + 1) // files - copies * index // files
        with open(os.path.join(target, f"part{index:02d}.txt"), "w", encoding="utf-8") as handle:
            handle.write(text * share)
    return target, len(text.encode("utf-8")) * copies


def run_job(folder, data, processes, servers):
    """Run the job; returns ``(wall seconds, metrics.json, top-k lines, other-load line)``."""
    run = run_paracel(folder, "out", {"algorithm": "wc", "input": data, "log_level": "info",
                                      "params": {"topk": TOPK}}, processes, servers)
    with open(os.path.join(run.output, "topk.txt"), encoding="utf-8") as handle:
        return run.wall, run.metrics, handle.read().splitlines(), run.load


def reference(data):
    """Counter on the same files: ``(seconds, distinct, total, top-k lines)``."""
    start = time.perf_counter()
    counts = Counter()
    for name in sorted(os.listdir(data)):
        with open(os.path.join(data, name), encoding="utf-8") as handle:
            counts.update(WORD.findall(handle.read().lower()))
    top = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:TOPK]
    seconds = time.perf_counter() - start
    return seconds, len(counts), sum(counts.values()), [f"{w}\t{n}" for w, n in top]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_wc_") as folder:
        data, size = write_corpus(folder, args.copies, args.files)
        wall, metrics, job_top, load = run_job(folder, data, args.processes, args.servers)
        seconds, distinct, total, top = reference(data)
    result = metrics["metrics"]
    solve = metrics["timings"]["solve_seconds"]
    workers = args.processes - args.servers
    print_table(f"word count of {size / 1e6:.2f} MB ({args.copies} copies of sklearn's "
                f"descr files in {args.files} files)",
                ["run", "seconds", "vs Counter", "distinct words", "words", "top word"],
                [[f"paracel job, {workers} workers + {args.servers} server(s), wall",
                  f"{wall:.2f}", f"{wall / seconds:.2f}x", result["distinct_words"],
                  result["words"], result["top_word"]],
                 ["paracel job, solve()", f"{solve:.2f}", f"{solve / seconds:.2f}x", "", "", ""],
                 ["Counter, one process", f"{seconds:.2f}", "1.00x", distinct, total,
                  top[0].split("\t")[0]]])
    agree = (result["distinct_words"], result["words"], job_top) == (distinct, total, top)
    print(f"\ncounts and top {TOPK} agree: {agree}")
    print(load)
    if args.json:
        write_json(args.json, [result_row(
            f"top {TOPK}", f"{size / 1e6:.2f} MB of text", wall, solve, seconds, "words",
            result["words"], total, metrics["timings"],
            f"counts and top {TOPK} {'agree' if agree else 'differ'}")])


if __name__ == "__main__":
    main()
