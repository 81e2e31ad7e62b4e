import datetime as dt
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from postfix_pfs import pki
from tests.unit.helpers import NOW

NAMES = ["mx1.example.net", "smtp.example.net"]


def test_generate_rsa_and_ecdsa_self_signed_with_san():
    for kind, key_type in (("rsa", rsa.RSAPrivateKey), ("ecdsa", ec.EllipticCurvePrivateKey)):
        m = pki.generate(kind, NAMES, 30, NOW)
        key = load_pem_private_key(m.key_pem, password=None)
        assert isinstance(key, key_type)
        if kind == "rsa":
            assert key.key_size >= 2048
        assert pki.cert_names(m.cert) == NAMES
        assert m.cert.public_key().public_numbers() == key.public_key().public_numbers()
        assert m.cert.not_valid_after_utc == NOW + dt.timedelta(days=30)
        assert m.chain_pem.index(b"PRIVATE KEY") < m.chain_pem.index(b"CERTIFICATE")  # key first


def test_key_bytes_are_not_in_repr():
    m = pki.generate("ecdsa", NAMES, 30, NOW)
    assert "PRIVATE" not in repr(m) and m.key_pem.decode() not in repr(m)


@pytest.mark.parametrize(
    "days_left,names,expect",
    [
        (90, NAMES, None),
        (31, NAMES, None),
        (30, NAMES, "renewal window"),
        (5, NAMES, "renewal window"),
        (90, NAMES + ["new.example.net"], "does not name new.example.net"),
    ],
)
def test_needs_renewal(days_left, names, expect):
    cert = pki.generate("ecdsa", NAMES, days_left, NOW).cert
    reason = pki.needs_renewal(cert, names, NOW, renew_days=30)
    assert (reason is None) if expect is None else (expect in reason)


def test_store_reuses_then_renews(tmp_path):
    store = tmp_path / "store"
    first, notes = pki.ensure(store, "mx1", NAMES, 60, 30, NOW, dry=False)
    assert [m.kind for m in first] == ["rsa", "ecdsa"] and len(notes) == 2
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    for f in (store / "mx1").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    again, notes = pki.ensure(store, "mx1", NAMES, 60, 30, NOW, dry=False)
    assert notes == [] and [m.fingerprint for m in again] == [m.fingerprint for m in first]
    later = NOW + dt.timedelta(days=31)  # now inside the renewal window
    renewed, notes = pki.ensure(store, "mx1", NAMES, 60, 30, later, dry=False)
    assert len(notes) == 2 and "renewal window" in notes[0]
    assert all(a.fingerprint != b.fingerprint for a, b in zip(first, renewed, strict=True))


def test_dry_run_writes_nothing(tmp_path):
    store = tmp_path / "store"
    mats, notes = pki.ensure(store, "mx1", NAMES, 60, 30, NOW, dry=True)
    assert len(mats) == 2 and "to be generated" in notes[0]
    assert not store.exists()


def test_store_readable_by_others_is_refused(tmp_path):
    store = tmp_path / "store"
    store.mkdir(mode=0o755)
    os.chmod(store, 0o755)
    with pytest.raises(pki.StoreError, match="readable by others"):
        pki.ensure(store, "mx1", NAMES, 60, 30, NOW, dry=True)
