#!/usr/bin/env bash
# The main job on the local sandbox: create hosts, then deploy TLS + PFS onto them.
#   scripts/demo.sh [SUITE=N ...]       default: bookworm=2 trixie=1
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ $# -gt 0 ] || set -- bookworm=2 trixie=1
.venv/bin/python sandbox/fleet.py up "$@"
.venv/bin/pyinfra inventories/sandbox.py deploy.py -y
echo
echo "Done. Look from outside: openssl s_client -starttls smtp -connect 127.0.2.1:25 -brief </dev/null"
echo "Remove the hosts: .venv/bin/python sandbox/fleet.py down"
