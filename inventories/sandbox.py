"""The local sandbox fleet (sandbox/fleet.py up): real hosts over real SSH.

Groups: one per Debian suite (bullseye, bookworm, trixie) plus `sandbox` (all of them).
Group data lives in inventories/group_data/.
"""

import json
import os
from pathlib import Path

_root = Path(os.environ.get("PFS_SANDBOX_DIR", "/var/lib/pfs-sandbox"))
_state = _root / "fleet.json"
if not _state.exists():
    raise SystemExit(f"no sandbox fleet at {_root}: run `python3 sandbox/fleet.py up` first")

bullseye, bookworm, trixie = [], [], []
_groups = {"bullseye": bullseye, "bookworm": bookworm, "trixie": trixie}
for _name, _h in sorted(json.loads(_state.read_text())["hosts"].items()):
    _data = {
        "ssh_hostname": _h["address"],
        "ssh_user": "root",
        "ssh_key": str(_root / "id_ed25519"),
        "ssh_known_hosts_file": str(_root / "known_hosts"),
        "ssh_strict_host_key_checking": "yes",  # sandbox/fleet.py writes known_hosts
        "myhostname": f"{_name}.sandbox.test",
        # all sandbox hosts share one network stack: each listens on its own address
        "inet_interfaces": [_h["address"]],
        "inet_protocols": "ipv4",
    }
    _groups[_h["suite"]].append((_name, _data))
