"""master.cf: make the tlsmgr service active exactly once, keeping the distro's columns."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Upstream Postfix's own line (chroot "n"; Debian ships it with "y" and keeps it).
UPSTREAM_TLSMGR = "tlsmgr    unix  -       -       n       1000?   1       tlsmgr"


def _service(line: str) -> tuple[bool, str, str]:
    """(commented, service name, type) of a master.cf entry line."""
    commented = line.startswith("#")
    fields = line.lstrip("#").split()
    if len(fields) < 2 or line[:1].isspace():
        return commented, "", ""
    return commented, fields[0], fields[1]


def tlsmgr_state(text: str) -> str:
    """'active', 'duplicated', 'commented' or 'missing'."""
    active = commented = 0
    for line in text.splitlines():
        c, name, kind = _service(line)
        if (name, kind) == ("tlsmgr", "unix"):
            if c:
                commented += 1
            else:
                active += 1
    if active == 1:
        return "active"
    if active > 1:
        return "duplicated"
    return "commented" if commented else "missing"


def enable_tlsmgr(text: str) -> str:
    """master.cf text with exactly one active tlsmgr line; unchanged if already so."""
    state = tlsmgr_state(text)
    if state == "active":
        return text
    lines = text.splitlines()
    out, seen = [], False
    for line in lines:
        c, name, kind = _service(line)
        if (name, kind) != ("tlsmgr", "unix"):
            out.append(line)
        elif not c:
            # keep the first active one, comment out the duplicates
            out.append(line if not seen else "#" + line)
            seen = True
        elif state == "commented" and not seen:
            # uncomment the first commented one, column layout as it was
            stripped = line.lstrip("#")
            out.append(stripped.lstrip(" ") if stripped.startswith(" tlsmgr") else stripped)
            seen = True
        else:
            out.append(line)
    if state == "missing":
        out.append(UPSTREAM_TLSMGR)
    return "\n".join(out) + "\n"


# --- smtpd listeners and their TLS -o overrides ------------------------------------------

# Ports of the service names an smtpd listener usually has (master.cf's first column).
SERVICE_PORTS = {"smtp": 25, "submission": 587, "smtps": 465, "submissions": 465}
CERT_PARAMS = (
    "smtpd_tls_chain_files",
    "smtpd_tls_cert_file",
    "smtpd_tls_key_file",
    "smtpd_tls_eccert_file",
    "smtpd_tls_eckey_file",
)
_OPT = re.compile(
    r"(?<!\S)-o\s*(?:\{\s*(?P<bn>[A-Za-z0-9_]+)\s*=\s*(?P<bv>[^}]*?)\s*\}|(?P<n>[A-Za-z0-9_]+)=(?P<v>\S*))"
)


@dataclass
class Entry:
    """One master.cf service: its fields, its -o overrides, the physical lines it spans."""

    service: str
    type: str
    command: str
    overrides: dict[str, str]
    lines: tuple[int, int]  # first and last physical line (inclusive)


@dataclass
class Listener:
    """An smtpd (or postscreen) inet service: where it listens, how TLS starts there."""

    name: str  # master.cf service name: smtp, submission, 127.0.0.1:10025, ...
    host: str  # where the host's own client connects
    port: int | None
    wrapper: bool  # smtps: TLS from the first byte, no STARTTLS
    private: bool  # bound to a loopback address in its service name
    overrides: dict[str, str]  # -o overrides (postscreen: with the smtpd pass service's)
    not_probed: str = ""  # why it is not probed ("" = probed)

    @property
    def cert_override(self) -> bool:
        return any(p in self.overrides for p in CERT_PARAMS)

    @property
    def tls_overrides(self) -> dict[str, str]:
        return {k: v for k, v in self.overrides.items() if "tls" in k}

    def spec(self) -> str:
        """NAME,HOST,PORT,MODE,CERT for tls_check.sh (pfs_verify)."""
        mode = "wrapper" if self.wrapper else "starttls"
        return f"{self.name},{self.host},{self.port},{mode},{'no' if self.cert_override else 'yes'}"


def entries(text: str) -> list[Entry]:
    """master.cf services: a line that starts with non-space text starts one, lines that
    start with space continue it, comment and blank lines are skipped."""
    out: list[Entry] = []
    raw: list[tuple[int, str]] = []

    def flush():
        if raw:
            fields = " ".join(t for _, t in raw).split()
            if len(fields) >= 8:
                opts = {
                    m.group("n") or m.group("bn"): m.group("v") if m.group("n") else m.group("bv")
                    for m in _OPT.finditer(" ".join(t for _, t in raw))
                }
                out.append(Entry(fields[0], fields[1], fields[7], opts, (raw[0][0], raw[-1][0])))
        raw.clear()

    for i, line in enumerate(text.splitlines()):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            flush()
        raw.append((i, line))
    flush()
    return out


def _address(service: str, interfaces: list[str]) -> tuple[str, str, bool]:
    """(host to connect to, port name, private) of an inet service name."""
    host, sep, port = service.rpartition(":")
    if sep:
        host = host.strip("[]")
        private = host in ("localhost", "::1") or host.startswith("127.")
        return host, port, private
    for addr in interfaces:
        if addr not in ("all", "loopback-only"):
            return addr, service, False
    return "127.0.0.1", service, False


def listeners(text: str, interfaces: list[str], main_level: str = "may") -> list[Listener]:
    """Every smtpd/postscreen inet service of master.cf, with where and how to probe it.
    `interfaces`: inet_interfaces; `main_level`: main.cf's smtpd_tls_security_level."""
    all_entries = entries(text)
    passed = {}
    for e in all_entries:  # postscreen hands clients to the smtpd "pass" service
        if e.type == "pass" and e.command == "smtpd":
            passed.update(e.overrides)
    out = []
    for e in all_entries:
        if e.type != "inet" or e.command not in ("smtpd", "postscreen"):
            continue
        overrides = {**passed, **e.overrides} if e.command == "postscreen" else dict(e.overrides)
        host, port_name, private = _address(e.service, interfaces)
        port = int(port_name) if port_name.isdigit() else SERVICE_PORTS.get(port_name)
        wrapper = overrides.get("smtpd_tls_wrappermode", "no") == "yes"
        level = overrides.get("smtpd_tls_security_level", main_level)
        li = Listener(e.service, host, port, wrapper, private, overrides)
        if port is None:
            li.not_probed = f"unknown port for service name {port_name}"
        elif level == "none" and not wrapper:
            where = (
                "-o smtpd_tls_security_level=none"
                if "smtpd_tls_security_level" in overrides
                else "main.cf"
            )
            li.not_probed = f"TLS off ({where})"
        out.append(li)
    return out


def drop_overrides(text: str, weakens) -> tuple[str, list[str]]:
    """master.cf without the -o overrides of smtpd services that `weakens(listener_private,
    name, value)` names a reason for; returns the new text and one line per removal."""
    lines = text.splitlines()
    removed: list[str] = []
    for e in entries(text):
        if not (e.command == "smtpd" and e.type in ("inet", "pass")) and not (
            e.command == "postscreen" and e.type == "inet"
        ):
            continue
        private = e.type == "inet" and _address(e.service, [])[2]
        for i in range(e.lines[0], e.lines[1] + 1):

            def cut(m, service=e.service, private=private):
                name = m.group("n") or m.group("bn")
                value = m.group("v") if m.group("n") else m.group("bv")
                reason = weakens(private, name, value)
                if reason is None:
                    return m.group(0)
                removed.append(
                    f"{service}: -o {name}={value} removed (protected TLS policy: {reason})"
                )
                return ""

            if not lines[i].lstrip().startswith("#"):
                lines[i] = _OPT.sub(cut, lines[i])
                if i > e.lines[0]:
                    lines[i] = lines[i] if lines[i].strip() else None
                else:
                    lines[i] = lines[i].rstrip()
    if not removed:
        return text, []
    return "\n".join(line for line in lines if line is not None) + "\n", removed
