"""A host whose facts command fails is one failed host with one line saying why;
no traceback, it is left as it was, and the other hosts converge in the same run."""

from __future__ import annotations

from tests.e2e.conftest import deploy, forward_secret, reset, starttls


def test_one_host_whose_facts_fail_fails_alone(hosts, store):
    ok, bad = hosts[0], hosts[1]
    reset(ok.name, bad.name)
    # postconf is there but cannot run (as after a half-finished upgrade)
    bad.ssh(
        "mv /usr/sbin/postconf /usr/sbin/postconf.real && "
        'printf \'#!/bin/sh\\necho "postconf: error while loading shared libraries" >&2\\n'
        "exit 127\\n' > /usr/sbin/postconf && chmod 755 /usr/sbin/postconf"
    )
    before = bad.ssh("sha256sum /etc/postfix/main.cf /etc/postfix/master.cf").stdout
    pid = bad.master_pid()
    run = deploy("--limit", "bookworm", store=store)
    out = run.output
    assert run.returncode != 0, out[-3000:]  # a host failed: pyinfra says so
    assert "Traceback" not in out, out[-4000:]
    failed = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("FAILED ")]
    assert len(failed) == 1 and failed[0].startswith(f"FAILED {bad.name}: "), out[-3000:]
    assert "facts command failed" in failed[0], failed
    # pyinfra shows the host's own one-line reason
    assert "postconf does not work on this host: postconf: error while loading" in out, out
    # the failed host is as it was, Postfix still running
    assert bad.ssh("sha256sum /etc/postfix/main.cf /etc/postfix/master.cf").stdout == before
    assert bad.master_pid() == pid
    # the other host converged in the same run
    proto, cipher, _ = starttls(ok)
    assert forward_secret(proto, cipher), (proto, cipher)
    reset(ok.name, bad.name)
