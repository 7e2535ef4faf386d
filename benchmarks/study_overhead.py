"""Framework overhead: paracel's parameter store against raw mpi4py, 2 to 16 ranks.

Runs ``bench_kv.py`` under ``mpiexec`` for 2, 4, 8 and 16 ranks with 1 and 2
servers (2 servers from 4 ranks up: with 2 ranks there would be no worker
left) and ``bench_idle.py`` once on 16 ranks, collects the numbers each writes
with ``--json``, and judges them against the project's overhead targets:

* push and pull of dense blocks of 1 MiB or more reach >= 0.8 of the raw
  ``Send``/``Recv`` bandwidth,
* small reads reach >= 0.5 of a raw request/reply loop's round trips/s,
* an idle rank (a worker waiting at the clock, a server with nothing to
  serve) uses < 5 % of a core.

A target is met by a configuration only if every measurement it covers meets
it (the worst block size, the worst small-read case). Writes
``docs/overhead.md`` and ``docs/overhead.png`` and prints the same tables.

Run::

    ./run_bench.sh study_overhead            # the full study (about 6 minutes)
    ./run_bench.sh study_overhead --quick    # short runs (about 1.5 minutes)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _common import (DOCS, cpu_with_children, machine_cpu_seconds, other_load_line,
                     print_table, pyplot, write_study)

NAME = "overhead"
TITLE = "Framework overhead: paracel against raw mpi4py"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIGS = [(2, 1), (4, 1), (4, 2), (8, 1), (8, 2), (16, 1), (16, 2)]
IDLE_RANKS = 16
MIB = 1024 * 1024
BW_TARGET = 0.8
RTT_TARGET = 0.5
IDLE_TARGET = 5.0
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_osc": "^ucx"}
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
TERMINATE_GRACE = 15.0


class Settings:
    """What the full and the quick study run.

    Parameters
    ----------
    quick : bool
        ``bench_kv.py --quick`` (2 reps per block, 1 x 0.3 s per small-read
        case) and a 3 s busy window for ``bench_idle.py``, instead of 7 reps,
        5 x 0.5 s and 5 s.
    """

    def __init__(self, quick):
        self.kv_flags = ["--quick"] if quick else []
        self.kv_timeout = 150.0 if quick else 300.0
        self.idle_busy = 3.0 if quick else 5.0
        self.idle_timeout = 150.0 if quick else 180.0
        self.command = "./run_bench.sh study_overhead" + (" --quick" if quick else "")
        self.mode = ("quick mode: bench_kv.py --quick, best of 2 reps per block, 1 x 0.3 s "
                     "per small-read case" if quick else
                     "full mode: best of 7 reps per block, 5 x 0.5 s per small-read case")


def mpi_env():
    """This environment plus Open MPI's settings for this machine and one BLAS
    thread per rank (ranks already outnumber the cores)."""
    env = dict(os.environ, **MPI_ENV)
    for name in BLAS_THREADS:
        env.setdefault(name, "1")
    return env


def run(command, timeout):
    """Run ``command`` from the project folder with a time limit.

    Returns
    -------
    dict
        ``status`` ("ok", "exit N" or "timed out"), ``output`` (stdout and
        stderr), ``seconds`` (wall) and ``other_cores`` (CPU that processes
        outside the command used meanwhile, in cores).
    """
    machine, own, start = machine_cpu_seconds(), cpu_with_children(), time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=mpi_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output = process.communicate(timeout=timeout)[0]
        status = "ok" if process.returncode == 0 else f"exit {process.returncode}"
    except subprocess.TimeoutExpired:
        output, status = stop(process), f"timed out after {timeout:g} s"
    seconds = time.perf_counter() - start
    other = max(0.0, machine_cpu_seconds() - machine - (cpu_with_children() - own))
    return {"status": status, "output": output, "seconds": seconds,
            "other_cores": other / seconds}


def stop(process):
    """End a launcher that overran: SIGTERM (mpiexec then ends its ranks),
    SIGKILL if it is still there after a grace period; returns its output."""
    process.terminate()
    try:
        return process.communicate(timeout=TERMINATE_GRACE)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0]


def run_kv(ranks, servers, settings, folder):
    """One ``bench_kv.py`` job; the :func:`run` record plus its JSON as ``data``."""
    path = os.path.join(folder, f"kv_{ranks}_{servers}.json")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    command = [mpiexec, "--oversubscribe", "-n", str(ranks), sys.executable,
               os.path.join(HERE, "bench_kv.py"), "--servers", str(servers), "--json", path,
               *settings.kv_flags]
    record = run(command, settings.kv_timeout)
    record.update(ranks=ranks, servers=servers, what="bench_kv.py")
    return attach(record, path)


def run_idle(settings, folder):
    """The ``bench_idle.py`` job (it launches its own mpiexec); like :func:`run_kv`."""
    path = os.path.join(folder, "idle.json")
    command = [sys.executable, os.path.join(HERE, "bench_idle.py"), "--ranks",
               str(IDLE_RANKS), "--busy", f"{settings.idle_busy:g}", "--json", path]
    record = run(command, settings.idle_timeout)
    record.update(ranks=IDLE_RANKS, servers=1, what="bench_idle.py")
    return attach(record, path)


def attach(record, path):
    """Put the JSON a successful run wrote at ``path`` into ``record["data"]``
    (``None`` for a failed run, or one that wrote none: then its status says so)."""
    record["data"] = None
    if record["status"] == "ok":
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                record["data"] = json.load(handle)
        else:
            record["status"] = "wrote no JSON"
    return record


# -- judging -------------------------------------------------------------------


def verdict(ok):
    """``met`` / ``missed``."""
    return "met" if ok else "missed"


def size_name(size):
    """``64 KiB`` / ``4 MiB``."""
    return f"{size // MIB} MiB" if size >= MIB else f"{size // 1024} KiB"


def config_name(record):
    """``8 ranks / 2 servers``."""
    servers = "server" if record["servers"] == 1 else "servers"
    return f"{record['ranks']} ranks / {record['servers']} {servers}"


def big_blocks(record):
    """The bandwidth entries of one run with blocks of 1 MiB or more."""
    return [entry for entry in record["data"]["bandwidth"] if entry["bytes"] >= MIB]


def worst(entries, key):
    """The entry with the smallest ``key``."""
    return min(entries, key=lambda entry: entry[key])


def summary_section(kv, idle):
    """One row per target: the worst case measured, how many configs meet it."""
    rows = []
    for way in ("push", "pull"):
        key = f"{way}_ratio"
        per_config = [(record, worst(big_blocks(record), key)) for record in kv]
        record, entry = min(per_config, key=lambda pair: pair[1][key])
        meeting = sum(entry[key] >= BW_TARGET for _, entry in per_config)
        rows.append([f"{way} bandwidth, blocks >= 1 MiB", f">= {BW_TARGET} of raw",
                     f"{entry[key]:.2f} ({config_name(record)}, {size_name(entry['bytes'])})",
                     f"{meeting} of {len(kv)}", verdict(meeting == len(kv))])
    per_config = [(record, worst(record["data"]["small"], "ratio")) for record in kv]
    record, entry = min(per_config, key=lambda pair: pair[1]["ratio"])
    meeting = sum(entry["ratio"] >= RTT_TARGET for _, entry in per_config)
    rows.append(["small reads (round trips/s)", f">= {RTT_TARGET} of raw",
                 f"{entry['ratio']:.2f} ({config_name(record)}, {entry['value']}, "
                 f"{readers_name(entry['readers'])})",
                 f"{meeting} of {len(kv)}", verdict(meeting == len(kv))])
    if idle:
        waiting = [role for role in idle["data"]["roles"] if role["role"] != "busy worker"]
        role = max(waiting, key=lambda role: role["max"])
        rows.append(["idle rank CPU", f"< {IDLE_TARGET:g} % of a core",
                     f"{role['max']:.2f} % ({role['role']}, {IDLE_RANKS} ranks)", "-",
                     verdict(role["max"] < IDLE_TARGET)])
    return ("Verdict against the targets (worst case over every configuration; "
            "a configuration meets a target only if its worst block size or case does)",
            ["target", "required", "worst measured", "configs meeting it", "verdict"], rows)


def readers_name(readers):
    """``1 reader`` / ``7 readers``."""
    return "1 reader" if readers == 1 else f"{readers} readers"


def bandwidth_section(kv, settings):
    """Per configuration and block of >= 1 MiB: GB/s and ratios, with verdicts."""
    rows = []
    for record in kv:
        for entry in big_blocks(record):
            missed = [way for way in ("push", "pull") if entry[f"{way}_ratio"] < BW_TARGET]
            rows.append([record["ranks"], record["servers"], size_name(entry["bytes"]),
                         f"{entry['raw_push_gbps']:.2f}", f"{entry['paracel_push_gbps']:.2f}",
                         f"{entry['push_ratio']:.2f}",
                         f"{entry['raw_pull_gbps']:.2f}", f"{entry['paracel_pull_gbps']:.2f}",
                         f"{entry['pull_ratio']:.2f}",
                         f"missed ({' and '.join(missed)})" if missed else "met"])
    return ("a. Push (write + flush) and pull (read out=) of one dense block, worker 0 <-> "
            f"server 0, GB/s and ratio paracel / raw Send/Recv; target >= {BW_TARGET}. "
            "Every block size from 64 KiB to 128 MiB was measured in every configuration; "
            f"the table shows those of 1 MiB or more, the figure all ({settings.mode})",
            ["ranks", "servers", "block", "raw push", "paracel push", "push ratio",
             "raw pull", "paracel pull", "pull ratio", "verdict"], rows)


def small_section(kv, settings):
    """Per configuration and small-read case: round trips/s and ratio, with verdicts."""
    rows = [[record["ranks"], record["servers"], entry["value"], entry["readers"],
             f"{entry['raw_per_s']:,.0f}", f"{entry['paracel_per_s']:,.0f}",
             f"{entry['ratio']:.2f}", verdict(entry["ratio"] >= RTT_TARGET)]
            for record in kv for entry in record["data"]["small"]]
    return ("b. Small reads (client.read of one key) against a raw request/reply loop, "
            "round trips/s summed over the readers (1 worker, then all workers at once); "
            f"target >= {RTT_TARGET} ({settings.mode})",
            ["ranks", "servers", "value", "readers", "raw", "paracel", "ratio", "verdict"],
            rows)


def multi_section(kv):
    """Per configuration: read_multi time against raw pickled lists (no target)."""
    rows = []
    for record in kv:
        multi = record["data"]["read_multi"]
        rows.append([record["ranks"], record["servers"], f"{multi['raw_seconds'] * 1e3:.1f}",
                     f"{multi['paracel_seconds'] * 1e3:.1f}",
                     f"{multi['paracel_keys_per_s']:,.0f}", f"{multi['ratio']:.2f}"])
    keys = kv[0]["data"]["read_multi"]["keys"]
    return (f"c. read_multi of {keys:,} small keys from worker 0 over all servers against "
            "raw pickled key and value lists, one message per server (ratio = raw time / "
            "paracel time; no target)",
            ["ranks", "servers", "raw ms", "paracel ms", "paracel keys/s", "ratio"], rows)


def idle_section(idle):
    """Per role of the ``bench_idle.py`` job: percent of one core, with verdicts."""
    rows = []
    for role in idle["data"]["roles"]:
        if role["role"] == "busy worker":
            target, ok = "> 80 (gets a core)", role["max"] > 80
        else:
            target, ok = f"< {IDLE_TARGET:g}", role["max"] < IDLE_TARGET
        rows.append([role["role"], role["ranks"], f"{role['mean']:.2f}", f"{role['max']:.2f}",
                     target, verdict(ok)])
    data = idle["data"]
    return (f"d. CPU per role while worker 0 computes and the others wait at the clock "
            f"({data['ranks']} ranks, {data['servers']} server, staleness 0, sampled over "
            f"{data['window_seconds']:.1f} s; % of one core)",
            ["role", "ranks", "mean %", "max %", "target %", "verdict"], rows)


def runs_section(records):
    """Every benchmark run: how long it took, how busy the machine was, its status."""
    rows = [[record["what"], record["ranks"], record["servers"], f"{record['seconds']:.1f}",
             f"{record['other_cores']:.2f}", record["status"]] for record in records]
    return ("Runs (other cores: CPU used by processes outside the run, in cores; above "
            "0.25 the machine was shared and ratios are less certain)",
            ["benchmark", "ranks", "servers", "wall s", "other cores", "status"], rows)


# -- figure --------------------------------------------------------------------


def plot(kv, path):
    """Bandwidth ratio per block size (left) and small-read ratio per config (right)."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colors = plt.get_cmap("tab10")
    plot_bandwidth(left, kv, colors)
    plot_small(right, kv, colors)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_bandwidth(axes, kv, colors):
    """One colour per config: push ratio solid, pull ratio dashed, per block size."""
    sizes = [entry["bytes"] for entry in kv[0]["data"]["bandwidth"]]
    for number, record in enumerate(kv):
        entries = record["data"]["bandwidth"]
        for way, style in (("push", "-"), ("pull", "--")):
            axes.plot([entry["bytes"] for entry in entries],
                      [entry[f"{way}_ratio"] for entry in entries], style, marker="o",
                      markersize=3, color=colors(number),
                      label=config_name(record) if way == "push" else None)
    axes.plot([], [], "k-", label="push")
    axes.plot([], [], "k--", label="pull")
    axes.axhline(BW_TARGET, color="black", linestyle=":", label=f"target {BW_TARGET}")
    axes.axvspan(MIB, sizes[-1], color="grey", alpha=0.08)
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes)
    axes.set_xticklabels([size_name(size) for size in sizes], rotation=30)
    axes.minorticks_off()
    axes.set_xlabel("block size (the target applies from 1 MiB: shaded)")
    axes.set_ylabel("paracel / raw bandwidth")
    axes.set_title("push (write + flush) and pull (read out=)")
    axes.legend(fontsize=7, ncol=2)


def plot_small(axes, kv, colors):
    """Grouped bars: per config, the small-read ratio of each (value, readers) case."""
    cases = [("float", False), ("float", True), ("8 x float64", False), ("8 x float64", True)]
    width = 0.8 / len(cases)
    for number, (value, everyone) in enumerate(cases):
        xs, ratios = [], []
        for position, record in enumerate(kv):
            for entry in record["data"]["small"]:
                if entry["value"] == value and (entry["readers"] > 1) == everyone:
                    xs.append(position + (number - 1.5) * width)
                    ratios.append(entry["ratio"])
        if not xs:
            continue
        who = "all workers" if everyone else "1 worker"
        axes.bar(xs, ratios, width, color=colors(7 + number // 2),
                 hatch="//" if everyone else None, label=f"{value}, {who}")
    axes.axhline(RTT_TARGET, color="black", linestyle=":", label=f"target {RTT_TARGET}")
    axes.set_xticks(range(len(kv)))
    axes.set_xticklabels([f"{record['ranks']}r/{record['servers']}s" for record in kv])
    axes.set_xlabel("ranks / servers")
    axes.set_ylabel("paracel / raw round trips per second")
    axes.set_title("small reads")
    axes.legend(fontsize=7)


# -- main ----------------------------------------------------------------------


def measure(settings):
    """Run every benchmark in turn, printing progress; returns the records."""
    records = []
    with tempfile.TemporaryDirectory(prefix="study_overhead_") as folder:
        for ranks, servers in CONFIGS:
            print(f"bench_kv.py: {ranks} ranks, {servers} server(s) ...", flush=True)
            records.append(run_kv(ranks, servers, settings, folder))
            report_run(records[-1])
        print(f"bench_idle.py: {IDLE_RANKS} ranks ...", flush=True)
        records.append(run_idle(settings, folder))
        report_run(records[-1])
    return records


def report_run(record):
    """One progress line; a failed run's output in full."""
    print(f"  {record['status']} in {record['seconds']:.1f} s "
          f"(other processes: {record['other_cores']:.2f} cores)", flush=True)
    if record["data"] is None:
        print(record["output"], flush=True)


def main():
    """Run the benchmarks, print the tables, write docs/overhead.md and .png."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short benchmark runs")
    settings = Settings(parser.parse_args().quick)
    machine, own, start = machine_cpu_seconds(), cpu_with_children(), time.perf_counter()
    records = measure(settings)
    load = other_load_line(machine_cpu_seconds() - machine, cpu_with_children() - own,
                           time.perf_counter() - start)
    kv = [record for record in records if record["what"] == "bench_kv.py" and record["data"]]
    idle = next((record for record in records
                 if record["what"] == "bench_idle.py" and record["data"]), None)
    if not kv:
        raise SystemExit("study_overhead: every bench_kv.py run failed; nothing written")
    sections = [summary_section(kv, idle), bandwidth_section(kv, settings),
                small_section(kv, settings), multi_section(kv)]
    sections += [idle_section(idle)] if idle else []
    sections.append(runs_section(records))
    print(f"\n{load}")
    for caption, header, rows in sections:
        print_table(caption, header, rows)
    os.makedirs(DOCS, exist_ok=True)
    plot(kv, os.path.join(DOCS, f"{NAME}.png"))
    path = write_study(NAME, TITLE, settings.command, sections, load)
    print(f"\nwrote {path} and docs/{NAME}.png in {time.perf_counter() - start:.0f} s")
    if len(kv) + (idle is not None) < len(records):
        raise SystemExit("study_overhead: some runs failed (see the Runs table)")


if __name__ == "__main__":
    main()
