"""postfix-pfs as a pyinfra user gets it: a wheel, installed (not editable) into a
fresh venv, used from a directory that has nothing to do with this repository.

The wheel is built from the repository, installed with pip into a new venv (its
dependencies from pip's usual sources), and pyinfra from that venv runs a deploy
file in a user's project directory, against one sandbox host over real SSH.
Python's ssl module judges the result on port 25.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import SANDBOX, deploy, forward_secret, reset, snapshot, starttls


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel of this repository installed (not editable)."""
    base = tmp_path_factory.mktemp("pkg")
    r = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(base / "dist"), str(ROOT)],
        base,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (base / "dist").glob("postfix_pfs-*.whl")
    r = _run([sys.executable, "-m", "venv", str(base / "venv")], base)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run([str(base / "venv/bin/pip"), "install", "-q", str(wheel)], base)
    assert r.returncode == 0, r.stderr[-2000:]
    return base / "venv"


def site_packages(venv: Path) -> Path:
    (sp,) = venv.glob("lib/python*/site-packages")
    return sp


def write_inventory(project: Path, h, user: str = "root", extra: dict | None = None) -> None:
    """A user's inventory for one sandbox host (the same data inventories/sandbox.py gives)."""
    data = {
        "ssh_hostname": h.address,
        "ssh_user": user,
        "ssh_key": str(SANDBOX / "id_ed25519"),
        "ssh_known_hosts_file": str(SANDBOX / "known_hosts"),
        "ssh_strict_host_key_checking": "yes",
        "myhostname": h.fqdn,
        "inet_interfaces": [h.address],
        "inet_protocols": "ipv4",
        "maillog_file": "/var/log/postfix.log",
        **(extra or {}),
    }
    (project / "inventory.py").write_text(f"mx = [({h.name!r}, {data!r})]\n")


def user_project(
    tmp_path: Path, h, deploy_text: str, user: str = "root", extra: dict | None = None
) -> Path:
    """A project directory of the user's: inventory, deploy file and an operations/
    folder of their own (which the installed package must not shadow)."""
    project = tmp_path / "my-mail-project"
    (project / "operations").mkdir(parents=True)
    (project / "operations" / "__init__.py").write_text("OWNER = 'the user'\n")
    write_inventory(project, h, user, extra)
    (project / "mail.py").write_text(deploy_text)
    return project


def judge(h, project: Path, venv: Path) -> None:
    """TLS with forward secrecy on port 25; store and report in the user's project,
    nothing written into the installed package."""
    proto, cipher, _ = starttls(h)
    assert proto in ("TLSv1.2", "TLSv1.3") and forward_secret(proto, cipher), (proto, cipher)
    report = json.loads((project / "reports" / "latest.json").read_text())
    assert report["hosts"][h.name]["failed"] is False, report["hosts"][h.name]
    assert (project / ".pfs-store" / h.name).is_dir()
    sp = site_packages(venv)
    assert not (sp / "reports").exists() and not (sp / ".pfs-store").exists()
    assert not list((sp / "postfix_pfs").glob("*report*/")), "report written into the package"
    assert not (sp / "operations").exists(), "a top-level 'operations' package was installed"


def test_wheel_in_fresh_venv_deploys_from_an_unrelated_directory(venv, hosts, tmp_path):
    h = hosts[0]
    reset(h.name)
    project = user_project(
        tmp_path,
        h,
        "from operations import OWNER  # the user's own folder, not the package\n"
        "assert OWNER == 'the user'\n"
        "from postfix_pfs.deploys import postfix_tls\n"
        "postfix_tls()\n",
    )
    r = _run([str(venv / "bin/pyinfra"), "inventory.py", "mail.py", "-y"], project)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    judge(h, project, venv)
    # the installed package is the one at work, not this repository
    assert str(ROOT) not in r.stdout + r.stderr


# A user's own deploy file: their own operation first (data of their own in the same
# inventory), then this deploy's entry point with pyinfra's global arguments.
USER_DEPLOY = """\
from pyinfra import host
from pyinfra.operations import files, server

files.line(
    name="Message of the day (the user's own operation)",
    path="/etc/motd",
    line=host.data.motd_text,
    _sudo=True,
)
server.shell(name="Who am I", commands=["id -un > /tmp/whoami-before-pfs"])

from postfix_pfs.deploys import postfix_tls

postfix_tls(_sudo=True)
"""


def test_user_deploy_calls_the_entry_point_with_sudo(venv, hosts, tmp_path):
    h = hosts[0]
    reset(h.name)
    h.ssh("usermod -p '*' pfsadmin")  # useradd leaves it locked: sshd refuses any login
    motd = "Managed by the mail team: mx1 takes TLS only with forward secrecy"
    extra = {"motd_text": motd, "backup_hour": 3}  # other deploys' data, in the same inventory
    project = user_project(tmp_path, h, USER_DEPLOY, user="pfsadmin", extra=extra)
    r = _run([str(venv / "bin/pyinfra"), "inventory.py", "mail.py", "-y"], project)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    # the user's operations ran as the SSH user pfsadmin, the motd line with sudo
    assert h.ssh("cat /tmp/whoami-before-pfs").stdout.strip() == "pfsadmin"
    assert motd in h.ssh("cat /etc/motd").stdout
    judge(h, project, venv)
    # every file the deploy wrote is root's: it ran through sudo, not as pfsadmin
    owners = h.ssh("stat -c '%U %a %n' /etc/postfix/main.cf /etc/postfix/tls/*").stdout.split("\n")
    assert all(o.startswith("root ") for o in owners if o), owners
    keys = [o for o in owners if o.endswith(".pem") and "ffdhe" not in o]
    assert keys and all(o.split()[1] == "600" for o in keys), owners
    # the pipeline's operations are grouped under the entry point's deploy name
    assert "postfix-pfs | Stage changed files" in out, out[-3000:]

    # a second run through the entry point changes nothing on the host
    again = _run([str(venv / "bin/pyinfra"), "inventory.py", "mail.py", "-y"], project)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    report = json.loads((project / "reports" / "latest.json").read_text())
    assert report["hosts"][h.name]["action"] == "none", report["hosts"][h.name]


def test_an_entry_point_called_twice_for_a_host_stops_the_run_untouched(hosts, tmp_path, store):
    """Two calls in one deploy file (postfix_tls() twice, or two stages) would plan from the
    same facts twice and activate twice: the run stops before any host is changed."""
    h = hosts[0]
    reset(h.name)
    before = snapshot(h)
    twice = tmp_path / "twice.py"
    twice.write_text(
        "from postfix_pfs.deploys import certificates, tlsmgr\n\ntlsmgr()\ncertificates()\n"
    )
    run = deploy("--limit", h.name, store=store, deploy_file=str(twice))
    assert run.returncode != 0, run.output[-3000:]
    assert "Traceback" not in run.output, run.output[-4000:]
    assert f"{h.name}: postfix-pfs was called twice for this host" in run.output, run.output[-3000:]
    assert snapshot(h) == before
    assert not any(store.iterdir()), "keys saved although no host was changed"
