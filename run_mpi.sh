#!/usr/bin/env bash
# Run a Paracel job under MPI, setting up .venv on first use.
#   ./run_mpi.sh                      the demo job (conf/demo.json)
#   ./run_mpi.sh -n 8 conf/wc.json    a given job on 8 processes
# Any option of `python -m paracel.run` may be given (see --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/tools/ensure_venv.sh"
if [ $# -eq 0 ]; then
    set -- "$root/conf/demo.json"
fi
exec "$root/.venv/bin/python" -m paracel.run "$@"
