"""Entry points for your own pyinfra deploy file: the whole pipeline and each single stage.

Each is a pyinfra ``@deploy``: call it in a deploy file next to your other
operations; pyinfra's global arguments (``_sudo=True``, ``_sudo_user``,
``_su_user``, ``_env``, ...) apply to every command it runs on the host, facts
included. The inventory data of every targeted host is validated first (keys
of other deploys are left alone, see the README's data reference).

.. code:: python

    # my_deploy.py:  pyinfra inventory.py my_deploy.py
    from pyinfra.operations import server
    from postfix_pfs.deploys import postfix_tls

    server.shell(name="Say hello", commands=["echo hello"])
    postfix_tls(_sudo=True)

deploy.py and deploys/*.py in the repository are one-line callers of these.
"""

from __future__ import annotations

from pyinfra.api.deploy import deploy

from . import pipeline


@deploy("postfix-pfs")
def postfix_tls() -> None:
    """Converge Postfix on TLS with forward secrecy: settings, facts, plan, material,
    stage, activate (check, switch, reload/restart, STARTTLS proof, roll back)."""
    pipeline.converge()


@deploy("postfix-pfs tlsmgr")
def tlsmgr() -> None:
    """Only master.cf: tlsmgr active exactly once, Postfix restarted if it changed."""
    pipeline.converge(stages=("tlsmgr",))


@deploy("postfix-pfs certificates")
def certificates() -> None:
    """Only certificates: reuse or generate, upload, switch main.cf to them (main.cf is
    rendered whole); brings tlsmgr along where master.cf has none active."""
    pipeline.converge(stages=("certificates",))


@deploy("postfix-pfs reload")
def reload() -> None:
    """Only activation: check the live configuration, reload (or start) Postfix through
    the host's own init, verify STARTTLS."""
    pipeline.control("reload")


@deploy("postfix-pfs check")
def check() -> None:
    """Change nothing: prove the TLS policy now, judge certificates (days left) and drift;
    a host with a problem fails (pyinfra exits non-zero). For cron and monitoring."""
    pipeline.check()
