# pfs_tls_check ADDR [fp]: one STARTTLS handshake per key type against ADDR:25 with
# the host's own openssl, printed for operations/verify.py to read:
#   @tls KIND
#   proto=TLSv1.3 / cipher=... / group=X25519 (empty: no ephemeral key exchange)
#   fp=SHA256 of the served certificate (with "fp"), then that certificate (public) in PEM
# Shared by the facts command (state before a run) and activate.sh (after it).
pfs_tls_check() {
    command -v openssl >/dev/null 2>&1 || { echo "@tls none"; echo "error=no openssl on the host"; return 0; }
    for kind in rsa ecdsa; do
        case $kind in
            rsa) sig="rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:RSA+SHA256:RSA+SHA384:RSA+SHA512" ;;
            ecdsa) sig="ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384:ecdsa_secp521r1_sha512" ;;
        esac
        out=$(echo QUIT | timeout 15 openssl s_client -starttls smtp -connect "$1:25" -sigalgs "$sig" 2>&1)
        echo "@tls $kind"
        printf '%s\n' "$out" | sed -n \
            -e 's/^New, \(TLSv[0-9.]*\), Cipher is \(.*\)$/proto=\1\ncipher=\2/p' \
            -e 's/^Server Temp Key: \([^,]*\).*/group=\1/p' \
            -e 's/^Peer Temp Key: \([^,]*\).*/group=\1/p' \
            -e 's/^Negotiated TLS1.3 group: \(.*\)$/group=\1/p'
        pem=$(printf '%s\n' "$out" | sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p')
        if [ -n "$pem" ] && [ "${2:-}" = fp ]; then   # activate.sh compares it on the host
            echo "fp=$(printf '%s\n' "$pem" | openssl x509 -noout -fingerprint -sha256 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')"
        fi
        if [ -n "$pem" ]; then printf '%s\n' "$pem"; fi
    done
}
