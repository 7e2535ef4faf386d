#!/usr/bin/env bash
# Run a Paracel job under MPI, setting up .venv on first use.
#   ./run_mpi.sh                      the demo job (conf/demo.json)
#   ./run_mpi.sh --overwrite          the demo job, replacing other results
#   ./run_mpi.sh -n 8 conf/wc.json    a given job on 8 processes
# Any option of `python -m paracel.run` may be given (see --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/tools/ensure_venv.sh"
# no job file among the arguments (only options such as --overwrite): the demo
job=""
for arg in "$@"; do
    case "$arg" in *.json) job="$arg" ;; esac
done
if [ -z "$job" ] && [ "${1:-}" != "predict" ] && [ "${1:-}" != "plot" ]; then
    case " $* " in
        *" --list "*|*" --describe "*|*" -h "*|*" --help "*) ;;
        *) set -- "$@" "$root/conf/demo.json" ;;
    esac
fi
exec "$root/.venv/bin/python" -m paracel.run "$@"
