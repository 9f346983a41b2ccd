#!/usr/bin/env bash
# Run every benchmark script of one package (one JSON line per case on stdout).
#   tools/bench.sh dgm-eval
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="${1:?usage: tools/bench.sh PACKAGE}"
dir="packages/$name/benchmarks"
[ -d "$dir" ] || { echo "error: no benchmarks folder $dir" >&2; exit 2; }
shopt -s nullglob
scripts=("$dir"/bench_*.py)
[ ${#scripts[@]} -gt 0 ] || { echo "error: $dir has no bench_*.py yet" >&2; exit 2; }
for script in "${scripts[@]}"; do
  echo "# $script" >&2
  uv run --all-packages python "$script"
done
