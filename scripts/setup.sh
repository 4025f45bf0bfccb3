#!/usr/bin/env bash
# Install everything sadh needs into ./.venv (and the Fashion-MNIST Debian package when run as root).
# The test environment is pinned by requirements/ci.txt (refresh it with scripts/refresh-lock.sh); users'
# own installs (`pip install sadh[...]`) stay unpinned, with the lower bounds in pyproject.toml.
# Usage: bash scripts/setup.sh            (idempotent; re-running only checks, or re-syncs a changed lock)
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=${SADH_LOCK:-$PWD/requirements/ci.txt}

DATA_DIR=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA_DIR/train-images-idx3-ubyte.gz" ] && [ -z "${SADH_FASHION_MNIST:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "[setup] installing the Fashion-MNIST dataset (Debian package dataset-fashion-mnist)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "[setup] Fashion-MNIST is missing and installing it needs root. Run:" >&2
        echo "          sudo apt-get install dataset-fashion-mnist" >&2
        echo "        or set SADH_FASHION_MNIST=/dir/with/the/four/IDX/files, then re-run this script." >&2
        exit 1
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] && ! "$PY" -c "import ensurepip, venv" 2>/dev/null; then  # Debian/Ubuntu split venv out
    if [ "$(id -u)" = 0 ]; then
        echo "[setup] installing python3-venv (Debian/Ubuntu ship venv separately)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "[setup] $PY cannot create virtual environments here. Run:" >&2
        echo "          sudo apt-get install python3-venv" >&2
        echo "        then re-run this script." >&2
        exit 1
    fi
fi
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
# The stamp names what the venv was installed from: a changed lock or pyproject.toml re-syncs it.
STAMP=.venv/sadh-install.sha256
WANT=$(cat "$LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] || ! .venv/bin/python -c "import sadh.cli.app, torch, onnx, pytest" 2>/dev/null; then
    echo "[setup] installing sadh[dev] into .venv, pinned by ${LOCK#$PWD/} (torch: CPU build 2.13.0)"
    # PIP_CONSTRAINT (not -c) so that the pins also hold in the isolated build of sadh itself (setuptools).
    export PIP_CONSTRAINT="$LOCK"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q "torch==2.13.0"
    .venv/bin/python -m pip install -q -e ".[dev]"
    echo "$WANT" > "$STAMP"
fi
echo "[setup] ready: $(.venv/bin/sadh-cli --version)"
