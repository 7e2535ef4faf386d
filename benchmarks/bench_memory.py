"""Server memory under a soak of repeated writes and updates.

Runs a Paracel job in which every worker keeps writing and updating the same
set of keys (dense blocks of several sizes, sparse blocks, scalars) for
``--seconds``; worker 0 samples each server's resident memory (``rss_bytes``)
and the bytes its table holds (``nbytes``) from the servers' own statistics.
The server must not grow: resident memory should stay within 1.5x of the
bytes stored (after the interpreter's own baseline) and flat over time.

    python benchmarks/bench_memory.py --seconds 600          # the 10-minute soak
    python benchmarks/bench_memory.py --seconds 30 -n 6 --servers 2
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

import paracel

MIB = 1 << 20


class Soak(paracel.Algorithm):
    """Write and update a fixed key set until time runs out; sample memory."""

    parameters = {"seconds": paracel.Param(float, 60.0, "soak duration"),
                  "megabytes": paracel.Param(int, 256, "bytes stored, in MiB, all servers"),
                  "every": paracel.Param(float, 5.0, "seconds between samples")}

    def solve(self):
        blocks = self.blocks()
        if self.worker_id == 0:
            self.write_multi(blocks)
        self.sync()
        baseline = self.stats() if self.worker_id == 0 else None
        samples, start, last = [], time.perf_counter(), 0.0
        rounds = 0
        while time.perf_counter() - start < self.seconds:
            self.churn(blocks, rounds)
            rounds += 1
            self.iter_commit()
            elapsed = time.perf_counter() - start
            if self.worker_id == 0 and elapsed - last >= self.every:
                samples.append((elapsed, self.stats()))
                last = elapsed
        self.sync()
        if self.worker_id == 0:
            samples.append((time.perf_counter() - start, self.stats()))
            self.report_table(baseline, samples)
        return {"rounds": rounds}

    def blocks(self):
        """The key set: ``megabytes`` blocks of 1 MiB, a sparse block, scalars."""
        values = {f"dense-{i}": np.zeros(MIB // 8) for i in range(max(1, self.megabytes))}
        values["sparse"] = sp.random(2000, 2000, density=0.01, format="csr", random_state=0)
        values.update({f"scalar-{i}": 0.0 for i in range(1000)})
        return values

    def churn(self, blocks, rounds):
        """One round: overwrite a few blocks, update the others (add)."""
        rng = np.random.default_rng([self.worker_id, rounds])
        names = [name for name in blocks if name.startswith("dense")]
        chosen = rng.choice(names, size=min(4, len(names)), replace=False)
        self.write_multi({name: rng.random(blocks[name].shape) for name in chosen[:2]})
        self.update_multi({name: np.ones(blocks[name].shape) for name in chosen[2:]})
        self.update_multi({f"scalar-{i}": 1.0 for i in rng.integers(0, 1000, 100)})
        self.update("sparse", blocks["sparse"], "add")

    def stats(self):
        return self._runtime.client.stats()

    def report_table(self, baseline, samples):
        print(f"{'t (s)':>8} {'server':>6} {'stored MiB':>11} {'RSS MiB':>9} "
              f"{'RSS-base MiB':>13} {'ratio':>6}", flush=True)
        for elapsed, stats in samples:
            for index, (base, now) in enumerate(zip(baseline, stats)):
                grown = (now["rss_bytes"] - base["rss_bytes"] + base["nbytes"]) / MIB
                stored = now["nbytes"] / MIB
                print(f"{elapsed:8.1f} {index:6d} {stored:11.1f} {now['rss_bytes'] / MIB:9.1f} "
                      f"{grown:13.1f} {grown / stored:6.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("-n", "--processes", type=int, default=4)
    parser.add_argument("--servers", type=int, default=1)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="paracel-soak-")
    job = {"algorithm": "bench_memory:Soak", "processes": args.processes,
           "servers": args.servers, "staleness": 2, "output": os.path.join(folder, "out"),
           "log_level": "warning",
           "params": {"seconds": args.seconds, "megabytes": args.megabytes}}
    path = os.path.join(folder, "soak.json")
    with open(path, "w") as handle:
        json.dump(job, handle)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
    sys.exit(subprocess.call([sys.executable, "-m", "paracel.run", path], env=env))


if __name__ == "__main__":
    main()
