#!/usr/bin/env bash
# Prove that every extra in pyproject.toml resolves on today's package index, unpinned, as a user installs it
# (`pip install --dry-run ".[EXTRA]"`; nothing is installed). Names the extra and pip's reason on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
extras=$("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]))')
failed=0
for extra in "" $extras; do
    name=${extra:-(none: the runtime alone)}
    target=".${extra:+[$extra]}"
    if out=$(env -u PIP_CONSTRAINT "$PY" -m pip install --dry-run --ignore-installed --quiet "$target" 2>&1); then
        echo "[extras] $name: resolves"
    else
        echo "[extras] $name: does NOT resolve:"
        echo "$out" | grep -E '^ERROR|conflict is caused by|depends on' | grep -v 'Ignored the following' | sed 's/^/    /'
        failed=1
    fi
done
exit $failed
