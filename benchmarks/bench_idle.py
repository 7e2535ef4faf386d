"""CPU used by idle ranks: 16 ranks on 2 cores, one worker busy, the rest waiting.

Launches a real paracel job (``python -m paracel.run job.json -n 16``) of the
:class:`BusyOne` algorithm below, with ``staleness: 0``: after a ``sync``,
worker 0 computes (a pure-Python busy loop for ``--busy`` seconds) while every
other worker waits in ``iter_commit`` for it and the server(s) have nothing to
serve. Meanwhile this script samples ``utime + stime`` from
``/proc/PID/stat`` of every rank (ranks are found by a marker in their
environment) over the busy window and prints each role's CPU use in percent
of one core. An idle rank should cost almost nothing: the target is < 5 % of a
core for the idle server and for each waiting worker, while the busy worker
gets a whole core.

Run (from the project folder, outside mpiexec; it launches the job itself)::

    .venv/bin/python benchmarks/bench_idle.py [--ranks 16] [--servers 1] [--busy 5]

``--json PATH`` also writes the measured percentages there (for
``study_overhead.py``).

``--module NAME`` (repeatable) lists extra modules in the job file, imported on
every rank before the roles start: a way to try out another waiting policy
without touching the framework.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import paracel

from _common import machine_cpu_seconds, print_table, process_cpu_seconds

MARKER = "PARACEL_BENCH_IDLE"
TARGET_PERCENT = 5.0
SETTLE_SECONDS = 0.5


class BusyOne(paracel.Algorithm):
    """Worker 0 computes for a while; the others wait for it in ``iter_commit``."""

    summary = "benchmark: one busy worker, the others waiting at the SSP clock"
    parameters = {
        "busy_seconds": paracel.Param(float, 5.0, "how long worker 0 computes", low=0.0),
        "start_file": paracel.Param(str, "", "written by worker 0 when it starts computing"),
    }

    def solve(self):
        self.sync()
        if self.worker_id == 0:
            with open(self.start_file, "w", encoding="ascii") as handle:
                handle.write(str(time.time()))
            spin(self.busy_seconds)
        self.iter_commit()
        return {}


def spin(seconds):
    """Burn one core in pure Python for ``seconds``."""
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        for number in range(1000):
            total += number * number
    return total


def write_job(folder, ranks, servers, busy, modules=()):
    """Write the job file in ``folder``; returns its path and the start-file path."""
    start_file = os.path.join(folder, "started")
    job = {
        "description": "bench_idle: one busy worker, the others waiting",
        "algorithm": "bench_idle:BusyOne",
        "processes": ranks,
        "servers": servers,
        "staleness": 0,
        "output": os.path.join(folder, "output"),
        "log_level": "warning",
        "modules": list(modules),
        "params": {"busy_seconds": busy, "start_file": start_file},
    }
    path = os.path.join(folder, "job.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(job, handle, indent=2)
    return path, start_file


def launch(job_path, ranks, tag):
    """Start ``python -m paracel.run job.json -n RANKS`` with a marker in its environment."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, **{MARKER: tag})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "paracel.run", job_path, "-n", str(ranks)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def find_ranks(tag):
    """World rank → pid of every process whose environment carries ``tag``."""
    ranks = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        environ = read_environ(name)
        if environ.get(MARKER) == tag and "OMPI_COMM_WORLD_RANK" in environ:
            ranks[int(environ["OMPI_COMM_WORLD_RANK"])] = int(name)
    return ranks


def read_environ(pid):
    """The environment of process ``pid`` as a dict (empty if unreadable)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def launcher_pid(rank_pids):
    """The parent of the rank processes (``prterun``/``mpiexec``)."""
    with open(f"/proc/{next(iter(rank_pids))}/stat", encoding="ascii") as handle:
        text = handle.read()
    return int(text[text.rindex(")") + 2:].split()[1])


def wait_for_start(process, start_file, timeout=120.0):
    """Block until worker 0 has started computing (or the job died)."""
    deadline = time.time() + timeout
    while not os.path.exists(start_file):
        if process.poll() is not None or time.time() > deadline:
            output = process.communicate()[0] if process.poll() is not None else ""
            raise RuntimeError(f"the job never started computing:\n{output}")
        time.sleep(0.05)


def sample(pids):
    """CPU seconds of each pid, and the machine's total, now."""
    return {name: process_cpu_seconds(pid) for name, pid in pids.items()}, machine_cpu_seconds()


def measure(process, start_file, tag, num_ranks, window):
    """Percent of a core used by each rank (and the launcher) over the window."""
    wait_for_start(process, start_file)
    time.sleep(SETTLE_SECONDS)
    ranks = find_ranks(tag)
    if len(ranks) != num_ranks:
        raise RuntimeError(f"found {len(ranks)} of {num_ranks} rank processes")
    pids = {f"rank {rank}": pid for rank, pid in ranks.items()}
    pids["launcher"] = launcher_pid(ranks.values())
    before, machine_before, start = *sample(pids), time.perf_counter()
    time.sleep(window)
    after, machine_after, elapsed = *sample(pids), time.perf_counter() - start
    percent = {name: 100.0 * (after[name] - before[name]) / elapsed for name in pids
               if before[name] is not None and after[name] is not None}
    machine = 100.0 * (machine_after - machine_before) / elapsed
    return percent, machine


def role_of(rank, num_ranks, servers):
    """``busy worker`` / ``waiting worker`` / ``idle server``."""
    if rank >= num_ranks - servers:
        return "idle server"
    return "busy worker" if rank == 0 else "waiting worker"


def role_stats(percent, num_ranks, servers):
    """Per role present: ``{role, ranks, mean, max, target, verdict}`` (percent of a core)."""
    roles = {}
    for rank in range(num_ranks):
        roles.setdefault(role_of(rank, num_ranks, servers), []).append(percent[f"rank {rank}"])
    stats = []
    for role in ("busy worker", "waiting worker", "idle server"):
        values = roles.get(role, [])
        if not values:
            continue
        target = "~100" if role == "busy worker" else f"< {TARGET_PERCENT:g}"
        if role == "busy worker":
            verdict = "ok" if max(values) > 80 else "LOW"
        else:
            verdict = "ok" if max(values) < TARGET_PERCENT else "OVER"
        stats.append({"role": role, "ranks": len(values), "mean": statistics.mean(values),
                      "max": max(values), "target": target, "verdict": verdict})
    return stats


def role_rows(percent, num_ranks, servers):
    """Per-role rows: count, mean, max, target, verdict."""
    return [[stat["role"], stat["ranks"], f"{stat['mean']:.2f}", f"{stat['max']:.2f}",
             stat["target"], stat["verdict"]]
            for stat in role_stats(percent, num_ranks, servers)]


def dump_json(path, percent, machine, args, window):
    """Dump the run's settings and percentages (of one core) to ``path``."""
    data = {"ranks": args.ranks, "servers": args.servers, "busy_seconds": args.busy,
            "window_seconds": window, "modules": args.module,
            "per_process": percent, "machine": machine,
            "roles": role_stats(percent, args.ranks, args.servers)}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)


def report(percent, machine, args, window):
    """Print the per-rank and per-role tables."""
    extra = f"; extra modules: {', '.join(args.module)}" if args.module else ""
    print(f"bench_idle: {args.ranks} ranks ({args.servers} server(s)) on {os.cpu_count()} "
          f"cores; staleness 0; worker 0 busy for {args.busy:g} s; sampled over "
          f"{window:.1f} s of it{extra}")
    per_rank = [[f"rank {rank}", role_of(rank, args.ranks, args.servers),
                 f"{percent[f'rank {rank}']:.2f}"] for rank in range(args.ranks)]
    per_rank.append(["launcher", "mpiexec/prterun", f"{percent.get('launcher', 0.0):.2f}"])
    print_table("CPU per process (% of one core)", ["process", "role", "cpu %"], per_rank)
    print_table("CPU per role (% of one core)",
                ["role", "ranks", "mean %", "max %", "target %", "verdict"],
                role_rows(percent, args.ranks, args.servers))
    ours = sum(percent.values())
    print(f"\nall ranks + launcher: {ours:.1f} % of a core; the whole machine: {machine:.1f} % "
          f"(other processes: {max(0.0, machine - ours):.1f} %)")


def main():
    """Write the job, launch it, sample the ranks during the busy window, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=16, help="MPI processes")
    parser.add_argument("--servers", type=int, default=1, help="parameter servers")
    parser.add_argument("--busy", type=float, default=5.0, help="seconds worker 0 computes")
    parser.add_argument("--module", action="append", default=[],
                        help="extra module imported on every rank (repeatable)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers here as JSON")
    args = parser.parse_args()
    window = args.busy - 2 * SETTLE_SECONDS
    with tempfile.TemporaryDirectory(prefix="bench_idle_") as folder:
        job_path, start_file = write_job(folder, args.ranks, args.servers, args.busy,
                                         args.module)
        tag = uuid.uuid4().hex
        process = launch(job_path, args.ranks, tag)
        try:
            percent, machine = measure(process, start_file, tag, args.ranks, window)
        finally:
            output = process.communicate(timeout=120)[0]
        if process.returncode != 0:
            raise SystemExit(f"the job failed (exit {process.returncode}):\n{output}")
    report(percent, machine, args, window)
    if args.json:
        dump_json(args.json, percent, machine, args, window)


if __name__ == "__main__":
    main()
