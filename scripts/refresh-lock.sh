#!/usr/bin/env bash
# Refresh requirements/ci.txt to today's newest releases of everything sadh[dev] needs, then re-sync .venv
# from it and run the test suite. One line: bash scripts/refresh-lock.sh
# The diff of requirements/ci.txt afterwards is what moved; commit it when the suite passes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "[lock] resolving sadh[dev] afresh in a throwaway venv ($($PY --version))"
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$tmp/venv/bin/python" -m pip install -q "torch==2.13.0"  # the CPU build from this project's machines
"$tmp/venv/bin/python" -m pip install -q ".[dev]"
{
    echo "# Pins for the test environment (scripts/setup.sh, CI): written by scripts/refresh-lock.sh on $(date -u +%F)"
    echo "# with $($PY --version) on $(uname -m). Users' installs are not pinned (see pyproject.toml)."
    "$tmp/venv/bin/python" -m pip freeze --all | grep -v -i '^sadh[ =@]' | sed -E 's/^(torch==[^+]*)\+.*/\1/'
} > "$tmp/ci.txt"
mv "$tmp/ci.txt" requirements/ci.txt
if git ls-files --error-unmatch requirements/ci.txt >/dev/null 2>&1; then
    git --no-pager diff -U0 -- requirements/ci.txt | grep '^[-+][a-zA-Z]' || echo "[lock] no version moved"
fi
bash scripts/setup.sh && .venv/bin/python -m pytest
