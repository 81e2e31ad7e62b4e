"""Credentials in main.cf parameter values, hidden wherever a value is shown.

A host may carry `smtp_sasl_password_maps = static:user:password` (or an
`inline:{...}` table) in its own main.cf, and `postfix_extra` may set one. The
plan view, the notes, the report and activation errors show parameter values;
this module hides the parts that can hold a credential, keeping table paths.
"""

from __future__ import annotations

import re

HIDDEN = "<hidden>"
_TABLE_REF = re.compile(r"(proxy:)?[a-z0-9]+:/[^\s,]*")
_INLINE = re.compile(r"\b(static|inline|texthash|pipemap|unionmap):(\{[^}]*\}?|[^\s,]+)")
_ASSIGN = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*)")


def is_credential_param(name: str) -> bool:
    return "passw" in name.lower()


def mask_value(name: str, value: str) -> str:
    """A parameter's value as it may be shown."""
    if is_credential_param(name):
        refs = [r for r in re.split(r"[\s,]+", value) if r]
        if all(_TABLE_REF.fullmatch(r) for r in refs):
            return value  # table files: their paths are not secret
        return HIDDEN
    if "sasl" in name.lower():
        return _INLINE.sub(lambda m: f"{m.group(1)}:{HIDDEN}", value)
    return value


def mask_text(text: str) -> str:
    """A message whose lines may quote "name=value" or "name = value" (Postfix warnings)."""
    return "\n".join(_mask_line(line) for line in text.split("\n"))


def _mask_line(line: str) -> str:
    m = _ASSIGN.search(line)
    if not m:
        return line
    masked = mask_value(m.group(1), m.group(2))
    return line if masked == m.group(2) else line[: m.start(2)] + masked
