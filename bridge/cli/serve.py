"""``greenlight serve``: run the bridge until SIGINT/SIGTERM."""

from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_OK, GreenlightError


def add_parsers(sub) -> None:
    sp = sub.add_parser("serve", help="run the bridge")
    sp.add_argument("--config", help="TOML config file")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--data-dir")
    sp.add_argument("--tls-cert")
    sp.add_argument("--tls-key")
    sp.add_argument("--token-for", action="append", metavar="PROJECT=TOKEN",
                    help="require tokens; this one may see PROJECT ('*' = all); repeatable")
    sp.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    import signal
    import threading

    from ..server.app import create_server
    from ..server.config import load_config

    tokens = {}
    for item in args.token_for or []:
        project, sep, token = item.partition("=")
        if not sep or not project or not token:
            raise GreenlightError(f"--token-for expects PROJECT=TOKEN, got {item!r}")
        tokens[token] = project
    config = load_config(args.config, data_dir=Path(args.data_dir) if args.data_dir else None,
                         host=args.host, port=args.port,
                         tls_cert=Path(args.tls_cert) if args.tls_cert else None,
                         tls_key=Path(args.tls_key) if args.tls_key else None,
                         tokens=tokens or None)
    bridge = create_server(config)
    print(f"greenlight bridge listening on {bridge.address} (data: {config.data_dir})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    bridge.stop(grace=2.0)
    return EXIT_OK
