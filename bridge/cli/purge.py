"""``greenlight purge``: delete ended jobs from a stopped bridge's data folder.

    greenlight purge --data-dir D --older-than-days 30 [--project P] [--dry-run]
    greenlight purge --data-dir D --config bridge.toml      (its retention_days)

Frames, uploaded shots, reports and store rows go; the energy ledger keeps
its rows. It refuses while a bridge holds the folder (the bridge applies its
own retention while it runs).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_OK, InvalidArgumentError


def add_parsers(sub) -> None:
    sp = sub.add_parser("purge", help="delete ended jobs from a stopped bridge's data folder")
    sp.add_argument("--data-dir", required=True, help="the bridge's data folder")
    sp.add_argument("--project", help="only this project's jobs")
    sp.add_argument("--older-than-days", type=float, metavar="N",
                    help="jobs that ended more than N days ago (0: every ended job)")
    sp.add_argument("--config", help="apply this bridge config's retention_days instead of --older-than-days")
    sp.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    sp.add_argument("--key-file", help="the encryption key file: a project left with no jobs loses its keys "
                                       "(crypto-shredding)")
    sp.set_defaults(func=cmd_purge)


def cmd_purge(args) -> int:
    from ..jobs.store import JobStore
    from ..server.lock import acquire_data_lock
    from ..server.retention import purge

    data_dir = Path(args.data_dir)
    if (args.older_than_days is None) == (args.config is None):
        raise InvalidArgumentError("purge: give --older-than-days N (0: every ended job) or --config FILE "
                                   "(its retention_days), one of the two")
    retention = None
    if args.config is not None:
        from ..server.config import load_config

        retention = load_config(args.config, data_dir=data_dir).retention_days
        if not retention:
            raise InvalidArgumentError(f"purge: {args.config} sets no retention_days; nothing would be deleted")
    if not (data_dir / "bridge.sqlite3").is_file():
        raise InvalidArgumentError(f"purge: {data_dir} is not a bridge data folder (no bridge.sqlite3)")
    with acquire_data_lock(data_dir):    # refuses while a bridge runs on the folder
        store = JobStore(data_dir)
        if args.config or args.key_file:
            from ..server.config import keyring_for, load_config

            store.keyring = keyring_for(load_config(args.config, data_dir=data_dir,
                                                    key_file=Path(args.key_file) if args.key_file else None))
        try:
            result = purge(store, project=args.project, older_than_days=args.older_than_days,
                           retention_days=retention, dry_run=args.dry_run)
        finally:
            store.close()
    verb = "would delete" if args.dry_run else "deleted"
    for job, freed in result.deleted:
        print(f"{verb} {job.job_id}  {job.project}/{job.shot} v{job.version}  {job.state.value}  {freed} bytes")
    print(f"{verb} {len(result.deleted)} jobs, {result.bytes_freed} bytes"
          + ("" if args.dry_run else "; the energy ledger keeps their totals"))
    for project, ids in result.shredded.items():
        print(f"deleted {len(ids)} encryption key(s) of project {project} (it has no jobs left)")
    return EXIT_OK
