#!/usr/bin/env bash
# Build one package's wheel, install it with sixlab-shared alone into a fresh virtual environment, run its CLI.
#   tools/build_wheel_alone.sh bnpo                    # third-party versions pinned to uv.lock (quick, cached)
#   tools/build_wheel_alone.sh bnpo --unconstrained    # resolved anew from the index, as `pip install` does for a
#                                                      # user; then `demo --fast` (catches ranges the lock hides)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="${1:?usage: tools/build_wheel_alone.sh PACKAGE [--unconstrained]}"
mode="${2:-}"
[ -d "packages/$name" ] || { echo "error: no package '$name' under packages/" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
uv build --package sixlab-shared --wheel --out-dir "$work/dist" --quiet
uv build --package "$name" --wheel --out-dir "$work/dist" --quiet
uv venv --quiet --python 3.11 "$work/venv"
if [ "$mode" = "--unconstrained" ]; then
  uv pip install --quiet --python "$work/venv/bin/python" "$work"/dist/*.whl
else
  uv export --frozen --all-packages --no-hashes --no-emit-workspace --no-dev --all-extras \
    --format requirements-txt > "$work/constraints.txt"
  uv pip install --quiet --python "$work/venv/bin/python" -c "$work/constraints.txt" "$work"/dist/*.whl
fi
"$work/venv/bin/$name" --help
if [ "$mode" = "--unconstrained" ]; then
  (cd "$work" && "$work/venv/bin/$name" demo --fast --threads 1 --out "$work/demo")
fi
echo "installed alone:"; uv pip list --python "$work/venv/bin/python" | grep -iE "^($name|sixlab-shared|dgm-eval|direct-cms|fusemix|bnpo|eb-ensembles) "
