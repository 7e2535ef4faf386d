"""Hosts study: the SSP clock and three toolkit jobs on one host and on two.

Two "hosts" are network namespaces on this machine joined by a bridge
(``tools/fakehosts.py``): MPI between them goes over TCP through real
interfaces, as across machines, though both share this machine's 2 cores
(so this measures what crossing a network costs, not what more machines
gain). Root is needed to make the namespaces.

1. **Clock.** A job of 6 ranks (4 workers, 2 servers) whose workers do
   nothing but ``iter_commit()`` at staleness 0: seconds per clock, with the
   clock as a one-sided window (``"clock": "window"``, the single-host
   default) and as messages to server 0 (``"messages"``, the default across
   hosts), on one host and across two; against a raw mpi4py ping-pong
   between a worker's rank and server 0's rank on the same placement (one
   round trip, waited for without spinning: ``improbe`` + the project's
   backoff).
2. **Jobs.** mf, lda and lr (the shipped conf files, shortened) at staleness
   0, 4 and null, on one host, across two, and across two with 1 ms added
   each way (6 ranks, 3 per host): solve seconds, the ratios to one host,
   and each run's final quality (mf held-out RMSE, lda log-likelihood, lr
   log-loss), so that a faster staleness is also seen to reach the same
   quality.

The 1 ms comes from ``tools/fakehosts.py``'s user-space router (the kernel
here has no ``netem``): every packet between the hosts waits 1 ms in a
Python process that forwards between TUN devices, so a round trip takes at
least 2 ms plus the router's own time (measured with each run: the table's
raw round trip; on a loaded 2-core machine about 6 ms).

Writes ``docs/hosts.md``. Run (as root)::

    ./run_bench.sh study_hosts [--clocks 2000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import LoadMeter, write_study

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
from fakehosts import FakeHosts  # noqa: E402

RANKS = 6
JOBS = {"mf": {"epochs": 5}, "lda": {"iterations": 20}, "lr": {"epochs": 5}}
QUALITY = {"mf": "heldout_rmse", "lda": "loglik", "lr": "log_loss"}
LATENCY_MS = 1.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clocks", type=int, default=2000, help="clocks of the clock job")
    parser.add_argument("--pings", type=int, default=3000, help="round trips of the ping-pong")
    return parser.parse_args(argv)


def environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([HERE, env.get("PYTHONPATH", "")])
    return env


def run(hosts, job):
    """Run a job file on one host (``hosts`` None) or across ``hosts``; its
    metrics.json."""
    argv = [sys.executable, "-m", "paracel.run", job, "-n", str(RANKS)]
    env = environment()
    if hosts is not None:
        argv = hosts.command([*argv, "--hostfile", hosts.hostfile(RANKS // 2)])
        env = hosts.environment(env)
    subprocess.run(argv, env=env, check=True, timeout=900, stdout=subprocess.DEVNULL)
    with open(job, encoding="utf-8") as handle:
        output = json.load(handle)["output"]
    with open(os.path.join(output, "metrics.json"), encoding="utf-8") as handle:
        return json.load(handle)


def write_job(folder, name, **job):
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"servers": 2, "log_level": "warning", "output": os.path.join(folder, name),
                   **job}, handle)
    return path


def clock_rows(placements, folder, args):
    rows = []
    for label, hosts in placements:
        for kind in ("window", "messages"):
            if kind == "window" and "ms" in label:
                continue  # hundreds of ms a clock: the point is made without latency
            job = write_job(folder, f"tick-{kind}-{len(rows)}",
                            algorithm="study_hosts_algos:Tick", modules=["study_hosts_algos"],
                            clock=kind, staleness=0, params={"clocks": args.clocks})
            metrics = run(hosts, job)
            per_clock = metrics["timings"]["solve_seconds"] / args.clocks
            commit = max(metrics["timings"]["per_worker_commit_seconds"]) / args.clocks
            rows.append([label, kind, f"{per_clock * 1e6:.0f}", f"{commit * 1e6:.0f}"])
        ping = ping_pong(hosts, args.pings)
        for row in rows:
            if row[0] == label:
                row += [f"{ping * 1e6:.0f}", f"{float(row[2]) / (ping * 1e6):.1f}"]
    return rows


def ping_pong(hosts, count):
    """Seconds per round trip between rank 0 and the last rank (server 0's
    place), waited for without spinning."""
    launch = [sys.executable, "-m", "mpi4py", os.path.join(HERE, "study_hosts_algos.py"),
              str(count)]
    from paracel import mpiexec

    command, env = mpiexec.command(mpiexec.find(), RANKS, extra=(
        ["--hostfile", hosts.hostfile(RANKS // 2)] if hosts is not None else []))
    argv = [*command, *launch]
    if hosts is not None:
        argv, env = hosts.command(argv), hosts.environment(env)
    out = subprocess.run(argv, env=env, check=True, timeout=600, capture_output=True,
                         text=True).stdout
    return float(out.strip().splitlines()[-1])


def job_rows(placements, folder):
    rows = []
    for name, params in JOBS.items():
        with open(os.path.join(ROOT, "conf", f"{name}.json"), encoding="utf-8") as handle:
            conf = json.load(handle)
        data = os.path.normpath(os.path.join(ROOT, "conf", conf["input"]))
        for staleness in (0, 4, None):
            seconds, quality = [], []
            for index, (_, hosts) in enumerate(placements):
                job = write_job(folder, f"{name}-{staleness}-{index}", algorithm=name,
                                input=data, staleness=staleness, seed=1,
                                params={**conf["params"], **params})
                metrics = run(hosts, job)
                seconds.append(metrics["timings"]["solve_seconds"])
                quality.append(metrics["metrics"].get(QUALITY[name]))
            rows.append([name, "null" if staleness is None else staleness,
                         *[f"{t:.2f}" for t in seconds],
                         *[f"{t / seconds[0]:.2f}" for t in seconds[1:]],
                         " / ".join(f"{q:.5g}" if q is not None else "-" for q in quality)])
    return rows


def main(argv=None):
    args = parse_args(argv)
    meter = LoadMeter()
    with FakeHosts(2) as near, FakeHosts(2, latency_ms=LATENCY_MS) as far, \
            tempfile.TemporaryDirectory() as folder:
        placements = [("1 host", None), ("2 hosts", near),
                      (f"2 hosts + {LATENCY_MS:g} ms", far)]
        clocks = clock_rows(placements, folder, args)
        jobs = job_rows(placements, folder)
    far_label = f"2 hosts + {LATENCY_MS:g} ms"
    sections = [
        ("SSP clock at staleness 0, 4 workers + 2 servers: µs per clock (solve / clocks), "
         "µs in commit (slowest worker), raw mpi4py round trip on the same placement, "
         "ratio clock / round trip",
         ["placement", "clock", "µs / clock", "µs commit", "raw round trip µs", "ratio"], clocks),
        ("Jobs, 4 workers + 2 servers (3 ranks per host across 2 hosts): solve seconds, "
         "ratios to one host, final quality (mf held-out RMSE / lda log-likelihood / lr "
         "log-loss) per placement",
         ["job", "staleness", "1 host", "2 hosts", far_label, "2 hosts / 1",
          f"{far_label} / 1", "quality"], jobs),
    ]
    path = write_study("hosts", "The clock and the toolkit across hosts",
                       "./run_bench.sh study_hosts", sections, meter.line())
    print(open(path, encoding="utf-8").read())


if __name__ == "__main__":
    main()
