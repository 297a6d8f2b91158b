#!/bin/sh
# Builds cloudroi's wheel from a source tree and installs it, with its runtime dependencies only
# (those pyproject.toml declares for the wheel and the named extras), into a virtual environment.
#
#   install.sh SRC VENV EXTRAS      e.g. install.sh /src /opt/venv s3,geo   or   ... s3,geo,lambda
#
# The Dockerfile runs exactly this; tests/test_deploy.py runs it too, into a fresh venv, and checks
# what ended up installed. $PYTHON picks the interpreter that creates the venv (default python3).
set -eu

if [ "$#" -ne 3 ]; then
    echo "usage: $0 SRC VENV EXTRAS" >&2
    exit 2
fi
src=$1
venv=$2
extras=$3

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT

"$venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$dist" "$src"
set -- "$dist"/cloudroi-*.whl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "install.sh: expected one cloudroi wheel in $dist" >&2
    exit 1
fi
"$venv/bin/python" -m pip install --quiet "$1[$extras]"
"$venv/bin/python" -m pip check
