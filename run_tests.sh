#!/usr/bin/env bash
# Run the test suite, setting up .venv (with the test tools) on first use.
# Arguments go to pytest, e.g. ./run_tests.sh -k partition
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/tools/ensure_venv.sh" test
cd "$root"
exec "$root/.venv/bin/python" -m pytest "$@"
