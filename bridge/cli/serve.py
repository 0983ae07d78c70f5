"""``greenlight serve``: run the bridge until SIGINT/SIGTERM (then drain and stop).

Tokens never go on the command line (``ps`` shows it to every user): they
come from ``--tokens-file`` (hashed; see ``greenlight token``) or the
environment variable GREENLIGHT_TOKENS. See docs/security.md.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EXIT_OK


def add_parsers(sub) -> None:
    sp = sub.add_parser("serve", help="run the bridge",
                        description="Run the bridge. Tokens come from --tokens-file or GREENLIGHT_TOKENS "
                                    "(project=token,project=token), never from the command line.")
    sp.add_argument("--config", help="TOML config file")
    sp.add_argument("--host", help="address to listen on (default 127.0.0.1; off loopback needs tokens)")
    sp.add_argument("--port", type=int)
    sp.add_argument("--data-dir", help="job store and artifacts; one bridge per folder")
    sp.add_argument("--tokens-file", metavar="FILE",
                    help="private (0600) file of hashed tokens, written by `greenlight token new`")
    sp.add_argument("--tls-cert", metavar="PEM")
    sp.add_argument("--tls-key", metavar="PEM")
    sp.add_argument("--tls-client-ca", metavar="PEM",
                    help="mutual TLS: clients must present a certificate signed by this CA")
    sp.add_argument("--insecure-no-auth", action="store_true", default=None,
                    help="allow listening off loopback WITHOUT tokens: anyone who can reach the port can "
                         "submit, read and cancel every project's jobs")
    sp.add_argument("--reflection", action="store_true", default=None,
                    help="enable gRPC server reflection (off by default; health is always on)")
    sp.add_argument("--metrics-port", type=int, metavar="PORT",
                    help="serve Prometheus metrics on this port (loopback; 0 = any free port)")
    sp.add_argument("--exit-with", type=int, metavar="PID",
                    help="drain and exit when process PID ends (a managed bridge follows the DCC that started "
                         "it, even when that one is killed)")
    sp.set_defaults(func=cmd_serve)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def cmd_serve(args) -> int:
    import signal
    import threading

    from ..server.app import create_server
    from ..server.config import load_config

    config = load_config(args.config, data_dir=_path(args.data_dir), host=args.host, port=args.port,
                         tokens_file=_path(args.tokens_file), tls_cert=_path(args.tls_cert),
                         tls_key=_path(args.tls_key), tls_client_ca=_path(args.tls_client_ca),
                         insecure_no_auth=args.insecure_no_auth, reflection=args.reflection,
                         metrics_port=args.metrics_port)
    bridge = create_server(config)
    auth = f"{len(config.tokens)} token(s)" if config.tokens else "no tokens"
    print(f"greenlight bridge listening on {bridge.address} (data: {config.data_dir}; {auth})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.exit_with:
        threading.Thread(target=_watch_parent, args=(args.exit_with, stop), name="greenlight-exit-with",
                         daemon=True).start()
    stop.wait()
    bridge.stop(grace=2.0)   # drains: running jobs finish their frame and are re-queued
    return EXIT_OK


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by someone else
        return True
    return True


def _watch_parent(pid: int, stop, every_s: float = 1.0) -> None:
    """Set ``stop`` once ``pid`` is gone (or, on POSIX, once this process
    has been re-parented: the parent died and its pid may be reused)."""
    import os

    parent = os.getppid()
    while not stop.wait(every_s):
        if not _alive(pid) or (pid == parent and os.getppid() != parent):
            print(f"greenlight: process {pid} ended; stopping the bridge", flush=True)
            stop.set()
