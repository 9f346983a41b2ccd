#!/usr/bin/env bash
# Run one member's tests in an environment holding that member alone (what the per-package CI job does).
#   tools/test_package.sh bnpo [pytest args...]      (member: sixlab-shared or a folder name under packages/)
# Catches a member importing a dependency that only another member declares.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
name="${1:?usage: tools/test_package.sh MEMBER [pytest args...]}"; shift
if [ "$name" = "sixlab-shared" ]; then path=shared; else path="packages/$name"; fi
[ -d "$path" ] || { echo "error: no workspace member '$name'" >&2; exit 2; }
export UV_PROJECT_ENVIRONMENT=".venv-$name"
uv sync --locked --package "$name"
uv run --no-sync --package "$name" pytest "$path" "$@"
