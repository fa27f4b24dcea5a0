#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs nginx, Prometheus (promtool),
# uv and the locked Python deps first, then ruff, mypy and pytest. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v promtool >/dev/null || missing+=(prometheus)
apt_install "${missing[@]}"
ensure_uv
uv sync --locked --quiet

echo "== ruff"
uv run ruff check .
uv run ruff format --check .
echo "== mypy"
uv run mypy components msops policies
echo "== pytest"
uv run pytest "$@"
