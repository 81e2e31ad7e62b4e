# pfs_lock LOCK WAIT: one deploy per host at a time, held until this process ends.
# With flock (util-linux): an flock on LOCK.flock through fd 9; the kernel drops it
# when the holder dies, so a dead run never blocks and two waiting runs can never
# both enter. Commands that may outlive the run (Postfix's master) must get 9>&-.
# Without flock: LOCK is made by mkdir (atomic) and names its holder by pid, boot
# id and process start time, so a pid reused after a reboot or by another process
# is not mistaken for the holder; a dead holder's lock is removed by one run only.
# LOCK/owner names the holder in both cases (for messages). Used by activate.sh.
pfs_lock_id() { # PID -> "PID BOOT_ID START_TIME" of that very process
    boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
    start=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20)
    echo "$1 ${boot:-?} ${start:-?}"
}

pfs_alive() { # "PID BOOT START" -> does that process still run?
    # shellcheck disable=SC2086
    set -- $1
    [ -n "${1:-}" ] || return 1
    if [ -r /proc/sys/kernel/random/boot_id ]; then
        [ "$(pfs_lock_id "$1")" = "$1 ${2:-} ${3:-}" ]
    else
        kill -0 "$1" 2>/dev/null
    fi
}

pfs_holder() { # who holds LOCK, for messages
    h=$(cut -d' ' -f1 "$1/owner" 2>/dev/null)
    echo "pid ${h:-?}"
}

pfs_takeover() { # LOCK SEEN: remove a dead holder's lock, only if it is still that one
    if mkdir "$1.takeover" 2>/dev/null; then
        if [ "$(cat "$1/owner" 2>/dev/null)" = "$2" ]; then
            echo "postfix-pfs: taking over the lock of a run that died ($(pfs_holder "$1"))"
            rm -rf "$1"
        fi
        rmdir "$1.takeover"
    else # another run is taking over; a takeover left by a run that died then goes
        find "$1.takeover" -maxdepth 0 -mmin +1 -exec rmdir {} \; 2>/dev/null
        sleep 0.2 2>/dev/null || sleep 1
    fi
}

pfs_lock() { # LOCK WAIT_SECONDS; returns holding the lock, or exits 1 saying why not
    PFS_LOCK=$1
    if command -v flock >/dev/null 2>&1; then
        exec 9>>"$1.flock" || { echo "postfix-pfs: FAILED: cannot open $1.flock; nothing was changed" >&2; exit 1; }
        if ! flock -n 9; then
            echo "postfix-pfs: waiting for another deploy ($(pfs_holder "$1")) to finish"
            flock -w "$2" 9 || {
                echo "postfix-pfs: FAILED: another deploy ($(pfs_holder "$1")) has been activating on this host for ${2}s; nothing was changed" >&2
                exit 1
            }
        fi
        rm -rf "$1" && mkdir "$1" && pfs_lock_id $$ > "$1/owner"
        return 0
    fi
    ticks=0   # of 0.2 s
    while ! mkdir "$1" 2>/dev/null; do
        seen=$(cat "$1/owner" 2>/dev/null)
        if [ -z "$seen" ] && [ "$ticks" -lt 15 ]; then :   # being made right now
        elif ! pfs_alive "$seen"; then
            pfs_takeover "$1" "$seen"
            continue
        elif [ "$ticks" -ge $(($2 * 5)) ]; then
            echo "postfix-pfs: FAILED: another deploy ($(pfs_holder "$1")) has been activating on this host for ${2}s; nothing was changed" >&2
            exit 1
        fi
        [ "$ticks" -eq 0 ] && echo "postfix-pfs: waiting for another deploy ($(pfs_holder "$1")) to finish"
        sleep 0.2 2>/dev/null || sleep 1
        ticks=$((ticks + 1))
    done
    pfs_lock_id $$ > "$1/owner"
}

pfs_unlock() { # the directory; an flock ends with the process
    rm -rf "$PFS_LOCK"
}
