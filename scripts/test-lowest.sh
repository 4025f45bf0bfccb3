#!/usr/bin/env bash
# CI stage: the tests that need no torch (the runtime's: sdk, camera, index, encoder on real models), run with the
# lowest versions sadh supports, JetPack 6's: Python 3.10, numpy 1.23.5, onnxruntime 1.20.1, OpenCV 4.8
# (requirements/lowest.txt), in ./.venv-lowest. tests/conftest.py leaves out what needs torch and says so.
# Usage: bash scripts/test-lowest.sh [--gpu] [pytest args]   (--gpu: onnxruntime-gpu instead, CPU provider, in
# ./.venv-lowest-gpu). Idempotent: re-running re-syncs only when the pins or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=cpu VENV=.venv-lowest
if [ "${1:-}" = "--gpu" ]; then
    EXTRA=gpu VENV=.venv-lowest-gpu
    shift
fi
LOCK=requirements/lowest.txt
PY=
for candidate in ${PYTHON310:-} "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*/bin/python python3.10; do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
        PY=$candidate
        break
    fi
done
if [ -z "$PY" ]; then
    echo "[lowest] needs Python 3.10 (JetPack 6's): install it (pyenv install 3.10) or set PYTHON310=/path/to/python3.10" >&2
    exit 1
fi
STAMP=$VENV/sadh-install.sha256
WANT=$(cat "$LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "[lowest] installing sadh[$EXTRA] with $($PY --version) into $VENV, pinned by $LOCK"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    export PIP_CONSTRAINT="$PWD/$LOCK"  # also pins the build backend (setuptools 77) of sadh's own isolated build
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[$EXTRA]" pytest hypothesis onnx scikit-image
    echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" - "$EXTRA" <<'EOF'
import sys
from importlib import metadata
runtime = "onnxruntime-gpu" if sys.argv[1] == "gpu" else "onnxruntime"
versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("numpy", runtime, "opencv-python-headless"))
print(f"[lowest] Python {sys.version.split()[0]}, {versions}")
EOF
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
