"""Bearer tokens per project (a token only sees its own project's jobs), how
tokens reach the bridge (a private tokens file of digests, GREENLIGHT_TOKENS;
never argv), refusing to listen off loopback without them, TLS and mutual
TLS. See docs/security.md."""

import datetime
import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from bridge.cli import main as cli_main
from bridge.client import BridgeClient
from bridge.errors import (
    BridgeUnavailableError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from bridge.server.auth import (
    Principal,
    authenticate,
    check_exposure,
    hash_token,
    load_tokens_file,
    server_credentials,
    token_id,
)
from bridge.server.config import BridgeConfig, load_config

REPO = Path(__file__).resolve().parent.parent

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


# ---------------------------------------------------------------- authenticate
def _config(tokens: dict[str, str], **kw) -> BridgeConfig:
    return BridgeConfig(data_dir=Path("unused"), tokens={hash_token(t): p for t, p in tokens.items()}, **kw)


def test_authenticate_hashes_the_bearer_token_and_names_it_by_id():
    config = _config(TOKENS)
    digest = hash_token("tok-a")
    assert digest == hashlib.sha256(b"tok-a").hexdigest()
    assert authenticate(config, {"authorization": "Bearer tok-a"}) == Principal("alpha", token_id(digest))
    assert token_id(digest) == digest[:12] and "tok-a" not in token_id(digest)
    assert authenticate(config, {"authorization": "bearer  tok-b "}).project == "beta"   # the scheme is case-free
    assert authenticate(config, {"authorization": "Bearer tok-admin"}).project is None   # "*": every project
    for metadata in ({}, {"authorization": "tok-a"}, {"authorization": "Basic tok-a"}, {"authorization": "Bearer "}):
        with pytest.raises(UnauthenticatedError, match="missing 'authorization: Bearer <token>'"):
            authenticate(config, metadata)
    for guess in ("tok-A", "tok-ax", hash_token("tok-a"), "tok"):   # a digest is not a token
        with pytest.raises(UnauthenticatedError, match="unknown token"):
            authenticate(config, {"authorization": f"Bearer {guess}"})
    # without tokens everyone is the anonymous all-projects principal
    assert authenticate(BridgeConfig(data_dir=Path("unused")), {}) == Principal(None, "")


# ---------------------------------------------------------------- tokens file and environment
def _tokens_file(path: Path, entries: dict[str, str], mode: int = 0o600) -> Path:
    lines = ["[tokens]", *(f'"{hash_token(t)}" = "{p}"' for t, p in entries.items()), ""]
    path.write_text("\n".join(lines))
    path.chmod(mode)
    return path


def test_tokens_file_holds_digests_and_must_be_private(tmp_path):
    f = _tokens_file(tmp_path / "tokens.toml", {"tok-a": "alpha", "tok-admin": "*"})
    config = load_config(None, environ={}, data_dir=tmp_path, tokens_file=f)
    assert config.tokens == {hash_token("tok-a"): "alpha", hash_token("tok-admin"): "*"}
    assert "tok-a" not in repr(config)
    for mode in (0o640, 0o604, 0o660, 0o666):
        f.chmod(mode)
        with pytest.raises(InvalidArgumentError) as err:
            load_config(None, environ={}, data_dir=tmp_path, tokens_file=f)
        assert str(err.value) == (f"tokens_file {f} is open to other users (mode {mode:04o}); "
                                  f"make it private with: chmod 600 {f}")
    f.chmod(0o600)
    # a plain token where a digest belongs is refused, without echoing it
    (tmp_path / "plain.toml").write_text('[tokens]\n"my-secret-token" = "alpha"\n')
    (tmp_path / "plain.toml").chmod(0o600)
    with pytest.raises(InvalidArgumentError, match="is not a SHA-256 hex digest; tokens are stored hashed") as err:
        load_tokens_file(tmp_path / "plain.toml")
    assert "my-secret-token" not in str(err.value)
    (tmp_path / "other.toml").write_text('[tokens]\n[limits]\nmax_frames = 3\n')
    (tmp_path / "other.toml").chmod(0o600)
    with pytest.raises(InvalidArgumentError, match="expected only a \\[tokens\\] table"):
        load_tokens_file(tmp_path / "other.toml")
    with pytest.raises(InvalidArgumentError, match="No such file"):
        load_tokens_file(tmp_path / "absent.toml")


def test_tokens_from_the_environment_are_hashed_and_merged(tmp_path):
    f = _tokens_file(tmp_path / "tokens.toml", {"tok-a": "alpha"})
    config = load_config(None, environ={"GREENLIGHT_TOKENS": "beta=tok-b, *=tok=admin,"}, data_dir=tmp_path,
                         tokens_file=f)
    assert config.tokens == {hash_token("tok-a"): "alpha", hash_token("tok-b"): "beta",
                             hash_token("tok=admin"): "*"}
    with pytest.raises(InvalidArgumentError) as err:
        load_config(None, environ={"GREENLIGHT_TOKENS": "beta=tok-b,secret-without-project"}, data_dir=tmp_path)
    assert "entry 2 is not project=token" in str(err.value) and "secret-without-project" not in str(err.value)
    with pytest.raises(InvalidArgumentError, match="is given for two projects, 'alpha' and 'beta'"):
        load_config(None, environ={"GREENLIGHT_TOKENS": "beta=tok-a"}, data_dir=tmp_path, tokens_file=f)
    # the real environment is read when none is given
    os.environ["GREENLIGHT_TOKENS"] = "gamma=tok-g"
    try:
        assert load_config(None, data_dir=tmp_path).tokens == {hash_token("tok-g"): "gamma"}
    finally:
        del os.environ["GREENLIGHT_TOKENS"]


def test_a_tokens_table_in_the_main_config_is_refused(tmp_path):
    cfg = tmp_path / "bridge.toml"
    cfg.write_text('[tokens]\n"plain-secret" = "alpha"\n')
    with pytest.raises(InvalidArgumentError, match="a \\[tokens\\] table is no longer read .* tokens_file") as err:
        load_config(cfg, environ={})
    assert "plain-secret" not in str(err.value)
    f = _tokens_file(tmp_path / "tokens.toml", {"tok-a": "alpha"})
    cfg.write_text(f'tokens_file = "{f}"\ninsecure_no_auth = false\n')
    assert load_config(cfg, environ={}).tokens == {hash_token("tok-a"): "alpha"}
    cfg.write_text('insecure_no_auth = "yes"\n')
    with pytest.raises(InvalidArgumentError, match="insecure_no_auth must be true or false"):
        load_config(cfg, environ={})


def test_token_new_and_list(tmp_path, capsys):
    f = tmp_path / "sub" / "tokens.toml"
    f.parent.mkdir()
    assert cli_main(["token", "new", "--project", "alpha", "--tokens-file", str(f)]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert len(token) >= 40 and "\n" not in token
    assert oct(f.stat().st_mode & 0o777) == oct(0o600)
    assert token not in f.read_text() and hash_token(token) in f.read_text()
    assert f"token {token_id(hash_token(token))} for project 'alpha' added to {f}" in err
    assert cli_main(["token", "new", "--project", "*", "--tokens-file", str(f)]) == 0
    admin = capsys.readouterr().out.strip()
    assert admin != token
    tokens = load_tokens_file(f)
    assert tokens == {hash_token(token): "alpha", hash_token(admin): "*"}
    config = load_config(None, environ={}, data_dir=tmp_path, tokens_file=f)
    assert authenticate(config, {"authorization": f"Bearer {token}"}).project == "alpha"
    assert cli_main(["token", "list", "--tokens-file", str(f)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing == ["token id      project", f"{token_id(hash_token(admin))}  *",
                       f"{token_id(hash_token(token))}  alpha"]
    assert token not in "\n".join(listing)
    before = f.read_text()
    f.chmod(0o644)   # new refuses to extend a file others can read, list refuses to read it
    assert cli_main(["token", "new", "--project", "beta", "--tokens-file", str(f)]) != 0
    assert "is open to other users" in capsys.readouterr().err
    assert cli_main(["token", "list", "--tokens-file", str(f)]) != 0
    assert f.read_text() == before


def test_serve_reads_tokens_from_a_file_never_from_argv(tmp_path, small_shot, capsys):
    f = tmp_path / "tokens.toml"
    assert cli_main(["token", "new", "--project", "alpha", "--tokens-file", str(f)]) == 0
    token = capsys.readouterr().out.strip()
    env = dict(os.environ, PYTHONPATH=str(REPO), GRPC_ENABLE_FORK_SUPPORT="0")
    env.pop("GREENLIGHT_TOKENS", None)
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--data-dir", str(tmp_path / "data"),
                             "--port", "0", "--tokens-file", str(f)], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line and "1 token(s)" in line, proc.stderr.read() if proc.stderr else line
        address = line.split("listening on ")[1].split()[0]
        assert token not in Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        with BridgeClient(address, token=token, timeout_s=10) as client:
            assert client.submit(small_shot.with_tags(project="alpha")).job.project == "alpha"
        with BridgeClient(address, timeout_s=10) as anonymous, pytest.raises(UnauthenticatedError):
            anonymous.jobs("alpha")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
    with pytest.raises(SystemExit):   # the flag that put tokens in `ps` is gone
        cli_main(["serve", "--token-for", "alpha=secret"])



# ---------------------------------------------------------------- exposure
def test_off_loopback_without_tokens_is_refused_unless_insecure(caplog):
    for host in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"):
        check_exposure(BridgeConfig(data_dir=Path("x"), host=host))   # loopback: no tokens needed
    for host in ("0.0.0.0", "::", "192.168.1.20", "render-node.example.com"):
        with pytest.raises(PreconditionError, match=f"refusing to listen on {host} without tokens.*--insecure-no-auth"):
            check_exposure(BridgeConfig(data_dir=Path("x"), host=host))
    with caplog.at_level(logging.WARNING, logger="greenlight.auth"):
        check_exposure(BridgeConfig(data_dir=Path("x"), host="0.0.0.0", insecure_no_auth=True))
        assert "WITHOUT authentication (--insecure-no-auth)" in caplog.text
        caplog.clear()
        check_exposure(_config(TOKENS, host="0.0.0.0"))
        assert "with tokens but without TLS" in caplog.text
        caplog.clear()
        check_exposure(_config(TOKENS, host="0.0.0.0", tls_cert=Path("c.pem"), tls_key=Path("k.pem")))
        assert caplog.text == ""


def test_create_server_off_loopback_needs_tokens_or_the_explicit_flag(start_bridge):
    with pytest.raises(PreconditionError, match="refusing to listen on 0.0.0.0 without tokens"):
        start_bridge(host="0.0.0.0")
    bridge = start_bridge(host="0.0.0.0", insecure_no_auth=True)
    with BridgeClient(f"127.0.0.1:{bridge.port}", timeout_s=10) as client:
        assert not client.capabilities().auth_required
    bridge = start_bridge(host="0.0.0.0", tokens=TOKENS)
    with BridgeClient(f"127.0.0.1:{bridge.port}", token="tok-a", timeout_s=10) as client:
        assert client.capabilities().auth_required


# ---------------------------------------------------------------- mutual TLS
def _pki(tmp_path: Path):
    """A CA, a server certificate for localhost and a client certificate, both
    signed by it, and a client certificate from a CA the server does not trust."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def pem_key(key):
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    def cert(subject, key, issuer, issuer_key, *, ca=False, usage=None, san=None):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if san is not None:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
        return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    out = {}
    ca_key, rogue_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    out["ca"] = cert("test CA", ca_key, "test CA", ca_key, ca=True)
    server_key, client_key, stranger_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    out["server"] = cert("localhost", server_key, "test CA", ca_key, usage=ExtendedKeyUsageOID.SERVER_AUTH,
                         san="localhost")
    out["server_key"] = pem_key(server_key)
    out["client"] = cert("artist-1", client_key, "test CA", ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    out["client_key"] = pem_key(client_key)
    out["stranger"] = cert("stranger", stranger_key, "rogue CA", rogue_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    out["stranger_key"] = pem_key(stranger_key)
    paths = {}
    for key, pem in out.items():
        paths[key] = tmp_path / f"{key}.pem"
        paths[key].write_bytes(pem)
    return out, paths


def _capabilities(address, ca, key=None, chain=None, token=None):
    """GetCapabilities over a raw channel, so the client may present a certificate."""
    from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc

    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=chain)
    with grpc.secure_channel(address, creds) as channel:
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return bridge_pb2_grpc.BridgeStub(channel).GetCapabilities(bridge_pb2.GetCapabilitiesRequest(), timeout=5,
                                                                   metadata=metadata)


def test_server_credentials_need_both_halves_and_pem(tmp_path):
    pem, paths = _pki(tmp_path)
    assert server_credentials(BridgeConfig(data_dir=tmp_path)) is None
    with pytest.raises(InvalidArgumentError, match="TLS needs both tls_cert and tls_key"):
        server_credentials(BridgeConfig(data_dir=tmp_path, tls_cert=paths["server"]))
    with pytest.raises(InvalidArgumentError, match="tls_client_ca \\(mutual TLS\\) needs tls_cert and tls_key"):
        server_credentials(BridgeConfig(data_dir=tmp_path, tls_client_ca=paths["ca"]))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(InvalidArgumentError, match="tls_client_ca .*junk.pem: not a PEM file"):
        server_credentials(BridgeConfig(data_dir=tmp_path, tls_cert=paths["server"], tls_key=paths["server_key"],
                                        tls_client_ca=tmp_path / "junk.pem"))
    assert isinstance(server_credentials(BridgeConfig(data_dir=tmp_path, tls_cert=paths["server"],
                                                      tls_key=paths["server_key"], tls_client_ca=paths["ca"])),
                      grpc.ServerCredentials)


def test_mutual_tls_refuses_clients_without_a_trusted_certificate(start_bridge, tmp_path):
    pem, paths = _pki(tmp_path)
    bridge = start_bridge(host="localhost", tls_cert=paths["server"], tls_key=paths["server_key"],
                          tls_client_ca=paths["ca"], tokens=TOKENS)
    address = f"localhost:{bridge.port}"
    caps = _capabilities(address, pem["ca"], pem["client_key"], pem["client"], token="tok-a")
    assert caps.auth_required   # a trusted certificate and a token: served
    for key, chain in ((None, None), (pem["stranger_key"], pem["stranger"])):
        with pytest.raises(grpc.RpcError) as err:   # no certificate, or one from another CA: no connection
            _capabilities(address, pem["ca"], key, chain, token="tok-a")
        assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    with BridgeClient(address, tls_root_cert=pem["ca"], token="tok-a", timeout_s=5, reconnect_s=0) as plain_tls:
        with pytest.raises(BridgeUnavailableError):
            plain_tls.capabilities()
    # the certificate does not replace the token: both are required
    with pytest.raises(grpc.RpcError) as err:
        _capabilities(address, pem["ca"], pem["client_key"], pem["client"])
    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
