"""``greenlight replay``: make a job's frames again from its recipe and say
whether each one is bit-identical (docs/governance.md).

    greenlight replay JOB_ID --data-dir D [--config bridge.toml] [--key-file KEYS]

It reads a stopped bridge's data folder (it refuses while a bridge holds
it), runs the job's backend on the stored shot with the stored settings on
this machine, and compares pixels. Exit 0 when every frame is identical and
the shot is the one the recipe recorded, 1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import EXIT_BAD_INPUT, EXIT_JOB_FAILED, EXIT_OK


def add_parsers(sub) -> None:
    sp = sub.add_parser("replay", help="re-run a job's recipe and check its frames are bit-identical")
    sp.add_argument("job_id")
    sp.add_argument("--data-dir", required=True, help="a stopped bridge's data folder")
    sp.add_argument("--config", help="the bridge's config (its extra_backends, projects, key_file)")
    sp.add_argument("--key-file", help="the encryption key file, when the project encrypts")
    sp.set_defaults(func=cmd_replay)


def open_store(data_dir: Path, config_path: str | None, key_file: str | None):
    """(config, store with the bridge's keyring) for a stopped bridge's folder."""
    from ..errors import InvalidArgumentError
    from ..jobs.store import JobStore
    from ..server.config import keyring_for, load_config

    if not (data_dir / "bridge.sqlite3").is_file():
        raise InvalidArgumentError(f"{data_dir} is not a bridge data folder (no bridge.sqlite3)")
    config = load_config(config_path, data_dir=data_dir, key_file=Path(key_file) if key_file else None)
    store = JobStore(data_dir)
    store.keyring = keyring_for(config)
    return config, store


def cmd_replay(args) -> int:
    from ..backends import default_backends
    from ..governance.recipe import HashCache
    from ..governance.replay import replay
    from ..server.lock import acquire_data_lock

    data_dir = Path(args.data_dir)
    with acquire_data_lock(data_dir):    # refuses while a bridge runs on the folder
        config, store = open_store(data_dir, args.config, args.key_file)
        try:
            result = replay(store, args.job_id, default_backends(config.extra_backends),
                            HashCache.for_data_dir(data_dir))
        finally:
            store.close()
    print(f"job {result.job_id}: recipe {result.recipe_hash}, replayed here as {result.replay_hash}")
    for change in result.input_changes:
        print(f"  input differs: {change}")
    for change in result.environment_changes:
        print(f"  environment differs: {change}")
    for f in result.frames:
        line = "bit-identical" if f.identical else f"differs: max pixel difference {f.max_diff}"
        print(f"  frame {f.index:5d}  {line}{f'  ({f.note})' if f.note else ''}")
    same = sum(f.identical for f in result.frames)
    print(f"{same}/{len(result.frames)} frames bit-identical")
    if not result.frames:
        print("the job has no stored frames to compare", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not result.identical:
        print(f"likely cause: {result.cause()}", file=sys.stderr)
        return EXIT_JOB_FAILED
    return EXIT_OK
