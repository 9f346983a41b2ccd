#!/usr/bin/env bash
# Build one package's wheel, install it with sixlab-shared alone into a fresh virtual environment, run its CLI.
#   tools/build_wheel_alone.sh bnpo
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="${1:?usage: tools/build_wheel_alone.sh PACKAGE}"
[ -d "packages/$name" ] || { echo "error: no package '$name' under packages/" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
uv build --package sixlab-shared --wheel --out-dir "$work/dist" --quiet
uv build --package "$name" --wheel --out-dir "$work/dist" --quiet
uv export --frozen --all-packages --no-hashes --no-emit-workspace --no-dev --all-extras \
  --format requirements-txt > "$work/constraints.txt"
uv venv --quiet --python 3.11 "$work/venv"
uv pip install --quiet --python "$work/venv/bin/python" -c "$work/constraints.txt" "$work"/dist/*.whl
"$work/venv/bin/$name" --help
echo "installed alone:"; uv pip list --python "$work/venv/bin/python" | grep -iE "^($name|sixlab-shared|dgm-eval|direct-cms|fusemix|bnpo|eb-ensembles) "
