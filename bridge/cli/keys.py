"""``greenlight keys``: the per-project encryption keys (docs/governance.md).

    greenlight keys new PROJECT --key-file KEYS         # a key for a project that encrypts
    greenlight keys list --key-file KEYS                # projects and key ids (never the keys)
    greenlight keys rotate PROJECT --data-dir D --key-file KEYS [--config bridge.toml]

``rotate`` works on a stopped bridge's folder: it adds a new key, re-encrypts
every shot and frame of the project with it, then drops the old key; each
step is saved, so an interrupted rotation is finished by running it again.
The audit log records it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import EXIT_OK, InvalidArgumentError


def add_parsers(sub) -> None:
    sp = sub.add_parser("keys", help="per-project encryption keys: new, list, rotate")
    ksub = sp.add_subparsers(dest="keys_command", required=True)
    new = ksub.add_parser("new", help="make a key for PROJECT in the key file (created private, 0600)")
    new.add_argument("project")
    new.add_argument("--key-file", required=True, metavar="FILE", help="outside the bridge's data folder")
    new.set_defaults(func=cmd_new)
    ls = ksub.add_parser("list", help="projects and their key ids")
    ls.add_argument("--key-file", required=True, metavar="FILE")
    ls.set_defaults(func=cmd_list)
    rot = ksub.add_parser("rotate", help="re-encrypt PROJECT's files with a new key (stopped bridge)")
    rot.add_argument("project")
    rot.add_argument("--data-dir", required=True, help="the bridge's data folder")
    rot.add_argument("--key-file", required=True, metavar="FILE")
    rot.add_argument("--config", help="the bridge's config (its [projects] settings)")
    rot.set_defaults(func=cmd_rotate)


def cmd_new(args) -> int:
    from ..governance.encryption import Keyring, key_id

    keyring = Keyring(key_file=Path(args.key_file), environ={})
    if keyring.keys(args.project):
        raise InvalidArgumentError(f"project {args.project!r} already has a key in {args.key_file}; "
                                   f"rotate it instead: greenlight keys rotate {args.project} --data-dir D "
                                   f"--key-file {args.key_file}")
    key = keyring.add_key(args.project)
    print(f"key {key_id(key)} for project {args.project!r} added to {args.key_file}; set "
          f"[projects.{args.project}] encrypt = true and key_file in the bridge's config, and restart it",
          file=sys.stderr)
    return EXIT_OK


def cmd_list(args) -> int:
    from ..governance.encryption import Keyring

    keyring = Keyring(key_file=Path(args.key_file), environ={})
    projects = keyring.projects()
    if not projects:
        print(f"no keys in {args.key_file}", file=sys.stderr)
    for project in projects:
        ids = keyring.key_ids(project)
        print(f"{project:24} {ids[0]} (current)" + "".join(f", {i}" for i in ids[1:]))
    return EXIT_OK


def cmd_rotate(args) -> int:
    from ..governance.encryption import key_id
    from ..server.audit import AuditLog
    from ..server.auth import Principal
    from ..server.lock import acquire_data_lock
    from .replay import open_store

    data_dir = Path(args.data_dir)
    with acquire_data_lock(data_dir):    # refuses while a bridge runs on the folder
        _config, store = open_store(data_dir, args.config, args.key_file)
        audit = AuditLog.for_data_dir(data_dir)
        try:
            keyring = store.keyring
            if keyring is None:
                raise InvalidArgumentError("keys rotate: no keys configured", field="key_file")
            old = keyring.key_ids(args.project)
            if not old and not store.job_count(args.project):
                raise InvalidArgumentError(f"keys rotate: project {args.project!r} has no key and no jobs here")
            new = key_id(keyring.add_key(args.project))
            files, size = store.reseal_project(args.project)
            dropped = keyring.retire(args.project)
            audit.record("KeyRotate", Principal(args.project, "cli"), "", "ok", new_key_id=new,
                         old_key_ids=",".join(old), files=files, bytes=size)
        except BaseException as exc:
            audit.record("KeyRotate", Principal(args.project, "cli"), "", type(exc).__name__)
            raise
        finally:
            audit.close()
            store.close()
    print(f"project {args.project!r}: {files} files ({size} bytes) re-encrypted with key {new}; "
          f"retired {', '.join(dropped) or 'no older key'}")
    return EXIT_OK
