"""Certificate sources (lent, found, files, CA), chain validation, lookup tables."""

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization

from postfix_pfs import host_ops, maincf, pki, plan
from postfix_pfs.facts import FileState
from tests.unit.helpers import NOW, recorded
from tests.unit.test_plan import HOST, converged, material, with_pair
from tests.unit.test_plan import make_settings as S


def add(f, path, m=None, key_of=None, certs=True):
    """A file on the host as the facts command reports it."""
    st = FileState(path, True, "x", "600" if key_of else "644", "root", "root")
    if key_of:
        st.key_pub_sha256 = key_of.spki_sha256
    if m is not None and certs:
        st.cert_pub_sha256, st.certs_pem = m.spki_sha256, m.cert_pem.decode()
    f.files[path] = st


def test_smtp_pair_is_lent_to_smtpd():
    m = material()[0]
    f = recorded("debian13")
    f.postconf_n.update(smtp_tls_cert_file="/etc/ssl/c.pem", smtp_tls_key_file="/etc/ssl/k.pem")
    add(f, "/etc/ssl/c.pem", m)
    add(f, "/etc/ssl/k.pem", key_of=m)
    d = plan.choose_cert(S(HOST), f, NOW)
    assert (d.source, d.reason) == ("existing", "lent from smtp_tls_* certificate is valid")
    assert d.files == {
        "smtpd_tls_cert_file": "/etc/ssl/c.pem",
        "smtpd_tls_key_file": "/etc/ssl/k.pem",
    }
    p = plan.make(HOST, S(HOST), f, d, [])
    assert "smtp_tls_cert_file = /etc/ssl/c.pem" in p.main_cf  # the client keeps its own


def test_pair_found_under_globs():
    m = material()[1]
    f = recorded("debian13")
    add(f, "/home/ops/cert/mx.pem", m)
    add(f, "/home/ops/cert/other.pem", material()[0])
    add(f, "/home/ops/keys/mx.key", key_of=m)
    s = S(HOST, tls_cert_globs=["/home/*/cert/*.pem"], tls_key_globs=["/home/*/keys/*.key"])
    d = plan.choose_cert(s, f, NOW)
    assert d.source == "existing" and d.reason.startswith("found under tls_cert_globs")
    assert d.files == {
        "smtpd_tls_cert_file": "/home/ops/cert/mx.pem",
        "smtpd_tls_key_file": "/home/ops/keys/mx.key",
    }
    assert plan.choose_cert(S(HOST), f, NOW).source == "generate"  # no globs set


def test_configured_pair_wins_over_lent_and_found():
    a, b = material()[0], material()[0]
    f = with_pair(recorded("debian13"), a.cert_pem)
    f.postconf_n.update(smtp_tls_cert_file="/etc/ssl/sc.pem", smtp_tls_key_file="/etc/ssl/sk.pem")
    add(f, "/etc/ssl/sc.pem", b)
    add(f, "/etc/ssl/sk.pem", key_of=b)
    assert plan.choose_cert(S(HOST), f, NOW).files["smtpd_tls_cert_file"] == "/etc/ssl/c.pem"


def test_existing_chain_in_wrong_order_is_refused():
    leaf = material()[0]
    f = recorded("debian13")
    other = pki.generate("rsa", ["ca.example"], 90, NOW)
    with_pair(f, other.cert_pem + leaf.cert_pem)  # an unrelated cert first
    with pytest.raises(plan.PlanError, match="chain order"):
        plan.choose_cert(S(HOST, tls_cert_source="existing"), f, NOW)


@pytest.mark.parametrize("source", ["generate", "files", "ca"])
def test_forced_sources(source):
    d = plan.choose_cert(S(HOST, tls_cert_source=source), recorded("debian12"), NOW)
    assert d.source == source


# --- files on the controller -------------------------------------------------------------------


def write(tmp_path, m: pki.Material, cert_pem=None, key_pem=None):
    c, k = tmp_path / "c.pem", tmp_path / "k.pem"
    c.write_bytes(cert_pem if cert_pem is not None else m.cert_pem)
    k.write_bytes(key_pem if key_pem is not None else m.key_pem)
    return c, k


def test_files_valid(tmp_path):
    m = material()[1]
    got = pki.load_files(*write(tmp_path, m), NOW)
    assert got.kind == "ecdsa" and got.fingerprint == m.fingerprint


def test_files_encrypted_key(tmp_path):
    m = material()[0]
    key = serialization.load_pem_private_key(m.key_pem, None)
    enc = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(pki.StoreError, match="passphrase-protected"):
        pki.load_files(*write(tmp_path, m, key_pem=enc), NOW)


def test_files_mismatch_order_expiry(tmp_path):
    a, b = material()[0], pki.generate("rsa", [HOST], 90, NOW)
    with pytest.raises(pki.StoreError, match="does not match"):
        pki.load_files(*write(tmp_path, a, key_pem=b.key_pem), NOW)
    with pytest.raises(pki.StoreError, match="chain order: the certificate of the key is number 2"):
        pki.load_files(*write(tmp_path, a, cert_pem=b.cert_pem + a.cert_pem), NOW)
    old = pki.generate("rsa", [HOST], 2, NOW - dt.timedelta(days=10))
    with pytest.raises(pki.StoreError, match="expired"):
        pki.load_files(*write(tmp_path, old), NOW)


# --- fleet CA ----------------------------------------------------------------------------------------


def test_fleet_ca_signs_and_switching_modes_regenerates(tmp_path):
    store = tmp_path / "store"
    ca, notes = pki.ensure_ca(store, NOW, dry=False)
    assert notes and ca.cert.extensions.get_extension_for_class(pki.x509.BasicConstraints).value.ca
    again, notes = pki.ensure_ca(store, NOW, dry=False)
    assert notes == [] and again.cert == ca.cert
    signed, _ = pki.ensure(store, "mx1", [HOST], 90, 30, NOW, dry=False, ca=ca)
    for m in signed:
        assert m.cert.issuer == ca.cert.subject
        m.cert.verify_directly_issued_by(ca.cert)
    self_signed, notes = pki.ensure(store, "mx1", [HOST], 90, 30, NOW, dry=False)
    assert all("no longer signed by the fleet CA" in n for n in notes)
    assert all(m.cert.issuer == m.cert.subject for m in self_signed)


def test_ca_mode_uploads_ca_and_trusts_it(tmp_path):
    ca, _ = pki.ensure_ca(tmp_path / "store", NOW, dry=True)
    s, f = S(HOST, tls_cert_source="ca"), recorded("debian12")
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material(), ca_pem=ca.cert_pem)
    assert "smtp_tls_CAfile = /etc/postfix/tls/fleet-ca.pem" in p.main_cf
    uploaded = next(hf for hf in p.files if hf.path == "/etc/postfix/tls/fleet-ca.pem")
    assert uploaded.content == ca.cert_pem and uploaded.mode == "644" and not uploaded.secret


# --- lookup tables ----------------------------------------------------------------------------------


def test_tables_written_compiled_with_host_db_type():
    s = S(
        HOST,
        aliases={"bob": "root"},
        transport_maps={"b.test": "smtp:[mx2.example]"},
        virtual_alias_maps={"info@b.test": "alice"},
        virtual_alias_domains=["b.test"],
        sender_access={"spam.example": "REJECT"},
        smtp_tls_policy={"[mx2.example]": "verify"},
        extra_maps={"alias_maps": ["ldap:/etc/postfix/ldap-aliases.cf"]},
    )
    for distro, db in (("debian12", "hash"), ("rhel9", "lmdb")):
        f = recorded(distro)
        p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())
        tables = {hf.path.rsplit("/", 1)[1]: hf for hf in p.files if hf.compile}
        assert set(tables) == {"aliases", "transport", "virtual", "sender_access", "tls_policy"}
        assert (
            tables["aliases"].compile == f"postalias:{db}"
            and tables["transport"].compile == f"postmap:{db}"
        )
        assert (
            b"bob: root\n" in tables["aliases"].content
            and b"b.test smtp:[mx2.example]\n" in tables["transport"].content
        )
        assert tables["transport"].db_path.endswith(".lmdb" if db == "lmdb" else ".db")
        text = p.main_cf
        assert (
            f"alias_maps = {db}:/etc/aliases, {db}:/etc/postfix/maps/aliases, ldap:/etc/postfix/ldap-aliases.cf"
            in text
        )
        assert f"transport_maps = {db}:/etc/postfix/maps/transport" in text
        assert (
            f"smtpd_sender_restrictions = check_sender_access {db}:/etc/postfix/maps/sender_access"
            in text
        )
        assert f"smtp_tls_policy_maps = {db}:/etc/postfix/maps/tls_policy" in text
        assert "virtual_alias_domains = b.test" in text


def test_only_a_changed_table_is_recompiled_without_reload():
    s, mats = (
        S(HOST, transport_maps={"a.test": "smtp:[x.example]"}, canonical_maps={"a@x": "b@x"}),
        material(),
    )
    f = converged(recorded("debian12"), s, mats)
    for path in [p for p in list(f.files) if "/maps/" in p]:
        f.files[path + ".db"] = FileState(path + ".db", True, "db", "644", "root", "root")
    s2 = S(HOST, transport_maps={"a.test": "smtp:[y.example]"}, canonical_maps={"a@x": "b@x"})
    p = plan.make(HOST, s2, f, plan.choose_cert(s2, f, NOW), mats)
    assert [hf.path for hf in p.changed] == ["/etc/postfix/maps/transport"]
    assert p.activation == "none"
    assert host_ops.manifest(p).decode().splitlines() == [
        "map|/etc/postfix/maps/transport|644|postmap:hash",
        "put|/etc/postfix/maps/transport.db|644|",
    ]
    del f.files["/etc/postfix/maps/canonical.db"]  # compiled file lost: recompile
    assert [hf.path for hf in plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), mats).changed] == [
        "/etc/postfix/maps/canonical"
    ]


def test_relay_password_is_a_secret_table():
    s = S(
        HOST,
        relayhost="[relay.example.net]:587",
        relayhost_username="mx1",
        relayhost_password="S3cret!",
    )
    f = recorded("debian12")
    p = plan.make(HOST, s, f, plan.choose_cert(s, f, NOW), material())
    sasl = next(hf for hf in p.files if hf.path.endswith("/sasl_passwd"))
    assert (
        sasl.secret
        and sasl.mode == "600"
        and b"[relay.example.net]:587 mx1:S3cret!" in sasl.content
    )
    assert "S3cret" not in p.main_cf
    policy = next(hf for hf in p.files if hf.path.endswith("/tls_policy"))
    assert b"[relay.example.net]:587 encrypt\n" in policy.content
    assert "smtp_sasl_password_maps = hash:/etc/postfix/maps/sasl_passwd" in p.main_cf
    assert maincf.tls_policy(
        S(HOST, relayhost="[r.example]", relayhost_password="x", relay_tls_level="verify")
    ) == {"[r.example]": "verify"}


def test_secret_value_never_in_error_messages():
    with pytest.raises(Exception) as e:
        S(HOST, relayhost_password="pa\nss")
    assert "pa\nss" not in str(e.value) and "not shown" in str(e.value)
