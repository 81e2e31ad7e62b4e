"""sslyze, an independent TLS scanner, against a sandbox host's listeners (STARTTLS or smtps)."""

from __future__ import annotations

from sslyze import (
    ProtocolWithOpportunisticTlsEnum,
    ScanCommand,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
)

PROTOCOLS = {
    "SSLv2": ScanCommand.SSL_2_0_CIPHER_SUITES,
    "SSLv3": ScanCommand.SSL_3_0_CIPHER_SUITES,
    "TLSv1.0": ScanCommand.TLS_1_0_CIPHER_SUITES,
    "TLSv1.1": ScanCommand.TLS_1_1_CIPHER_SUITES,
    "TLSv1.2": ScanCommand.TLS_1_2_CIPHER_SUITES,
    "TLSv1.3": ScanCommand.TLS_1_3_CIPHER_SUITES,
}


def accepted_suites(
    address: str, name: str, port: int = 25, starttls: bool = True
) -> dict[str, list[tuple[str, bool]]]:
    """protocol -> [(suite name, forward secret?)] of every suite the server accepts
    (STARTTLS, or TLS from the first byte for smtps with starttls=False)."""
    location = ServerNetworkLocation(hostname=name, port=port, ip_address=address)
    config = ServerNetworkConfiguration(
        tls_server_name_indication=name,
        tls_opportunistic_encryption=ProtocolWithOpportunisticTlsEnum.SMTP if starttls else None,
    )
    scanner = Scanner()
    scanner.queue_scans(
        [
            ServerScanRequest(
                server_location=location,
                network_configuration=config,
                scan_commands=set(PROTOCOLS.values()),
            )
        ]
    )
    (result,) = list(scanner.get_results())
    assert result.scan_result is not None, result.connectivity_error_trace
    out = {}
    for proto, command in PROTOCOLS.items():
        attempt = getattr(result.scan_result, command.value)
        assert attempt.result is not None, f"{name} {proto}: {attempt.error_trace}"
        out[proto] = [
            (s.cipher_suite.name, s.ephemeral_key is not None)
            for s in attempt.result.accepted_cipher_suites
        ]
    return out
