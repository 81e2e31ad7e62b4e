"""The local sandbox fleet (sandbox/fleet.py up): real hosts over real SSH.

Groups: one per Debian suite (bullseye, bookworm, trixie) for the hosts run under
tini with SysV scripts, `systemd` for the hosts booted by systemd (fleet.py up
systemd-bookworm=1), and `sandbox` (all of them). Group data lives in
inventories/group_data/.
"""

import json
import os
from pathlib import Path

_root = Path(os.environ.get("PFS_SANDBOX_DIR", "/var/lib/pfs-sandbox"))
_state = _root / "fleet.json"
if not _state.exists():
    raise SystemExit(f"no sandbox fleet at {_root}: run `python3 sandbox/fleet.py up` first")

bullseye, bookworm, trixie, systemd = [], [], [], []
_groups = {"bullseye": bullseye, "bookworm": bookworm, "trixie": trixie, "systemd": systemd}
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
    _groups["systemd" if _h.get("init") == "systemd" else _h["suite"]].append((_name, _data))
