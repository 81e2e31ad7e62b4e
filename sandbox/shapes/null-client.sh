#!/bin/sh
# A null client: Postfix sends mail but listens on loopback only. On a real host
# that is "inet_interfaces = loopback-only"; sandbox hosts share one network stack
# whose lo carries every host's 127.0.X.N address, and loopback-only would bind
# them all, so the sandbox's null client names its loopback address instead.
set -eu
postconf -e "inet_interfaces = 127.0.0.1" "mydestination ="
postfix stop >/dev/null 2>&1 || true
postfix start >/dev/null 2>&1
