#!/usr/bin/env python3
"""acme_dns_hook for pebble-challtestsrv (the ACME test CA's DNS): the tests use it.

    acme_dns_hook = ["/path/to/challtestsrv.py", "http://127.0.2.250:8055"]

postfix-pfs appends: add|remove DOMAIN RECORD VALUE. The TXT record is set
through challtestsrv's management API (POST /set-txt, /clear-txt), which
answers at once, so there is no propagation to wait for. A hook for a real DNS
(RFC 2136 nsupdate, a provider's API) has the same arguments and must return
only when the record is visible to the CA.
"""

import json
import sys
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) != 5 or argv[1] not in ("add", "remove"):
        print(
            "usage: challtestsrv.py MANAGEMENT_URL add|remove DOMAIN RECORD VALUE", file=sys.stderr
        )
        return 2
    url, action, _domain, record, value = argv
    path, body = ("/set-txt", {"host": record, "value": value})
    if action == "remove":
        path, body = ("/clear-txt", {"host": record})
    req = urllib.request.Request(url.rstrip("/") + path, data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
    except OSError as e:
        print(f"challtestsrv {url}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
