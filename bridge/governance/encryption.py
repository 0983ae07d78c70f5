"""Encryption at rest, per project (docs/governance.md).

A project set to ``encrypt = true`` has its uploaded shot and its generated
frames sealed with AES-256-GCM under the project's key before they touch the
bridge's disk. The store seals on write and opens on read, so clients get
plain PNG as before.

A sealed file::

    b"GLENC1" | key id (8 bytes) | nonce (12 bytes) | ciphertext + GCM tag

The associated data binds it to its place (project, job, file name): a file
moved to another job or project does not open. The key id is a hash of the
key (never the key), so the bridge names the key a file needs.

Keys live outside the data folder: in a key file (TOML, mode 0600, refused
otherwise)::

    [projects]
    "alpha" = ["<urlsafe base64 of 32 bytes: current>", "<older, while rotating>"]

and/or in GREENLIGHT_KEYS (``project=<base64>,project=<base64>``). With a key
file, the bridge creates a project's key the first time it needs one.
Deleting a project's key (crypto-shredding) leaves every copy of its files,
backups included, unreadable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

from ..errors import InvalidArgumentError, PreconditionError

log = logging.getLogger(__name__)
MAGIC = b"GLENC1"
KEY_BYTES = 32
_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER = len(MAGIC) + _ID_BYTES + _NONCE_BYTES
KEYS_ENV = "GREENLIGHT_KEYS"
INSTALL_HINT = "pip install 'greenlight[encryption]' (the cryptography package)"


def is_sealed(data: bytes) -> bool:
    return data[:len(MAGIC)] == MAGIC


def key_id(key: bytes) -> str:
    """A key's public name: 16 hex digits of a hash (reveals nothing of the key)."""
    return hashlib.sha256(b"greenlight-key-id\0" + key).digest()[:_ID_BYTES].hex()


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _aad(project: str, job_id: str, name: str) -> bytes:
    return f"greenlight/v1\0{project}\0{job_id}\0{name}".encode()


def _aesgcm(key: bytes):
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise PreconditionError(f"encryption at rest needs the cryptography package: {INSTALL_HINT}") from None
    return AESGCM(key)


def seal(key: bytes, data: bytes, project: str, job_id: str, name: str) -> bytes:
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return MAGIC + bytes.fromhex(key_id(key)) + nonce + _aesgcm(key).encrypt(nonce, data,
                                                                              _aad(project, job_id, name))


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (ValueError, TypeError):
        raise InvalidArgumentError(f"{where}: a key must be urlsafe base64 (of {KEY_BYTES} bytes)") from None
    if len(key) != KEY_BYTES:
        raise InvalidArgumentError(f"{where}: a key must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
    return key


def encode_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def keys_from_env(text: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        project, sep, value = item.partition("=")
        if not sep or not project.strip():
            raise InvalidArgumentError(f"{KEYS_ENV}: use project=<base64 key>,project=<base64 key>")
        out[project.strip()] = _decode_key(value, f"{KEYS_ENV} entry for project {project.strip()!r}")
    return out


def check_key_file(path: Path, data_dir: Path | None = None) -> None:
    """A key file must be private (no group/other access) and lie outside the data folder."""
    if data_dir is not None:
        try:
            inside = path.resolve().is_relative_to(Path(data_dir).resolve())
        except OSError:
            inside = False
        if inside:
            raise PreconditionError("key_file: the key file must lie outside the data folder (a copy of the "
                                    "data folder must not carry its keys); move it and point key_file at it")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PreconditionError(f"key_file {path}: readable by others (mode {stat.S_IMODE(mode):03o}); "
                                f"make it private: chmod 600 {path}")


def read_key_file(path: Path) -> dict[str, list[bytes]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PreconditionError(f"key_file {path}: cannot be read ({type(exc).__name__}: {exc})") from None
    projects = data.get("projects", {})
    if not isinstance(projects, dict):
        raise PreconditionError(f"key_file {path}: [projects] must map project names to lists of keys")
    out = {}
    for project, keys in projects.items():
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not keys:
            raise PreconditionError(f"key_file {path}: project {project!r} must list at least one key")
        out[str(project)] = [_decode_key(k, f"key_file {path}, project {project!r}") for k in keys]
    return out


def write_key_file(path: Path, keys: Mapping[str, list[bytes]]) -> None:
    """Atomically, created private (0600) from the first byte."""
    lines = ["# greenlight encryption keys (docs/governance.md): private, outside the data folder.",
             "# The first key of a project is its current one; the others are kept while a rotation runs.",
             "[projects]"]
    for project in sorted(keys):
        lines.append(f"{json.dumps(project)} = [{', '.join(json.dumps(encode_key(k)) for k in keys[project])}]")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Keyring:
    """The projects' keys and which projects encrypt. ``encrypts(project)``
    comes from the bridge config (``[projects.<name>] encrypt``); keys from
    ``key_file`` and ``environ[GREENLIGHT_KEYS]``. ``audit(event, project,
    job_id, **detail)`` records key use (once per job and purpose), creation,
    rotation and deletion."""

    def __init__(self, encrypts: Callable[[str], bool] = lambda project: False, key_file: Path | None = None,
                 environ: Mapping[str, str] | None = None, data_dir: Path | None = None):
        self._encrypts = encrypts
        self.key_file = Path(key_file) if key_file is not None else None
        self._lock = threading.RLock()
        self._file_keys: dict[str, list[bytes]] = {}
        self._env_keys = keys_from_env((os.environ if environ is None else environ).get(KEYS_ENV, ""))
        self.audit: Callable[..., None] | None = None
        self._seen: set[tuple] = set()
        if self.key_file is not None:
            check_key_file(self.key_file, data_dir)
            self._file_keys = read_key_file(self.key_file)

    # ----------------------------------------------------------- policy and keys
    def encrypts(self, project: str) -> bool:
        return bool(self._encrypts(project))

    def projects(self) -> list[str]:
        with self._lock:
            return sorted(set(self._file_keys) | set(self._env_keys))

    def keys(self, project: str) -> list[bytes]:
        """Current first; a project's env key comes after its file keys."""
        with self._lock:
            keys = list(self._file_keys.get(project, []))
        env = self._env_keys.get(project)
        if env is not None and env not in keys:
            keys.append(env)
        return keys

    def key_ids(self, project: str) -> list[str]:
        return [key_id(k) for k in self.keys(project)]

    def current(self, project: str, create: bool = True) -> bytes:
        """The key new files of ``project`` are sealed with; made (and saved) when
        the project has none and a key file is configured."""
        with self._lock:
            keys = self.keys(project)
            if keys:
                return keys[0]
            if not create or self.key_file is None:
                raise PreconditionError(
                    f"project {project!r} is set to encrypt at rest, but this bridge has no key for it; its "
                    f"operator adds one (`greenlight keys new {project} --key-file FILE`, or {KEYS_ENV})")
            key = new_key()
            self._save({**self._file_keys, project: [key]})
        self._event("KeyCreate", project, "", key_id=key_id(key))
        return key

    def check_ready(self, project: str) -> None:
        """Before accepting work for ``project``: refuse now, not after the upload, when no key can be had."""
        if self.encrypts(project) and not self.keys(project) and self.key_file is None:
            self.current(project, create=False)

    def _save(self, keys: dict[str, list[bytes]]) -> None:
        if self.key_file is None:
            raise PreconditionError(f"keys from {KEYS_ENV} cannot be changed by greenlight; set key_file")
        write_key_file(self.key_file, keys)
        self._file_keys = keys

    def add_key(self, project: str) -> bytes:
        """A new current key for ``project`` (older ones kept until ``retire``)."""
        key = new_key()
        with self._lock:
            self._save({**self._file_keys, project: [key, *self._file_keys.get(project, [])]})
        return key

    def retire(self, project: str) -> list[str]:
        """Drop every key of ``project`` but the current one; returns the dropped ids."""
        with self._lock:
            keys = self._file_keys.get(project, [])
            if len(keys) <= 1:
                return []
            self._save({**self._file_keys, project: keys[:1]})
        return [key_id(k) for k in keys[1:]]

    def delete(self, project: str) -> list[str]:
        """Crypto-shredding: forget every key of ``project`` held in the key file."""
        with self._lock:
            keys = self._file_keys.get(project, [])
            if keys:
                self._save({p: k for p, k in self._file_keys.items() if p != project})
        ids = [key_id(k) for k in keys]
        if ids:
            self._event("KeyDelete", project, "", key_ids=",".join(ids))
        if project in self._env_keys:
            log.warning("project %s: its key in %s is not deleted by greenlight; remove it there", project,
                        KEYS_ENV)
        return ids

    # ----------------------------------------------------------- sealing
    def seal(self, project: str, job_id: str, name: str, data: bytes) -> bytes:
        """``data`` sealed when ``project`` encrypts, else as it is."""
        if not self.encrypts(project):
            return data
        key = self.current(project)
        self._event("KeyUse", project, job_id, key_id=key_id(key), use="encrypt", file=name.split("_")[0])
        return seal(key, data, project, job_id, name)

    def open(self, project: str, job_id: str, name: str, data: bytes, what: str) -> bytes:
        """A stored file's plain bytes (a file stored in the clear comes back as it is).
        ``what`` names it in errors, e.g. "frame 3"."""
        if not is_sealed(data):
            return data
        if len(data) < _HEADER + 16:
            raise PreconditionError(f"job {job_id}: its {what} is damaged (an encrypted file cut short)")
        wanted = data[len(MAGIC):len(MAGIC) + _ID_BYTES].hex()
        key = next((k for k in self.keys(project) if key_id(k) == wanted), None)
        if key is None:
            raise PreconditionError(
                f"job {job_id}: its {what} is encrypted with key {wanted}, which this bridge does not have for "
                f"project {project!r} (it has {self.key_ids(project) or 'none'}); restore the project's key in "
                f"the key file or {KEYS_ENV}")
        nonce = data[len(MAGIC) + _ID_BYTES:_HEADER]
        try:
            from cryptography.exceptions import InvalidTag
        except ImportError:
            raise PreconditionError(f"encryption at rest needs the cryptography package: {INSTALL_HINT}") from None
        try:
            # a memoryview: slicing bytes would copy the whole file first (8x slower for a 6 MB frame)
            plain = _aesgcm(key).decrypt(nonce, memoryview(data)[_HEADER:], _aad(project, job_id, name))
        except InvalidTag:
            raise PreconditionError(
                f"job {job_id}: its {what} does not decrypt with project {project!r}'s key {wanted}: the file "
                "was altered or moved from another job") from None
        self._event("KeyUse", project, job_id, key_id=wanted, use="decrypt", file=name.split("_")[0])
        return plain

    def _event(self, event: str, project: str, job_id: str, **detail) -> None:
        if self.audit is None:
            return
        if event == "KeyUse":   # one record per job, key and purpose, not one per frame
            seen = (project, job_id, detail.get("key_id"), detail.get("use"), detail.get("file"))
            with self._lock:
                if seen in self._seen:
                    return
                if len(self._seen) > 100_000:
                    self._seen.clear()
                self._seen.add(seen)
        try:
            self.audit(event, project, job_id, **detail)
        except Exception:   # the audit never fails the caller (AuditLog logs its own failures)
            log.exception("audit of %s for project %s failed", event, project)
