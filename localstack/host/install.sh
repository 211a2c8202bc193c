#!/usr/bin/env bash
# usage: localstack/host/install.sh <venv-dir>
# Installs LocalStack community 4.14.0 for the embedded stack's `--emulator localstack`:
#  * a Python 3.13 venv from requirements.txt, every package pinned by constraints.txt (pip check clean);
#  * kinesis-mock (npm kinesis-local, pinned by kinesis-mock/package-lock.json) where LocalStack looks
#    for a pre-installed copy, so its first Kinesis call needs no network.
# Python 3.13 is found as $LOCALSTACK_PYTHON, python3.13 on PATH, ~/.pyenv/versions/3.13.*, `uv python find`.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
VENV=$1
KINESIS_MOCK_VERSION=$(sed -n 's/.*"kinesis-local": "\(.*\)".*/\1/p' "$HERE/kinesis-mock/package.json")

is_313() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }
find_python() {
  local candidate
  for candidate in "${LOCALSTACK_PYTHON:-}" "$(command -v python3.13 || true)" \
                   $(ls -d "$HOME"/.pyenv/versions/3.13.*/bin/python3.13 2>/dev/null | sort -V -r) \
                   "$(uv python find 3.13 2>/dev/null || true)"; do
    if is_313 "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}

PYTHON=$(find_python) || {
  echo "LocalStack needs Python 3.13 and none was found (LOCALSTACK_PYTHON, python3.13 on PATH, pyenv, uv):" \
       "install one ('uv python install 3.13' or 'pyenv install 3.13') or set LOCALSTACK_PYTHON=/path/to/python3.13" >&2
  exit 1
}
command -v npm >/dev/null || { echo "LocalStack's Kinesis needs Node.js and npm: apt-get install nodejs npm" >&2; exit 1; }

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" -c "$HERE/constraints.txt"
"$VENV/bin/pip" check
LIB="$VENV/static-libs/kinesis-local/$KINESIS_MOCK_VERSION"
mkdir -p "$LIB"
cp "$HERE/kinesis-mock/package.json" "$HERE/kinesis-mock/package-lock.json" "$LIB/"
npm ci --prefix "$LIB" --no-audit --no-fund --loglevel=error --cache "$VENV/.npm-cache"
test -f "$LIB/node_modules/kinesis-local/main.js"
echo "LocalStack $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("localstack-core"))')" \
     "in $VENV (Python $("$VENV/bin/python" -V | cut -d' ' -f2)), kinesis-mock $KINESIS_MOCK_VERSION in $LIB"
