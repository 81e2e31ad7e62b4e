"""TLS profiles named for what they are (issue 21), judged by sslyze on Debian 11, 12, 13.

mozilla-intermediate must accept exactly Mozilla's intermediate TLS 1.2 suites (and TLS
1.3); fs-only (also under its old name `intermediate`) no suite without forward secrecy.
The accepted TLS 1.2 suites per profile and host are written to PFS_MEASURE_OUT (if set)
for the README's policy table.
"""

from __future__ import annotations

import json
import os

import pytest
from sslyze import (
    ProtocolWithOpportunisticTlsEnum,
    ScanCommand,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
)

from tests.e2e.conftest import deploy, reset
from tests.e2e.scan import accepted_suites

MOZILLA_TLS12 = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}
MEASURED: dict[str, dict[str, list[str]]] = {}


@pytest.fixture(scope="module")
def fleet(hosts):
    suites = {h.suite for h in hosts}
    missing = {"bullseye", "bookworm", "trixie"} - suites
    if missing:
        pytest.fail(f"the fleet needs Debian 11, 12 and 13 hosts (missing: {sorted(missing)})")
    reset()
    yield hosts
    if out := os.environ.get("PFS_MEASURE_OUT"):
        with open(out, "w") as f:
            json.dump(MEASURED, f, indent=1, sort_keys=True)


def key_exchange(address: str, name: str) -> list[str]:
    """The distinct TLS 1.2 ephemeral keys (type and size) sslyze saw, for the README."""
    location = ServerNetworkLocation(hostname=name, port=25, ip_address=address)
    config = ServerNetworkConfiguration(
        tls_server_name_indication=name,
        tls_opportunistic_encryption=ProtocolWithOpportunisticTlsEnum.SMTP,
    )
    scanner = Scanner()
    command = ScanCommand.TLS_1_2_CIPHER_SUITES
    scanner.queue_scans(
        [
            ServerScanRequest(
                server_location=location, scan_commands={command}, network_configuration=config
            )
        ]
    )
    (result,) = list(scanner.get_results())
    accepted = result.scan_result.tls_1_2_cipher_suites.result.accepted_cipher_suites
    keys = {(s.ephemeral_key.type_name, s.ephemeral_key.size) for s in accepted if s.ephemeral_key}
    return [f"{kind} {size}" for kind, size in sorted(keys)]


def scan(hosts, profile):
    out = []
    for h in hosts:
        suites = accepted_suites(h.address, h.fqdn)
        host = MEASURED.setdefault(profile, {}).setdefault(f"{h.name} ({h.suite})", {})
        host["TLSv1.2"] = [s for s, _ in suites["TLSv1.2"]]
        host["TLSv1.3"] = [s for s, _ in suites["TLSv1.3"]]
        if os.environ.get("PFS_MEASURE_OUT"):
            host["key_exchange"] = key_exchange(h.address, h.fqdn)
        out.append((h, suites))
    return out


def test_mozilla_intermediate_accepts_exactly_mozillas_tls12_suites(fleet, store):
    run = deploy(store=store, extra_data={"tls_profile": "mozilla-intermediate"})
    assert run.returncode == 0, run.output[-3000:]
    assert "deprecated" not in run.output
    for h, suites in scan(fleet, "mozilla-intermediate"):
        for proto in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
            assert suites[proto] == [], f"{h.name} accepts {proto}"
        assert {s for s, _ in suites["TLSv1.2"]} == MOZILLA_TLS12, h.name
        assert suites["TLSv1.3"], f"{h.name}: no TLS 1.3"
        # the on-host proof refused a TLS 1.2 client offering only non-AEAD suites
        evidence = h.ssh("cat /etc/postfix/.pfs-evidence").stdout
        assert "|tls1_2-cbc|refused|" in evidence, f"{h.name}: {evidence[-800:]}"
        assert h.ssh("postconf -n >/dev/null").stderr == "", h.name


def test_fs_only_by_its_old_name_accepts_no_suite_without_fs(fleet, store):
    run = deploy(store=store, extra_data={"tls_profile": "intermediate"})
    assert run.returncode == 0, run.output[-3000:]
    # the summary names the deprecated name and what to write instead
    assert "the tls_profile name 'intermediate' is deprecated: it means 'fs-only'" in run.output
    for h, suites in scan(fleet, "fs-only"):
        for proto in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
            assert suites[proto] == [], f"{h.name} accepts {proto}"
        assert suites["TLSv1.2"] and suites["TLSv1.3"], h.name
        no_fs = [s for p in suites for s, fs in suites[p] if not fs]
        assert no_fs == [], f"{h.name} accepts suites without forward secrecy: {no_fs}"


def test_postfix_defaults_measured(fleet, store):
    """Not a promise: the measurement behind the README's trade-off row."""
    run = deploy(store=store, extra_data={"tls_profile": "postfix-defaults"})
    assert run.returncode == 0, run.output[-3000:]
    for h, suites in scan(fleet, "postfix-defaults"):
        assert suites["TLSv1.2"], h.name
