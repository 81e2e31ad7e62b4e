#!/bin/sh
# Host side of the activation: check the staged config with Postfix itself,
# back up, switch files in by rename, reload/restart through the host's init,
# prove the TLS profile's promise on every listener, and roll back to the
# backup if any step fails.
#
#   sh activate.sh STAGE CONF ACTION CTL LISTENERS PROMISE PROFILE [KIND=SHA256 ...]
#
# STAGE/manifest lines (operations/host_ops.py: manifest): "put|PATH|MODE|" (file
# at STAGE/files/PATH), "map|PATH|MODE|postmap:TYPE" (a table source, compiled in
# the stage; its compiled file follows as a put line), "key|PATH|MODE|SRC|SHA256"
# (a key on the host copied before the staged file) or "rm|PATH||".
# pipeline.py runs it with setsid, so a dropped SSH connection cannot stop it
# half-way: it either completes or restores the previous files.
# ACTION: none | reload | restart | start.  CTL: the host's init command with %s
# for the action, e.g. "systemctl %s postfix" (operations/plan.py: INIT_COMMANDS).
# LISTENERS empty: no TLS check (reload stage on a host without an active tlsmgr).
# LISTENERS, PROMISE, PROFILE: see pfs_verify in tls_check.sh (defined before this runs).
set -u
STAGE=$1 CONF=$2 ACTION=$3 CTL=$4 LISTENERS=$5 PROMISE=$6 PROFILE=$7
shift 7   # the rest: KIND=FINGERPRINT of each certificate the new config must serve
FIRST=${LISTENERS%% *}   # NAME,HOST,PORT,MODE,CERT: waited for after a reload
PROBE=$(echo "$FIRST" | cut -d, -f2) PORT=$(echo "$FIRST" | cut -d, -f3)
case $PROBE in *:*) CONNECT="[$PROBE]:$PORT" ;; *) CONNECT="$PROBE:$PORT" ;; esac
STARTTLS="-starttls smtp"; [ "$(echo "$FIRST" | cut -d, -f4)" = wrapper ] && STARTTLS=""
LOCK="$CONF/.pfs-lock"   # and $LOCK.flock
BACKUPS="$CONF/.pfs-backup"
KEEP=5
umask 077

RESTORE_FAILED=""
NL="
"
say() { echo "postfix-pfs: $*"; }
die() { echo "postfix-pfs: FAILED: $*${RESTORE_FAILED:+; RESTORE FAILED:$RESTORE_FAILED}" >&2; exit 1; }

# One deploy per host at a time (pfs_lock: operations/lock.sh): wait up to
# PFS_LOCK_WAIT seconds for another run to finish; a dead run's lock is no obstacle.
trap 'rm -rf "$STAGE" "$STAGE-up"' EXIT
pfs_lock "$LOCK" "${PFS_LOCK_WAIT:-120}"
trap 'pfs_unlock; rm -rf "$STAGE" "$STAGE-up"' EXIT

postfix_ctl() { # $1: start|stop|reload|restart, through the host's init
    # 9>&-: a daemon started here must not inherit (and so hold) the deploy lock
    if [ "$CTL" = "postfix %s" ] && [ "$1" = restart ]; then postfix stop 9>&-; postfix start 9>&-; return; fi
    # shellcheck disable=SC2059
    $(printf "$CTL" "$1") 9>&-
}

running() { postfix status >/dev/null 2>&1; }

# Postfix reads main.cf again every 0.3 s until its mtime is 2 s old (a guard against
# reading a file an editor is still writing): every postconf, postfix check and the
# reload itself would wait up to 2 s for a main.cf written just now. Ours is complete
# (written in full, switched by rename), so its mtime is set 2 s back; where touch
# cannot, Postfix just waits as before.
settle() { # FILE...
    _t=$(( $(date +%s) - 2 ))
    touch -m -d "@$_t" "$@" 2>/dev/null || true
}

probe() { # TLS on the host's first listener; retries while master binds, 30 s at most
    command -v openssl >/dev/null 2>&1 || return 0
    [ -n "$FIRST" ] || return 0
    pfs_client_opts   # no trust store: this handshake only waits for the listener
    i=0 _until=$(( $(date +%s) + 30 ))
    while [ $i -lt 20 ] && [ "$(date +%s)" -lt "$_until" ]; do
        # shellcheck disable=SC2086
        out=$(echo QUIT | timeout 10 openssl s_client $STARTTLS -connect "$CONNECT" -brief $PFS_CLIENT_OPTS 2>&1)
        case "$out" in *"CONNECTION ESTABLISHED"*) return 0 ;; esac
        i=$((i + 1)); sleep 0.5
    done
    echo "$out" | tail -n 3 >&2
    return 1
}

# postconf -n warnings, judged by what this run changes: one the live configuration
# already has, in a file this run does not write (the tlsmgr and reload stages
# leave main.cf alone), is reported and not fatal; any other is printed "FATAL ...".
judge_warnings() { # $1: the check directory (staged main.cf + master.cf)
    staged=$(postconf -c "$1" -n 2>&1 >/dev/null | sed 's/^.*postconf: warning: //')
    [ -n "$staged" ] || return 0   # nothing to judge: the live configuration's are not asked
    live=$(postconf -c "$CONF" -n 2>&1 >/dev/null | sed 's/^.*postconf: warning: //')
    printf '%s\n' "$staged" |
    while IFS= read -r w; do
        rest=${w#"$1/"}
        [ "$rest" = "$w" ] || w="$CONF/$rest"   # name the live file, not the check copy
        file=${rest%%:*}
        if printf '%s\n' "$live" | grep -qxF -- "$w" && [ ! -f "$STAGE/files$CONF/$file" ]; then
            say "pre-existing warning (reported, not fatal: this run does not write $CONF/$file): $w"
        else
            echo "FATAL $w"
        fi
    done
}

# Where Postfix lives and who owns it: the parameters `postfix check` judges the
# installation by (directories, owners, queue layout, the postlog service).
# maillog_file first: staged_check reads its value from the first line of the answer.
INSTALL_PARAMS="maillog_file queue_directory daemon_directory command_directory data_directory
meta_directory shlib_directory mail_owner setgid_group sendmail_path newaliases_path mailq_path
hash_queue_names hash_queue_depth enable_long_queue_ids"
RUNNING_SEEN=""   # staged_check saw Postfix running (postfix -c STAGE status)

# Postfix judges the staged configuration with `postfix check` (0.3 s of CPU: it walks
# the queue and the installation with find, cmp and post-install), except when all of
# this holds: the staged main.cf moves none of INSTALL_PARAMS (so the installation
# checks would judge what runs now, which this run does not touch, and most of them only
# warn); the postfix command accepts it (mail_params_init judges every global parameter:
# numbers, times, booleans, mail_owner, setgid_group, ...) and finds Postfix running
# (`status`); and check-fatal's one test of the configuration holds: the postlog
# service in master.cf when maillog_file is set. Any doubt: the full check.
# (A first line that is a warning, not maillog_file's value, counts as set: the postlog
# test then decides, at worst for the full check.)
staged_check() { # $1: the check directory
    _install=$(postconf -c "$1" -xh $INSTALL_PARAMS 2>&1)
    if [ "$_install" = "$(postconf -c "$CONF" -xh $INSTALL_PARAMS 2>&1)" ] \
        && postfix -c "$1" status >/dev/null 2>&1 \
        && { [ -z "${_install%%"$NL"*}" ] \
            || postconf -c "$1" -M postlog/unix-dgram 2>/dev/null | grep -q .; }; then
        RUNNING_SEEN=yes   # status found it running: step 4 need not ask again
        return 0
    fi
    out=$(postfix -c "$1" check 2>&1) || die "postfix check rejects the new configuration: $out"
}

# What a table change does, by key (first word; "#" comments and continuations skipped).
table_delta() { # $1: the live source, $2: the staged one
    awk '/^[^#[:space:]]/ { if (FILENAME == ARGV[1]) { old[$1] = $0; next }
             if (!($1 in old)) a++; else if (old[$1] != $0) c++; seen[$1] = 1 }
         END { for (k in old) if (!(k in seen)) r++
               printf "%d added, %d removed, %d changed\n", a, r, c }' "$1" "$2"
}

# 0. Compile staged lookup tables (postmap/postalias with the host's database type).
while IFS='|' read -r op path mode cmd; do
    [ "$op" = map ] || continue
    [ -f "$path" ] && say "table $path: $(table_delta "$path" "$STAGE/files$path")"
    out=$(${cmd%%:*} "${cmd#*:}:$STAGE/files$path" 2>&1) || die "${cmd%%:*} $path failed: $out"
done < "$STAGE/manifest"

# 0b. Keys found on the host (tls_cert_globs) are copied, never used in place: the
#     key (re-encoded by openssl, nothing else of the file) goes before the staged
#     public part, root-only; it must still be the key the plan judged.
while IFS='|' read -r op path mode cmd; do
    [ "$op" = key ] || continue
    src=${cmd%%|*} want=${cmd#*|} staged="$STAGE/files$path"
    { [ -f "$src" ] && [ ! -L "$src" ]; } || die "the key $src is gone or not a plain file; nothing was changed"
    timeout 20 openssl pkey -in "$src" -passin pass: -out "$staged.key" 2>/dev/null \
        || die "cannot read the key $src; nothing was changed"
    got=$(openssl pkey -in "$staged.key" -pubout -outform DER 2>/dev/null | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "the key in $src changed since the plan; nothing was changed"
    { cat "$staged.key" "$staged" > "$staged.new" && mv -f "$staged.new" "$staged" && rm -f "$staged.key"; } \
        || die "could not copy the key $src into the stage (disk full?); nothing was changed"
done < "$STAGE/manifest"

# 1. Postfix judges the staged configuration before anything is switched.
CHECK="$STAGE/check"
mkdir -p "$CHECK"
for f in main.cf master.cf; do
    if [ -f "$STAGE/files$CONF/$f" ]; then cp "$STAGE/files$CONF/$f" "$CHECK/$f"
    else cp "$CONF/$f" "$CHECK/$f"; fi
done
settle "$CHECK/main.cf"
# (a password in a parameter value is not repeated: operations/masking.py does the same)
judged=$(judge_warnings "$CHECK" | sed -E 's/(passw[A-Za-z0-9_]*) *=.*/\1=<hidden>/')
if [ -n "$judged" ]; then
    printf '%s\n' "$judged" | grep -v '^FATAL ' | grep . || true
    fatal=$(printf '%s\n' "$judged" | sed -n 's/^FATAL //p')
    [ -z "$fatal" ] || die "postconf -n warns about the new configuration (introduced by this run, fatal): $fatal"
fi
staged_check "$CHECK"
# every indexed lookup table the new main.cf names must exist and be readable
# (caches that Postfix creates itself are not lookup tables)
for map in $(postconf -c "$CHECK" -xn 2>/dev/null | grep -vE '_cache_(database|map) =|_verify_map =' \
        | grep -oE '(hash|btree|lmdb|cdb|dbm|sdbm):[^ ,]+' | sort -u); do
    mpath=${map#*:}   # a table this run brings is checked in the stage
    [ -f "$STAGE/files$mpath" ] && map="${map%%:*}:$STAGE/files$mpath"
    err=$(postmap -c "$CHECK" -q postfix-pfs-probe "$map" 2>&1 >/dev/null)
    case "$err" in *fatal*|*rror*) die "lookup table $map cannot be read: $err" ;; esac
done

# 2. Backup of every file about to change (kept: last $KEEP), each copy checked
#    against the original; with its sha256, so a restore can prove itself.
BK="$BACKUPS/$(date +%Y%m%dT%H%M%S)-$$"
backup_failed() { rm -rf "$BK"; die "backup of $1 to $BK failed (disk full?); nothing was changed"; }
{ mkdir -p "$BK/files" && : > "$BK/absent" && : > "$BK/sha256"; } || backup_failed "$BACKUPS"
while IFS='|' read -r op path mode cmd; do
    if [ -e "$path" ]; then
        { mkdir -p "$BK/files$(dirname "$path")" && cp -p "$path" "$BK/files$path" \
            && cmp -s "$path" "$BK/files$path" \
            && echo "$(sha256sum < "$path" | cut -d' ' -f1) $path" >> "$BK/sha256"; } \
            || backup_failed "$path"
    else
        echo "$path" >> "$BK/absent" || backup_failed "$path"
    fi
done < "$STAGE/manifest"

# the previous files back, each one proven by its sha256; loud if not. $1: restart when
# the new configuration ran (its daemons may have died: Postfix's master then throttles
# the service for a minute, which a reload does not end), else reload
restore() {
    say "restoring the previous configuration from $BK"
    while IFS='|' read -r op path mode cmd; do
        [ -e "$BK/files$path" ] || continue
        want=$(awk -v p="$path" '$2 == p {print $1; exit}' "$BK/sha256")
        if ! { cp -p "$BK/files$path" "$path.pfs-old" && mv -f "$path.pfs-old" "$path"; }; then
            rm -f "$path.pfs-old"
            RESTORE_FAILED="$RESTORE_FAILED $path could not be written back;"
        elif [ "$(sha256sum < "$path" | cut -d' ' -f1)" != "$want" ]; then
            RESTORE_FAILED="$RESTORE_FAILED $path differs from the file backed up;"
        fi
    done < "$STAGE/manifest"
    while read -r path; do
        rm -f "$path"
        [ ! -e "$path" ] || RESTORE_FAILED="$RESTORE_FAILED $path (new) could not be removed;"
    done < "$BK/absent"
    if [ -n "$RESTORE_FAILED" ]; then
        echo "postfix-pfs: RESTORE FAILED:$RESTORE_FAILED the backup is in $BK; check this host by hand" >&2
    fi
    if running; then postfix_ctl "${1:-reload}" >/dev/null 2>&1 || postfix reload >/dev/null 2>&1
    else postfix_ctl start >/dev/null 2>&1 || postfix start >/dev/null 2>&1 9>&-; fi
    running || postfix start >/dev/null 2>&1 9>&-
}

# 3. Switch: material first, main.cf last; each file by rename, never half-written.
while IFS='|' read -r op path mode cmd; do
    [ "$op" = put ] || [ "$op" = map ] || [ "$op" = key ] || continue
    # a new directory: root-only if it is made for a secret (keys), else readable
    dir=$(dirname "$path")
    if [ ! -d "$dir" ]; then
        if [ "$mode" = 600 ]; then mkdir -p -m 700 "$dir"; else mkdir -p -m 755 "$dir"; fi
    fi
    case $path in "$CONF/main.cf") settle "$STAGE/files$path" ;; esac
    if ! { cp -p "$STAGE/files$path" "$path.pfs-new" && chown root:root "$path.pfs-new" \
            && chmod "$mode" "$path.pfs-new" && mv -f "$path.pfs-new" "$path"; }; then
        rm -f "$path.pfs-new"
        unwritable=$path   # restore reads the manifest into $path again
        restore
        die "could not write $unwritable (disk full or read-only?)"
    fi
done < "$STAGE/manifest"

# 4. Activate through the host's own init. (Postfix stopped since the staged check, ~30 ms
#    ago: the reload fails, restore() starts it again and the host fails with the reason.)
if [ "$ACTION" = start ] || { [ -z "$RUNNING_SEEN" ] && ! running; }; then ACTION=start; fi
if [ "$ACTION" != none ]; then
    if ! out=$(postfix_ctl "$ACTION" 2>&1); then
        restore
        die "$(printf "$CTL" "$ACTION") failed: $out"
    fi
    sleep 0.2
fi
if ! running; then
    restore
    die "Postfix is not running after $ACTION"
fi

if [ -z "$LISTENERS" ]; then   # the reload stage on a host whose master.cf has no active tlsmgr
    say "$ACTION done; STARTTLS not verified: tlsmgr is not active in master.cf, so STARTTLS cannot work"
    exit 0
fi

# 5. Prove it: on every TLS listener, per key type, the profile's promise (protocols
#    refused and accepted, forward secrecy) and the deployed certificates; recorded in
#    $CONF/.pfs-evidence when it holds (pfs_verify: operations/tls_check.sh).
if ! probe; then
    restore restart
    die "STARTTLS probe on $CONNECT failed after $ACTION"
fi
if [ -n "$LISTENERS" ] && ! pfs_verify "$CONF" "$LISTENERS" "$PROMISE" "$PROFILE" "$@" 2>"$STAGE/policy"; then
    cat "$STAGE/policy" >&2
    restore restart
    die "verification failed after $ACTION: $(sed 's/^policy: //' "$STAGE/policy" | tr '\n' ';' | sed 's/;$//; s/;/; /g')"
fi

# 6. Tidy: stale material, old backups, the stage.
while IFS='|' read -r op path mode cmd; do
    [ "$op" = rm ] && rm -f "$path"
done < "$STAGE/manifest"
n=$(ls -1d "$BACKUPS"/*/ 2>/dev/null | wc -l)
if [ "$n" -gt $KEEP ]; then
    ls -1d "$BACKUPS"/*/ | sort | head -n $((n - KEEP)) | while read -r old; do rm -rf "$old"; done
fi
say "$ACTION done, TLS policy ($PROFILE) proven on: $(for l in $LISTENERS; do printf '%s ' "${l%%,*}"; done)"
