#!/usr/bin/env bash
# Create the project's virtual environment (.venv) and install everything into it.
# Order matters: the CPU build of torch first (else pip pulls CUDA builds), then procgen's
# cp310 wheel cross-installed (no cp311 wheel exists; its native library is loaded through
# cffi and does not depend on the Python version), then this project with its extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.installed"

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/install.sh ]; then
    exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)' || {
    echo "error: Python >= 3.10 is required (found $("$PYTHON" --version 2>&1))" >&2; exit 2; }

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
$PIP install -q --upgrade pip
$PIP install -q "torch==2.13.0"

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PROCGEN_DIR="$VENV/procgen-cp310"
if [ ! -f "$PROCGEN_DIR/procgen/env.py" ]; then
    rm -rf "$PROCGEN_DIR"
    $PIP install -q --no-deps --target "$PROCGEN_DIR" --python-version 3.10 \
        --implementation cp --only-binary=:all: \
        --platform "manylinux_2_17_$(uname -m)" --platform "manylinux2014_$(uname -m)" \
        "procgen==0.10.7"
fi
# A .pth file puts the cross-installed package on the venv's import path.
(cd "$PROCGEN_DIR" && pwd) > "$SITE/procgen-cp310.pth"

$PIP install -q -e ".[all]"
"$VENV/bin/python" -c 'import procgen, stable_baselines3, ale_py, Box2D' 2>/dev/null || {
    echo "error: install finished but an import failed; see above" >&2; exit 1; }
touch "$STAMP"
