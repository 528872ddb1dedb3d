#!/usr/bin/env bash
# Set SeriesClassifier up on a fresh machine, in a virtual environment of its own, and run the demo:
#
#   scripts/setup.sh            # .venv: CPU torch, the engine + generator, then `seriesclassifier demo`
#   scripts/setup.sh --test     # the same with the test tools, then the test suite instead of the demo
#   scripts/setup.sh --test Testing/test_vocabulary.py   # … only these tests (arguments go to pytest)
#
# The CPU build of torch is installed first, on its own: asked for later, as one requirement among many,
# pip would take the default (CUDA, several GB) build to satisfy the range in requirements.txt.
# SERIESCLASSIFIER_VENV=DIR chooses the environment's folder (default: .venv in the checkout);
# SERIESCLASSIFIER_PYTHON the interpreter that makes it (default: python3, >= 3.9).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${SERIESCLASSIFIER_VENV:-$ROOT/.venv}
PYTHON=${SERIESCLASSIFIER_PYTHON:-python3}
TORCH=${SERIESCLASSIFIER_TORCH:-torch==2.13.0}
MODE=demo
case "${1:-}" in
  "") ;;
  --test) MODE=test; shift ;;
  -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
  *) echo "usage: scripts/setup.sh [--test [PYTEST_ARGS…]]" >&2; exit 2 ;;
esac
START=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" "$TORCH"
if [ "$MODE" = test ]; then
  "${PIP[@]}" -e ".[synth,dev]"
else
  "${PIP[@]}" -e ".[synth]"
fi
echo "installed into $VENV in $(( $(date +%s) - START )) s"
if [ "$MODE" = test ]; then
  (cd "$ROOT" && "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@")
else
  "$VENV/bin/seriesclassifier" demo
fi
echo "activate it with: source $VENV/bin/activate"
