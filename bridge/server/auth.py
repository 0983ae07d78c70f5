"""Who is calling: bearer tokens (kept only as SHA-256 digests) mapped to
the project each may see, and how the bridge exposes itself (loopback or
not, TLS, mutual TLS).

Tokens are never stored or compared in the clear: the bridge keeps
``sha256(token).hexdigest() -> project`` (``BridgeConfig.tokens``), hashes
what a client sends and compares digests in constant time. Audit records
name a token by ``token_id`` (the first 12 hex digits of its digest), which
identifies it without revealing it. See docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import InvalidArgumentError, PermissionDeniedError, PreconditionError, UnauthenticatedError
from ..jobs.store import JobRecord

if TYPE_CHECKING:
    import grpc


class AuthConfig(Protocol):
    """What this module reads of ``config.BridgeConfig`` (config.py imports this
    module to load tokens, so this one names the fields instead of importing it)."""

    @property
    def host(self) -> str: ...
    @property
    def tokens(self) -> dict[str, str]: ...
    @property
    def insecure_no_auth(self) -> bool: ...
    @property
    def tls_cert(self) -> Path | None: ...
    @property
    def tls_key(self) -> Path | None: ...
    @property
    def tls_client_ca(self) -> Path | None: ...

log = logging.getLogger("greenlight.auth")

ALL_PROJECTS = "*"
TOKEN_ID_LENGTH = 12


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``project`` None means every project (admin or no auth);
    ``token_id`` names the token in audit records without revealing it
    ("" when the bridge has no tokens)."""

    project: str | None
    token_id: str = ""

    def check_project(self, project: str) -> None:
        if self.project is not None and self.project != project:
            raise PermissionDeniedError(f"this token is for project {self.project!r}, not {project!r}")

    def can_see(self, job: JobRecord) -> bool:
        return self.project is None or self.project == job.project


def hash_token(token: str) -> str:
    """The SHA-256 hex digest a token is kept as."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id(digest: str) -> str:
    """A short label for a token's digest, for audit records and ``greenlight token list``."""
    return digest[:TOKEN_ID_LENGTH]


def hash_tokens(plain: Mapping[str, str]) -> dict[str, str]:
    """``{token: project}`` in the clear -> ``{digest: project}`` (for tests and GREENLIGHT_TOKENS)."""
    return {hash_token(token): project for token, project in plain.items()}


def is_digest(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


TOKENS_ENV = "GREENLIGHT_TOKENS"
TOKENS_FILE_HEADER = """\
# Greenlight bridge tokens, kept hashed: "<sha256 hex of the token>" = "<project>"
# ("*" = every project). Add one with `greenlight token new --project P --tokens-file THIS_FILE`;
# remove a line to revoke that token (restart the bridge). Keep this file private (chmod 600).
[tokens]
"""


def load_tokens_file(path: Path) -> dict[str, str]:
    """``{digest: project}`` from a tokens file (see TOKENS_FILE_HEADER and
    docs/security.md); refuses a file other users may read or write."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError(f"tokens_file {path}: {exc.strerror or exc}", field="tokens_file") from exc
    if os.name == "posix" and mode & 0o077:
        raise InvalidArgumentError(
            f"tokens_file {path} is open to other users (mode {stat.S_IMODE(mode):04o}); "
            f"make it private with: chmod 600 {path}", field="tokens_file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"tokens_file {path}: {exc}", field="tokens_file") from exc
    unknown = set(data) - {"tokens"}
    table = data.get("tokens", {})
    if unknown or not isinstance(table, dict):
        raise InvalidArgumentError(f"tokens_file {path}: expected only a [tokens] table of "
                                   '"<sha256 hex>" = "project" entries', field="tokens_file")
    tokens: dict[str, str] = {}
    for key, project in table.items():
        digest = str(key).lower()
        if not is_digest(digest):
            raise InvalidArgumentError(
                f"tokens_file {path}: entry {token_id(str(key))}... is not a SHA-256 hex digest; tokens are "
                "stored hashed: add them with `greenlight token new`", field="tokens_file")
        if not isinstance(project, str) or not project.strip():
            raise InvalidArgumentError(f"tokens_file {path}: token {token_id(digest)} needs a project name "
                                       '(or "*" for every project)', field="tokens_file")
        tokens[digest] = project.strip()
    return tokens


def tokens_from_env(text: str) -> dict[str, str]:
    """``{digest: project}`` from GREENLIGHT_TOKENS = ``project=token,project=token``
    (plain tokens, hashed here and never kept)."""
    tokens: dict[str, str] = {}
    for i, item in enumerate(p.strip() for p in text.split(",")):
        if not item:
            continue
        project, sep, token = item.partition("=")
        project, token = project.strip(), token.strip()
        if not sep or not project or not token:
            # never echo the item: it holds a secret
            raise InvalidArgumentError(f"{TOKENS_ENV}: entry {i + 1} is not project=token "
                                       "(use project=token,project=token; '*' = every project)",
                                       field=TOKENS_ENV)
        tokens[hash_token(token)] = project
    return tokens


def merge_tokens(*sources: Mapping[str, str]) -> dict[str, str]:
    """Digest maps combined; one token bound to two projects is refused."""
    out: dict[str, str] = {}
    for source in sources:
        for digest, project in source.items():
            if out.setdefault(digest, project) != project:
                raise InvalidArgumentError(f"token {token_id(digest)} is given for two projects, "
                                           f"{out[digest]!r} and {project!r}; a token sees one project (or '*')")
    return out


def append_token(path: Path, digest: str, project: str) -> None:
    """Add ``digest = project`` to a tokens file, creating it private (0600)."""
    path = Path(path)
    if not is_digest(digest):
        raise InvalidArgumentError("expected a SHA-256 hex digest")
    if not project or any(c in project for c in '"\\\n\r'):
        raise InvalidArgumentError(f"project name {project!r} must be non-empty, without quotes, "
                                   "backslashes or line breaks", field="project")
    prefix = TOKENS_FILE_HEADER
    if path.exists():
        load_tokens_file(path)   # refuse to extend a file that is not private or not a tokens file
        text = path.read_text(encoding="utf-8")
        prefix = "" if not text or text.endswith("\n") else "\n"
        if not text:
            prefix = TOKENS_FILE_HEADER
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(f'{prefix}"{digest}" = "{project}"\n')


def authenticate(config: AuthConfig, metadata: Mapping[str, str]) -> Principal:
    """The caller named by ``authorization: Bearer <token>`` in ``metadata``
    (lower-case keys, as gRPC gives them). A bridge without tokens lets
    everyone see every project (it listens on loopback, see check_exposure)."""
    if not config.tokens:
        return Principal(project=None)
    header = metadata.get("authorization", "")
    if isinstance(header, bytes):
        header = header.decode("utf-8", errors="replace")
    scheme, _, token = str(header).strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError("missing 'authorization: Bearer <token>' metadata; this bridge requires a token")
    digest = hash_token(token)
    project = None
    # Look at every digest, without stopping at the match: the time taken
    # says nothing about which token (or which part of one) was close.
    for known, known_project in config.tokens.items():
        if hmac.compare_digest(known, digest):
            project = known_project
    if project is None:
        raise UnauthenticatedError("unknown token; ask the bridge operator for a token for your project")
    return Principal(project=None if project == ALL_PROJECTS else project, token_id=token_id(digest))


def is_loopback(host: str) -> bool:
    """True for hosts only this machine can reach: localhost, 127.0.0.0/8, ::1."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: AuthConfig) -> None:
    """Refuse to listen off loopback without tokens (unless ``insecure_no_auth``),
    and warn where tokens would cross the network in the clear."""
    if is_loopback(config.host):
        return
    if not config.tokens:
        if not config.insecure_no_auth:
            raise PreconditionError(
                f"refusing to listen on {config.host} without tokens: anyone who can reach it could submit, "
                "read and cancel jobs. Give tokens (--tokens-file or GREENLIGHT_TOKENS; see docs/security.md), "
                "listen on 127.0.0.1, or pass --insecure-no-auth to accept that risk")
        log.warning("serving on %s WITHOUT authentication (--insecure-no-auth): anyone who can reach it "
                    "can submit, read and cancel every project's jobs", config.host)
    elif config.tls_cert is None:
        log.warning("serving on %s with tokens but without TLS: tokens and shots cross the network in the "
                    "clear; set tls_cert and tls_key", config.host)


def server_credentials(config: AuthConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from ``tls_cert``/``tls_key`` (None: plaintext); with
    ``tls_client_ca``, mutual TLS: a client without a certificate signed by
    that CA cannot connect."""
    import grpc

    if (config.tls_cert is None) != (config.tls_key is None):
        raise InvalidArgumentError("TLS needs both tls_cert and tls_key")
    if config.tls_cert is None or config.tls_key is None:
        if config.tls_client_ca is not None:
            raise InvalidArgumentError("tls_client_ca (mutual TLS) needs tls_cert and tls_key as well")
        return None
    key = _read_pem("tls_key", config.tls_key)
    cert = _read_pem("tls_cert", config.tls_cert)
    if config.tls_client_ca is None:
        return grpc.ssl_server_credentials([(key, cert)])
    ca = _read_pem("tls_client_ca", config.tls_client_ca)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def _read_pem(name: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgumentError(f"{name} {path}: {exc.strerror or exc}", field=name) from exc
    if b"-----BEGIN" not in data:
        raise InvalidArgumentError(f"{name} {path}: not a PEM file (expected '-----BEGIN ...')", field=name)
    return data
