# TLS evidence on the host, with the host's own openssl against its own listeners.
# Shared by activate.sh (after a switch: judge, record, or roll back) and the
# verify operation of a run whose evidence is stale (operations/host_ops.py).
# Read by operations/verify.py. Nothing here runs while pyinfra only prepares.
#
#   pfs_verify CONF LISTENERS PROMISE PROFILE [KIND=SHA256 ...]
#     LISTENERS: space-separated NAME,HOST,PORT,MODE,CERT (MODE starttls|wrapper;
#                CERT yes: must serve the deployed certificates)
#     PROMISE:   refuse=P,P;fs=P,P;accept=P,P (verify.py: promise_spec)
#   Prints one line per handshake and one per distinct certificate:
#     @probe|LISTENER|PROBE|STATUS|PROTO|CIPHER|GROUP|FS|FP|DETAIL
#     @cert|FP|BASE64 DER (one line)
#   STATUS: accepted, refused, untestable (this openssl cannot offer it), error.
#   PROBE: rsa, ecdsa (best handshake per key type), tls1, tls1_1, tls1_2,
#   tls1_2-krsa (TLS 1.2 offering only RSA key exchange), tls1_2-cbc (TLS 1.2
#   offering only suites with a MAC, none with AEAD), tls1_3.
#   Judges them against PROMISE (problems on stderr as "policy: ..."), and when
#   the promise holds writes CONF/.pfs-evidence (root-only): digest, profile,
#   promise, time, and the lines above. Returns 1 when the promise does not hold.

PFS_PROBES="rsa ecdsa tls1 tls1_1 tls1_2 tls1_2-krsa tls1_2-cbc tls1_3"

# pfs_digest CONF [MAIL_VERSION RUN_VERSION [SERVED]]: sha256 of everything the evidence
# depends on: main.cf and master.cf, the key/certificate files main.cf serves
# (PFS_SERVED_PARAMS, expanded: asked unless given as SERVED, one value per line), the
# system OpenSSL configuration, and the Postfix and OpenSSL (library) versions (asked
# unless given: the facts command has them already).
PFS_SERVED_PARAMS="smtpd_tls_chain_files smtpd_tls_cert_file smtpd_tls_key_file smtpd_tls_eccert_file smtpd_tls_eckey_file smtpd_tls_dh1024_param_file"
pfs_digest() {
    if [ $# -ge 4 ]; then _served=$4 _mv=""
    else   # mail_version (-x, as the facts command asks it) in the same postconf run
        _served=$(postconf -c "$1" -xh mail_version $PFS_SERVED_PARAMS 2>/dev/null)
        _mv=${_served%%"
"*} _served=${_served#*"
"}
        [ -n "$_mv" ] || _mv=$(postconf -dh mail_version 2>/dev/null)
    fi
    _d=$(
        if [ $# -ge 3 ]; then echo "$2"; echo "$3"
        else echo "$_mv"; postconf -T run-version 2>/dev/null; fi
        IFS=" ,	
"   # values are lists: comma or white space between file names
        # shellcheck disable=SC2086
        sha256sum "$1/main.cf" "$1/master.cf" $_served /etc/ssl/openssl.cnf 2>/dev/null
    )
    _d=$(printf '%s\n' "$_d" | sha256sum)
    echo "${_d%% *}"
}

# pfs_client_opts: set PFS_CLIENT_OPTS, the s_client options every handshake adds (once
# per shell). The probes judge protocol, cipher, key exchange and the served certificate's
# fingerprint, never the chain's verification; yet s_client loads the default trust store
# at every start: Debian's ~140-certificate bundle, ~17 ms of CPU per handshake on OpenSSL
# 3.0 (6 ms without it), 8 handshakes per listener. -no-CAfile, -no-CApath (OpenSSL 1.1.0+)
# and -no-CAstore (3.0+) skip it, each only where this client lists it: an option it does
# not know would make every probe "untestable".
pfs_client_opts() {
    [ -z "${PFS_CLIENT_OPTS+set}" ] || return 0
    _help=$(openssl s_client -help 2>&1)
    PFS_CLIENT_OPTS=""
    for _opt in -no-CAfile -no-CApath -no-CAstore; do
        case $_help in *" $_opt "*) PFS_CLIENT_OPTS="$PFS_CLIENT_OPTS $_opt" ;; esac
    done
}

# pfs_cert_base64 < s_client output: the base64 of the first certificate block, one line
pfs_cert_base64() {
    awk '/-----END CERTIFICATE-----/ { exit } c { printf "%s", $0 } /-----BEGIN CERTIFICATE-----/ { c = 1 }'
}

# pfs_der_sha256 < base64 of a certificate: its SHA-256 fingerprint (lower-case hex), the
# sha256 of the DER. Not `openssl x509 -fingerprint`: on OpenSSL 3.0 that costs ~18 ms of
# CPU (its decoder set-up; 3 ms here), twice per listener.
pfs_der_sha256() {
    if command -v base64 >/dev/null 2>&1; then base64 -d 2>/dev/null
    else openssl base64 -d -A 2>/dev/null; fi | sha256sum | {
        read -r _h _rest
        echo "$_h"
    }
}

# pfs_probe LISTENER HOST PORT MODE PROBE: one handshake, one @probe line (+ @cert)
pfs_probe() {
    # TLS 1.3 accepted: a best-path client (it offers TLS 1.3 and below) that got TLS 1.3
    # already shows it, with FS; one handshake fewer. Otherwise a client offering only TLS 1.3.
    if [ "$5" = tls1_3 ] && [ -n "${_pfs_best13:-}" ]; then
        echo "@probe|$1|tls1_3|$_pfs_best13||shown by the best-path handshake"
        return 0
    fi
    case $5 in
        rsa) _o="-sigalgs rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:RSA+SHA256:RSA+SHA384:RSA+SHA512" ;;
        ecdsa) _o="-sigalgs ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384:ecdsa_secp521r1_sha512" ;;
        tls1) _o="-tls1 -cipher DEFAULT@SECLEVEL=0" ;;
        tls1_1) _o="-tls1_1 -cipher DEFAULT@SECLEVEL=0" ;;
        tls1_2) _o="-tls1_2 -cipher DEFAULT@SECLEVEL=0" ;;
        tls1_2-krsa) _o="-tls1_2 -cipher kRSA:@SECLEVEL=0" ;;
        tls1_2-cbc) _o="-tls1_2 -cipher SHA1:SHA256:SHA384:@SECLEVEL=0" ;;   # no AEAD suite
        tls1_3) _o="-tls1_3" ;;
    esac
    case $2 in *:*) _c="[$2]:$3" ;; *) _c="$2:$3" ;; esac
    [ "$4" = wrapper ] || _o="-starttls smtp $_o"
    # shellcheck disable=SC2086
    _out=$(echo QUIT | timeout 15 openssl s_client -connect "$_c" $_o ${PFS_CLIENT_OPTS:-} 2>&1)
    # one pass over the client's output: status|proto|cipher|group|fs|detail
    _r=$(printf '%s\n' "$_out" | awk '
        /no protocols available|nknown option|no cipher match|SSL_CONF_cmd|Error setting cipher/ {
            if (unt == "" && match($0, /no protocols available|nknown option[^|]*|no cipher match|Error setting cipher/))
                unt = substr($0, RSTART, RLENGTH)
            if (unt == "") unt = "client cannot offer it"
        }
        /^CONNECTED\(/ { conn = 1 }
        /find STARTTLS/ { nostarttls = 1 }
        /^New, / && cipher == "" {
            c = $0; sub(/^New, [^,]*, Cipher is /, "", c); cipher = c
            n = $0; sub(/^New, /, "", n); sub(/,.*/, "", n); newproto = n
        }
        /^ *Protocol *:/ && proto == "" { p = $0; sub(/^ *Protocol *: */, "", p); split(p, f, " "); proto = f[1] }
        /^(Server|Peer) Temp Key: / && group == "" { g = $0; sub(/^[A-Za-z]+ Temp Key: /, "", g); sub(/,.*/, "", g); group = g }
        /^Negotiated TLS1.3 group: / && group == "" { g = $0; sub(/^Negotiated TLS1.3 group: /, "", g); if (g != "<NULL>") group = g }
        alert == "" && match($0, /alert [a-z ]+|wrong version number|handshake failure/) { alert = substr($0, RSTART, RLENGTH) }
        NF { last = $0 }
        END {
            gsub(/\|/, "", last)
            if (unt != "") { print "untestable|||||" unt; exit }
            if (!conn) { print "error|||||" substr(last, 1, 120); exit }
            if (nostarttls) { print "error|||||STARTTLS not offered"; exit }
            if (cipher == "" || cipher == "(NONE)") { print "refused|||||" alert; exit }
            if (proto == "") proto = newproto   # no session block printed (TLS 1.3 tickets)
            fs = (proto == "TLSv1.3" || group != "") ? "yes" : "no"
            print "accepted|" proto "|" cipher "|" group "|" fs "|"
        }')
    _fp=""
    case "$5|$_r" in
        rsa\|accepted\|TLSv1.3\|*|ecdsa\|accepted\|TLSv1.3\|*)
            [ -n "${_pfs_best13:-}" ] || _pfs_best13="${_r%|*|*}|yes" ;;   # accepted|proto|cipher|group
    esac
    case "$5|$_r" in
        rsa\|accepted*|ecdsa\|accepted*)   # the served certificate: fingerprint, once per run
            _b64=$(printf '%s\n' "$_out" | pfs_cert_base64)
            if [ -n "$_b64" ]; then
                _fp=$(printf '%s' "$_b64" | pfs_der_sha256)
                case " $_pfs_seen " in *" $_fp "*) ;; *)
                    _pfs_seen="$_pfs_seen $_fp"
                    echo "@cert|$_fp|$_b64" ;;
                esac
            fi ;;
    esac
    # @probe|LISTENER|PROBE|STATUS|PROTO|CIPHER|GROUP|FS|FP|DETAIL
    # (_r: STATUS|PROTO|CIPHER|GROUP|FS|DETAIL, no "|" inside a field)
    echo "@probe|$1|$5|${_r%|*}|$_fp|${_r##*|}"
}

# pfs_judge PROMISE [KIND=SHA256 ...] < probe lines: the promise, on stderr; 1 if broken
pfs_judge() {
    _spec=$1; shift
    awk -F'|' -v spec="$_spec" -v want="$*" '
        BEGIN {
            n = split(spec, parts, ";")
            for (i = 1; i <= n; i++) { split(parts[i], kv, "="); list[kv[1]] = "," kv[2] "," }
            naccept = split(substr(list["accept"], 2, length(list["accept"]) - 2), acc, ",")
            m = split(want, pairs, " ")
            for (i = 1; i <= m; i++) { split(pairs[i], kv, "="); if (kv[2] != "") expect[kv[1]] = kv[2] }
        }
        function has(name, p) { return index(list[name], "," p ",") > 0 }
        $1 == "@listener" { cert[$2] = $3; seen[$2] = 1 }
        $1 == "@probe" {
            L = $2; P = $3; S = $4; seen[L] = 1; st[L, P] = S; fp[L, P] = $9
            if ((P == "rsa" || P == "ecdsa") && S == "accepted") served[L] = served[L] " " $9 " "
            if (S == "accepted" && has("refuse", P)) bad = bad L ": accepts " P " (the profile refuses it)\n"
            if (S == "accepted" && has("fs", P) && $8 != "yes") bad = bad L ": " P " " $5 " " $6 " has no forward secrecy\n"
            if (S == "error" && has("refuse", P)) bad = bad L ": " P " could not be probed: " $10 "\n"
        }
        END {
            for (L in seen) {
                if (st[L, "rsa"] != "accepted" && st[L, "ecdsa"] != "accepted") {
                    bad = bad L ": no TLS handshake succeeded\n"; continue
                }
                ok = (naccept == 0); testable = 0
                for (i = 1; i <= naccept; i++) {
                    if (st[L, acc[i]] == "accepted") ok = 1
                    if (st[L, acc[i]] != "untestable") testable = 1
                }
                if (!ok && testable) bad = bad L ": accepts none of " substr(list["accept"], 2, length(list["accept"]) - 2) "\n"
                if (cert[L] != "yes") continue
                for (k in expect) {
                    if (st[L, k] != "accepted") bad = bad L ": the deployed " k " certificate is not served\n"
                    else if (fp[L, k] != expect[k] && index(served[L], " " expect[k] " ") == 0)
                        bad = bad L ": " k " serves " substr(fp[L, k], 1, 16) ", not the deployed " substr(expect[k], 1, 16) "\n"
                }
            }
            if (bad != "") { printf "%s", bad > "/dev/stderr"; exit 1 }
        }'
}

pfs_verify() {
    _conf=$1 _listeners=$2 _promise=$3 _profile=$4
    shift 4
    command -v openssl >/dev/null 2>&1 || { echo "policy: no openssl on the host: nothing can be proven" >&2; return 1; }
    _pfs_seen="" _now=$(date +%s)
    pfs_client_opts
    _res=$(echo "time=$_now"; for _l in $_listeners; do
        IFS=, read -r _n _h _p _m _crt <<EOF
$_l
EOF
        echo "@listener|$_n|$_crt|$_h|$_p|$_m"
        _pfs_best13=""
        for _probe in $PFS_PROBES; do pfs_probe "$_n" "$_h" "$_p" "$_m" "$_probe"; done
    done)
    printf '%s\n' "$_res"
    _problems=$(printf '%s\n' "$_res" | pfs_judge "$_promise" "$@" 2>&1) || {
        printf '%s\n' "$_problems" | sed 's/^/policy: /' >&2
        return 1
    }
    [ -z "${PFS_NO_RECORD:-}" ] || return 0   # deploys/check.py: change nothing on the host
    (
        umask 077
        {
            echo "digest=$(pfs_digest "$_conf")"
            echo "profile=$_profile"
            echo "promise=$_promise"
            printf '%s\n' "$_res"
        } > "$_conf/.pfs-evidence.new" && mv -f "$_conf/.pfs-evidence.new" "$_conf/.pfs-evidence"
    )
}
