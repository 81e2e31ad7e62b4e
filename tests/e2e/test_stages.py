"""Single stages on hosts shaped like the recipe's own (issue 20).

The shape, made over SSH as an admin of such a host would have it: tlsmgr
commented out in master.cf (SLES style) and the recipe's `postconf -e` lines in
main.cf (the misspelled smtpd_tls_CApth, smtpd_use_tls, tls_preempt_cipherlist,
...), so `postconf -n` warns before any deploy. Each stage runs alone with
`--limit` on its group ("recipe": the first bookworm host); the other hosts,
shaped the same way, are outside the limit and must be neither contacted nor
changed.
"""

from __future__ import annotations

import hashlib

from tests.conftest import FIXTURES
from tests.e2e.conftest import SANDBOX, deploy, inventory_with, reset, snapshot, starttls

GROUP = "recipe"


def recipe_shape(h) -> None:
    """tlsmgr commented out, the recipe's main.cf settings, Postfix restarted onto them."""
    h.ssh(
        "sed -i 's/^tlsmgr/#tlsmgr/' /etc/postfix/master.cf\n"
        + (FIXTURES / "recipe_postconf.sh").read_text()
        + "\npostfix stop >/dev/null 2>&1; postfix start >/dev/null 2>&1"
    )
    assert "smtpd_tls_CApth" in h.ssh("postconf -n 2>&1 >/dev/null").stdout
    assert h.ssh("grep -c '^#tlsmgr' /etc/postfix/master.cf").stdout.strip() == "1"
    assert h.master_pid()


def logins(h) -> int:
    """SSH logins the host's sshd accepted so far (read on this machine, not over SSH)."""
    log = SANDBOX / "hosts" / h.name / "sshd.log"
    return log.read_text(errors="replace").count("Accepted publickey") if log.exists() else 0


def sha(h, path: str) -> str:
    return hashlib.sha256((h.root / path.lstrip("/")).read_bytes()).hexdigest()


def shaped_fleet(hosts, tmp_path):
    """Every host recipe-shaped; the group "recipe" holds the first bookworm host."""
    reset()
    inside = [next(h for h in hosts if h.suite == "bookworm")]
    outside = [h for h in hosts if h not in inside]
    for h in hosts:
        recipe_shape(h)
    inv = inventory_with(tmp_path, {})
    with open(inv, "a") as f:
        f.write(f"{GROUP} = [h for h in bookworm if h[0] == {inside[0].name!r}]\n")
    before = {h.name: (snapshot(h), logins(h)) for h in outside}
    return inside, outside, before, inv


def untouched(outside, before) -> None:
    for h in outside:
        snap, seen = before[h.name]
        assert logins(h) == seen, f"{h.name} outside --limit was contacted"
        assert snapshot(h) == snap, f"{h.name} outside --limit was changed"


def test_tlsmgr_stage_alone_on_recipe_hosts(hosts, store, tmp_path):
    inside, outside, before, inv = shaped_fleet(hosts, tmp_path)
    main_cf = {h.name: sha(h, "/etc/postfix/main.cf") for h in inside}

    run = deploy("--limit", GROUP, store=store, inventory=inv, deploy_file="deploys/tlsmgr.py")
    assert run.returncode == 0, run.output[-3000:]
    for h in inside:
        assert sha(h, "/etc/postfix/main.cf") == main_cf[h.name], f"{h.name}: main.cf changed"
        assert h.ssh("grep -c '^tlsmgr' /etc/postfix/master.cf").stdout.strip() == "1"
        assert h.ssh("grep -c '^#tlsmgr' /etc/postfix/master.cf", check=False).stdout.strip() == "0"
        proto, _, _ = starttls(h)  # STARTTLS works now, with the recipe's own certificate
        assert proto in ("TLSv1.2", "TLSv1.3")
    # the warning the host already had is reported, and said not to be fatal
    assert "pre-existing warning" in run.output
    assert "smtpd_tls_CApth" in run.output
    untouched(outside, before)


def test_certificates_stage_alone_on_recipe_hosts(hosts, store, tmp_path):
    inside, outside, before, inv = shaped_fleet(hosts, tmp_path)

    run = deploy(
        "--limit", GROUP, store=store, inventory=inv, deploy_file="deploys/certificates.py"
    )
    assert run.returncode == 0, run.output[-3000:]
    # STARTTLS cannot work without tlsmgr: the stage brings it along and says so
    assert "tlsmgr" in run.output and "brought along" in run.output
    for h in inside:
        assert h.ssh("grep -c '^tlsmgr' /etc/postfix/master.cf").stdout.strip() == "1"
        assert h.ssh("postconf -n 2>&1 >/dev/null").stdout == "", h.name
        served = starttls(h)[2]
        names = h.ssh("ls /etc/postfix/tls").stdout.split()
        assert len(names) == 2, names
        deployed = h.ssh(
            "for f in /etc/postfix/tls/*.pem; do openssl x509 -in $f -outform DER | sha256sum; done"
        ).stdout
        assert hashlib.sha256(served).hexdigest() in deployed, h.name
    again = deploy(
        "--limit", GROUP, store=store, inventory=inv, deploy_file="deploys/certificates.py"
    )
    assert again.returncode == 0 and again.totals()["changed"] == 0, again.output[-2000:]
    untouched(outside, before)


def test_reload_stage_alone_on_recipe_hosts(hosts, store, tmp_path):
    inside, outside, before, inv = shaped_fleet(hosts, tmp_path)
    pids = {h.name: h.master_pid() for h in inside}
    main_cf = {h.name: sha(h, "/etc/postfix/main.cf") for h in inside}

    run = deploy("--limit", GROUP, store=store, inventory=inv, deploy_file="deploys/reload.py")
    assert run.returncode == 0, run.output[-3000:]
    for h in inside:
        assert h.master_pid() == pids[h.name], f"{h.name}: restarted, not reloaded"
        assert "reload" in h.ssh("tail -n 20 /var/log/postfix.log").stdout
        assert sha(h, "/etc/postfix/main.cf") == main_cf[h.name]
    assert "pre-existing warning" in run.output and "smtpd_tls_CApth" in run.output
    # STARTTLS cannot work on these hosts until tlsmgr runs; the output says which
    # command fixes that, and that command succeeds on them
    assert "deploys/tlsmgr.py" in run.output
    fix = deploy("--limit", GROUP, store=store, inventory=inv, deploy_file="deploys/tlsmgr.py")
    assert fix.returncode == 0, fix.output[-3000:]
    untouched(outside, before)


def test_a_warning_in_a_file_the_run_writes_stays_fatal(hosts, store):
    """The same warning the host already had is fatal when this run writes its file:
    postfix_extra puts smtpd_use_tls into the new main.cf, and Postfix 3.10 warns."""
    h = next(h for h in hosts if h.suite == "trixie")
    reset(h.name)
    recipe_shape(h)
    assert "smtpd_use_tls" in h.ssh("postconf -n 2>&1 >/dev/null").stdout  # pre-existing
    main_cf, pid = sha(h, "/etc/postfix/main.cf"), h.master_pid()
    run = deploy(
        "--limit", h.name, store=store, extra_data={"postfix_extra": {"smtpd_use_tls": "yes"}}
    )
    assert run.returncode != 0
    fatal = next(ln for ln in run.output.splitlines() if "FAILED" in ln)
    assert "introduced by this run, fatal" in fatal and "smtpd_use_tls" in fatal, fatal
    assert sha(h, "/etc/postfix/main.cf") == main_cf and h.master_pid() == pid
