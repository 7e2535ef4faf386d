#!/usr/bin/env bash
# Make sure .venv exists with the project installed (editable) and its MPI.
# Usage: tools/ensure_venv.sh [EXTRA]   e.g. "test" for the test tools.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra="${1:-}"
venv="$root/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.installed${extra:+-$extra}"

if [ ! -x "$venv/bin/python" ]; then
    echo "paracel: creating $venv" >&2
    "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    echo "paracel: installing the project${extra:+ with [$extra]} into $venv" >&2
    log="$venv/install.log"
    if ! { "$venv/bin/python" -m pip install --upgrade pip &&
           "$venv/bin/python" -m pip install -e "$root${extra:+[$extra]}"; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "paracel: installing failed; the whole log is $log" >&2
        exit 1
    fi
    touch "$stamp"
fi
# Open MPI's own defaults for this venv: ranks are placed slot by slot (host
# by host with a hostfile) and more ranks than slots are allowed, so a
# hand-started "mpiexec -n 16 python -m paracel.run job.json" runs on a small
# machine too (waiting ranks sleep; see README "Running jobs").
params="$venv/etc/prte-mca-params.conf"
policy="rmaps_default_mapping_policy = slot:oversubscribe"
if [ -f "$params" ] && ! grep -qx "$policy" "$params"; then
    sed -i '/^rmaps_default_mapping_policy/d' "$params"
    echo "$policy" >> "$params"
fi
