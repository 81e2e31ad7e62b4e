#!/usr/bin/env bash
# The whole test suite: lint, unit tests, and end-to-end tests on a sandbox fleet
# of two Debian 12 hosts, one Debian 13 and one Debian 11 host (Postfix started by
# SysV scripts) and a Debian 12 and a Debian 13 host booted by systemd
# (tests/e2e/test_systemd.py), removed again afterwards (the base filesystems
# stay cached in /var/lib/pfs-sandbox/base).
#   scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
trap '.venv/bin/python sandbox/fleet.py down >/dev/null 2>&1 || true' EXIT
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python sandbox/fleet.py up bookworm=2 trixie=1 bullseye=1 systemd-bookworm=1 systemd-trixie=1
.venv/bin/python -m pytest -q "$@"
