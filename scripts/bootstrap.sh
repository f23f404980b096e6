#!/usr/bin/env bash
# Install everything lmmfast needs on Debian 12: the SuiteSparse headers and OpenBLAS
# (skipped when present), then a virtual environment .venv with lmmfast and its dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for package in libsuitesparse-dev libopenblas0-pthread; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bootstrap: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "bootstrap: lmmfast needs Python >= 3.11 (set PYTHON=...)" >&2
    exit 1
}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
