#!/usr/bin/env bash
# Packaging check (`make package-check`, part of `make test`):
#   1. build the sdist, then the wheel from that sdist (python -m build), and `twine check` both;
#   2. install the wheel (not the source tree) into a fresh venv: CPU torch first, then the
#      wheel with constraints.txt, no extras;
#   3. run the README's demo (train, predict, evaluate) with that venv's `deepchem-actinn` in an
#      empty folder, on the data the wheel carries (deepchem_actinn.sample_data), and require
#      the accuracy `make demo` gets.
# Everything is built and installed under one temporary folder, removed on exit; nothing is
# left in the tree (no dist/ or build/). Environment: BUILD_PYTHON (has build and twine: the
# dev venv's python), PYTHON (the interpreter the fresh venv is made from), TORCH (the torch
# requirement installed first, as the Makefile does).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_PYTHON=${BUILD_PYTHON:-.venv/bin/python}
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0}
PIP_FLAGS=(-q --disable-pip-version-check --no-compile)  # no .pyc for all of torch: faster

say() { printf 'package-check: %s\n' "$*"; }
clock() { date +%s; }
start=$(clock)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/deepchem_actinn-package-check.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
LOG=$TMP/log
# Show what a failing step printed, then fail.
run() { if ! "$@" >"$LOG" 2>&1; then cat "$LOG"; say "FAILED: $*"; exit 1; fi; }

# 1. sdist, then the wheel built from the unpacked sdist (so the sdist must be complete).
run "$BUILD_PYTHON" -m build --outdir "$TMP/dist" "$ROOT"
sdist=$(ls "$TMP"/dist/deepchem_actinn-*.tar.gz)
wheel=$(ls "$TMP"/dist/deepchem_actinn-*.whl)
run "$BUILD_PYTHON" -m twine check --strict "$sdist" "$wheel"
say "built and twine-checked $(basename "$sdist") and $(basename "$wheel") ($(($(clock) - start)) s)"

# 2. A fresh venv with the wheel alone (no editable install, no extras).
step=$(clock)
"$PYTHON" -m venv "$TMP/venv"
VPY=$TMP/venv/bin/python
run "$VPY" -m pip install "${PIP_FLAGS[@]}" "$TORCH" -c "$ROOT/constraints.txt"
run "$VPY" -m pip install "${PIP_FLAGS[@]}" -c "$ROOT/constraints.txt" "$wheel"
run "$VPY" -m pip check
say "installed the wheel into a fresh venv ($(($(clock) - step)) s)"

# 3. The demo, outside the source tree: an empty folder, no PYTHONPATH, no user site, and an
# empty cache folder that must stay unused (the data must come from the installed package).
step=$(clock)
mkdir "$TMP/run"
cd "$TMP/run"
unset PYTHONPATH
export PYTHONNOUSERSITE=1 DEEPCHEM_ACTINN_CACHE=$TMP/cache
site=$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
installed=$("$VPY" -c 'import deepchem_actinn, os; print(os.path.dirname(deepchem_actinn.__file__))')
if [ "$installed" != "$site/deepchem_actinn" ]; then
    say "FAILED: deepchem_actinn imported from $installed, not from the fresh venv ($site)"
    exit 1
fi
mapfile -t files < <("$VPY" -c '
from deepchem_actinn.sample_data import tutorial_files
print(*tutorial_files(), sep="\n")')
train_counts=${files[0]} train_labels=${files[1]} test_counts=${files[2]} test_labels=${files[3]}
for path in "${files[@]}"; do
    case $path in
        "$site"/deepchem_actinn/bundled/*) ;;
        *) say "FAILED: $path is not a file the wheel installed"; exit 1 ;;
    esac
done
CLI=$TMP/venv/bin/deepchem-actinn
run "$CLI" --version
version=$(cat "$LOG")
run "$CLI" train --train-set "$train_counts" --train-labels "$train_labels" --model-dir tm_model
run "$CLI" predict --model-dir tm_model --test-set "$test_counts" --output test_predictions.tsv
run "$CLI" evaluate --predictions test_predictions.tsv --labels "$test_labels"
accuracy=$(awk -F'\t' '$1 == "accuracy" {print $2}' "$LOG")
if [ -z "$accuracy" ] || ! awk -v a="$accuracy" 'BEGIN {exit !(a >= 0.95)}'; then
    cat "$LOG"
    say "FAILED: demo accuracy '$accuracy' (expected at least 0.95, as make demo)"
    exit 1
fi
if [ -e "$DEEPCHEM_ACTINN_CACHE" ]; then
    say "FAILED: the demo used the download cache; the wheel lacks its bundled data"
    exit 1
fi
say "$version from the wheel: demo accuracy $accuracy ($(($(clock) - step)) s)"
say "passed in $(($(clock) - start)) s"
