"""master.cf: make the tlsmgr service active exactly once, keeping the distro's columns."""

from __future__ import annotations

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
