#!/usr/bin/env bash
# Run a benchmark or study, setting up .venv (with the benchmark tools) on first use.
#   ./run_bench.sh study_straggler          writes docs/straggler.md and .png
#   ./run_bench.sh bench_lr --copies 10     any script in benchmarks/, with its options
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -eq 0 ]; then
    echo "usage: ./run_bench.sh NAME [options]   (NAME: a script in benchmarks/)" >&2
    ls "$root/benchmarks" | sed -n 's/^\(\(bench\|study\)_.*\)\.py$/  \1/p' >&2
    exit 2
fi
"$root/tools/ensure_venv.sh" bench
name="${1%.py}"; shift
cd "$root"
exec "$root/.venv/bin/python" "$root/benchmarks/$name.py" "$@"
