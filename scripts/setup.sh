#!/usr/bin/env bash
# Install what the deploy, the sandbox fleet and the tests need (idempotent).
# Debian/Ubuntu, as root. Python packages go to .venv in the project.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "setup: run as root (the sandbox mounts filesystems)" >&2; exit 1; }

need=()
# pebble: the ACME test CA (and pebble-challtestsrv, its DNS) that tests/e2e/test_acme.py runs
# knot (authoritative, signed zone, RFC 2136 with TSIG) and unbound (validating resolver):
# the DNS that tests/e2e/test_dane.py runs
for cmd_pkg in debootstrap:debootstrap tini:tini ip:iproute2 ssh:openssh-client ssh-keygen:openssh-client openssl:openssl strace:strace pebble:pebble pebble-challtestsrv:pebble knotd:knot knotc:knot unbound:unbound; do
    command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || need+=("${cmd_pkg#*:}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# systemd-nspawn boots the sandbox's systemd hosts (fleet.py up systemd-bookworm=1).
# Without its recommends: libnss-mymachines would add itself to /etc/nsswitch.conf.
lean=()
command -v systemd-nspawn >/dev/null 2>&1 || lean+=(systemd-container)
if [ ${#need[@]} -gt 0 ] || [ ${#lean[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]} ${lean[*]}"
    apt-get update -qq
    [ ${#need[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    [ ${#lean[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${lean[@]}" >/dev/null
fi

if [ ! -x .venv/bin/pyinfra ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    touch .venv/.installed
fi
