"""Everything the plan needs to know about a host, read in ONE remote command.

pyinfra runs every fact as its own remote command and caches nothing, so this
fact gathers Postfix's version and paths (`postconf -d`), the current
configuration (`postconf -n` and its warnings), master.cf, whether the master
process runs, the init system that actually runs, the distro, and the state
(exists / sha256 / mode / owner) of every file the deploy manages or the host
has configured for TLS.

Lookup tables in table_dir are hashed (sources) and counted, never parsed:
only the configured certificate/key files and the tls_*_globs matches are
possible TLS material, and openssl reads one only when it holds a PEM marker.

Private keys never leave the host: for key files only a digest of the public
key is printed, and only CERTIFICATE blocks are read out of PEM files. Secret
files (keys, the relay password table) are digested with a key (`.pfs-digest-key`
in config_directory, also in the controller's store), never with plain sha256.

Nothing a host's users can write can forge the facts: section markers carry a
random boundary made for this run, file contents are printed base64-encoded,
paths with other characters than letters, digits and `._+-/` are skipped, and
the parser keeps only valid certificates and well-formed digests.

The output that needs no live answer (most of the command's CPU: the postconf answers
and the per-file work) is cached on the host, root-only, by the same script in record
mode, run by an operation after a successful activation or proof; the facts command
itself never writes (pyinfra also runs it while it only prepares). See CACHE_SCRIPT
and README "The facts cache".
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import shlex
from dataclasses import asdict, dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyinfra.api import FactBase

from . import mastercf, pki
from .verify import SCRIPT as TLS_CHECK

# Parameters whose files are TLS material the host may already have.
TLS_FILE_PARAMS = (
    "smtpd_tls_cert_file",
    "smtpd_tls_key_file",
    "smtpd_tls_eccert_file",
    "smtpd_tls_eckey_file",
    "smtpd_tls_chain_files",
    "smtp_tls_cert_file",
    "smtp_tls_key_file",
    "smtp_tls_chain_files",
)

CA_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",  # RHEL, Fedora
    "/etc/ssl/ca-bundle.pem",  # openSUSE
)

SCRIPT = r"""
export LC_ALL=C
__TLS_CHECK__
PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
# read: the fact (prints the facts, writes nothing: pyinfra also runs it while it only
# prepares); record: run by an operation after a successful activation or proof (prints
# nothing, writes the cache of the output that need not be live: pfs_record)
pfs_mode=__MODE__
# A random boundary per run: only lines that carry it start a section, so nothing
# read from a file can (file contents are printed base64-encoded anyway).
# (a kernel UUID read by the shell itself where there is one: no process to start)
B=""
if [ -r /proc/sys/kernel/random/uuid ]; then
  IFS=- read -r b1 b2 b3 b4 b5 < /proc/sys/kernel/random/uuid && B=$b1$b2$b3$b4$b5
fi
[ ${#B} -eq 32 ] || B=$(od -An -N16 -tx1 /dev/urandom 2>/dev/null | tr -d ' \n')
[ ${#B} -eq 32 ] || [ "$pfs_mode" = read ] || exit 0  # record: nothing written, never a failure
[ ${#B} -eq 32 ] || { echo "postfix-pfs: no random source for the facts boundary" >&2; exit 1; }
[ "$pfs_mode" = read ] || exec >/dev/null 2>&1
echo "@@pfs-facts $B"
sec() { echo "@@$B $1"; }
sec env
uid=""
if [ -r /proc/self/status ]; then
  while read -r k v _; do [ "$k" = Uid: ] && { uid=$v; break; }; done < /proc/self/status
fi
case $uid in ''|*[!0-9]*) uid=$(id -u) ;; esac
echo "uid=$uid"
if [ -d /run/systemd/system ]; then init=systemd
elif [ -d /run/openrc ] && command -v rc-service >/dev/null 2>&1; then init=openrc
elif command -v rcpostfix >/dev/null 2>&1; then init=suse
elif [ -x /etc/init.d/postfix ]; then init=sysv
else init=none; fi
echo "init=$init"
# Debian 12 and Ubuntu run Postfix as postfix@-.service, wanted by a oneshot
# postfix.service (Debian 13's postfix.service runs Postfix itself)
if [ "$init" = systemd ]; then
  for d in /run/systemd/generator /etc/systemd/system /run/systemd/system; do
    [ -e "$d/postfix.service.wants/postfix@-.service" ] && { echo "systemd_instance=postfix@-"; break; }
  done
fi
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "distro=${ID:-unknown}"
echo "distro_version=${VERSION_ID:-}"
for pm in apt-get dnf zypper apk; do command -v $pm >/dev/null 2>&1 && { echo "pkg=$pm"; break; }; done
for ca in __CA_BUNDLES__; do [ -s "$ca" ] && { echo "ca_bundle=$ca"; break; }; done
if ! command -v postconf >/dev/null 2>&1; then echo "installed=no"; exit 0; fi
echo "installed=yes"
command -v openssl >/dev/null 2>&1 && echo "openssl_cli=yes"
now=$(date +%s)
nl='
'
# Four postconf runs (~6 ms each): -x for the few values needed here (the directories,
# the TLS files, the files the proof's digest covers), -d, -T run-version and -n.
pfs_x() {  # conf qd meta mail_version cands served xok, from postconf -x (xo: its answer)
  conf="" qd="" meta="" mail_version="" cands="" served="" xok=""
  xo=$(postconf -x config_directory queue_directory meta_directory mail_version __TLS_PARAMS__ $PFS_SERVED_PARAMS 2>/dev/null)
  while IFS= read -r line; do
    name=${line%% = *} value=${line#* = }
    [ "$line" = "$name =" ] && value=""
    case $name in
      config_directory) conf=$value xok=1 ;;
      queue_directory) qd=$value ;;
      meta_directory) meta=$value ;;
      mail_version) mail_version=$value ;;
    esac
    case " __TLS_PARAMS__ " in *" $name "*) cands="$cands $value" ;; esac
    case " $PFS_SERVED_PARAMS " in *" $name "*) eval "served_$name=\$value" ;; esac
  done <<PFSEOF
$xo
PFSEOF
  for p in $PFS_SERVED_PARAMS; do eval "served=\"\$served
\${served_$p:-}\""; done
}
# secret files (keys, the relay password table) get a digest keyed with a secret
# only root here and the controller's store know: never a plain, guessable one
digest() { sha256sum 2>/dev/null | cut -d' ' -f1; }
# possible TLS material: the configured cert/key files and the glob matches, nothing else;
# only plain paths (a file name from a user's directory is data, never syntax)
# (the shell's own tests: no process per file)
keep() { # PATH: appended to $list once, if it is a plain absolute path
  case $1 in /*) ;; *) return 0 ;; esac
  case $1 in *[!A-Za-z0-9._/+-]*) return 0 ;; esac
  case " $list " in *" $1 "*) ;; *) list="$list $1" ;; esac
}
pfs_block() {  # every section that needs no live answer: printed, or cached (pfs_record)
postconf_d=$(postconf -d 2>/dev/null)
# ~1,000 lines: pyinfra reads output line by line, so compressed onto one line when it can
sec postconf_d
if command -v gzip >/dev/null 2>&1 && command -v base64 >/dev/null 2>&1; then
  echo "gz:$(printf '%s\n' "$postconf_d" | gzip -c | base64 | tr -d '\n')"
else printf '%s\n' "$postconf_d"; fi
run_version=$(postconf -T run-version 2>/dev/null)
sec run_version; echo "$run_version"
sec postconf_n; { warnings=$(postconf -n 2>&1 >&3 3>&-); } 3>&1
sec postconf_n_warnings; [ -z "$warnings" ] || printf '%s\n' "$warnings"
sec master_cf; cat "$conf/master.cf" 2>/dev/null
K="$conf/.pfs-digest-key"
list=""
set -f; IFS=" ,__TAB__
"
for f in $cands; do keep "$f"; done   # values are lists: comma or white space between
unset IFS; set +f
for f in __GLOBS__; do [ -f "$f" ] && keep "$f"; done
cands="$list "
for f in "$conf/main.cf" "$conf/master.cf" "$K"; do keep "$f"; done
for f in __TLS_DIR__/* __TABLE_DIR__/*; do [ -f "$f" ] && keep "$f"; done
files=$list present="" plain="" secret="" others=""
for f in $files; do
  [ -f "$f" ] || continue
  present="$present $f"
  case "$f" in
    # compiled tables: existence and mode are enough (the source's digest says what is in them)
    __TABLE_DIR__/*.db|__TABLE_DIR__/*.lmdb|__TABLE_DIR__/*.cdb) ;;
    "$K"|*/sasl_passwd|*/sasl_passwd.*) secret="$secret $f" ;;
    __TABLE_DIR__/*) plain="$plain $f" ;;  # other tables: no key material (and possibly big)
    *) others="$others $f" ;;
  esac
done
# one grep for all: which of the others hold a private key
if [ -n "$others" ]; then
  keys=$(grep -l 'PRIVATE KEY' $others 2>/dev/null)
  for f in $others; do
    case "
$keys
" in *"
$f
"*) secret="$secret $f" ;; *) plain="$plain $f" ;; esac
  done
fi
sec files
for f in $files; do [ -f "$f" ] || echo "-|$f"; done
[ -z "$plain" ] || sha256sum $plain 2>/dev/null
for f in $secret; do
  if [ -r "$K" ]; then h=$(cat "$K" "$f" | sha256sum); echo "keyed:${h%% *}  $f"
  else echo "keyed:  $f"; fi
done
if [ -n "$present" ]; then stat -c '%n|%a|%U|%G' $present; fi
sec pem
tls=""
for f in $present; do
  pub=""  # (the certificate's public key digest: the controller's, from the blocks below)
  case "$f" in
    "$K") continue ;;
    __TLS_DIR__/*) tls="$tls $f"; continue ;;  # our own material: in one awk, below
    *) # lookup tables, main.cf, master.cf: hashed above, never parsed; candidates only if PEM
       case "$cands" in *" $f "*) ;; *) continue ;; esac
       grep -q -- '-----BEGIN ' "$f" 2>/dev/null || continue
       if command -v openssl >/dev/null 2>&1; then
         if grep -q 'PRIVATE KEY-----' "$f"; then
           if grep -q 'ENCRYPTED' "$f"; then pub=encrypted; else
           pub=$(openssl pkey -in "$f" -passin pass: -pubout -outform DER 2>/dev/null | digest); fi
         fi
       fi ;;
  esac
  # the CERTIFICATE blocks, base64-encoded on one line
  certs=$(sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$f" | base64 | tr -d '\n')
  echo "@file $f|$pub||$certs"
done
# our own material (keys are compared by keyed digest above): the CERTIFICATE blocks of
# every file in one awk, each line behind "|", so no line of a file starts an @file line
# shellcheck disable=SC2086
[ -z "$tls" ] || awk 'FNR == 1 { c = 0; print "@file " FILENAME "|||" }
  index($0, "-----BEGIN CERTIFICATE-----") { c = 1 }
  c { print "|" $0 }
  index($0, "-----END CERTIFICATE-----") { c = 0 }' $tls 2>/dev/null
sec tables
for f in __TABLE_DIR__/*; do  # entries of each table source (cheap: one grep each)
  case "$f" in *.db|*.lmdb|*.cdb|*.dir|*.pag) continue ;; esac
  [ -f "$f" ] && echo "$(grep -c '^[^#[:space:]]' "$f")|$f"
done
sec evidence
# no handshake here: the facts command also runs when pyinfra only prepares
echo "now=@"  # this run's clock: filled in by pfs_out
if [ -n "$xok" ]; then echo "current=$(pfs_digest "$conf" "$mail_version" "$run_version" "$served")"
else echo "current=$(pfs_digest "$conf" "$mail_version" "$run_version")"; fi
}
pfs_out() {  # the one printer of pfs_block's output, fresh or cached ($1: the boundary it
  # was printed with; a cache's key lines skipped), then the recorded proof ($2: tls_check.sh).
  # The boundaries go through the environment, never argv: /proc/PID/cmdline is world-readable.
  PFS_B1=$1 PFS_B=$B PFS_NOW=$now awk '
    BEGIN { o = "@@" ENVIRON["PFS_B1"]; n = "@@" ENVIRON["PFS_B"]; lo = length(o) }
    skip { if ($0 == o " end") skip = 0; next }
    $0 == o " key" { skip = 1; next }
    substr($0, 1, lo + 1) == o " " { print n substr($0, lo + 1); next }
    $0 == "now=@" { print "now=" ENVIRON["PFS_NOW"]; next }
    { print }' - "$2" 2>/dev/null
}
__CACHE__
if [ "$pfs_mode" = record ]; then pfs_record; exit 0; fi
facts_cache=$pfs_cache
if pfs_cache_read; then
  facts_cache=hit qd=$c_qd conf=$CD
else
  [ "$pfs_cache" = off ] || facts_cache=miss
  pfs_x
  if [ -z "$xok" ]; then  # no answer to -x (an odd or broken postconf): one question at a time
    conf=$(postconf -h config_directory 2>/dev/null) || {
      # postconf is there but does not run (a broken install): this host fails with the reason
      err=$(postconf -h config_directory 2>&1 >/dev/null | head -n 1)
      echo "postfix-pfs: FAILED: postconf does not work on this host: $err" >&2
      exit 1
    }
    qd=$(postconf -h queue_directory)
    cands=$(postconf -xh __TLS_PARAMS__ 2>/dev/null)
  fi
fi
pid=""
[ -r "$qd/pid/master.pid" ] && read -r pid _ < "$qd/pid/master.pid"
case $pid in ''|*[!0-9]*) ;; *) kill -0 "$pid" 2>/dev/null && echo "master_pid=$pid" ;; esac
echo "facts_cache=$facts_cache"  # hit, miss or off: for the report only
if [ "$facts_cache" = hit ]; then pfs_out "$B0" "$CD/.pfs-evidence" <&4; exec 4<&-
else pfs_block | pfs_out "$B" "$conf/.pfs-evidence"; fi
exit 0
"""

CACHE_SCRIPT = r"""
# The facts cache (README "The facts cache"): CD/.pfs-facts-cache, root's, 0600, a regular
# file in a config directory only root may write, holding pfs_block's output as a record
# run printed it. Never written here in read mode: only by pfs_record (an operation after
# a successful activation or proof). Believed only by a root shell without MAIL_* or LD_*
# in its environment, not on a full verification, at most __MAX_AGE__ s old, made by this
# very script (its id), and when its key still holds: the content (ONE sha256sum) of every
# file the cached output was made from, and the identity (ONE stat: type, owner, mode,
# device, inode, size, mtime, ctime) of those files and of postconf, every library it loads
# (ldd, at record time), ld.so.cache and ld.so.preload, plus the listing of tls_dir,
# table_dir, the TLS globs and the .d directories. Any doubt: a miss (the full command).
CD=__CACHE_DIR__ C=__CACHE_DIR__/.pfs-facts-cache
# content (besides the TLS files, tables and what main.cf names): Postfix's own files, what
# postconf -d derives myhostname, mydomain and mynetworks from, the owner and group names
PFS_KEY_FILES="$CD/main.cf $CD/master.cf $CD/dynamicmaps.cf $CD/postfix-files $CD/.pfs-digest-key
/etc/ssl/openssl.cnf /etc/hosts /etc/mailname /etc/resolv.conf /etc/nsswitch.conf /etc/host.conf
/etc/gai.conf /etc/passwd /etc/group"
PFS_PROC="/proc/sys/kernel/hostname /proc/sys/kernel/domainname /proc/sys/kernel/random/boot_id
/proc/net/fib_trie /proc/net/if_inet6"
pfs_cache=off pc=""
set -f; IFS=:
for _d in $PATH; do [ -f "$_d/postconf" ] && [ -x "$_d/postconf" ] && { pc=$_d/postconf; break; }; done
unset IFS; set +f
case $pc in /*[!A-Za-z0-9._/+-]*|[!/]*|'') ;; *)
  if [ "$uid" = 0 ] && [ __FULL__ = 0 ] && [ __MAX_AGE__ -gt 0 ]; then
    case "$nl$(export -p)" in
      *"${nl}export LD_"*|*"${nl}declare -x LD_"*|*"${nl}export MAIL_"*|*"${nl}declare -x MAIL_"*) ;;
      *) pfs_cache=on ;;
    esac
  fi ;;
esac
pfs_live() {  # live: what the cache is made for besides contents and identities; $1: its nonce
  live="$1|__SCRIPT_ID__|$pc"
  set -- __TLS_DIR__/*; live="$live|$*"
  set -- __TABLE_DIR__/*; live="$live|$*"
  set -- "$CD"/dynamicmaps.cf.d/* "$CD"/postfix-files.d/*; live="$live|$*"
  set -- __GLOBS__; live="$live|$*"
  for _p in $PFS_PROC; do [ -e "$_p" ] && live="$live|$_p"; done
}
pfs_stat() {  # st: the identities of $ki, cst: the cache file's; 1 unless CD is root's alone
  # (and 1 for a FIFO, socket or device among them, or a link to one: a user's file a glob
  # matches, made a FIFO, would hold sha256sum forever; a miss skips it)
  for _f in $ki; do [ -p "$_f" ] || [ -S "$_f" ] || [ -c "$_f" ] || [ -b "$_f" ] && return 1; done
  st=$(stat -c '%n|%F|%u|%g|%a|%d|%i|%s|%.9Y|%.9Z' "$CD" "$C" $ki 2>/dev/null)
  case $st in "$CD|directory|0|"*) ;; *) return 1 ;; esac
  IFS='|'; set -- ${st%%"$nl"*}; unset IFS
  case $5 in *[2367]?|*[2367]) return 1 ;; esac  # group or others may write in it
  for _t in "$9" "${10}"; do  # a stat that prints no nanoseconds (not GNU's): no cache
    case $_t in [0-9]*.[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]) ;; *) return 1 ;; esac
  done
  st=${st#*"$nl"} cst=""
  case $st in "$C|"*) cst=${st%%"$nl"*} st=${st#*"$nl"} ;; esac
}
pfs_cache_read() {  # a hit: 0, fd 4 at the cached output, B0 (its boundary) and c_qd set
  [ "$pfs_cache" = on ] && [ -f "$C" ] && [ ! -L "$C" ] || return 1
  exec 4< "$C" || return 1
  if IFS= read -r _h <&4 && IFS= read -r ki <&4 && pfs_cache_valid; then return 0; fi
  exec 4<&-
  return 1
}
pfs_cache_valid() {  # _h: "pfs-facts-cache ID TIME BOUNDARY QUEUE_DIR BYTES"; ki: identities
  set -f; set -- $_h; set +f
  [ $# -eq 6 ] && [ "$1" = pfs-facts-cache ] && [ "$2" = __SCRIPT_ID__ ] || return 1
  case $3 in ''|*[!0-9]*) return 1 ;; esac
  case $6 in ''|*[!0-9]*) return 1 ;; esac
  case $4 in *[!0-9a-f]*) return 1 ;; esac
  case $5 in /*[!A-Za-z0-9._/+-]*|[!/]*) return 1 ;; esac
  case $ki in *[!A-Za-z0-9._/+\ -]*) return 1 ;; esac
  [ ${#4} -eq 32 ] && [ "$3" -le "$now" ] && [ $((now - $3)) -lt __MAX_AGE__ ] || return 1
  B0=$4 c_qd=$5 _size=$((${#_h} + 1 + $6))
  pfs_stat || return 1
  IFS='|'; set -- $cst; unset IFS
  [ "$2|$3|$5|$8" = "regular file|0|600|$_size" ] || return 1
  pfs_live "$B0"
  # the key: the cache's sha256sum lines (each file's content, and "-": the identities
  # and the live part) checked in one run; the nonce ties them to the output on fd 4
  printf '%s\n' "$live" "$st" | sha256sum --status -c "$C" 2>/dev/null
}
pfs_libs() {  # libs: every postconf in PATH (a wrapper script there execs the next one),
  # every library the loader maps for each (ldd, links resolved), the directories it
  # searches for them, and the pem section's openssl
  command -v ldd >/dev/null 2>&1 || return 1
  libs="" _pcs=""
  set -f; IFS=:
  for _d in $PATH; do [ -f "$_d/postconf" ] && [ -x "$_d/postconf" ] && pfs_new_pc "$_d/postconf"; done
  for _p in $_pcs; do
    case $_p in '') ;; /*[!A-Za-z0-9._/+-]*|[!/]*) unset IFS; set +f; return 1 ;; *)
      unset IFS; set +f; pfs_ldd "$_p" || return 1; set -f; IFS=: ;; esac
  done
  unset IFS; set +f
  _w=$(command -v openssl 2>/dev/null) || return 0
  case $_w in /*[!A-Za-z0-9._/+-]*|[!/]*) return 1 ;; *) libs="$libs $_w" ;; esac
}
pfs_new_pc() {  # _pcs += $1 unless it is a postconf already there (/sbin: /usr/sbin's link)
  for _q in $_pcs; do [ -z "$_q" ] || [ ! "$1" -ef "$_q" ] || return 0; done
  _pcs="$_pcs:$1"
}
pfs_lib() { case " $libs " in *" $1 "*) ;; *) libs="$libs $1" ;; esac; }
pfs_ldd() {  # libs += $1, every library the loader maps for it (links resolved), its search dirs
  _o=$(ldd "$1" 2>&1 </dev/null) || case $_o in *"not a dynamic executable"*) _o="" ;; *) return 1 ;; esac
  _links=""
  set -f
  for _w in "$1" $_o; do
    case $_w in /*[!A-Za-z0-9._/+-]*) set +f; return 1 ;; /*) pfs_lib "$_w" ;; esac
    [ ! -L "$_w" ] || _links="$_links $_w"
  done
  [ -z "$_links" ] || for _w in $(readlink -f $_links 2>/dev/null); do  # where links point
    case $_w in /*[!A-Za-z0-9._/+-]*|[!/]*) set +f; return 1 ;; esac
    pfs_lib "$_w"
  done
  set +f
  pfs_search_dirs "$1"
}
pfs_search_dirs() {  # libs += every directory the loader searches for $1's libraries
  # (postconf's RUNPATH: Debian's /usr/lib/postfix, with its hwcaps and tls subdirectories,
  # is searched for libc, libssl and libcrypto before ld.so.cache): a library put there
  # later is the one postconf loads; its directory's identity changes (one not there: none)
  _o=$(LD_DEBUG=libs ldd "$1" 2>&1 </dev/null) || :  # (its debug lines: either stream)
  set -f
  while IFS= read -r _l; do
    case $_l in *" search path="*) ;; *) continue ;; esac
    _l=${_l#*" search path="}; _l=${_l%%[__TAB__ ]*}
    IFS=:
    for _w in $_l; do
      case $_w in /*[!A-Za-z0-9._/+-]*|[!/]*) unset IFS; set +f; return 1 ;; esac
      pfs_lib "$_w"
    done
    unset IFS
  done <<PFSEOF
$_o
PFSEOF
  set +f
}
pfs_lists() {  # kc: the files the cached output was made from (content); ki: identities
  list=""
  set -f; IFS=" ,__TAB__$nl"
  for f in $cands $served; do  # what main.cf names: plain absolute paths only, or no cache
    case $f in /*[!A-Za-z0-9._/+-]*|[!/]*) unset IFS; set +f; return 1 ;; esac
    keep "$f"
  done
  unset IFS; set +f
  for f in __GLOBS__ __TLS_DIR__/* __TABLE_DIR__/* "$CD"/dynamicmaps.cf.d/* "$CD"/postfix-files.d/*; do
    [ -f "$f" ] && keep "$f"
  done
  for f in $PFS_KEY_FILES; do keep "$f"; done
  kc="$PFS_PROC" ki="$libs /etc/ld.so.cache /etc/ld.so.preload"
  for f in $list; do
    case $f in
      __TABLE_DIR__/*.db|__TABLE_DIR__/*.lmdb|__TABLE_DIR__/*.cdb) ki="$ki $f" ;;
      *) kc="$kc $f" ki="$ki $f" ;;
    esac
  done
}
pfs_key() {  # key: sha256sum's lines for the content of $kc and, as "-", the rest; $1 nonce
  pfs_stat || return 1
  pfs_live "$1"
  key=$(printf '%s\n' "$live" "$st" | sha256sum - $kc 2>/dev/null) || :
}
pfs_record() {  # the cache, written only when nothing it depends on moved while it was made
  [ "$pfs_cache" = on ] && [ ! -d "$C" ] && pfs_libs || return 0
  pfs_x; _xa=$xo
  [ -n "$xok" ] && [ "$conf" = "$CD" ] && [ "$meta" = "$CD" ] || return 0
  case $qd in /*[!A-Za-z0-9._/+-]*|[!/]*) return 0 ;; esac
  pfs_lists && pfs_key "$B" || return 0
  _k1=$key
  pfs_x
  [ "$xo" = "$_xa" ] || return 0
  _blk=$(pfs_block)
  pfs_key "$B" && [ "$key" = "$_k1" ] || return 0
  umask 077
  # cut off while it writes (a dropped SSH connection, ^C: SIGHUP): its temporary files go;
  # those a SIGKILL or a power loss left, an hour old, go with the next record
  set -- "$C".??????
  [ ! -f "$1" ] || find "$CD" -maxdepth 1 -name '.pfs-facts-cache.??????' -mmin +59 -exec rm -f {} + 2>/dev/null
  _t1="" _t2=""
  trap 'rm -f "$_t1" "$_t2"; exit 0' HUP INT TERM
  _t1=$(mktemp "$C.XXXXXX") || return 0
  _t2=$(mktemp "$C.XXXXXX") || { rm -f "$_t1"; return 0; }
  if printf '%s\n' "$ki" "$_blk" "@@$B key" "$key" "@@$B end" > "$_t1" && _n=$(wc -c < "$_t1") \
    && { echo "pfs-facts-cache __SCRIPT_ID__ $now $B $qd $((_n))" && cat "$_t1"; } > "$_t2" \
    && mv -f "$_t2" "$C"; then rm -f "$_t1"
  else rm -f "$_t1" "$_t2"; fi
  trap - HUP INT TERM
}
"""

EMPTY_DIGEST = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@dataclass
class FileState:
    path: str
    exists: bool
    sha256: str = ""
    mode: str = ""
    owner: str = ""
    group: str = ""
    key_pub_sha256: str = ""  # digest of the public half of a private key in the file
    cert_pub_sha256: str = ""  # digest of the public key of the first certificate
    key_encrypted: bool = False
    certs_pem: str = ""  # the CERTIFICATE blocks only, in file order
    keyed: str = ""  # secret files: sha256(digest key + content) instead of sha256


@dataclass
class HostFacts:
    installed: bool
    uid: int = -1
    init: str = "none"
    systemd_instance: str = ""  # the unit that runs Postfix under postfix.service (postfix@-)
    distro: str = "unknown"
    distro_version: str = ""
    ca_bundle: str = ""
    pkg: str = ""  # package manager: apt-get, dnf, zypper, apk
    openssl_cli: bool = False
    master_pid: int | None = None
    postconf_d: dict[str, str] = field(default_factory=dict)
    postconf_n: dict[str, str] = field(default_factory=dict)
    postconf_n_warnings: list[str] = field(default_factory=list)
    run_version: str = ""
    master_cf: str = ""
    files: dict[str, FileState] = field(default_factory=dict)
    table_entries: dict[str, int] = field(default_factory=dict)  # table source -> entries
    evidence: list[str] = field(default_factory=list)  # digest + last verification, see verify.py
    # hit, miss or off: whether the facts came from the host's cache (report only, never compared)
    facts_cache: str = field(default="", compare=False)

    @property
    def version(self) -> tuple[int, ...]:
        return parse_version(self.postconf_d.get("mail_version", "0"))

    @property
    def openssl_version(self) -> tuple[int, ...]:
        # "OpenSSL 3.0.20 7 Apr 2026"
        parts = self.run_version.split()
        return parse_version(parts[1]) if len(parts) > 1 else (0,)

    @property
    def running(self) -> bool:
        return self.master_pid is not None

    def listeners(self) -> list[mastercf.Listener]:
        """The smtpd listeners of master.cf as they are now, with their -o overrides."""
        n, d = self.postconf_n, self.postconf_d
        interfaces = n.get("inet_interfaces", d.get("inet_interfaces", "all"))
        level = n.get("smtpd_tls_security_level", d.get("smtpd_tls_security_level", ""))
        return mastercf.listeners(self.master_cf, interfaces.replace(",", " ").split(), level)

    def file(self, path: str) -> FileState:
        return self.files.get(path) or FileState(path=path, exists=False)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def parse_version(text: str) -> tuple[int, ...]:
    """Leading numeric parts: "3.10.13" -> (3, 10, 13), "2.11.3-rc1" -> (2, 11, 3)."""
    m = re.match(r"\d+(\.\d+)*", text.strip())
    return tuple(int(p) for p in m.group(0).split(".")) if m else (0,)


def parse_postconf(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        name, sep, value = line.partition(" = ")
        if sep:
            out[name.strip()] = value.strip()
        elif line.endswith(" ="):
            out[line[:-2].strip()] = ""
    return out


def _unpack(lines: list[str]) -> list[str]:
    """A section sent as one "gz:BASE64" line (gzip, then base64) back as its lines."""
    if len(lines) == 1 and lines[0].startswith("gz:"):
        try:
            return gzip.decompress(base64.b64decode(lines[0][3:])).decode().splitlines()
        except (ValueError, OSError, EOFError):
            return []
    return lines


_HEADER = re.compile(r"@@pfs-facts ([0-9a-f]{32})")
_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)


def sections(lines: list[str]) -> dict[str, list[str]]:
    """Split the script's output at its section markers. The script's first line
    names a random boundary; only lines carrying it start a section, and nothing
    printed before that line counts. (Without a header line, hand-written input as
    in unit tests: plain "@@name" markers.)"""
    start = next((i for i, ln in enumerate(lines) if _HEADER.fullmatch(ln)), None)
    marker = "@@"
    if start is not None:
        marker = f"@@{_HEADER.fullmatch(lines[start]).group(1)} "
        lines = lines[start + 1 :]
    out: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line.startswith(marker) and line[len(marker) :].isidentifier():
            current = line[len(marker) :]
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def certificates(b64: str) -> str:
    """The valid certificates among base64-encoded CERTIFICATE blocks, re-encoded as
    PEM; anything else in the blocks (a user's file may hold anything) is dropped."""
    try:
        text = base64.b64decode(b64, validate=True).decode("ascii", "replace")
    except ValueError:
        return ""
    good = []
    for block in _PEM_CERT.findall(text):
        try:
            cert = x509.load_pem_x509_certificate(block.encode())
            good.append(cert.public_bytes(serialization.Encoding.PEM).decode())
        except ValueError:
            continue
    return "".join(good)


def first_cert_pub_sha256(certs_pem: str) -> str:
    """sha256 of the public key (SubjectPublicKeyInfo DER) of the first valid certificate
    in `certs_pem` (certificates()' output), or "": what `openssl x509 -in FILE -pubkey |
    openssl pkey -pubin -outform DER | sha256sum` printed on the host (it also skips a
    block it cannot decode), computed here instead: ~22 ms of the host's CPU per file on
    OpenSSL 3.0, on every facts miss."""
    block = _PEM_CERT.search(certs_pem)
    if not block:
        return ""
    return pki.spki_sha256(x509.load_pem_x509_certificate(block.group(0).encode()))


def _files(facts: HostFacts, lines: list[str]) -> None:
    for line in lines:
        if line.startswith("-|"):  # missing
            if _PATH.fullmatch(line[2:]):
                facts.files[line[2:]] = FileState(path=line[2:], exists=False)
            continue
        digest, sep, path = line.partition("  ")
        if sep and _PATH.fullmatch(path):  # sha256, or keyed digest of a secret file
            f = facts.files.setdefault(path, FileState(path, True))
            if _HEX64.fullmatch(digest):
                f.sha256 = digest
            elif digest == "keyed:" or (digest[:6] == "keyed:" and _HEX64.fullmatch(digest[6:])):
                f.keyed = digest[6:]  # empty: the host has no digest key yet
            continue
        path, mode, owner, group = (line.rsplit("|", 3) + [""] * 4)[:4]
        if _PATH.fullmatch(path) and mode.isdigit():  # stat
            f = facts.files.setdefault(path, FileState(path, True))
            f.mode, f.owner, f.group = mode, owner, group


def _digest(text: str) -> str:
    """A public-key digest, or "" (none, or the digest of nothing)."""
    return text if _HEX64.fullmatch(text) and text != EMPTY_DIGEST else ""


def _pem(facts: HostFacts, lines: list[str], legacy: bool = False) -> None:
    """@file PATH|KEY_PUB|CERT_PUB|BASE64 lines, or an @file line without BASE64 followed
    by its CERTIFICATE blocks' lines, each behind "|" (the files in tls_dir, one awk).
    legacy: hand-written input in the format before the boundary (raw PEM lines)."""
    f, raw = None, []
    for line in [*lines, "@file "]:
        if not line.startswith("@file "):
            if legacy or line.startswith("|"):
                raw.append(line if legacy else line[1:])
            continue
        if f is not None and raw:
            f.certs_pem = certificates(base64.b64encode("\n".join(raw).encode()).decode())
        f, raw = None, []
        path, key_pub, cert_pub, b64 = (line[6:].split("|") + ["", "", ""])[:4]
        if not _PATH.fullmatch(path):
            continue
        f = facts.files.setdefault(path, FileState(path=path, exists=True))
        f.key_encrypted = key_pub == "encrypted"
        f.key_pub_sha256, f.cert_pub_sha256 = _digest(key_pub), _digest(cert_pub)
        f.certs_pem = certificates(b64)
        f.cert_pub_sha256 = f.cert_pub_sha256 or first_cert_pub_sha256(f.certs_pem)


def parse(lines: list[str]) -> HostFacts:
    """Turn the script's sectioned output into HostFacts (pure, unit-tested)."""
    sec = sections(lines)
    legacy = not any(_HEADER.fullmatch(line) for line in lines)
    env = dict(line.split("=", 1) for line in sec.get("env", []) if "=" in line)
    facts = HostFacts(
        installed=env.get("installed") == "yes",
        uid=int(env["uid"]) if env.get("uid", "").isdigit() else -1,
        init=env.get("init", "none"),
        systemd_instance=env.get("systemd_instance", ""),
        distro=env.get("distro", "unknown"),
        distro_version=env.get("distro_version", ""),
        ca_bundle=env.get("ca_bundle", ""),
        pkg=env.get("pkg", ""),
        openssl_cli=env.get("openssl_cli") == "yes",
        master_pid=int(env["master_pid"]) if env.get("master_pid", "").isdigit() else None,
        facts_cache=env.get("facts_cache", ""),
    )
    if not facts.installed:
        return facts
    facts.postconf_d = parse_postconf(_unpack(sec.get("postconf_d", [])))
    facts.postconf_n = parse_postconf(sec.get("postconf_n", []))
    facts.postconf_n_warnings = [w for w in sec.get("postconf_n_warnings", []) if w.strip()]
    facts.run_version = "\n".join(sec.get("run_version", [])).strip()
    master = sec.get("master_cf", [])
    facts.master_cf = "\n".join(master) + "\n" if master else ""
    facts.evidence = sec.get("evidence", [])
    _files(facts, sec.get("files", []))
    _pem(facts, sec.get("pem", []), legacy)
    for line in sec.get("tables", []):
        count, _, path = line.partition("|")
        if count.isdigit() and _PATH.fullmatch(path):
            facts.table_entries[path] = int(count)
    return facts


# The facts cache (CACHE_SCRIPT) lives in Postfix's config_directory when MAIL_CONFIG is
# not set; a record run on a host whose config_directory is another writes none.
CACHE_DIR = "/etc/postfix"
CACHE_MAX_AGE = 24 * 3600  # verify_max_age_hours' default, in seconds


def script(
    tls_dir: str,
    table_dir: str = "/etc/postfix/maps",
    globs: str = "",
    max_age: int = CACHE_MAX_AGE,
    full: bool = False,
    record: bool = False,
    cache_dir: str = CACHE_DIR,
) -> str:
    """The facts command. `globs` are host path patterns (validated by settings:
    no quotes, spaces or $), expanded by the shell on purpose. A cache older than
    `max_age` seconds is not believed; `full` (verify_full) neither reads nor writes
    one; `record`: the same script, run by an operation at execution, prints nothing
    and writes the cache (record_command)."""
    text = (
        SCRIPT.replace("__CACHE__", CACHE_SCRIPT)
        .replace("__TLS_CHECK__", TLS_CHECK)
        .replace("__CA_BUNDLES__", " ".join(CA_BUNDLES))
        .replace("__TLS_PARAMS__", " ".join(TLS_FILE_PARAMS))
        .replace("__TLS_DIR__", shlex.quote(tls_dir.rstrip("/")))
        .replace("__TABLE_DIR__", shlex.quote(table_dir.rstrip("/")))
        .replace("__GLOBS__", globs)
        .replace("__TAB__", "\t")
        .replace("__MAX_AGE__", str(int(max_age)))
        .replace("__FULL__", "1" if full else "0")
        .replace("__CACHE_DIR__", shlex.quote(cache_dir.rstrip("/") or "/"))
    )
    # the cache belongs to this very script (read and record mode alike): any change of
    # it, or of its parameters, is a miss
    script_id = hashlib.sha256(text.encode()).hexdigest()[:32]
    mode = "record" if record else "read"
    return text.replace("__SCRIPT_ID__", script_id).replace("__MODE__", mode)


def record_command(
    tls_dir: str, table_dir: str, globs: str, max_age: int, full: bool = False
) -> str:
    """The facts script in record mode: run at execution after a successful activation
    or proof, it writes the cache the next facts command may print instead of running
    postconf. Prints nothing and always exits 0 (a cache not written is only a miss)."""
    return script(tls_dir, table_dir, globs, max_age, full, record=True)


class PostfixHost(FactBase):
    """All the host state the plan needs, as HostFacts, from one remote command."""

    def command(
        self,
        tls_dir: str,
        table_dir: str,
        globs: str,
        max_age: int = CACHE_MAX_AGE,
        full: bool = False,
    ) -> str:
        return script(tls_dir, table_dir, globs, max_age, full)

    def process(self, output: list[str]) -> HostFacts:
        return parse(output)

    @staticmethod
    def default() -> None:
        return None  # the command failed: pipeline fails this host with a reason
