"""Bearer tokens per project (a token only sees its own project's jobs) and TLS."""

import datetime

import pytest

from bridge.client import BridgeClient
from bridge.errors import BridgeUnavailableError, NotFoundError, PermissionDeniedError, UnauthenticatedError

TOKENS = {"tok-a": "alpha", "tok-b": "beta", "tok-admin": "*"}


def test_tokens_isolate_projects(start_bridge, small_shot):
    bridge = start_bridge(tokens=TOKENS)
    a_shot = small_shot.with_tags(project="alpha")
    with BridgeClient(bridge.address, token="tok-a") as alice, BridgeClient(bridge.address, token="tok-b") as bob:
        job = alice.submit(a_shot).job
        assert [j.job_id for j in alice.jobs()] == [job.job_id]      # project implied by the token
        with pytest.raises(PermissionDeniedError, match="token is for project 'beta', not 'alpha'"):
            bob.jobs("alpha")
        with pytest.raises(PermissionDeniedError, match="not 'alpha'"):
            bob.submit(a_shot)
        assert bob.jobs() == []
        with pytest.raises(NotFoundError):   # other projects' jobs do not exist for bob
            bob.job(job.job_id)
        with pytest.raises(NotFoundError):
            bob.cancel(job.job_id)
        with pytest.raises(NotFoundError):
            list(bob.watch(job.job_id))
        assert alice.job(job.job_id).project == "alpha"
    with BridgeClient(bridge.address, token="tok-admin") as admin:
        assert [j.job_id for j in admin.jobs("alpha")] == [job.job_id]
        assert admin.capabilities().auth_required


def test_missing_or_unknown_token_is_unauthenticated(start_bridge, small_shot):
    bridge = start_bridge(tokens=TOKENS)
    with BridgeClient(bridge.address) as anonymous:
        with pytest.raises(UnauthenticatedError, match="requires a token"):
            anonymous.capabilities()
    with BridgeClient(bridge.address, token="guess") as guesser:
        with pytest.raises(UnauthenticatedError, match="unknown token"):
            guesser.submit(small_shot.with_tags(project="alpha"))


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tmp_path / "cert.pem", tmp_path / "key.pem", cert_pem


def test_tls_round_trip_and_plaintext_refused(start_bridge, small_shot, tmp_path):
    cert, key, cert_pem = _self_signed(tmp_path)
    bridge = start_bridge(tls_cert=cert, tls_key=key, host="localhost")
    address = f"localhost:{bridge.port}"
    with BridgeClient(address, tls_root_cert=cert_pem, timeout_s=10) as client:
        job = client.submit(small_shot).job
        assert list(client.watch(job.job_id))[-1].kind.value == "completed"
    with BridgeClient(address, timeout_s=2, reconnect_s=0) as plaintext:
        with pytest.raises(BridgeUnavailableError):
            plaintext.capabilities()
