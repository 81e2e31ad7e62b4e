"""The facts command's output, compared run to run (tests/unit and tests/e2e
test_facts_cache): a hit must print what a miss printed."""

from __future__ import annotations

import base64
import gzip
import re


def same_run(lines: list[str]) -> list[str]:
    """Boundary, clock and cache line out; in postconf -d its own pid out and mynetworks as
    a set (the key holds the interface addresses, not the order the kernel lists them in)."""
    b = re.fullmatch(r"@@pfs-facts ([0-9a-f]{32})", lines[0]).group(1)
    out = []
    for ln in lines:
        if ln.startswith("facts_cache="):
            continue
        if ln.startswith("gz:"):
            d = gzip.decompress(base64.b64decode(ln[3:])).decode().splitlines()
            d = [x for x in d if not x.startswith("process_id = ")]
            d = [
                f"mynetworks = {sorted(x.split()[2:])}" if x.startswith("mynetworks =") else x
                for x in d
            ]
            ln = "\n".join(d)
        out.append(re.sub(r"^now=\d+$", "now=", ln.replace(b, "B")))
    return out
